"""Dense index and negative mining: FAISS over embedding shards, shard-by-shard search, top-k merge."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import CANDIDATES_SCHEMA, atomic_path, load_qrels, load_queries, read_table, write_table
from .embeddings import read_embeddings

log = logging.getLogger(__name__)


def build_index(embeddings: np.ndarray, factory: str = "Flat"):
    """An inner-product FAISS index; ``factory`` is a FAISS index factory string (``Flat``, ``IVF256,Flat``, ...)."""
    # faiss: only in the steps that build or search an index
    import faiss

    index = faiss.index_factory(embeddings.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(embeddings)
    index.add(embeddings)
    return index


def set_search_parameters(index, search: str) -> None:
    """FAISS's search-time settings of a built index, in its ``ParameterSpace`` syntax: ``nprobe=16`` (IVF),
    ``efSearch=128`` (HNSW), comma-separated; empty: the index's defaults."""
    # faiss: only in the steps that build or search an index
    import faiss

    if search:
        try:
            faiss.ParameterSpace().set_index_parameters(index, search)
        except RuntimeError as err:  # FAISS's message names the parameter it does not know
            raise ValueError(f"index.search {search!r} does not apply to this index: {err}") from None


def build_shard_indexes(shard_paths: Sequence[str], out_dir: str, factory: str = "Flat",
                        threads: int | None = None, search: str = "") -> dict[str, Any]:
    """One FAISS index per embedding shard, so search memory is bounded by the largest shard; ``search``
    (:func:`set_search_parameters`) is recorded in the manifest and applied whenever the index is read."""
    # faiss: only in the steps that build or search an index
    import faiss

    if threads:
        faiss.omp_set_num_threads(int(threads))
    with atomic_path(out_dir, directory=True) as tmp:
        manifest = {"factory": factory, "search": search, "shards": []}
        for k, path in enumerate(shard_paths):
            ids, embeddings = read_embeddings(path)
            if not np.isfinite(embeddings).all():
                raise ValueError(f"{path}: embeddings contain NaN or infinity")
            index = build_index(embeddings, factory)
            set_search_parameters(index, search)  # a setting that does not apply fails here, before mining
            faiss.write_index(index, str(tmp / f"shard-{k}.faiss"))
            pd.DataFrame({"doc_id": ids}).to_parquet(tmp / f"shard-{k}.ids.parquet", index=False)
            manifest["shards"].append({"index": f"shard-{k}.faiss", "ids": f"shard-{k}.ids.parquet",
                                       "embeddings": str(path), "size": len(ids)})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def merge_topk(scores: list[np.ndarray], indices: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores, global indices) into a global top-k, best first; ties by lower index."""
    all_scores = np.concatenate(scores, axis=1)
    all_indices = np.concatenate(indices, axis=1)
    k = min(k, all_scores.shape[1])
    order = np.lexsort((all_indices, -all_scores), axis=1)[:, :k] if all_scores.size else all_indices
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_indices, order, 1)


class ShardedIndex:
    """Searches every shard index and merges; returned indices are positions in :attr:`doc_ids`."""

    def __init__(self, index_dir: str | os.PathLike):
        # faiss: only in the steps that build or search an index
        import faiss

        self.dir = Path(index_dir)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.indexes, self.doc_ids, self.offsets = [], [], []
        for shard in self.manifest["shards"]:
            self.offsets.append(len(self.doc_ids))
            self.indexes.append(faiss.read_index(str(self.dir / shard["index"])))
            set_search_parameters(self.indexes[-1], self.manifest.get("search", ""))
            self.doc_ids.extend(pd.read_parquet(self.dir / shard["ids"])["doc_id"].tolist())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, indices = [], []
        for offset, index in zip(self.offsets, self.indexes):
            s, i = index.search(queries, min(k, index.ntotal))
            # FAISS pads missing results with -1; keep them last.
            s = np.where(i < 0, -np.inf, s)
            scores.append(s)
            indices.append(np.where(i < 0, np.iinfo(np.int64).max, i + offset))
        return merge_topk(scores, indices, k)


def window_candidates(query_ids: Sequence[str], ranked_doc_ids: Sequence[Sequence[str]],
                      ranked_scores: Sequence[Sequence[float]], positives: dict[str, dict[str, int]],
                      window: tuple[int, int], miner: str) -> pd.DataFrame:
    """Drop judged positives, then keep ranks ``[a, b)`` of what remains (rank 0 = best non-positive)."""
    start, stop = window
    rows = []
    for query_id, doc_ids, scores in zip(query_ids, ranked_doc_ids, ranked_scores):
        judged = {d for d, rel in positives.get(query_id, {}).items() if rel > 0}
        kept = [(d, s) for d, s in zip(doc_ids, scores) if d not in judged]
        for rank, (doc_id, score) in enumerate(kept[start:stop], start=start):
            rows.append((query_id, doc_id, rank, float(score), miner))
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "rank", "score", "miner"])


def denoise_with_teacher(candidates: pd.DataFrame, teacher_scores: pd.DataFrame, positives: dict[str, dict[str, int]],
                         margin: float | None = None, max_score: float | None = None) -> pd.DataFrame:
    """Drop likely false negatives: candidates the teacher scores above ``max_score``, or within ``margin``
    of the query's lowest-scored positive (RocketQA; NV-Retriever's TopK-MarginPos)."""
    lookup = dict(zip(zip(teacher_scores.query_id, teacher_scores.doc_id), teacher_scores.score))
    keep = []
    for query_id, doc_id in zip(candidates.query_id, candidates.doc_id):
        score = lookup.get((query_id, doc_id))
        if score is None:
            raise KeyError(f"teacher has no score for ({query_id!r}, {doc_id!r})")
        ok = max_score is None or score <= max_score
        if ok and margin is not None:
            pos_scores = [lookup[(query_id, p)] for p, rel in positives.get(query_id, {}).items()
                          if rel > 0 and (query_id, p) in lookup]
            ok = not pos_scores or score < min(pos_scores) - margin
        keep.append(ok)
    return candidates[np.array(keep, dtype=bool)].reset_index(drop=True)


def mine_negatives(queries_path: str, qrels_path: str, out_path: str, miner: dict[str, Any], depth: int,
                   window: tuple[int, int], corpus_path: str | None = None, index_dir: str | None = None,
                   device: str = "auto", threads: int | None = None, include_title: bool = True,
                   provenance: dict[str, Any] | None = None) -> pd.DataFrame:
    """Top-``depth`` for every judged training query with ``miner`` (BM25 or a bi-encoder over its index),
    judged positives removed, ranks ``[a, b)`` kept. Writes ``candidates.parquet``."""
    # torch or bm25s: only what the miner's kind needs
    from .models import ModelSpec

    qrels = load_qrels(qrels_path)
    queries = load_queries(queries_path)
    query_ids = [q for q in sorted(qrels) if any(r > 0 for r in qrels[q].values())]
    texts = [queries[q] for q in query_ids]
    spec = ModelSpec.from_config(miner["name"], miner)
    k = depth
    if spec.kind == "bm25":
        from .lexical import BM25

        retriever = BM25.from_corpus(read_table(corpus_path), include_title=include_title, **spec.bm25)
        ranked_ids, ranked_scores = retriever.search(texts, k, threads=threads)
    elif spec.kind == "bi-encoder":
        from .models import resolve_device, set_threads
        from .runtime import load_encoder

        set_threads(threads)
        encoder = load_encoder(spec, resolve_device(device))
        index = ShardedIndex(index_dir)
        scores, indices = index.search(encoder.encode(texts, is_query=True), k)
        ranked_ids = [[index.doc_ids[i] for i in row if i < len(index.doc_ids)] for row in indices]
        ranked_scores = [row[: len(ids)] for row, ids in zip(scores, ranked_ids)]
    else:
        raise ValueError(f"miner {spec.name!r}: kind {spec.kind!r} cannot retrieve (use bm25 or bi-encoder)")
    candidates = window_candidates(query_ids, ranked_ids, ranked_scores, qrels, tuple(window), spec.name)
    meta = {"miner": spec.to_dict(), "depth": depth, "window": list(window), "positives_removed": True,
            "queries": len(query_ids), **(provenance or {})}
    write_table(candidates, out_path, meta, CANDIDATES_SCHEMA)
    return candidates
