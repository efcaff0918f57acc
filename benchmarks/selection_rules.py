"""Which student would each of ``splits.dev.select``'s rules make final, and how do they fare on test?

    .venv/bin/python benchmarks/selection_rules.py results/few-labels-1se-30 results/bench-scifact \\
        --out benchmarks/results/selection-rules.json

For each finished run (a folder; a run made with ``seeds`` counts each seed), both rules are applied again by
:func:`pipeline.evaluation.select_final_student` to the run's own dev figures and dev runs (the judgments
and students of the run, nothing retrained): ``best`` (the highest dev figure) and ``one-standard-error``
(the earliest trained student within one standard error of the best). Then, after the fact, each choice's
test nDCG@10 beside the warm-up's (``student-it1-warmup``) and the last student's; the test split is read
only here, never by a choice. Per run: the choices, each rule's final against the warm-up per query
(paired t-test, Wilcoxon; pipeline.significance); over runs: the means.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import data_dir, data_file, eval_folder, parse_experiment, run_seed  # noqa: E402
from pipeline.data import load_qrels  # noqa: E402
from pipeline.evaluation import per_query_metrics, read_trec_run, select_final_student  # noqa: E402
from pipeline.significance import paired_query_tests  # noqa: E402

RULES = ("best", "one-standard-error")
WARMUP = "student-it1-warmup"


def test_figures(run: Path, model: str, qrels) -> dict[str, float]:
    return per_query_metrics(qrels, read_trec_run(eval_folder(run, "test", model) / "run.trec"))["ndcg@10"]


def students_in_order(run: Path) -> list[str]:
    """The students the run chose among, in the order it made them (the rules' preference): final.json's
    ``students``, or for a run made before it recorded them, summary.json's PyTorch student rows (not
    final.json's ``dev``, whose keys are written sorted: it1 before it1-warmup)."""
    final = json.loads((run / "final.json").read_text())
    if "students" in final:
        return final["students"]
    rows = json.loads((run / "summary.json").read_text())["rows"]
    return [r["name"] for r in rows if r["model"] == "student" and (r.get("backend") or "torch") == "torch"
            and r["name"] in final["dev"]]


def rows_of(run: Path) -> dict:
    students = students_in_order(run)
    splits = data_file(run, "splits.json")
    qrels = load_qrels(data_dir(run) / "qrels-test.parquet")
    figures = {name: test_figures(run, name, qrels) for name in students}
    queries = sorted(figures[students[0]])
    mean = {name: float(np.mean([figures[name][q] for q in queries])) for name in students}
    out = {"run": str(run), "seed": run_seed(run), "dev_queries": json.loads(splits.read_text()).get("dev_queries"),
           "warmup_ndcg@10": mean.get(WARMUP), "last": students[-1], "last_ndcg@10": mean[students[-1]],
           "test_ndcg@10": mean, "rules": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for rule in RULES:
            # a further seed's run reads the students it shares (the untrained one) from the experiment's folder
            choice = select_final_student([str(eval_folder(run, "dev", s) / "metrics.json") for s in students],
                                          str(splits), str(Path(scratch) / f"{rule}.json"), select=rule,
                                          dev_qrels_path=str(data_file(run, "dev-qrels.parquet")))
            chosen = choice["selected"]
            out["rules"][rule] = {"selected": chosen, "test_ndcg@10": mean[chosen], "reason": choice["reason"],
                                  "standard_error_to_best": choice.get("standard_error_to_best")}
            if WARMUP in figures:
                out["rules"][rule]["against_warmup"] = paired_query_tests(
                    [figures[WARMUP][q] for q in queries], [figures[chosen][q] for q in queries])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished runs' folders (results_dir/experiment)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = []
    for folder in args.runs:
        _, runs = parse_experiment(folder)
        results += [rows_of(run) for run in runs]
    summary = {rule: {"mean_test_ndcg@10": float(np.mean([r["rules"][rule]["test_ndcg@10"] for r in results])),
                      "kept_the_warmup": sum(r["rules"][rule]["selected"] == WARMUP for r in results)}
               for rule in RULES}
    Path(args.out).write_text(json.dumps({"runs": results, "summary": summary, "command": " ".join(sys.argv)},
                                         indent=1) + "\n")
    for r in results:
        print(f"{r['run']} (seed {r['seed']}, {r['dev_queries']} dev queries): warm-up {r['warmup_ndcg@10']}, "
              + ", ".join(f"{rule}: {c['selected']} {c['test_ndcg@10']:.4f}" for rule, c in r["rules"].items()))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
