"""Which dev signal picks the student that is best on test, when the dev split's labels are the teacher's?
(issue 35, item 3; measured after the fact: the test figures are read only to score the signals.)

Per finished run and for each of its students (warm-up and iterations), three figures on the run's dev
queries and one on its test queries:

- ``dev_labels``: nDCG@10 against the dev labels the run has, what ``select_student`` uses: judgments, or
  with ``labels.source: teacher`` the teacher's top passage per query at relevance 1;
- ``graded@k``: nDCG@10 against the teacher's top k of the same queries, graded k, k-1, ..., 1 from its
  top passage down (read from the teacher's dev run, ``eval/dev/<teacher>/run.trec``): agreement with the
  teacher's ranking, not with one passage of it;
- ``test``: test nDCG@10 against the collection's judgments.

A signal is scored by the test figure of the student it picks, against the best student's (the regret),
and by Kendall's tau between it and the test figure over the run's students.

    PYTHONPATH=. .venv/bin/python benchmarks/dev_signal.py OUT.json results/collection-cacm-label-free ...
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from pipeline.data import load_qrels
from pipeline.evaluation import compute_metrics, read_trec_run

GRADED_DEPTHS = (10, 20)


def graded_qrels(teacher_run: dict[str, dict[str, float]], queries, depth: int) -> dict[str, dict[str, int]]:
    graded = {}
    for query in queries:
        ranked = sorted(teacher_run.get(query, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        graded[query] = {doc: depth - rank for rank, (doc, _) in enumerate(ranked)}
    return graded


def students_of(summary: dict) -> list[str]:
    return [r["name"] for r in summary["rows"] if r["model"] == "student" and r["name"].startswith("student-it")
            and "." not in r["name"]]


def signals(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    teacher = next(r["name"] for r in summary["rows"] if r["model"] == "teacher")
    dev_qrels = load_qrels(run / "data/dev-qrels.parquet")
    if not dev_qrels:
        return {"run": str(run), "skipped": "no dev split"}
    teacher_run = read_trec_run(run / f"eval/dev/{teacher}/run.trec")
    graded = {k: graded_qrels(teacher_run, sorted(dev_qrels), k) for k in GRADED_DEPTHS}
    figures = {}
    for student in students_of(summary):
        dev_run = read_trec_run(run / f"eval/dev/{student}/run.trec")
        figures[student] = {
            "dev_labels": compute_metrics(dev_qrels, dev_run)["ndcg@10"],
            **{f"graded@{k}": compute_metrics(g, dev_run)["ndcg@10"] for k, g in graded.items()},
            "test": json.loads((run / f"eval/test/{student}/metrics.json").read_text())["ndcg@10"],
        }
    best_test = max(f["test"] for f in figures.values())
    scored = {}
    for signal in ["dev_labels", *(f"graded@{k}" for k in GRADED_DEPTHS)]:
        # ties go to the later student, as select_student breaks them
        picked = max(figures, key=lambda s: (round(figures[s][signal], 12), list(figures).index(s)))
        values = [figures[s][signal] for s in figures]
        tau = kendalltau(values, [figures[s]["test"] for s in figures]).statistic
        scored[signal] = {"picks": picked, "test_of_pick": figures[picked]["test"],
                          "regret": best_test - figures[picked]["test"],
                          "kendall_tau": None if np.isnan(tau) else float(tau)}
    return {"run": str(run), "teacher": teacher, "dev_queries": len(dev_qrels), "students": figures,
            "best_test": best_test, "signals": scored}


def main(out: str, *runs: str) -> None:
    rows = [signals(Path(r)) for r in runs]
    used = [r for r in rows if "signals" in r]
    totals = {}
    for signal in used[0]["signals"] if used else []:
        totals[signal] = {
            "mean_regret": float(np.mean([r["signals"][signal]["regret"] for r in used])),
            "picked_the_best": sum(r["signals"][signal]["regret"] == 0 for r in used),
            "mean_kendall_tau": float(np.mean([r["signals"][signal]["kendall_tau"] for r in used
                                               if r["signals"][signal]["kendall_tau"] is not None])),
        }
    result = {"runs": rows, "totals": totals, "machine": {"platform": platform.platform()}}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(totals, indent=2))
    for r in used:
        print(r["run"], {s: (v["picks"], round(v["regret"], 4)) for s, v in r["signals"].items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
