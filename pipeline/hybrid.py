"""The served system may be hybrid: the final student fused with BM25, a row of the summary and a folder to serve.

Where labels are few, BM25 can beat the dense teacher (on some collections it does), and a small student
plus BM25 is the system a user should get. The hybrid retrieves as the workflow's fusion teachers do:
BM25's top ``rerank_depth`` passages of a query, each scored by the student (its cached corpus embeddings)
and by BM25, both z-scored per query (or min-max), summed with weights ``w`` and ``1 - w``:

    s(q, d) = w · z_q(student(q, d)) + (1 − w) · z_q(bm25(q, d))

``w`` is chosen over a grid (``hybrid.student_weight: dev``), or fixed. The test split is never read to
choose it. With judged training queries (``labels.source: qrels`` or ``qrels+teacher``):

- on the dev split's judgments when there is one (ties go to the weight nearest 0.5);
- else (too few judged queries to carve a dev split: MED's 15 give 3) on the judged training queries, with
  the student's teacher standing in for the student, since the student has trained on those queries and
  its teacher has not. The same one-standard-error rule as a fusion teacher's weights
  (:func:`pipeline.evaluation.one_standard_error_choice`): of the grid's weights whose mean nDCG@10
  is within one standard error of the best's, the nearest 0.5. On MED (15 judged queries) the even
  weight put the hybrid below the student alone; MiniLM-L6 fused with BM25 ranks best there with the
  dense side heavy (benchmarks/README.md).

Without judged training queries (the label-free preset) the even weight is kept.

Writes ``eval/{test,dev}/hybrid/{run.trec,metrics.json}`` (the ``hybrid`` row: the student's encoding
speed and parameters, since BM25 encodes nothing) and ``export/hybrid/``: ``hybrid.json`` (the weights,
the normalisation, BM25's settings, the first stage's depth, every dev figure of the grid) beside a copy
of the final student, which :class:`HybridRetriever` loads to serve the same scores.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .data import atomic_path, load_qrels, load_queries, passage_texts, read_table, write_json
from .evaluation import (METRICS, compute_metrics, judged_queries, one_standard_error_choice, per_query_matrix,
                         ranked_pairs, run_of, write_trec_run)
from .fusion_weights import judged_training_sample
from .lexical import BM25
from .models import ModelSpec, resolve_device, set_threads
from .runtime import load_encoder
from .scorers import fuse_scores, make_scorer

log = logging.getLogger(__name__)

#: the name of the hybrid's row and folders (a model may not be named so: pipeline.plan checks)
HYBRID = "hybrid"


def fused_run(pairs: pd.DataFrame, weight: float, normalization: str) -> dict[str, dict[str, float]]:
    """The run of ``pairs`` (query_id, doc_id, student, lexical) fused with the student's ``weight``."""
    keys = pairs[["query_id", "doc_id"]]
    frames = {"student": keys.assign(score=pairs["student"]), "lexical": keys.assign(score=pairs["lexical"])}
    return run_of(fuse_scores(frames, {"student": weight, "lexical": 1.0 - weight}, normalization))


def candidate_pairs(bm25, student_scores: Callable[[pd.DataFrame], np.ndarray], query_ids: Sequence[str],
                    queries: dict[str, str], depth: int) -> pd.DataFrame:
    """BM25's top ``depth`` of each query, scored by BM25 (as the fusion teachers' BM25 scorer does) and by
    the student (``student_scores`` of the (query_id, doc_id) rows)."""
    ranked_ids, _ = bm25.search([queries[q] for q in query_ids], depth)
    pairs = ranked_pairs(query_ids, ranked_ids)
    pairs["lexical"] = bm25.score_pairs(queries, pairs)
    pairs["student"] = student_scores(pairs)
    return pairs


def choose_weight(dev_pairs: pd.DataFrame | None, dev_qrels: dict[str, dict[str, int]], grid: Sequence[float],
                  normalization: str, metric: str = "ndcg@10") -> tuple[float, dict[str, float]]:
    """The grid weight whose fused run scores best on the dev judgments (ties: nearest 0.5), with every
    weight's figure."""
    figures = {f"{w:g}": compute_metrics(dev_qrels, fused_run(dev_pairs, w, normalization))[metric] for w in grid}
    best = max(grid, key=lambda w: (round(figures[f"{w:g}"], 12), -abs(w - 0.5)))
    return float(best), figures


