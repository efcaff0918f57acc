"""A fusion teacher's weights chosen on the judged training queries (``models.<fusion>.choose_weights``).

Which member of a fusion should weigh more differs by collection: on SciFact the even fusion of MiniLM-L6
and BM25 ranks the test queries better than MiniLM-L6 alone (nDCG@10 0.727 against 0.645), on MED
MiniLM-L6 alone ranks better than the even fusion (0.822 against 0.788; benchmarks/README.md). With judged
training queries, even a few dozen, this step measures the members' fusions on them, ranking as the
fusion ranks (BM25's top ``rerank_depth`` of each query, every member scoring each pair once), over a grid
of weight vectors on the simplex with step ``step`` (each member alone included):

.. math::
    \\hat w = \\arg\\max_{w \\in \\Delta_\\mathrm{step}} \\overline{\\mathrm{nDCG@10}}(w), \\qquad
    \\mathrm{nDCG@10}_q(w) \\text{ of the ranking by } \\sum_m w_m \\, z_q\\big(s_m(q, d)\\big),

with :math:`z_q` the fusion's per-query normalisation. A few dozen queries measure the grid noisily (on
SciFact, 30 judged queries put BM25 at 0.75 first, where the 809 put MiniLM-L6 at 0.7), so the choice
follows the one-standard-error rule (Breiman et al., 1984, "Classification and Regression Trees"; Hastie
et al., 2009, "The Elements of Statistical Learning", §7.10): of the weightings whose mean is within one
standard error of the best's, the standard error of their per-query differences to it,

.. math::
    \\overline{\\mathrm{nDCG@10}}(\\hat w) - \\overline{\\mathrm{nDCG@10}}(w) \\le
        \\frac{\\mathrm{sd}_q\\big(\\mathrm{nDCG@10}_q(\\hat w) - \\mathrm{nDCG@10}_q(w)\\big)}{\\sqrt{|Q|}},

the one nearest (L1) the configured weights (normalised to sum 1) is kept, then the higher mean. Many
queries make the standard error small and the best wins; a few keep the configured weights unless the
grid's best is clearly better. Only the judged queries the run may read are used: the sample of
``splits.train_queries`` that the dev split is carved from (:func:`pipeline.splits.choose_queries`, the
same seed), never a test query. With fewer than ``min_queries`` of them the configured weights are kept.

Writes ``fusion-weights/<name>.json``: the chosen ``members`` (what every job that scores with the fusion
reads instead of the configured weights: :func:`pipeline.scorers.fusion_weights`), the configured ones,
every grid point's figure, the queries it was measured on and why.

Relations: the same grid choice as the served hybrid's student weight (:mod:`pipeline.hybrid`, on the dev
split); a fusion without ``choose_weights``, or a run without judged training queries (the label-free
preset), keeps its configured weights.

Config example::

    models:
      fusion:
        kind: fusion
        members: {minilm-l6: 0.5, bm25: 0.5}
        choose_weights: {step: 0.25, min_queries: 5}
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import load_qrels, load_queries, read_table, write_json
from .evaluation import one_standard_error_choice, per_query_matrix, ranked_pairs, run_of
from .lexical import BM25
from .models import ModelSpec, resolve_device, set_threads
from .scorers import fuse_scores, make_scorer
from .splits import choose_queries, judged_queries

log = logging.getLogger(__name__)

METRIC = "ndcg@10"


def weight_grid(members: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every weight vector over ``members`` whose weights are multiples of ``step`` summing to 1."""
    parts = round(1 / step)
    if parts < 1 or abs(parts * step - 1) > 1e-9:
        raise ValueError(f"choose_weights.step {step}: 1 must be a whole number of steps (0.5, 0.25, 0.1)")
    return [{m: k / parts for m, k in zip(members, counts)}
            for counts in itertools.product(range(parts + 1), repeat=len(members)) if sum(counts) == parts]


def choose_weights(pairs: pd.DataFrame, qrels: dict[str, dict[str, int]], configured: dict[str, float], step: float,
                   normalization: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The grid's weights kept by the one-standard-error rule over the fused runs of ``pairs`` (query_id,
    doc_id, a score column per member) on ``qrels`` by nDCG@10, and every grid point's figures."""
    members = list(configured)
    keys = pairs[["query_id", "doc_id"]]
    frames = {m: keys.assign(score=pairs[m]) for m in members}
    total = sum(configured.values()) or 1.0
    target = {m: configured[m] / total for m in members}
    grid = weight_grid(members, step)
    per_query = per_query_matrix(qrels, [run_of(fuse_scores(frames, w, normalization)) for w in grid])
    distance = np.array([sum(abs(w[m] - target[m]) for m in members) for w in grid])
    rule = one_standard_error_choice(per_query, distance)
    figures = [{"members": w, METRIC: float(row.mean()), "standard_error_to_best": float(error),
                "within_one_standard_error": bool(within)}
               for w, row, error, within in zip(grid, per_query, rule.errors, rule.within)]
    return dict(grid[rule.chosen]), figures


