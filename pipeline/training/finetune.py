r"""The ``finetune`` step: a configured bi-encoder or cross-encoder trained on the judged training queries
before it serves as teacher, assistant, fusion member or evaluated baseline (``models.<name>.finetune``).

Bi-encoders learn with the student's labelled loss without a teacher: contrastive NLL over each query's
``[positive, mined negatives]`` plus in-batch negatives (Karpukhin et al., 2020; sentence-transformers'
``MultipleNegativesRankingLoss`` with hard negatives). Cross-encoders get a one-logit head on their start
weights and learn listwise over the same groups, localized contrastive estimation (Gao et al., 2021,
"Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline"):

.. math::
    \mathcal{L}_{LCE} = -\log \frac{e^{f(q, p^+)}}{e^{f(q, p^+)} + \sum_{j} e^{f(q, n_j)}}

or pointwise, ``loss: bce``: binary cross-entropy of each pair's logit against its label (1 for the
positive, 0 for a mined negative). Both run on the project's own pieces, the phases of
:mod:`.distill` and the loop of :mod:`.loop` (checkpoints, resume, NaN guard); this is not a second
trainer. The result is saved with ``save_pretrained`` into the experiment's ``models/<name>/`` and loads
in ``sentence_transformers.SentenceTransformer`` or ``sentence_transformers.CrossEncoder``.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import numpy as np
import torch

from ..config import complete
from ..data import atomic_path, load_qrels, load_queries, passage_texts, read_table
from ..losses import CompositeLoss, ContrastiveNLL
from ..cross_encoder import CrossEncoder
from ..models import BiEncoder, ModelSpec, resolve_device, set_threads
from .distill import distill_phase
from .loop import Phase, fingerprint, run_phases
from .sampling import Example, build_examples, group_batches


def finetune_model(model: dict[str, Any], *args, **kwargs) -> dict[str, Any]:
    """The ``finetune`` step: :func:`finetune_bi_encoder` or :func:`finetune_cross_encoder` by kind."""
    if model.get("kind") == "cross-encoder":
        return finetune_cross_encoder(model, *args, **kwargs)
    return finetune_bi_encoder(model, *args, **kwargs)


def cross_encoder_phase(settings: dict, examples: list[Example], doc_text: dict[str, str], queries: dict[str, str],
                        seed: int, name: str = "finetune") -> Phase:
    """Batches of ``[positive, mined negatives]`` groups scored pair by pair by the loop's ``student`` (a
    :class:`CrossEncoder`), under LCE (listwise) or BCE (pointwise)."""
    group_size, max_passage = settings["group_size"], settings.get("max_passage_length")
    pointwise = settings["loss"] == "bce"

    def step(models, rows, global_step: int) -> tuple[torch.Tensor, dict[str, float]]:
        model = models["student"]
        logits = model([queries[q] for q, group in rows for _ in group],
                       [doc_text[d] for _, group in rows for d in group], max_passage).view(len(rows), group_size)
        if pointwise:
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0  # each group starts with its positive
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        else:
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long,
                                                                         device=logits.device))
        return loss, {settings["loss"]: float(loss.detach())}

    return Phase(name, settings["epochs"], settings["lr"], settings["weight_decay"], settings["warmup_ratio"],
                 group_batches(examples, group_size, settings["batch_size"], seed), step)


def finetune_bi_encoder(model: dict[str, Any], out_dir: str, candidates_path: str, qrels_path: str,
                        queries_path: str, corpus_path: str, settings: dict[str, Any] | None = None,
                        scratch_dir: str | None = None, include_title: bool = True, device: str = "auto",
                        threads: int | None = None, seed: int = 13,
                        provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune the bi-encoder ``model`` (a model config with its start ``source``, ``name``) on the
    judged queries of ``qrels_path`` with the negatives of ``candidates_path``; save it to ``out_dir``.
    ``settings`` is a ``finetune`` section (schema defaults fill what it leaves out)."""
    def build(settings, examples, doc_text, queries, device_):
        encoder = BiEncoder.load(ModelSpec.from_config(model["name"], model), device_)
        loss = CompositeLoss({"nll": (1.0, ContrastiveNLL(in_batch=settings["in_batch_negatives"]))})
        # the model being trained is the loop's "student" (the name the distillation phase trains)
        return encoder, distill_phase(settings, examples, doc_text, queries, {}, loss, seed, name="finetune")

    return _finetune(build, model, out_dir, candidates_path, qrels_path, queries_path, corpus_path, settings,
                     scratch_dir, include_title, device, threads, seed, provenance)


def finetune_cross_encoder(model: dict[str, Any], out_dir: str, candidates_path: str, qrels_path: str,
                           queries_path: str, corpus_path: str, settings: dict[str, Any] | None = None,
                           scratch_dir: str | None = None, include_title: bool = True, device: str = "auto",
                           threads: int | None = None, seed: int = 13,
                           provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the cross-encoder ``model`` (its ``source`` the start weights: a fresh one-logit head on a
    bi-encoder's, or a cross-encoder's own) like :func:`finetune_bi_encoder`, with LCE or BCE."""
    def build(settings, examples, doc_text, queries, device_):
        scorer = CrossEncoder.load(ModelSpec.from_config(model["name"], model), device_)
        return scorer, cross_encoder_phase(settings, examples, doc_text, queries, seed)

    return _finetune(build, model, out_dir, candidates_path, qrels_path, queries_path, corpus_path, settings,
                     scratch_dir, include_title, device, threads, seed, provenance)


def _finetune(build, model, out_dir, candidates_path, qrels_path, queries_path, corpus_path, settings,
              scratch_dir, include_title, device, threads, seed, provenance) -> dict[str, Any]:
    """Read the examples, train what ``build`` returns through the loop, save it atomically."""
    name = model["name"]
    settings = complete(settings or {}, "finetune", where=f"models.{name}.finetune")
    set_threads(threads)
    device_ = resolve_device(device)
    torch.manual_seed(seed)  # also a fresh cross-encoder head's initial weights
    np.random.seed(seed)

    qrels = load_qrels(qrels_path)
    examples = build_examples(read_table(candidates_path), qrels)
    if not examples:
        raise ValueError(f"{qrels_path}: no judged training query with a mined negative; fine-tuning "
                         f"{name!r} needs training labels")
    corpus = read_table(corpus_path)
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    trained, phase = build(settings, examples, doc_text, load_queries(queries_path), device_)
    run_id = fingerprint({"model": model, "settings": settings, "seed": seed, "inputs": [candidates_path, qrels_path],
                          "provenance": provenance})
    began = time.perf_counter()
    history = run_phases({"student": trained}, [phase], scratch_dir, run_id, settings["max_grad_norm"],
                         settings["checkpoint_every"], settings["max_bad_steps"], seed)
    summary = {"finetuned_from": model, "settings": settings, "seed": seed, "examples": len(examples),
               "seconds": time.perf_counter() - began, "device": str(device_), "history": history,
               **(provenance or {})}
    with atomic_path(out_dir, directory=True) as tmp:
        trained.save_pretrained(tmp, final_path=out_dir)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    if scratch_dir:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return summary