def choose_weight_one_standard_error(pairs: pd.DataFrame, qrels: dict[str, dict[str, int]], grid: Sequence[float],
                                     normalization: str) -> tuple[float, dict[str, float]]:
    """The grid weight the one-standard-error rule keeps on ``qrels`` (of those within one standard error of
    the best mean nDCG@10, the nearest 0.5), with every weight's figure: for a few judged queries, where
    the best of the grid is mostly noise."""
    per_query = per_query_matrix(qrels, [fused_run(pairs, w, normalization) for w in grid])
    chosen = one_standard_error_choice(per_query, np.array([abs(w - 0.5) for w in grid])).chosen
    return float(grid[chosen]), {f"{w:g}": float(row.mean()) for w, row in zip(grid, per_query)}


def stand_in_weight(stand_in: dict[str, Any], bm25: BM25, queries: dict[str, str], corpus_path: str,
                    test_qrels_path: str, grid: Sequence[float], normalization: str, include_title: bool,
                    device, depth: int) -> tuple[float | None, dict[str, float], str]:
    """The student's weight chosen on the judged training queries with ``stand_in`` (the student's teacher:
    ``{"name", "models", "embedding_shards", "qrels_path", "seed", "train_queries", "min_queries"}``) scoring
    in the student's place; None (with why) when there are fewer than ``min_queries`` of them."""
    qrels = judged_training_sample(stand_in["qrels_path"], test_qrels_path, stand_in["seed"], stand_in["train_queries"])
    name = stand_in["name"]
    if len(qrels) < stand_in["min_queries"]:
        return None, {}, (f"{len(qrels)} judged training queries, fewer than {stand_in['min_queries']}, and no "
                          "judged dev split to choose on")
    scorer = make_scorer(ModelSpec.from_config(name, stand_in["models"][name]), stand_in["models"], queries,
                         corpus_path, stand_in["embedding_shards"], include_title, device)
    pairs = candidate_pairs(bm25, scorer.score, list(qrels), queries, depth)
    weight, figures = choose_weight_one_standard_error(pairs, qrels, grid, normalization)
    return weight, figures, (f"no judged dev split: the weight {name} (the last iteration's teacher, which did not "
                             f"train on them) takes beside BM25 on {len(qrels)} judged training queries, by the "
                             f"one-standard-error rule over weights {list(grid)}")


