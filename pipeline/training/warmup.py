"""The label-free warm-up phase: the student pulled onto a bi-encoder teacher's embedding space."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data import passage_texts, read_provenance
from ..embeddings import read_embeddings
from ..losses import anchored_rank_kl, embedding_mse
from ..models import BiEncoder, ModelSpec
from .loop import Phase
from .sampling import length_bucketed_batches


def warmup_phase(settings: dict, teacher_spec: ModelSpec, teacher_shards: Sequence[str], corpus: pd.DataFrame,
                 include_title: bool, short_texts: Sequence[str], device, seed: int, name: str = "warmup",
                 trains: tuple[str, ...] = ("student",)) -> Phase:
    """Label-free distillation of the student onto the teacher over corpus passages and short texts
    (training queries, titles): ``w_embedding_mse`` x embedding MSE + ``w_rank_kl`` x ranking KL against
    the teacher's embeddings of the other side (see :func:`pipeline.losses.anchored_rank_kl`).
    Corpus targets are the teacher's cached embeddings. Every model in ``trains`` (the student, and
    OnMKD's peer) warms up on the same batches; the loss is the sum of theirs."""
    for path in teacher_shards:
        meta = read_provenance(path)
        if meta.get("model", {}).get("source") != teacher_spec.source or meta.get("include_title") != include_title:
            raise ValueError(f"{path}: embeddings were not made by warm-up teacher {teacher_spec.name!r}")
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    teacher = BiEncoder.load(teacher_spec, device)
    dim = teacher.backbone.config.hidden_size
    # a seeded sample of the corpus when it is large: its passages are what the student is pulled onto,
    # and their embeddings the ranking KL's anchors (every step scores the batch against all of them)
    sample = settings.get("max_passages")
    wanted = None if sample is None or sample >= len(corpus) else \
        set(np.random.default_rng(seed).choice(corpus["doc_id"].to_numpy(), size=sample, replace=False))
    doc_ids, doc_targets = read_embeddings(teacher_shards, wanted) if teacher_shards \
        else ([], np.zeros((0, dim), np.float32))
    short_targets = teacher.encode(list(short_texts), is_query=True) if short_texts else np.zeros((0, dim), np.float32)
    del teacher
    texts = [doc_text[d] for d in doc_ids] + list(short_texts)
    targets = torch.from_numpy(np.concatenate([doc_targets, short_targets]))
    is_query = np.array([False] * len(doc_ids) + [True] * len(short_texts))
    lengths = [len(t) for t in texts]
    max_passage = settings.get("max_passage_length")
    doc_anchors, short_anchors = torch.from_numpy(doc_targets), torch.from_numpy(short_targets)
    doc_items = np.flatnonzero(~is_query)
    short_items = np.flatnonzero(is_query)

    def batches(epoch: int) -> list:
        out = []
        for items in (doc_items, short_items):
            for b in length_bucketed_batches([lengths[i] for i in items], settings["batch_size"], seed + 7919 * epoch):
                out.append(items[b])
        rng = np.random.default_rng(seed + 104729 * epoch)
        return [out[i] for i in rng.permutation(len(out))]

    def step(models, rows, global_step: int) -> tuple[torch.Tensor, dict[str, float]]:
        queries = bool(is_query[rows[0]])
        batch_texts = [texts[i] for i in rows]
        anchors = doc_anchors if queries else short_anchors
        loss, parts = 0.0, {}
        for model_name in trains:
            emb = models[model_name].embed(batch_texts, is_query=queries, max_length=None if queries else max_passage)
            target = targets[rows].to(emb.device)
            prefix = "" if model_name == "student" else f"{model_name}:"
            mse = embedding_mse(emb, target).mean()
            loss = loss + settings["w_embedding_mse"] * mse
            parts[f"{prefix}embedding_mse"] = float(mse.detach())
            if settings["w_rank_kl"] and len(anchors):
                rank = anchored_rank_kl(emb, target, anchors, settings["rank_scale"]).mean()
                loss = loss + settings["w_rank_kl"] * rank
                parts[f"{prefix}rank_kl"] = float(rank.detach())
        return loss, parts

    return Phase(name, settings["epochs"], settings["lr"], 0.01, 0.05, batches, step, trains=tuple(trains),
                 dropout=settings.get("dropout"))
