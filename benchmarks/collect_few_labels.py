"""Gather few-label runs into benchmarks/results/scifact-few-labels.json: per size, the test figures of
the warmed-up (label-free) student, of each iteration's student, and of the final student the dev split
picked, with every student's dev figure.

    python benchmarks/collect_few_labels.py OUT.json 30=results/few-labels-30 100=... all=results/bench-scifact
"""

import json
import platform
import sys
from pathlib import Path

KEYS = ("ndcg@10", "mrr@10", "recall@100")


def collect(size: str, run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    splits = json.loads((run / "data/splits.json").read_text())
    students = {r["name"]: {k: r[k] for k in KEYS} for r in summary["rows"] if r["model"] == "student"}
    teacher = next(r for r in summary["rows"] if r["model"] == "teacher")
    warmed = [name for name in students if name.endswith("-warmup")]
    last = max((n for n in students if "-" not in n.removeprefix("student-") and "." not in n),  # not exports
               key=lambda n: int(n.removeprefix("student-it")))
    final = summary["final"]
    wall = run / "wall.json"
    return {
        "train_queries": None if size == "all" else int(size),
        "training_queries": splits["training_queries"], "dev_queries": splits["dev_queries"],
        "no_dev_reason": splits["no_dev_reason"],
        "teacher": {k: teacher[k] for k in KEYS},
        "warmup_only": {"name": warmed[0], **students[warmed[0]]} if warmed else None,
        "last": {"name": last, **students[last]},
        "final": {"name": final["selected"], "reason": final["reason"], **students[final["selected"]]},
        "dev": final["dev"],
        "students": students,
        "labels_add_over_warmup": (students[final["selected"]]["ndcg@10"] - students[warmed[0]]["ndcg@10"])
        if warmed else None,
        "wall_s": json.loads(wall.read_text())["wall_s"] if wall.exists() else None,
        "run": str(run),
        # a run made with `seeds`: the figures above are its first seed's; every seed's here
        **({"seeds": json.loads((run / "seeds.json").read_text())} if (run / "seeds.json").is_file() else {}),
    }


def main(out: str, *runs: str) -> None:
    rows = [collect(size, Path(path)) for size, path in (r.split("=", 1) for r in runs)]
    result = {"rows": rows, "machine": {"platform": platform.platform()}}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
