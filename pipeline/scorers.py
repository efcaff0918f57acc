"""Scorers: teachers and assistants that score (query, passage) pairs.

One interface, :class:`Scorer`, whose :meth:`Scorer.score` takes a frame of pairs (``query_id``,
``doc_id`` and optionally ``text`` for synthetic passages that are not in the corpus) and returns one
score per row. Kinds: bi-encoder (corpus embeddings computed once per model and reused), cross-encoder,
BM25, and a weighted fusion of other scorers' outputs. Every score artifact records its ``scale`` so that
training can put scores of different kinds on a comparable footing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import pandas as pd

from .data import SCORES_SCHEMA, load_qrels, load_queries, passage_texts, read_rows_of, read_table, write_table
from .cross_encoder import CrossEncoder
from .embeddings import read_embeddings
from .lexical import BM25
from .models import ModelSpec, resolve_device, set_threads
from .runtime import load_encoder

log = logging.getLogger(__name__)

SCALES = {
    "bi-encoder": lambda spec: "cosine" if spec.normalize else "dot",
    "cross-encoder": lambda spec: "logit",
    "bm25": lambda spec: "bm25",
    "fusion": lambda spec: f"fusion-{spec.fusion_normalization}",
}


class Scorer:
    spec: ModelSpec

    @property
    def scale(self) -> str:
        return SCALES[self.spec.kind](self.spec)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _synthetic_texts(pairs: pd.DataFrame) -> np.ndarray:
    if "text" in pairs.columns:
        text = pairs["text"]
        return np.array([t if isinstance(t, str) else None for t in text], dtype=object)
    return np.full(len(pairs), None, dtype=object)


class BiEncoderScorer(Scorer):
    """Dot product of query and passage embeddings; corpus passages come from cached embedding shards."""

    def __init__(self, spec: ModelSpec, queries: dict[str, str], doc_ids: Sequence[str], doc_embeddings: np.ndarray,
                 device="cpu"):
        self.spec, self.queries = spec, queries
        self.position = {d: i for i, d in enumerate(doc_ids)}
        self.doc_embeddings = doc_embeddings
        self.encoder = load_encoder(spec, device)

    def query_embeddings(self, query_ids: Sequence[str]) -> np.ndarray:
        return self.encoder.encode([self.queries[q] for q in query_ids], is_query=True)

    def passage_embeddings(self, doc_ids: Sequence[str], synthetic: Sequence[str | None] | None = None) -> np.ndarray:
        """Cached corpus embeddings; passages with a synthetic text are encoded now."""
        synthetic = np.full(len(doc_ids), None, dtype=object) if synthetic is None else np.asarray(synthetic, dtype=object)
        is_synthetic = np.array([t is not None for t in synthetic], dtype=bool)
        out = np.empty((len(doc_ids), self.doc_embeddings.shape[1]), dtype=np.float32)
        corpus_rows = ~is_synthetic
        out[corpus_rows] = self.doc_embeddings[[self.position[d] for d in np.asarray(doc_ids, dtype=object)[corpus_rows]]]
        if is_synthetic.any():
            out[is_synthetic] = self.encoder.encode(list(synthetic[is_synthetic]), is_query=False)
        return out

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        query_ids = pd.unique(pairs["query_id"])
        query_emb = self.query_embeddings(query_ids)
        query_row = {q: i for i, q in enumerate(query_ids)}
        q = query_emb[[query_row[x] for x in pairs["query_id"]]]
        p = self.passage_embeddings(pairs["doc_id"].to_numpy(), _synthetic_texts(pairs))
        return np.einsum("nd,nd->n", q, p).astype(np.float32)


class CrossEncoderScorer(Scorer):
    def __init__(self, spec: ModelSpec, queries: dict[str, str], corpus: pd.DataFrame, include_title=True,
                 device="cpu"):
        self.spec, self.queries = spec, queries
        self.doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
        self.model = CrossEncoder.load(spec, device)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        synthetic = _synthetic_texts(pairs)
        passages = [s if s is not None else self.doc_text[d] for s, d in zip(synthetic, pairs["doc_id"])]
        queries = [self.spec.query_prefix + self.queries[q] for q in pairs["query_id"]]
        return self.model.score(queries, passages, show_progress=True)


class BM25Scorer(Scorer):
    def __init__(self, spec: ModelSpec, queries: dict[str, str], corpus: pd.DataFrame, include_title=True):
        self.spec, self.queries = spec, queries
        self.bm25 = BM25.from_corpus(corpus, include_title=include_title, **spec.bm25)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        return self.bm25.score_pairs(self.queries, pairs, _synthetic_texts(pairs))


def normalize_per_query(frame: pd.DataFrame, how: str) -> np.ndarray:
    """Per-query score normalisation so that scorers of different scales can be fused."""
    scores = frame["score"].astype(np.float64)
    grouped = scores.groupby(frame["query_id"])
    if how == "zscore":
        std = grouped.transform("std").fillna(0.0).replace(0.0, 1.0)
        return ((scores - grouped.transform("mean")) / std).to_numpy(np.float32)
    if how == "minmax":
        low, high = grouped.transform("min"), grouped.transform("max")
        return ((scores - low) / (high - low).replace(0.0, 1.0)).to_numpy(np.float32)
    if how == "none":
        return scores.to_numpy(np.float32)
    raise ValueError(f"unknown fusion normalisation {how!r} (zscore, minmax, none)")


def fuse_scores(member_frames: dict[str, pd.DataFrame], weights: dict[str, float], how: str = "zscore") -> pd.DataFrame:
    """Weighted sum of per-query-normalised member scores over the same (query, doc) pairs."""
    fused = None
    for name, frame in member_frames.items():
        part = frame[["query_id", "doc_id"]].copy()
        part[name] = weights[name] * normalize_per_query(frame, how)
        fused = part if fused is None else fused.merge(part, on=["query_id", "doc_id"], how="outer")
    missing = fused.isna().any(axis=1)
    if missing.any():
        row = fused[missing].iloc[0]
        raise ValueError(f"fusion members do not score the same pairs, e.g. ({row.query_id!r}, {row.doc_id!r})")
    fused["score"] = fused[list(member_frames)].sum(axis=1).astype(np.float32)
    return fused[["query_id", "doc_id", "score"]]


def fusion_weights(spec: ModelSpec) -> dict[str, float]:
    """A fusion's member weights: those chosen on judged training queries (``spec.weights_path``, written by
    pipeline/fusion_weights.py) when it has them, else the configured ones."""
    if spec.weights_path is None:
        return dict(spec.members)
    chosen = json.loads(Path(spec.weights_path).read_text())["members"]
    if set(chosen) != set(spec.members):
        raise ValueError(f"{spec.weights_path}: weights for {sorted(chosen)}, but fusion {spec.name!r} has members "
                         f"{sorted(spec.members)}; remove the file to choose them again")
    return chosen


class FusionScorer(Scorer):
    """A weighted sum of member scorers' per-query-normalised scores (z-score by default)."""

    def __init__(self, spec: ModelSpec, members: dict[str, Scorer]):
        self.spec, self.members = spec, members
        self.weights = fusion_weights(spec)
        log.info("fusion %s: weights %s", spec.name, self.weights)

    def score(self, pairs: pd.DataFrame) -> np.ndarray:
        keys = pairs[["query_id", "doc_id"]]
        frames = {name: keys.assign(score=member.score(pairs)) for name, member in self.members.items()}
        fused = fuse_scores(frames, self.weights, self.spec.fusion_normalization)
        return keys.merge(fused, on=["query_id", "doc_id"], how="left")["score"].to_numpy(np.float32)


