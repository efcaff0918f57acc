"""The hybrid row of a finished run beside the models it should beat, with per-query tests.

    .venv/bin/python benchmarks/collect_hybrid.py results/frontdoor-scifact benchmarks/results/scifact-hybrid.json
    .venv/bin/python benchmarks/collect_hybrid.py RUN RUN/seed-7 RUN/seed-21 OUT.json   # each seed's run, and their mean
        [--before OLD OLD/seed-7 OLD/seed-21]   # and each hybrid against the same seed's hybrid in other runs

Reads the run's summary (test nDCG@10, MRR@10, R@100 and dev nDCG@10 of every row), the hybrid's serving
config (``export/hybrid/hybrid.json``: the weight chosen on dev and every dev figure of the grid) and the
TREC runs of the test split; tests the hybrid against the final student, the teacher(s) and the baselines
query by query (``pipeline.significance``: paired t-test and Wilcoxon, Holm-corrected over those
comparisons). Writes the JSON and prints a Markdown table; with several runs (one configuration's seeds),
one table each and the mean of each row over them.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import per_query_ndcg, run_seed  # noqa: E402
from pipeline.evaluation import _cell  # noqa: E402
from pipeline.significance import correct_across_systems, paired_query_tests, paired_seed_test  # noqa: E402


def collect(run_dir: str) -> dict:
    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    if "hybrid" not in rows:
        raise SystemExit(f"error: {run}/summary.json has no hybrid row (hybrid.lexical: null?)")
    final = summary["final"]["selected"]
    against = [final] + [r["name"] for r in summary["rows"] if r["model"] in ("teacher", "baseline")]
    ndcg = {name: per_query_ndcg(run, summary, name) for name in ["hybrid", *against]}
    queries = sorted(ndcg["hybrid"])
    tests = correct_across_systems([paired_query_tests([ndcg[name][q] for q in queries],
                                                       [ndcg["hybrid"][q] for q in queries]) for name in against])
    serving = json.loads((run / "export/hybrid/hybrid.json").read_text())
    keep = ("model", "name", "ndcg@10", "mrr@10", "recall@100", "dev", "encode_docs_per_s")
    result = {"run": str(run), "experiment": summary["experiment"], "final_student": final,
              "rows": [{k: rows[name].get(k) for k in keep} for name in [*against, "hybrid"]],
              "hybrid": {"student_weight": serving["student"]["weight"], "weight_reason": serving["weight_reason"],
                         "dev_ndcg@10_by_weight": serving["dev_ndcg@10_by_weight"],
                         "training_ndcg@10_by_weight": serving.get("training_ndcg@10_by_weight", {}),
                         "first_stage": serving["first_stage"], "normalization": serving["normalization"]},
              "hybrid_against": dict(zip(against, tests)),
              "machine": {"platform": platform.platform()}}
    print(f"{run} (hybrid weight {serving['student']['weight']:g})")
    print("| model | nDCG@10 | MRR@10 | R@100 | dev nDCG@10 | hybrid's difference | p, t-test (Holm) | p, Wilcoxon (Holm) | +/- queries |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in [*against, "hybrid"]:
        r, t = rows[name], result["hybrid_against"].get(name)
        cells = [f"{t['mean_difference']:+.4f}", f"{t['p_t_holm']:.2g}", f"{t['p_wilcoxon_holm']:.2g}",
                 f"+{t['improved']} / -{t['degraded']}"] if t else ["-"] * 4
        print(f"| {name} | {_cell(r['ndcg@10'])} | {_cell(r['mrr@10'])} | {_cell(r['recall@100'])} | "
              f"{_cell(r.get('dev'))} | " + " | ".join(cells) + " |")
    return result


def against_before(run_dirs: list[str], before_dirs: list[str]) -> dict:
    """Each run's hybrid against the hybrid of the run in the same place of ``before_dirs`` (the same
    students, another weight rule), query by query; with several runs, also the runs' mean per query and
    the runs' means paired (``pipeline.significance``)."""
    if len(before_dirs) != len(run_dirs):
        raise SystemExit(f"error: --before names {len(before_dirs)} runs for {len(run_dirs)}")
    now, then = [], []
    for run, before in zip(map(Path, run_dirs), map(Path, before_dirs)):
        summary = json.loads((run / "summary.json").read_text())
        ours, theirs = per_query_ndcg(run, summary, "hybrid"), per_query_ndcg(before, summary, "hybrid")
        if set(ours) != set(theirs):
            raise SystemExit(f"error: {run} and {before} do not judge the same queries")
        queries = sorted(ours)
        now.append([ours[q] for q in queries])
        then.append([theirs[q] for q in queries])
    result = {"runs": [{"run": r, "before": b, **paired_query_tests(t, n)}
                       for r, b, n, t in zip(run_dirs, before_dirs, now, then)]}
    if len(run_dirs) > 1:
        result["mean_over_runs"] = paired_query_tests(np.mean(then, axis=0), np.mean(now, axis=0))
        seeds = [run_seed(Path(run)) for run in run_dirs]
        result["runs_paired"] = paired_seed_test({k: float(np.mean(t)) for k, t in zip(seeds, then)},
                                                 {k: float(np.mean(n)) for k, n in zip(seeds, now)})
    for row in result["runs"] + ([result["mean_over_runs"]] if len(run_dirs) > 1 else []):
        print(f"hybrid against before ({row.get('run', 'mean over the runs')}): {row['mean_difference']:+.4f}, "
              f"+{row['improved']} / -{row['degraded']}, t p {row['p_t']:.2g}, Wilcoxon p {row['p_wilcoxon']:.2g}")
    return result


def main(*arguments: str) -> int:
    arguments = list(arguments)
    before = []
    if "--before" in arguments:
        at = arguments.index("--before")
        arguments, before = arguments[:at], arguments[at + 1:]
    *run_dirs, out_path = arguments
    if not run_dirs:
        print("usage: collect_hybrid.py RUN [RUN ...] OUT.json [--before RUN ...]", file=sys.stderr)
        return 2
    results = [collect(run) for run in run_dirs]
    if len(results) == 1:
        output = results[0]
    else:  # one configuration's seeds: each row's mean over the runs (the final student's whichever it is)
        def label(res, row):
            return "final student" if row["name"] == res["final_student"] else row["name"]

        by_label = [{label(res, row): row for row in res["rows"]} for res in results]
        if any(set(rows) != set(by_label[0]) for rows in by_label):
            raise SystemExit(f"error: the runs do not have the same rows: {[sorted(rows) for rows in by_label]}")
        mean = {name: {metric: sum(rows[name][metric] for rows in by_label) / len(results)
                       for metric in ("ndcg@10", "mrr@10", "recall@100")} for name in by_label[0]}
        output = {"runs": results, "mean_over_runs": mean}
        print("mean over the runs: " + ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in mean.items()))
    if before:
        output["hybrid_against_before"] = against_before(run_dirs, before)
    Path(out_path).write_text(json.dumps(output, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
