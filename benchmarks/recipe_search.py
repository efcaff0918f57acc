"""The recipe search's figures: runs of benchmarks/collections.sh with ``labelled-half-as-dev`` (evaluated on a
collection's labelled half, never its test half) compared query by query with the first one, for the warmed-up
and the last student each, by :func:`pipeline.significance.paired_query_tests` (paired t-test, Wilcoxon;
Holm-corrected over the candidates).

    .venv/bin/python benchmarks/recipe_search.py --out benchmarks/results/recipe-search-med.json \\
        label-free=results/collection-med-label-free-labelled-half-as-dev \\
        transfer-warmup=results/collection-med-label-free-transfer-warmup-labelled-half-as-dev ...

(``pipeline.compare`` reads ``qrels-test``; these runs evaluate on the split named ``train``.) With ``--split test``
the same on test-half runs: the confirmation of the candidate chosen on the labelled half.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.data import load_qrels  # noqa: E402
from pipeline.evaluation import per_query_metrics, read_trec_run  # noqa: E402
from pipeline.significance import correct_across_systems, paired_query_tests  # noqa: E402

STUDENTS = ("student-it1-warmup", "student-it2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_FOLDER; the first is the baseline")
    parser.add_argument("--split", default="train", help="the judged split the runs were evaluated on")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    report: dict[str, dict] = {"split": args.split, "runs": runs, "baseline": next(iter(runs)), "students": {}}
    qrels = {name: load_qrels(f"{run}/data/qrels-{args.split}.parquet") for name, run in runs.items()}
    # student -> run name -> query -> nDCG@10, read once for both comparisons below
    ndcg = {student: {name: per_query_metrics(qrels[name], read_trec_run(f"{run}/eval/test/{student}/run.trec"))["ndcg@10"]
                      for name, run in runs.items()} for student in STUDENTS}
    for student in STUDENTS:
        per_query = ndcg[student]
        base, *others = runs
        queries = sorted(per_query[base])
        tests = correct_across_systems([paired_query_tests([per_query[base][q] for q in queries],
                                                           [per_query[name][q] for q in queries]) for name in others])
        rows = {base: {"ndcg@10": sum(per_query[base].values()) / len(queries), "queries": len(queries)}}
        for name, test in zip(others, tests):
            rows[name] = {"ndcg@10": sum(per_query[name][q] for q in queries) / len(queries), **test}
        report["students"][student] = rows
        for name, row in rows.items():
            extra = "" if name == base else (f"  {row['mean_difference']:+.4f}, {row['improved']} up / "
                                             f"{row['degraded']} down, p t {row['p_t_holm']:.3g}, "
                                             f"Wilcoxon {row['p_wilcoxon_holm']:.3g} (Holm)")
            print(f"{student:20s} {name:20s} {row['ndcg@10']:.4f}{extra}")
    # within each run: does what follows the warm-up add (issue 35's target: the last student >= its own warm-up)?
    report["last_over_warmup"] = {}
    for name in runs:
        warm, last = (ndcg[student][name] for student in STUDENTS)
        queries = sorted(warm)
        test = paired_query_tests([warm[q] for q in queries], [last[q] for q in queries])
        report["last_over_warmup"][name] = test
        print(f"{name:20s} last - warm-up {test['mean_difference']:+.4f}, {test['improved']} up / "
              f"{test['degraded']} down, p t {test['p_t']:.3g}, Wilcoxon {test['p_wilcoxon']:.3g}")
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
