"""Teacher scores as training reads them: cached score artifacts put on the student's scale, and
bi-encoder teachers that score every (query, passage) pair of a batch from their cached embeddings."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch

from ..data import read_provenance, read_table
from ..models import ModelSpec

ScoreLookup = dict[tuple[str, str], float]


def teacher_scale(provenance: dict[str, Any], setting: str | float, similarity_scale: float) -> float:
    """Multiplier that puts a teacher's scores on the student's scale.

    Cosine teachers get the student's own similarity scale (their raw scores live in [-1, 1] and would
    give near-uniform distributions); logits, BM25 and fused scores are used as they are, unless the
    config names a number.
    """
    if setting != "auto":
        return float(setting)
    return similarity_scale if provenance.get("scale") == "cosine" else 1.0


def read_teacher_scores(score_paths: dict[str, str], settings: dict) -> tuple[dict[str, pd.DataFrame], dict[str, ScoreLookup]]:
    """Each scorer's score frame, and its (query, doc) -> scaled score lookup."""
    frames = {name: read_table(path) for name, path in score_paths.items()}
    lookups = {}
    for name, frame in frames.items():
        factor = teacher_scale(read_provenance(score_paths[name]), settings["teacher_scale"],
                               settings["similarity_scale"])
        lookups[name] = dict(zip(zip(frame["query_id"], frame["doc_id"]), frame["score"].astype(float) * factor))
    return frames, lookups


class InBatchTeacher:
    """A bi-encoder teacher's scores for every (query, passage) pair of a batch, from its cached corpus
    embeddings (synthetic passages are encoded as they come), times the teacher's scale factor."""

    def __init__(self, scorer, factor: float, query_ids: Sequence[str], synthetic: dict[str, str]):
        self.scorer, self.factor, self.synthetic = scorer, factor, synthetic
        ids = list(dict.fromkeys(query_ids))
        self.query_row = {q: i for i, q in enumerate(ids)}
        self.query_embeddings = torch.from_numpy(scorer.query_embeddings(ids))

    def __call__(self, query_ids: Sequence[str], doc_ids: Sequence[str]) -> torch.Tensor:
        q = self.query_embeddings[[self.query_row[x] for x in query_ids]]
        p = torch.from_numpy(self.scorer.passage_embeddings(doc_ids, [self.synthetic.get(d) for d in doc_ids]))
        return self.factor * q @ p.T


def in_batch_teacher_scorers(names: Sequence[str], models: dict[str, dict], embedding_shards: dict[str, Sequence[str]],
                             settings: dict, queries: dict[str, str], corpus_path: str, query_ids: Sequence[str],
                             synthetic: dict[str, str], include_title: bool, device) -> dict[str, InBatchTeacher]:
    from ..scorers import make_scorer

    teachers = {}
    for name in names:
        model = models.get(name)
        if model is None or model.get("kind") != "bi-encoder" or name not in embedding_shards:
            kind = model.get("kind") if model else "unknown"
            raise ValueError(f"train.kd_in_batch: teacher {name!r} ({kind}) must be a bi-encoder with cached corpus "
                             "embeddings; in-batch pairs have no cached scores")
        scorer = make_scorer(ModelSpec.from_config(name, model), models, queries, corpus_path, embedding_shards,
                             include_title, device)
        factor = teacher_scale({"scale": scorer.scale}, settings["teacher_scale"], settings["similarity_scale"])
        teachers[name] = InBatchTeacher(scorer, factor, query_ids, synthetic)
    return teachers
