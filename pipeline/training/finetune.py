"""The ``finetune`` step: a configured bi-encoder trained on the judged training queries before it serves
as teacher, assistant, miner, fusion member or evaluated baseline (``models.<name>.finetune``).

The recipe is the student's labelled loss without a teacher: contrastive NLL over each query's
``[positive, mined negatives]`` plus in-batch negatives (Karpukhin et al., 2020; sentence-transformers'
``MultipleNegativesRankingLoss`` with hard negatives). It runs on the project's own pieces, the
distillation phase of :mod:`.distill` and the loop of :mod:`.loop` (checkpoints, resume, NaN guard); it
is not a second trainer. The result is saved with ``save_pretrained`` into the experiment's
``models/<name>/`` and loads in ``sentence_transformers.SentenceTransformer``.
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
from ..models import BiEncoder, ModelSpec, resolve_device, set_threads
from .distill import distill_phase
from .loop import fingerprint, run_phases
from .sampling import build_examples


def finetune_bi_encoder(model: dict[str, Any], out_dir: str, candidates_path: str, qrels_path: str,
                        queries_path: str, corpus_path: str, settings: dict[str, Any] | None = None,
                        scratch_dir: str | None = None, include_title: bool = True, device: str = "auto",
                        threads: int | None = None, seed: int = 13,
                        provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune the bi-encoder ``model`` (a model config with its start ``source``, ``name``) on the
    judged queries of ``qrels_path`` with the negatives of ``candidates_path``; save it to ``out_dir``.
    ``settings`` is a ``finetune`` section (schema defaults fill what it leaves out)."""
    name = model["name"]
    settings = complete(settings or {}, "finetune", where=f"models.{name}.finetune")
    set_threads(threads)
    device_ = resolve_device(device)
    torch.manual_seed(seed)
    np.random.seed(seed)

    qrels = load_qrels(qrels_path)
    examples = build_examples(read_table(candidates_path), qrels)
    if not examples:
        raise ValueError(f"{qrels_path}: no judged training query with a mined negative; fine-tuning "
                         f"{name!r} needs training labels")
    corpus = read_table(corpus_path)
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    encoder = BiEncoder.load(ModelSpec.from_config(name, model), device_)
    loss = CompositeLoss({"nll": (1.0, ContrastiveNLL(in_batch=settings["in_batch_negatives"]))})
    # the model being trained is the loop's "student" (the name the distillation phase trains)
    phase = distill_phase(settings, examples, doc_text, load_queries(queries_path), {}, loss, seed, name="finetune")
    run_id = fingerprint({"model": model, "settings": settings, "seed": seed, "inputs": [candidates_path, qrels_path],
                          "provenance": provenance})
    began = time.perf_counter()
    history = run_phases({"student": encoder}, [phase], scratch_dir, run_id, settings["max_grad_norm"],
                         settings["checkpoint_every"], settings["max_bad_steps"], seed)
    summary = {"finetuned_from": model, "settings": settings, "seed": seed, "examples": len(examples),
               "seconds": time.perf_counter() - began, "device": str(device_), "history": history,
               **(provenance or {})}
    with atomic_path(out_dir, directory=True) as tmp:
        encoder.save_pretrained(tmp, final_path=out_dir)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    if scratch_dir:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return summary