def make_scorer(spec: ModelSpec, models: dict[str, dict[str, Any]], queries: dict[str, str], corpus_path: str,
                embedding_shards: dict[str, Sequence[str]], include_title: bool = True, device="cpu",
                doc_ids: Collection[str] | None = None) -> Scorer:
    """Build the scorer ``spec`` names; ``models`` resolves fusion members, ``embedding_shards`` maps each
    bi-encoder to its cached corpus embeddings. ``doc_ids``: the only passages it will score, when known
    (a bi-encoder then reads their embeddings alone, a cross-encoder their texts: memory follows the
    candidates, not the corpus; BM25 needs the whole corpus's statistics)."""
    if spec.kind == "bi-encoder":
        if spec.name not in embedding_shards:
            raise ValueError(f"bi-encoder scorer {spec.name!r} needs its corpus embeddings")
        ids, doc_embeddings = read_embeddings(embedding_shards[spec.name], doc_ids)
        return BiEncoderScorer(spec, queries, ids, doc_embeddings, device)
    if spec.kind == "cross-encoder":
        corpus = read_table(corpus_path) if doc_ids is None else read_rows_of(corpus_path, doc_ids).to_pandas()
        return CrossEncoderScorer(spec, queries, corpus, include_title, device)
    if spec.kind == "bm25":
        return BM25Scorer(spec, queries, read_table(corpus_path), include_title)
    if spec.kind == "fusion":
        unknown = set(spec.members) - set(models)
        if unknown:
            raise ValueError(f"fusion {spec.name!r}: unknown members {sorted(unknown)}")
        members = {name: make_scorer(ModelSpec.from_config(name, models[name]), models, queries, corpus_path,
                                     embedding_shards, include_title, device, doc_ids) for name in spec.members}
        return FusionScorer(spec, members)
    raise ValueError(f"scorer {spec.name!r}: unknown kind {spec.kind!r}")


