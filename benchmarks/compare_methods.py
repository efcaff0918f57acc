"""Every method's SciFact benchmark beside the default run and beside all of them in one config.

    .venv/bin/python benchmarks/compare_methods.py [--runs results/bench-scifact results/bench-all-methods]

Reads the committed results (``benchmarks/results/scifact.json``, ``scifact-<method>.json`` for each method
alone, ``scifact-all-methods.json`` for ``configs/all-methods.yaml``; all in the format ``scifact.sh``
writes) and writes ``benchmarks/results/scifact-methods.json`` and its table (printed, for
benchmarks/README.md): the final student's test nDCG@10, MRR@10, R@100, its dev nDCG@10 (what chose it),
the teacher, training and wall seconds.

Each method's run folder is long gone (one to 1.5 hours each); its committed JSON is what remains. Where the
run folders are still here, ``--runs`` also puts them side by side with ``python -m pipeline.compare``
(into ``benchmarks/results/comparison-all-methods/``), which checks that they ran on the same data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import compare_experiments, teachers_label  # noqa: E402
from pipeline.evaluation import _cell  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# (label, committed result, preset)
RUNS = [("default (no method)", "scifact.json", "config.yaml"),
        ("no method, the methods' teacher", "scifact-strong-teacher.json", "configs/strong-teacher.yaml"),
        # the preset (w_lwf 0) reran stage 2 on, stage 1 kept from the run with PROD's LwF: its wall covers the rerun
        ("PROD (wall: stages 2-4 only)", "scifact-prod-no-lwf.json", "configs/prod.yaml"),
        ("PROD with its published LwF weight 1.0", "scifact-prod.json", "configs/prod.yaml + benchmarks/prod-lwf.yaml"),
        ("MTA4DPR", "scifact-mta4dpr.json", "configs/mta4dpr.yaml"),
        ("LEAD", "scifact-lead.json", "configs/lead.yaml"),
        ("OnMKD", "scifact-onmkd.json", "configs/onmkd.yaml"),
        ("ADAM", "scifact-adam.json", "configs/adam.yaml"),
        ("OnMKD + ADAM + MTA4DPR", "scifact-all-methods.json", "configs/all-methods.yaml")]


def train_seconds(iterations: list[dict]) -> float | None:
    seconds = [it.get("train_s") for it in iterations]
    return None if None in seconds else round(sum(seconds), 1)


def method_row(label: str, result_name: str, preset: str) -> dict:
    result = json.loads((RESULTS / result_name).read_text())
    final = next(r for r in result["rows"] if r["name"] == result["final_student"])
    teachers = [r for r in result["rows"] if r["model"] == "teacher"]
    return {"method": label, "preset": preset, "result": f"benchmarks/results/{result_name}",
            "final": result["final_student"], "ndcg@10": final["ndcg@10"], "mrr@10": final["mrr@10"],
            "recall@100": final["recall@100"], "dev_ndcg@10": final.get("dev"),
            "teacher": teachers_label(teachers),
            # older results lack the per-iteration entries or their train job seconds: unknown, not 0
            "train_s": train_seconds(result.get("iterations") or [{}]),
            "wall_s": result["wall_s"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| method (preset) | final student | nDCG@10 | MRR@10 | R@100 | dev nDCG@10 | teacher (nDCG@10) "
             "| training s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dev = _cell(r["dev_ndcg@10"])
        train = f"{r['train_s']:.0f}" if r["train_s"] is not None else "-"
        lines.append(f"| {r['method']} (`{r['preset']}`) | {r['final']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} "
                     f"| {r['recall@100']:.4f} | {dev} | {r['teacher']} | {train} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], help="run folders to compare with pipeline.compare too")
    args = parser.parse_args(argv)
    missing = [name for _, name, _ in RUNS if not (RESULTS / name).is_file()]
    if missing:
        print(f"error: missing benchmark results: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [method_row(*run) for run in RUNS]
    (RESULTS / "scifact-methods.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(markdown(rows))
    if args.runs:
        compare_experiments(args.runs, str(RESULTS / "comparison-all-methods"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
