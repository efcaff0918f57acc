"""Two recipes on one collection over the same seeds, from the JSON files benchmarks/collections.sh writes:
per seed the warm-up, each later student and the final student's test nDCG@10, the final student's
difference to the baseline recipe paired by seed (:func:`pipeline.significance.paired_seed_test`), and,
where a run's folder is still on this machine, whether what follows the warm-up adds, query by query
(:func:`pipeline.significance.paired_query_tests` of the last student against the warm-up: issue 35's
target that the last student is not below its own warm-up).

    .venv/bin/python benchmarks/collection_seeds.py --collection med --out benchmarks/results/X.json \\
        sentences=13:collections-med-sentences.json:transfer-sentences,7:...:transfer-sentences+seed-7 \\
        embedding-mse-25=13:collections-med-embedding-mse.json:transfer-embedding-mse-25+fp32,...

Each ``NAME=SEED:FILE:PRESET,...`` is one recipe; FILE is under ``benchmarks/results/`` and PRESET its key
under the collection; the first recipe is the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.data import load_qrels  # noqa: E402
from pipeline.evaluation import per_query_metrics, read_trec_run  # noqa: E402
from pipeline.significance import paired_query_tests, paired_seed_test  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def seed_run(collection: str, seed: int, file: str, preset: str) -> dict:
    entry = json.loads((RESULTS / file).read_text())["collections"][collection][preset]
    rows = entry["rows"]
    students = [name for name, row in rows.items() if row["model"] == "student" and name.startswith("student-it")
                and name != "student-it0" and "." not in name]
    figures = {name: rows[name]["ndcg@10"] for name in students}
    run = {"seed": seed, "file": f"benchmarks/results/{file}", "preset": preset, "students": figures,
           "warmup": entry["warmup"], "final": entry["final"], "final_ndcg@10": figures[entry["final"]],
           "final_minus_warmup": figures[entry["final"]] - figures[entry["warmup"]]}
    folder = ROOT / entry["run"]
    if (folder / "data" / "qrels-test.parquet").is_file():  # the run is on this machine: per-query test
        qrels = load_qrels(folder / "data" / "qrels-test.parquet")
        warm, last = (per_query_metrics(qrels, read_trec_run(folder / "eval" / "test" / name / "run.trec"))["ndcg@10"]
                      for name in (entry["warmup"], entry["final"]))
        queries = sorted(warm)
        run["final_over_warmup_per_query"] = paired_query_tests([warm[q] for q in queries], [last[q] for q in queries])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", help="NAME=SEED:FILE:PRESET,...; the first is the baseline")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    recipes = {}
    for spec in args.recipes:
        name, _, runs = spec.partition("=")
        recipes[name] = [seed_run(args.collection, int(seed), file, preset)
                         for seed, file, preset in (item.split(":", 2) for item in runs.split(","))]
    base = next(iter(recipes))
    report = {"collection": args.collection, "baseline": base, "recipes": {}}
    for name, runs in recipes.items():
        finals = {run["seed"]: run["final_ndcg@10"] for run in runs}
        summary = {"runs": runs, "mean": statistics.mean(finals.values()),
                   "sd": statistics.stdev(finals.values()) if len(finals) > 1 else None,
                   "final_not_below_warmup": sum(run["final_minus_warmup"] >= 0 for run in runs)}
        if name != base:
            baseline = {run["seed"]: run["final_ndcg@10"] for run in recipes[base]}
            summary["against_baseline"] = paired_seed_test(baseline, finals)
        report["recipes"][name] = summary
        print(f"{name:24s} mean {summary['mean']:.4f} sd {summary['sd'] or 0:.4f}  final >= warm-up at "
              f"{summary['final_not_below_warmup']} of {len(runs)} seeds  "
              + "  ".join(f"{r['seed']}: {r['final_ndcg@10']:.4f} ({r['final_minus_warmup']:+.4f})" for r in runs)
              + (f"  vs {base}: {summary['against_baseline']['mean_difference']:+.4f}, p seeds "
                 f"{summary['against_baseline']['p_t']:.3g}" if name != base else ""))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
