"""What LEAD's online teacher costs per training step: the standard recipe's distillation step against
LEAD's (the same step plus MiniLM-L6's forward pass over the batch and the layer KLs), in this checkout.

    python benchmarks/online_teacher_cost.py --rounds 3 --queries 160   # -> results/online_teacher_cost.json

The data are train_step_speed.py's (SciFact, BM25 candidates scored by BM25 as the teacher, the 2-layer
student, the default distillation settings: batch 16, group 4, passages cut to 128 tokens); each round
trains one epoch with each recipe in a fresh process, the recipes taking turns so that drift of this
shared machine hits both alike. The figure is steps / the training loop's own seconds (``training.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_step_speed import SETTINGS, prepare  # noqa: E402

MINILM = {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "max_passage_length": 256}
RECIPES = {
    "standard": {"methods": ["standard"], "config": {"teacher": "bm25", "train": SETTINGS}},
    "lead": {"methods": ["lead"], "config": {"teacher": "bm25", "train": SETTINGS, "lead": {"teacher": "minilm-l6"}},
             "models": {"minilm-l6": MINILM}},
}


def worker(recipe: str, work: Path, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from pipeline.training import train_student

    spec = RECIPES[recipe]
    summary = train_student(str(work / "student0"), str(out), str(work / "candidates.parquet"),
                            {"bm25": str(work / "scores.parquet")}, str(work / "data/qrels-train.parquet"),
                            str(work / "data/queries.parquet"), str(work / "data/corpus.parquet"),
                            config=spec["config"], methods=spec["methods"], models=spec.get("models"),
                            device="cpu", threads=2, seed=1)
    steps = summary["history"][-1]["step"]
    print(json.dumps({"steps": steps, "seconds": summary["seconds"], "steps_per_s": steps / summary["seconds"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=160, help="train on the first N queries only")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/online_teacher_cost.json"))
    parser.add_argument("--worker", nargs=3, metavar=("RECIPE", "WORK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare(args.data, tmp / "work", args.queries)
        rounds: dict[str, list[dict]] = {name: [] for name in RECIPES}
        for r in range(args.rounds):
            for name in RECIPES:
                result = subprocess.run([sys.executable, __file__, "--worker", name, str(tmp / "work"),
                                         str(tmp / f"student-{r}-{name}")], capture_output=True, text=True, check=True)
                rounds[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(name, rounds[name][-1], flush=True)
    medians = {name: statistics.median(x["steps_per_s"] for x in rs) for name, rs in rounds.items()}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report = {"settings": SETTINGS, "queries": args.queries, "online_teacher": MINILM, "rounds": rounds,
              "median_steps_per_s": medians, "checkout": head.stdout.strip(),
              "lead_step_time_over_standard": medians["standard"] / medians["lead"],
              "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()}}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(medians, indent=2), f"LEAD step / standard step: {report['lead_step_time_over_standard']:.2f}")


if __name__ == "__main__":
    main()
