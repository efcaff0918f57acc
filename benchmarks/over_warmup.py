"""Do the labels and iterations add to the warm-up? The final student against its own warm-up, over seeds.

    .venv/bin/python benchmarks/over_warmup.py results/few-labels-seeds-100 --out benchmarks/results/scifact-100-over-warmup.json

Reads a run made with ``seeds`` (its ``seeds.json``; or a one-seed run): for each seed, the final student
(chosen on dev) and the warmed-up student of iteration 1 (``student-it1-warmup``), both evaluated on the same
test queries. Per seed, and pooled (each query's nDCG@10 averaged over the seeds), the final student is
tested against the warm-up query by query (paired t-test, Wilcoxon; pipeline.significance); over the seeds,
their per-seed means are tested paired by seed. Issue 35's target is "final >= its own warm-up".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import data_dir, parse_experiment, run_seed  # noqa: E402
from pipeline.data import load_qrels  # noqa: E402
from pipeline.evaluation import per_query_metrics, read_trec_run  # noqa: E402
from pipeline.significance import paired_query_tests, paired_seed_test  # noqa: E402

WARMUP = "student-it1-warmup"


def per_query(run: Path, model: str, qrels) -> dict[str, float]:
    return per_query_metrics(qrels, read_trec_run(run / "eval" / "test" / model / "run.trec"))["ndcg@10"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished run's folder (results_dir/experiment), made with or without seeds")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    name, runs = parse_experiment(args.run)
    qrels = load_qrels(data_dir(runs[0]) / "qrels-test.parquet")
    seeds, warmup_means, final_means, pooled_warmup, pooled_final = [], {}, {}, [], []
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        seed, final = run_seed(run), summary["final"]["selected"]
        warm, fin = per_query(run, WARMUP, qrels), per_query(run, final, qrels)
        queries = sorted(warm)
        tests = paired_query_tests([warm[q] for q in queries], [fin[q] for q in queries])
        seeds.append({"seed": seed, "run": str(run), "final": final, "warmup_ndcg@10": float(np.mean(list(warm.values()))),
                      "final_ndcg@10": float(np.mean(list(fin.values()))), "final_against_warmup": tests})
        warmup_means[seed], final_means[seed] = seeds[-1]["warmup_ndcg@10"], seeds[-1]["final_ndcg@10"]
        pooled_warmup.append([warm[q] for q in queries])
        pooled_final.append([fin[q] for q in queries])
    pooled = paired_query_tests(np.mean(pooled_warmup, axis=0), np.mean(pooled_final, axis=0))
    result = {"experiment": name or str(runs[0]), "seeds": seeds, "pooled_over_seeds": pooled,
              "seed_paired": paired_seed_test(warmup_means, final_means)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in seeds:
        t = row["final_against_warmup"]
        print(f"seed {row['seed']}: warm-up {row['warmup_ndcg@10']:.4f}, final ({row['final']}) {row['final_ndcg@10']:.4f}, "
              f"{t['mean_difference']:+.4f}, +{t['improved']}/-{t['degraded']}, t p {t['p_t']:.3g}, Wilcoxon p {t['p_wilcoxon']:.3g}")
    print(f"pooled: {pooled['mean_difference']:+.4f}, +{pooled['improved']}/-{pooled['degraded']}, t p {pooled['p_t']:.3g}, "
          f"Wilcoxon p {pooled['p_wilcoxon']:.3g}; seed-paired: higher in {result['seed_paired']['higher_in']} of "
          f"{len(seeds)}, t p {result['seed_paired']['p_t']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
