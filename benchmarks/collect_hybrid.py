"""The hybrid row of a finished run beside the models it should beat, with per-query tests.

    .venv/bin/python benchmarks/collect_hybrid.py results/frontdoor-scifact benchmarks/results/scifact-hybrid.json

Reads the run's summary (test nDCG@10, MRR@10, R@100 and dev nDCG@10 of every row), the hybrid's serving
config (``export/hybrid/hybrid.json``: the weight chosen on dev and every dev figure of the grid) and the
TREC runs of the test split; tests the hybrid against the final student, the teacher(s) and the baselines
query by query (``pipeline.significance``: paired t-test and Wilcoxon, Holm-corrected over those
comparisons). Writes the JSON and prints a Markdown table.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import per_query_ndcg  # noqa: E402
from pipeline.evaluation import _cell  # noqa: E402
from pipeline.significance import correct_across_systems, paired_query_tests  # noqa: E402


def main(run_dir: str, out_path: str) -> int:
    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    if "hybrid" not in rows:
        print(f"error: {run}/summary.json has no hybrid row (hybrid.lexical: null?)", file=sys.stderr)
        return 2
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
                         "first_stage": serving["first_stage"], "normalization": serving["normalization"]},
              "hybrid_against": dict(zip(against, tests)),
              "machine": {"platform": platform.platform()}}
    Path(out_path).write_text(json.dumps(result, indent=2) + "\n")
    print("| model | nDCG@10 | MRR@10 | R@100 | dev nDCG@10 | hybrid's difference | p, t-test (Holm) | p, Wilcoxon (Holm) | +/- queries |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in [*against, "hybrid"]:
        r, t = rows[name], result["hybrid_against"].get(name)
        cells = [f"{t['mean_difference']:+.4f}", f"{t['p_t_holm']:.2g}", f"{t['p_wilcoxon_holm']:.2g}",
                 f"+{t['improved']} / -{t['degraded']}"] if t else ["-"] * 4
        print(f"| {name} | {_cell(r['ndcg@10'])} | {_cell(r['mrr@10'])} | {_cell(r['recall@100'])} | "
              f"{_cell(r.get('dev'))} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
