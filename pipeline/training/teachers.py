"""Teacher scores as training reads them: cached score artifacts put on the student's scale, and
bi-encoder teachers that score every (query, passage) pair of a batch from their cached embeddings."""

from __future__ import annotations

import logging
from typing import Any, Collection, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import read_provenance, read_table
from ..models import ModelSpec
from ..scorers import make_scorer

log = logging.getLogger(__name__)

ScoreLookup = dict[tuple[str, str], float]


def teacher_scale(provenance: dict[str, Any], setting: str | float, similarity_scale: float) -> float:
    """Multiplier that puts a teacher's scores on the student's scale.

    Cosine teachers get the student's own similarity scale (their raw scores live in [-1, 1] and would
    give near-uniform distributions); logits, BM25 and fused scores are used as they are, unless the
    config names a number. ``calibrated`` is fitted on the scores themselves (:func:`calibrated_scale`).
    """
    if setting == "calibrated":
        raise ValueError("teacher_scale: calibrated is fitted on a score frame; use calibrated_scale")
    if setting != "auto":
        return float(setting)
    return similarity_scale if provenance.get("scale") == "cosine" else 1.0


def calibrated_scale(frame: pd.DataFrame, qrels: dict[str, dict[str, int]],
                     bounds: tuple[float, float] = (1e-2, 1e3)) -> float | None:
    r"""The multiplier ``a`` under which a teacher's softmax over each query's scored pairs gives its
    judged positives the most likelihood (temperature scaling, Guo et al., 2017):

    .. math::
        a^* = \arg\max_{a > 0} \sum_q \log \frac{\sum_{p \in P_q} e^{a\,t_{qp}}}{\sum_{d \in C_q} e^{a\,t_{qd}}}

    over the queries with at least one judged positive and one other candidate in ``frame``. A teacher
    that ranks well gets a sharp distribution, a noisy one a flat one, whatever the units of its scores
    (cosine, logits, BM25, z-scored fusions). None when no query qualifies.
    """
    # scipy: only when a teacher's scale is calibrated
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    rows, positive_masks = [], []
    for query_id, group in frame.groupby("query_id", sort=True):
        judged = qrels.get(query_id, {})
        is_positive = np.array([judged.get(d, 0) > 0 for d in group["doc_id"]])
        if is_positive.any() and not is_positive.all():
            rows.append(group["score"].to_numpy(np.float64))
            positive_masks.append(is_positive)
    if not rows:
        return None
    width = max(len(r) for r in rows)
    scores = np.full((len(rows), width), -np.inf)
    positives = np.zeros((len(rows), width), dtype=bool)
    for i, (r, m) in enumerate(zip(rows, positive_masks)):
        scores[i, :len(r)], positives[i, :len(m)] = r, m

    def negative_log_likelihood(log_a: float) -> float:
        logits = np.exp(log_a) * scores
        return float(np.mean(logsumexp(logits, axis=1) - logsumexp(np.where(positives, logits, -np.inf), axis=1)))

    best = minimize_scalar(negative_log_likelihood, bounds=np.log(bounds), method="bounded",
                           options={"xatol": 1e-6})
    return float(np.exp(best.x))


def read_teacher_scores(score_paths: dict[str, str], settings: dict, qrels: dict[str, dict[str, int]] | None = None,
                        synthetic: Collection[str] = ()) -> tuple[dict[str, pd.DataFrame], dict[str, ScoreLookup], dict[str, float]]:
    """Each scorer's score frame, its (query, doc) -> scaled score lookup, and the scale factor used
    (``teacher_scale: calibrated`` fits one per scorer on the judged positives of ``qrels`` against the
    mined candidates: ``synthetic`` passages, judged neither way, stay out of the fit)."""
    frames = {name: read_table(path) for name, path in score_paths.items()}
    lookups, factors = {}, {}
    for name, frame in frames.items():
        provenance = read_provenance(score_paths[name])
        if settings["teacher_scale"] == "calibrated":
            judged = frame[~frame["doc_id"].isin(set(synthetic))] if len(synthetic) else frame
            factor = calibrated_scale(judged, qrels or {})
            if factor is None:
                factor = teacher_scale(provenance, "auto", settings["similarity_scale"])
                log.warning("teacher_scale: calibrated: no judged query among %s's scored pairs; using the "
                            "automatic scale %g", name, factor)
            log.info("teacher %s: calibrated scale %.4g", name, factor)
        else:
            factor = teacher_scale(provenance, settings["teacher_scale"], settings["similarity_scale"])
        factors[name] = factor
        lookups[name] = dict(zip(zip(frame["query_id"], frame["doc_id"]), frame["score"].astype(float) * factor))
    return frames, lookups, factors


class InBatchTeacher:
    """A bi-encoder teacher's embeddings of a batch's queries and passages and its scores for every
    (query, passage) pair, from its cached corpus embeddings (synthetic passages are encoded as they
    come), the scores times the teacher's scale factor."""

    def __init__(self, scorer, factor: float, query_ids: Sequence[str], synthetic: dict[str, str]):
        self.scorer, self.factor, self.synthetic = scorer, factor, synthetic
        ids = list(dict.fromkeys(query_ids))
        self.query_row = {q: i for i, q in enumerate(ids)}
        self.query_embeddings = torch.from_numpy(scorer.query_embeddings(ids))

    def embeddings(self, query_ids: Sequence[str], doc_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, d], [N, d])``: the teacher's embeddings of the queries and of the passages."""
        q = self.query_embeddings[[self.query_row[x] for x in query_ids]]
        p = torch.from_numpy(self.scorer.passage_embeddings(doc_ids, [self.synthetic.get(d) for d in doc_ids]))
        return q, p

    def scores(self, queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` scaled scores of the teacher's query and passage embeddings."""
        return self.factor * queries @ passages.T

    def __call__(self, query_ids: Sequence[str], doc_ids: Sequence[str]) -> torch.Tensor:
        return self.scores(*self.embeddings(query_ids, doc_ids))


def in_batch_teacher_scorers(names: Sequence[str], models: dict[str, dict], embedding_shards: dict[str, Sequence[str]],
                             settings: dict, queries: dict[str, str], corpus_path: str, query_ids: Sequence[str],
                             synthetic: dict[str, str], include_title: bool, device,
                             factors: dict[str, float] | None = None) -> dict[str, InBatchTeacher]:
    """In-batch scorers for the bi-encoder teachers ``names``; ``factors`` are the scale factors their
    cached scores were read with (so that both kinds of teacher score share one scale)."""
    teachers = {}
    for name in names:
        model = models.get(name)
        if model is None or model.get("kind") != "bi-encoder" or name not in embedding_shards:
            kind = model.get("kind") if model else "unknown"
            raise ValueError(f"train.kd_in_batch / train.w_embedding_mse: teacher {name!r} ({kind}) must be a "
                             "bi-encoder with cached corpus embeddings; in-batch pairs have no cached scores")
        scorer = make_scorer(ModelSpec.from_config(name, model), models, queries, corpus_path, embedding_shards,
                             include_title, device)
        factor = (factors or {}).get(name)
        if factor is None:
            factor = teacher_scale({"scale": scorer.scale}, settings["teacher_scale"], settings["similarity_scale"])
        teachers[name] = InBatchTeacher(scorer, factor, query_ids, synthetic)
    return teachers