def judged_training_sample(qrels_path: str, test_qrels_path: str, seed: int,
                           train_queries: int | None) -> dict[str, dict[str, int]]:
    """The judgments of the training queries a run may read (``qrels_path``: the prepared train split), cut
    to the sample of ``splits.train_queries`` that the dev split is carved from (the same seed), never a
    query the test split judges."""
    test_ids = set(judged_queries(read_table(test_qrels_path)))
    sample, _, _ = choose_queries(judged_queries(read_table(qrels_path)), test_ids, seed, train_queries, 0.0, 0, 0)
    all_qrels = load_qrels(qrels_path)
    return {q: all_qrels[q] for q in sample if q not in test_ids}


def member_scores(members: Sequence[str], models: dict[str, dict[str, Any]], query_ids: Sequence[str],
                  queries: dict[str, str], corpus_path: str, embedding_shards: dict[str, Sequence[str]],
                  include_title: bool, device, depth: int) -> pd.DataFrame:
    """BM25's top ``depth`` of each query (the first stage, as :func:`pipeline.evaluation.retrieve`'s for a
    fusion), with a score column per member: what every weighting of the grid is fused from."""
    bm25 = BM25.from_corpus(read_table(corpus_path), include_title=include_title)
    ranked_ids, _ = bm25.search([queries[q] for q in query_ids], depth)
    pairs = ranked_pairs(query_ids, ranked_ids)
    doc_ids = set(pairs["doc_id"])
    for name in members:
        member = make_scorer(ModelSpec.from_config(name, models[name]), models, queries, corpus_path,
                             embedding_shards, include_title, device, doc_ids)
        pairs[name] = member.score(pairs)
    return pairs


def choose_fusion_weights(model: dict[str, Any], models: dict[str, dict[str, Any]], queries_path: str,
                          corpus_path: str, qrels_path: str, test_qrels_path: str, out_path: str, seed: int,
                          train_queries: int | None = None, step: float = 0.25, min_queries: int = 5,
                          embedding_shards: dict[str, Sequence[str]] | None = None, include_title: bool = True,
                          rerank_depth: int = 100, device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Choose the fusion ``model``'s member weights on the judged training queries (``qrels_path``: the
    prepared train split; ``test_qrels_path``: its query ids are never used) and write the choice."""
    set_threads(threads)
    spec = ModelSpec.from_config(model["name"], {k: v for k, v in model.items() if k != "weights_path"})
    qrels = judged_training_sample(qrels_path, test_qrels_path, seed, train_queries)
    query_ids = list(qrels)
    result = {"fusion": spec.name, "configured": dict(spec.members), "normalization": spec.fusion_normalization,
              "metric": METRIC, "queries": len(query_ids), "query_ids": query_ids, "first_stage_depth": rerank_depth,
              "step": step, "grid": []}
    if len(query_ids) < min_queries:
        result.update(members=dict(spec.members), reason=f"{len(query_ids)} judged training queries, fewer than "
                      f"choose_weights.min_queries ({min_queries}): the configured weights")
        write_json(result, out_path)
        log.warning("%s: %s", spec.name, result["reason"])
        return result
    began = time.perf_counter()
    pairs = member_scores(list(spec.members), models, query_ids, load_queries(queries_path), corpus_path,
                          embedding_shards or {}, include_title, resolve_device(device), rerank_depth)
    chosen, figures = choose_weights(pairs, qrels, dict(spec.members), step, spec.fusion_normalization)
    best = max(f[METRIC] for f in figures)
    kept = next(f[METRIC] for f in figures if f["members"] == chosen)
    result.update(members=chosen, grid=figures, seconds=round(time.perf_counter() - began, 2),
                  reason=f"{METRIC} {kept:.4f} over {len(query_ids)} judged training queries, within one standard "
                         f"error of the best of {len(figures)} weightings ({best:.4f}) and nearest the configured weights")
    write_json(result, out_path)
    log.info("%s: weights %s (%s)", spec.name, chosen, result["reason"])
    return result
