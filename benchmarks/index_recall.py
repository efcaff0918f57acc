"""Compressed FAISS indexes against Flat on SciFact: recall of Flat's top-k, test nDCG@10, size, speed.

    .venv/bin/python benchmarks/index_recall.py results/<experiment> [--model minilm-l6]

Reads a finished run's corpus embeddings of ``--model`` (the teacher's, 384 dims, by default) and its
prepared test queries, encodes the queries with the same model, and for each index (FAISS factory string
and search parameters, as ``index: {factory, search}`` in the config would build and search them) ranks
the top 100 of every test query. Recall@k is the share of Flat's top k that the index also returns in its
top k (the exact search is the reference, not the judgments); nDCG@10 and R@100 are against the test
qrels. Writes benchmarks/results/index-recall.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INDEXES = [  # (factory, search parameters)
    ("Flat", ""),
    ("HNSW32", "efSearch=32"),
    ("HNSW32", "efSearch=128"),
    ("IVF64,Flat", "nprobe=4"),
    ("IVF64,Flat", "nprobe=16"),
    ("IVF64,SQ8", "nprobe=16"),
    ("IVF64,PQ48", "nprobe=16"),
    ("IVF64,PQ48", "nprobe=64"),
    ("OPQ48,IVF64,PQ48", "nprobe=16"),
]


def main() -> None:
    import faiss

    from pipeline.data import load_qrels, load_queries, read_provenance
    from pipeline.embeddings import read_embeddings
    from pipeline.evaluation import compute_metrics
    from pipeline.index import build_index, set_search_parameters
    from pipeline.models import BiEncoder, ModelSpec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a finished run's folder, results/<experiment>")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/index-recall.json"))
    args = parser.parse_args()
    run = Path(args.run)
    shards = sorted((run / "embeddings" / args.model).glob("shard-*.parquet"))
    doc_ids, embeddings = read_embeddings([str(p) for p in shards])
    qrels = load_qrels(str(run / "data" / "qrels-test.parquet"))
    texts = load_queries(str(run / "data" / "queries.parquet"))
    query_ids = sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))
    spec = ModelSpec.from_config(args.model, read_provenance(shards[0])["model"])
    queries = BiEncoder.load(spec, "cpu").encode([texts[q] for q in query_ids], is_query=True)
    faiss.omp_set_num_threads(2)

    rows, reference = [], None
    for factory, search in INDEXES:
        began = time.perf_counter()
        index = build_index(embeddings, factory)
        build_s = time.perf_counter() - began
        set_search_parameters(index, search)
        began = time.perf_counter()
        scores, positions = index.search(np.ascontiguousarray(queries), args.depth)
        search_ms = (time.perf_counter() - began) * 1000 / len(query_ids)
        ranked = [[doc_ids[i] for i in row if i >= 0] for row in positions]
        if reference is None:
            reference = ranked
        recall = {f"recall@{k}_of_flat": float(np.mean([len(set(a[:k]) & set(b[:k])) / k
                                                        for a, b in zip(ranked, reference)])) for k in (10, 100)}
        metrics = compute_metrics(qrels, {q: {d: float(s) for d, s in zip(docs, row)}
                                          for q, docs, row in zip(query_ids, ranked, scores)})
        rows.append({"factory": factory, "search": search, **recall, "ndcg@10": metrics["ndcg@10"],
                     "recall@100": metrics["recall@100"], "bytes_per_passage": round(
                         len(faiss.serialize_index(index)) / len(doc_ids), 1),
                     "build_s": round(build_s, 2), "search_ms_per_query": round(search_ms, 3)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"run": str(run), "model": args.model, "passages": len(doc_ids), "dim": int(embeddings.shape[1]),
              "queries": len(query_ids), "depth": args.depth, "threads": 2, "rows": rows,
              "command": "benchmarks/index_recall.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
