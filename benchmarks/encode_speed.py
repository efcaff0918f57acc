"""Our encoder against SentenceTransformer.encode() on the same model, texts, batch size and max length.

Timed alternately in one process (ours, theirs, ours, ...) so that machine noise hits both; prints the
median of each and their ratio, and writes benchmarks/results/encode_speed.json.

    .venv/bin/python benchmarks/encode_speed.py [--docs 1000] [--rounds 5] [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.models import BiEncoder, ModelSpec, resolve_source  # noqa: E402


def load_texts(data_dir: Path, limit: int) -> list[str]:
    texts = []
    with open(data_dir / "corpus.jsonl") as handle:
        for line in handle:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc['text']}".strip())
            if len(texts) == limit:
                break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encode_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer

    texts = load_texts(Path(args.data), args.docs)
    source = "packaged:all-MiniLM-L6-v2"
    ours = BiEncoder.load(ModelSpec("minilm", source=source, max_passage_length=args.max_length))
    theirs = SentenceTransformer(resolve_source(source), device="cpu")
    theirs.max_seq_length = args.max_length

    a = ours.encode(texts[:64], is_query=False, batch_size=args.batch_size)
    b = theirs.encode(texts[:64], batch_size=args.batch_size, normalize_embeddings=True)
    max_diff = float(np.abs(a - b).max())

    timings = {"ours": [], "sentence_transformers": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        ours.encode(texts, is_query=False, batch_size=args.batch_size)
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs.encode(texts, batch_size=args.batch_size)
        timings["sentence_transformers"].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in timings.items()}
    result = {
        "docs": len(texts), "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads,
        "rounds": args.rounds, "seconds": timings, "median_s": median,
        "docs_per_s": {k: len(texts) / v for k, v in median.items()},
        "speedup_ours_over_sentence_transformers": median["sentence_transformers"] / median["ours"],
        "max_abs_embedding_difference": max_diff,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
