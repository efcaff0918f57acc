"""Gather the teachers evaluated by benchmarks/teachers.sh into benchmarks/results/scifact-teachers.json:
per teacher its test metrics, its dev metrics (the evaluate job makes both; what to choose between teachers
by), its scoring speed and the time it took to make (Snakemake's benchmark files of the fine-tune, the encode
seconds its embeddings recorded)."""

import csv
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.data import read_provenance  # noqa: E402


def seconds(path: Path) -> float:
    """Wall seconds of a job from its Snakemake benchmark file (0 when the job did not run here)."""
    if not path.is_file():
        return 0.0
    with path.open() as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def main(run_dir: str, out_path: str, *teachers: str) -> None:
    run = Path(run_dir)
    rows = []
    for name in teachers:
        metrics = json.loads((run / "eval" / "test" / name / "metrics.json").read_text())
        dev_path = run / "eval" / "dev" / name / "metrics.json"
        dev = json.loads(dev_path.read_text()) if dev_path.is_file() else {}
        bench = run / "benchmarks"
        # making it: fine-tuning (mining its negatives, training); a bi-encoder then encodes and indexes
        # the corpus, a reranker needs nothing more
        made = {"finetune_mine_s": seconds(bench / "finetune" / f"{name}-mine.tsv"),
                "finetune_s": seconds(bench / "finetune" / f"{name}.tsv"),
                # encode and index may be served by --cache, so they have no benchmark file: the encode
                # seconds each shard recorded (the index's few seconds are not counted)
                "encode_s": sum(read_provenance(p)["seconds"] for p in (run / "embeddings" / name).glob("shard-*.parquet"))}
        rows.append({"teacher": name, "kind": metrics["kind"],
                     **{k: metrics[k] for k in ("ndcg@10", "mrr@10", "recall@100")},
                     **{f"dev_{k}": dev.get(k) for k in ("ndcg@10", "mrr@10", "recall@100", "queries")},
                     "encode_docs_per_s": metrics["encode_docs_per_s"],
                     "rerank_pairs_per_s": metrics.get("rerank_pairs_per_s"),
                     "retrieve_s": metrics.get("retrieve_s"),
                     "make_s": round(sum(made.values()), 1), **made})
    result = {"rows": rows, "machine": {"platform": platform.platform()},
              "note": "rerankers rerank BM25's top evaluate.rerank_depth; their pairs/s include BM25 and loading"}
    Path(out_path).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
