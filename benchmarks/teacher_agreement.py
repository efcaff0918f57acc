"""Do the phases after the warm-up bring the student closer to its teacher? (issue 35)

For each finished run, every student's test-split run scored against the teacher's own test-split run
instead of the judgments: nDCG@10 with the teacher's top 10 passages of each query as graded labels (10
for its first down to 1; :func:`pipeline.labels.graded_from_run`, what ``labels.dev_depth`` uses), beside
the student's nDCG@10 on the judgments. Reads ``eval/test/*/run.trec`` and ``metrics.json`` only.

    python benchmarks/teacher_agreement.py --out benchmarks/results/teacher-agreement.json \\
        med=results/collection-med-label-free-labels-auto:fusion cacm=...:fusion scifact-30=...:fusion
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluation import compute_metrics, read_trec_run  # noqa: E402
from pipeline.labels import graded_from_run  # noqa: E402

DEPTH = 10
STUDENTS = ("student-it1-warmup", "student-it1", "student-it2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR:TEACHER")
    args = parser.parse_args()
    rows = {}
    for item in args.runs:
        name, rest = item.split("=", 1)
        run_dir, teacher = rest.rsplit(":", 1)
        test = Path(run_dir) / "eval/test"
        qrels: dict[str, dict[str, int]] = {}
        for query_id, doc_id, grade in graded_from_run(read_trec_run(test / teacher / "run.trec"), DEPTH).itertuples(index=False):
            qrels.setdefault(query_id, {})[doc_id] = int(grade)
        rows[name] = {"run": run_dir, "teacher": teacher, "depth": DEPTH, "students": {
            student: {"agreement_ndcg@10": compute_metrics(qrels, read_trec_run(test / student / "run.trec"))["ndcg@10"],
                      "ndcg@10": json.loads((test / student / "metrics.json").read_text())["ndcg@10"]}
            for student in STUDENTS}}
        print(name, {s: round(v["agreement_ndcg@10"], 4) for s, v in rows[name]["students"].items()})
    Path(args.out).write_text(json.dumps({"runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
