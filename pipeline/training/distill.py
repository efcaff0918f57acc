"""The listwise distillation phase: batches of queries with [positive, mined negatives], scored by the
student and by cached teacher scores, under a loss that the configured methods assemble."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..losses import Batch, StudentScores
from .loop import Phase
from .sampling import Example, group_batches
from .teachers import InBatchTeacher, ScoreLookup


def batch_builder(settings: dict, examples: list[Example], doc_text: dict[str, str], queries: dict[str, str],
                  teacher_scores: dict[str, ScoreLookup], in_batch_teachers: dict[str, InBatchTeacher] | None = None,
                  frozen_scorers: Sequence[str] = (),
                  instance_weights: Callable[[Batch, int], torch.Tensor] | None = None):
    """``(models, rows, global_step) -> Batch``: a batch of ``[(query, group)]`` rows with its teachers'
    cached scores, the in-batch teachers' embeddings of its texts and scores of every pair, synthetic-passage
    mask, the live scores of ``frozen_scorers`` (untrained bi-encoders among the loop's models, e.g. a
    frozen copy of the student, :mod:`.regularisers`) and the queries' ``instance_weights``, on the
    student's device. Every phase over mined groups (the standard ``distill``, OnMKD's peers) builds its
    batches with it."""
    in_batch_teachers = in_batch_teachers or {}
    synthetic_ids = {d for example in examples for d in example.synthetic}
    scale = float(settings["similarity_scale"])
    max_passage = settings.get("max_passage_length")
    score_every_pair = bool(settings.get("kd_in_batch"))

    def build(models, rows, global_step: int) -> Batch:
        device = models["student"].device
        doc_ids = [d for _, group in rows for d in group]
        batch = Batch(
            query_ids=[q for q, _ in rows],
            query_texts=[queries[q] for q, _ in rows],
            passage_texts=[doc_text[d] for d in doc_ids],
            group_size=settings["group_size"],
            teacher_scores={name: torch.tensor([[lookup[(q, d)] for d in group] for q, group in rows])
                            for name, lookup in teacher_scores.items()},
            teacher_embeddings={name: teacher.embeddings([q for q, _ in rows], doc_ids)
                                for name, teacher in in_batch_teachers.items()},
            synthetic=torch.tensor([[d in synthetic_ids for d in group] for _, group in rows])
            if synthetic_ids else None,
        )
        if score_every_pair:  # the in-batch KL's targets; the embedding MSE reads the embeddings alone
            batch.teacher_batch_scores = {name: in_batch_teachers[name].scores(*embeddings)
                                          for name, embeddings in batch.teacher_embeddings.items()}
        batch.to(device)
        for scorer in frozen_scorers:
            batch.teacher_scores[scorer] = frozen_group_scores(models[scorer], batch, scale, max_passage)
        if instance_weights is not None:
            batch.weights = instance_weights(batch, global_step).to(device)
        return batch

    return build


def distill_phase(settings: dict, examples: list[Example], doc_text: dict[str, str], queries: dict[str, str],
                  teacher_scores: dict[str, ScoreLookup], loss: Callable, seed: int,
                  in_batch_teachers: dict[str, InBatchTeacher] | None = None, name: str = "distill",
                  frozen_scorers: Sequence[str] = (), on_start: Callable | None = None,
                  instance_weights: Callable[[Batch, int], torch.Tensor] | None = None) -> Phase:
    """``settings`` is a ``train`` section (epochs, batch and group size, optimiser, scales); ``loss`` maps
    ``(StudentScores, Batch)`` to ``(loss, parts)``, e.g. a :class:`pipeline.losses.CompositeLoss`.
    ``frozen_scorers`` name untrained bi-encoders among the loop's models (e.g. a frozen copy of the
    student, :mod:`.regularisers`) whose scores of each group join ``Batch.teacher_scores`` under their
    name, computed live without gradients; ``on_start`` is the phase's :attr:`Phase.on_start`;
    ``instance_weights(batch, step)`` gives each query of a batch its weight in the loss (``Batch.weights``:
    self-paced selection, curricula), a function of the phase's step so that a resumed job weighs alike."""
    build = batch_builder(settings, examples, doc_text, queries, teacher_scores, in_batch_teachers,
                          frozen_scorers, instance_weights)
    scale = float(settings["similarity_scale"])
    max_passage = settings.get("max_passage_length")

    def step(models, rows, global_step: int) -> tuple[torch.Tensor, dict[str, float]]:
        student = models["student"]
        batch = build(models, rows, global_step)
        out = StudentScores(student.embed(batch.query_texts, is_query=True),
                            student.embed(batch.passage_texts, is_query=False, max_length=max_passage), scale)
        total, parts = loss(out, batch)
        if batch.weights is not None:  # logged with the loss terms: the share of the batch that counts
            parts["kept_fraction"] = float((batch.weights > 0).float().mean())
        return total, parts

    return Phase(name, settings["epochs"], settings["lr"], settings["weight_decay"], settings["warmup_ratio"],
                 group_batches(examples, settings["group_size"], settings["batch_size"], seed), step,
                 on_start=on_start, dropout=settings.get("dropout"))


@torch.no_grad()
def frozen_group_scores(model, batch: Batch, scale: float, max_passage: int | None) -> torch.Tensor:
    """``[B, G]`` scaled scores of each query's own group by an untrained bi-encoder (eval mode)."""
    return StudentScores(model.embed(batch.query_texts, is_query=True),
                         model.embed(batch.passage_texts, is_query=False, max_length=max_passage),
                         scale).group_scores.float()
