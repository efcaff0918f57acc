"""Training steps per second of the distillation phase, for this checkout and another revision.

    python benchmarks/train_step_speed.py --ref 7aab948 --rounds 3 --queries 320   # -> results/train_step_speed.json

The data are made once with this checkout's pipeline (SciFact, BM25 candidates scored by BM25 as the
teacher, the 2-layer student); then each round trains one epoch of the default distillation settings
(batch 16, group 4, passages cut to 128 tokens, no warm-up) with each revision's `train_student`, in a
fresh process, the revisions taking turns so that drift of this shared machine hits both alike. The
figure is steps / the training loop's own seconds (`training.json`), so data loading is left out.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"epochs": 1, "batch_size": 16, "group_size": 4, "lr": 1e-4, "max_passage_length": 128,
            "w_nll": 1.0, "w_kd": 1.0, "checkpoint_every": 1000}


def prepare(data_dir: str, work: Path, queries: int | None) -> None:
    sys.path.insert(0, str(ROOT))
    from pipeline.data import prepare_dataset
    from pipeline.index import mine_negatives
    from pipeline.scorers import score_candidates
    from pipeline.training import init_student

    prepare_dataset(data_dir, str(work / "data"), ["train", "test"])
    data = {k: str(work / "data" / f"{k}.parquet") for k in ("corpus", "queries", "qrels-train")}
    bm25 = {"name": "bm25", "kind": "bm25"}
    mine_negatives(data["queries"], data["qrels-train"], str(work / "candidates.parquet"), bm25, depth=100,
                   window=(0, 50), corpus_path=data["corpus"])
    if queries:  # fewer queries, fewer steps: a shorter benchmark of the same step
        from pipeline.data import CANDIDATES_SCHEMA, read_provenance, read_table, write_table

        frame = read_table(work / "candidates.parquet")
        keep = sorted(frame.query_id.unique())[:queries]
        write_table(frame[frame.query_id.isin(keep)], work / "candidates.parquet",
                    read_provenance(work / "candidates.parquet"), CANDIDATES_SCHEMA)
    score_candidates(str(work / "candidates.parquet"), data["qrels-train"], data["queries"], data["corpus"],
                     str(work / "scores.parquet"), bm25, device="cpu")
    init_student({"name": "student-it0", "kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 2},
                 str(work / "student0"))


def worker(repo: str, work: Path, out: Path) -> None:
    """One round with the `train_student` of the checkout at ``repo``; prints steps/s."""
    sys.path.insert(0, repo)
    from pipeline.training import train_student

    args = [str(work / "student0"), str(out), str(work / "candidates.parquet"), {"bm25": str(work / "scores.parquet")},
            str(work / "data/qrels-train.parquet"), str(work / "data/queries.parquet"), str(work / "data/corpus.parquet")]
    if "config" in inspect.signature(train_student).parameters:  # the method-based driver
        summary = train_student(*args, config={"teacher": "bm25", "train": SETTINGS}, device="cpu", threads=2, seed=1)
    else:  # before it: settings as keyword arguments
        summary = train_student(*args, settings=SETTINGS, device="cpu", threads=2, seed=1)
    steps = summary["history"][-1]["step"]
    print(json.dumps({"steps": steps, "seconds": summary["seconds"], "steps_per_s": steps / summary["seconds"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="HEAD~1", help="the other revision (a git ref)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=None, help="train on the first N queries only (default all)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/train_step_speed.json"))
    parser.add_argument("--worker", nargs=3, metavar=("REPO", "WORK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        other = tmp / "other"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.ref], check=True)
        try:
            prepare(args.data, tmp / "work", args.queries)
            repos = {args.ref: str(other), "this checkout": str(ROOT)}
            rounds: dict[str, list[dict]] = {name: [] for name in repos}
            for r in range(args.rounds):
                for name, repo in repos.items():
                    out = tmp / f"student-{r}-{len(rounds[name])}-{name.replace(' ', '_')}"
                    result = subprocess.run([sys.executable, __file__, "--worker", repo, str(tmp / "work"), str(out)],
                                            capture_output=True, text=True, check=True)
                    rounds[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
                    print(name, rounds[name][-1], flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    medians = {name: statistics.median(x["steps_per_s"] for x in rs) for name, rs in rounds.items()}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report = {"settings": SETTINGS, "queries": args.queries, "rounds": rounds, "median_steps_per_s": medians,
              "this_checkout": head.stdout.strip(), "ref": args.ref,
              "ratio_this_over_ref": medians["this checkout"] / medians[args.ref],
              "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()}}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(medians, indent=2), f"ratio {report['ratio_this_over_ref']:.3f}")


if __name__ == "__main__":
    main()