def pairs_to_score(candidates: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Every candidate plus every judged positive of the candidates' queries, once each."""
    query_ids = pd.unique(candidates["query_id"])
    positives = [(q, d) for q in query_ids for d, rel in qrels.get(q, {}).items() if rel > 0]
    columns = ["query_id", "doc_id"] + (["text"] if "text" in candidates.columns else [])
    frame = pd.concat([pd.DataFrame(positives, columns=["query_id", "doc_id"]), candidates[columns]],
                      ignore_index=True)
    return frame.drop_duplicates(["query_id", "doc_id"]).reset_index(drop=True)


def score_candidates(candidates_path: str, qrels_path: str, queries_path: str, corpus_path: str, out_path: str,
                     scorer: dict[str, Any], models: dict[str, dict[str, Any]] | None = None,
                     embedding_shards: dict[str, Sequence[str]] | None = None, include_title: bool = True,
                     device: str = "auto", threads: int | None = None,
                     provenance: dict[str, Any] | None = None) -> pd.DataFrame:
    """Score every (query, candidate) pair and every judged positive with one scorer; write Parquet."""
    set_threads(threads)
    spec = ModelSpec.from_config(scorer["name"], scorer)
    pairs = pairs_to_score(read_table(candidates_path), load_qrels(qrels_path))
    impl = make_scorer(spec, models or {}, load_queries(queries_path), corpus_path, embedding_shards or {},
                       include_title, resolve_device(device), doc_ids=set(pairs["doc_id"]))
    began = time.perf_counter()
    values = np.asarray(impl.score(pairs), dtype=np.float32)
    seconds = time.perf_counter() - began
    if not np.isfinite(values).all():
        raise ValueError(f"scorer {spec.name!r} produced NaN or infinite scores")
    out = pd.DataFrame({"query_id": pairs["query_id"], "doc_id": pairs["doc_id"], "scorer": spec.name,
                        "score": values})
    meta = {"scorer": spec.to_dict(), "scale": impl.scale, "pairs": len(out), "seconds": round(seconds, 3),
            "pairs_per_s": round(len(out) / max(seconds, 1e-9), 1),
            "stats": {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                      "max": float(values.max())}, **(provenance or {})}
    write_table(out, out_path, meta, SCORES_SCHEMA)
    log.info("%s scored %d pairs in %.1f s (%.1f pairs/s)", spec.name, len(out), seconds, meta["pairs_per_s"])
    return out