def evaluate_hybrid(final_path: str, students: dict[str, dict[str, Any]], lexical: dict[str, Any],
                    queries_path: str, corpus_path: str, splits: dict[str, dict[str, str]],
                    student_metrics: dict[str, str], out_dir: str, student_weight: float | str = "dev",
                    grid: Sequence[float] = (0.5,), normalization: str = "zscore", choose_on_dev: bool = True,
                    stand_in: dict[str, Any] | None = None, rerank_depth: int = 100, include_title: bool = True,
                    device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """The final student (``final.json``) fused with ``lexical`` (a BM25 model), evaluated on each of
    ``splits`` (``{"test": {"qrels_path", "out_dir"}, "dev": ...}``) and written for serving into
    ``out_dir``. ``students``: every student's ``{"model": settings, "embedding_shards": [...]}``, of which
    the final one is used; ``student_metrics``: each student's test metrics.json (its encode speed);
    ``stand_in``: what chooses the weight when there is no judged dev split (:func:`stand_in_weight`)."""
    set_threads(threads)
    final = json.loads(Path(final_path).read_text())["selected"]
    student = students[final]
    spec = ModelSpec.from_config(final, student["model"])
    corpus = read_table(corpus_path)
    began = time.perf_counter()
    bm25 = BM25.from_corpus(corpus, include_title=include_title, **lexical.get("bm25", {}))
    queries = load_queries(queries_path)
    qrels = {split: load_qrels(paths["qrels_path"]) for split, paths in splits.items()}
    judged = {split: sorted(judged_queries(split_qrels)) for split, split_qrels in qrels.items()}
    scorer = make_scorer(spec, {}, queries, corpus_path, {final: student["embedding_shards"]}, include_title,
                         resolve_device(device))
    pairs = {split: candidate_pairs(bm25, scorer.score, ids, queries, rerank_depth) if ids else None
             for split, ids in judged.items()}
    dev_figures: dict[str, float] = {}
    training_figures: dict[str, float] = {}
    if student_weight == "dev":
        if choose_on_dev and pairs.get("dev") is not None:
            weight, dev_figures = choose_weight(pairs["dev"], qrels["dev"], grid, normalization)
            reason = f"best dev nDCG@10 over {len(judged['dev'])} dev queries among weights {list(grid)}"
        elif choose_on_dev and stand_in is not None:
            chosen, training_figures, why = stand_in_weight(
                stand_in, bm25, queries, corpus_path, splits["test"]["qrels_path"], grid, normalization,
                include_title, resolve_device(device), rerank_depth)
            weight, reason = (chosen, why) if chosen is not None else (0.5, f"the even weight: {why}")
        else:
            weight = 0.5
            reason = ("the even weight: no judged dev split to choose on" if choose_on_dev else
                      "the even weight: the training labels are the teacher's, not judgments")
    else:
        weight, reason = float(student_weight), "fixed by hybrid.student_weight"
    seconds = time.perf_counter() - began
    encoding = json.loads(Path(student_metrics[final]).read_text())
    for split, paths in splits.items():
        run = fused_run(pairs[split], weight, normalization) if pairs[split] is not None else {}
        metrics = compute_metrics(qrels[split], run) if run else {name: None for name in METRICS}
        result = {"model": HYBRID, "name": HYBRID, "iteration": None, "phase": None, "split": split, **metrics,
                  "retrieve_s": round(seconds, 3), "encode_docs_per_s": encoding.get("encode_docs_per_s"),
                  "params": encoding.get("params"), "size_mb": encoding.get("size_mb"),
                  "queries": len(judged[split]), "depth": rerank_depth, "source": f"{final} + {lexical['name']}",
                  "kind": "hybrid", "backend": encoding.get("backend"),
                  "student": final, "student_weight": weight, "weight_reason": reason}
        out = Path(paths["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        write_trec_run(run, out / "run.trec", tag=HYBRID)
        write_json(result, out / "metrics.json")
        log.info("hybrid (%s, weight %.2f) on %s: %s", final, weight, split, metrics)
    config = {"student": {"name": final, "path": "student", "model": {**student["model"], "source": "student"},
                          "weight": weight},
              "lexical": {**lexical, "weight": 1.0 - weight}, "normalization": normalization,
              "first_stage": {"model": lexical["name"], "depth": rerank_depth}, "include_title": include_title,
              "weight_reason": reason, "dev_ndcg@10_by_weight": dev_figures,
              "training_ndcg@10_by_weight": training_figures}
    with atomic_path(out_dir, directory=True) as tmp:
        shutil.copytree(spec.source, tmp / "student", symlinks=False)
        write_json(config, tmp / "hybrid.json")
    return config


class HybridRetriever:
    """The exported hybrid (``export/hybrid/``) served over a corpus: BM25's top passages of a query
    reranked by the fused scores, computed as the workflow computed them (the student encodes the
    candidate passages itself: no embedding cache needed)."""

    def __init__(self, folder: str | Path, corpus: pd.DataFrame, device: str = "cpu"):
        folder = Path(folder)
        self.config = json.loads((folder / "hybrid.json").read_text())
        student = self.config["student"]
        self.spec = ModelSpec.from_config(student["name"], {**student["model"], "source": str(folder / student["path"])})
        self.encoder = load_encoder(self.spec, device)
        self.bm25 = BM25.from_corpus(corpus, include_title=self.config["include_title"],
                                     **self.config["lexical"].get("bm25", {}))
        self.texts = dict(zip(corpus["doc_id"], passage_texts(corpus, self.config["include_title"])))

    def student_scores(self, queries: dict[str, str], pairs: pd.DataFrame) -> np.ndarray:
        """The student's score of each (query_id, doc_id) row, encoding the queries and passages now."""
        query_ids = list(pd.unique(pairs["query_id"]))
        row = {q: i for i, q in enumerate(query_ids)}
        query_embeddings = self.encoder.encode([queries[q] for q in query_ids], is_query=True)
        passages = self.encoder.encode([self.texts[d] for d in pairs["doc_id"]], is_query=False)
        return np.einsum("nd,nd->n", query_embeddings[[row[q] for q in pairs["query_id"]]], passages).astype(np.float32)

    def search(self, queries: dict[str, str]) -> dict[str, dict[str, float]]:
        """Each query's BM25 top ``first_stage.depth`` with its hybrid score."""
        pairs = candidate_pairs(self.bm25, lambda frame: self.student_scores(queries, frame), list(queries), queries,
                                self.config["first_stage"]["depth"])
        return fused_run(pairs, self.config["student"]["weight"], self.config["normalization"])
