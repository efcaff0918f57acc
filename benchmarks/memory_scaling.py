"""Peak memory of encode, index, mine and score as the corpus grows: 5k, 50k, 500k synthetic passages.

    .venv/bin/python benchmarks/memory_scaling.py [--sizes 5000 50000 500000] [--shard-size 50000]

For each size: a synthetic BEIR folder (passages of 12-24 words from a 30k-word vocabulary; 300 queries of
5 words taken from one passage each, that passage judged relevant; 200 train, 100 test queries), then the
workflow itself, through iteration 1's teacher scores, with a 1-layer, 32-dimension BERT (the tests' tiny model, cut) as teacher
(encoding cost is not what is measured), the corpus encoded in shards of at most ``--shard-size`` passages,
a Flat index per shard, iteration 1 mined densely with the teacher (``mine.first_miner``). Peak memory is
Snakemake's ``benchmark:`` max_rss of each job (sampled every second for the first 30 s of a job, then
every 30 s). Writes benchmarks/results/memory-scaling.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

STAGES = ("encode", "index", "mine", "score")


def write_synthetic_beir(folder: Path, passages: int, queries: int = 300, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(30_000)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    chosen = {int(d): q for q, d in enumerate(np.linspace(0, passages - 1, queries).astype(int))}
    query_texts = {}
    with open(folder / "corpus.jsonl", "w") as corpus:
        for start in range(0, passages, 10_000):
            count = min(10_000, passages - start)
            lengths = rng.integers(12, 25, size=count)
            words = rng.integers(0, len(vocabulary), size=int(lengths.sum()))
            offset = 0
            for i, length in enumerate(lengths):
                text = [vocabulary[w] for w in words[offset:offset + length]]
                offset += length
                doc = start + i
                if doc in chosen:
                    query_texts[chosen[doc]] = (f"d{doc}", " ".join(text[3:8]))
                corpus.write(json.dumps({"_id": f"d{doc}", "title": " ".join(text[:3]), "text": " ".join(text)}) + "\n")
    with open(folder / "queries.jsonl", "w") as out:
        for q in range(queries):
            out.write(json.dumps({"_id": f"q{q}", "text": query_texts[q][1]}) + "\n")
    for split, ids in (("train", range(0, 200)), ("test", range(200, queries))):
        with open(folder / "qrels" / f"{split}.tsv", "w") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for q in ids:
                out.write(f"q{q}\t{query_texts[q][0]}\t1\n")


def peak_mb(folder: Path) -> dict[str, float]:
    """The largest max_rss (MB) over each stage's jobs, and their summed seconds."""
    out = {}
    for stage in STAGES:
        rows = [row for path in sorted((folder / stage).glob("*.tsv"))
                for row in csv.DictReader(open(path), delimiter="\t")]
        rss = [float(r["max_rss"]) for r in rows if r["max_rss"] not in ("NA", "-", "")]
        out[stage] = {"max_rss_mb": round(max(rss), 1) if rss else None, "jobs": len(rows),
                      "seconds": round(sum(float(r["s"]) for r in rows), 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000, 500_000])
    parser.add_argument("--shard-size", type=int, default=50_000)
    parser.add_argument("--work", default=str(ROOT / "results" / "memory-scaling"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory-scaling.json"))
    args = parser.parse_args()
    import yaml

    from fixtures import write_tiny_bert

    work = Path(args.work)
    model = write_tiny_bert(work / "tiny-bert-1", layers=1, hidden=32)
    rows = []
    for size in args.sizes:
        experiment = f"mem-{size}"
        beir = work / f"beir-{size}"
        if not (beir / "qrels" / "test.tsv").exists():
            write_synthetic_beir(beir, size)
        shards = max(1, math.ceil(size / args.shard_size))
        tiny = {"kind": "bi-encoder", "source": str(model), "max_passage_length": 32, "max_query_length": 16}
        config = {"experiment": experiment, "data_dir": str(beir), "iterations": 1, "threads": 2,
                  "models": {"tiny-teacher": tiny, "bm25": {"kind": "bm25"}}, "teacher": "tiny-teacher",
                  "student": tiny, "encode": {"shards": shards},
                  "mine": {"first_miner": "tiny-teacher", "depth": 50, "window": [0, 30]},
                  "export": {"formats": []},
                  # each job a fresh process: a forked job's memory is not in its benchmark: file
                  "warm_start": False}
        workdir = work / experiment
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        target = f"results/{experiment}/it1/scores/tiny-teacher.parquet"
        began = time.time()
        subprocess.run([str(ROOT / ".venv/bin/snakemake"), target, "-s", str(ROOT / "Snakefile"),
                        "--directory", str(workdir), "--cores", "2", "--quiet"], check=True)
        stages = peak_mb(workdir / "results" / experiment / "benchmarks")
        rows.append({"passages": size, "shards": shards, "wall_s": round(time.time() - began, 1), **stages})
        print(json.dumps(rows[-1]), flush=True)
    result = {"what": "peak RSS (MB, Snakemake benchmark max_rss, the largest job of each stage) with a 1-layer "
                      "32-dimension BERT as teacher, passages cut to 32 tokens; Flat index per shard; dense mining with the teacher",
              "shard_size": args.shard_size, "rows": rows,
              "command": "benchmarks/memory_scaling.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'passages':>9} " + " ".join(f"{s + ' MB':>11}" for s in STAGES))
    for row in rows:
        print(f"{row['passages']:>9} " + " ".join(f"{row[s]['max_rss_mb'] or '-':>11}" for s in STAGES))


if __name__ == "__main__":
    main()
