"""Gather the collection runs of benchmarks/collections.sh into benchmarks/results/collections.json and print
a Markdown table: per collection and preset, BM25, the teacher, zero-shot MiniLM-L6 (the 6-layer model the
student is cut from: the default run's teacher), the warmed-up student, the last iteration's, and the final
student the dev split picked, as test nDCG@10 and as a share of MiniLM-L6 and of the run's teacher.

    python benchmarks/collect_collections.py OUT.json med:default=results/collection-med-default ...
"""

import json
import platform
import sys
from pathlib import Path

KEYS = ("ndcg@10", "mrr@10", "recall@100")


def collect(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    splits = json.loads((run / "data/splits.json").read_text())
    rows = {r["name"]: {"model": r["model"], **{k: r.get(k) for k in KEYS}} for r in summary["rows"]}
    students = [n for n, r in rows.items() if r["model"] == "student" and n.startswith("student-it")
                and "." not in n]
    warmed = [n for n in students if n.endswith("-warmup")]
    iterations = [n for n in students if n.removeprefix("student-it").isdigit()]
    last = max(iterations, key=lambda n: int(n.removeprefix("student-it")))
    teacher = next(n for n, r in rows.items() if r["model"] == "teacher")
    final = summary["final"]
    wall = run / "wall.json"
    return {
        "run": str(run),
        "training_queries": splits["training_queries"], "dev_queries": splits["dev_queries"],
        "teacher_labelled_queries": splits.get("teacher_labelled_queries", 0),  # labels.source: qrels+teacher
        "no_dev_reason": splits["no_dev_reason"],
        "teacher": teacher,
        "warmup": warmed[-1] if warmed else None,
        "last": last,
        "final": final["selected"], "final_reason": final["reason"], "dev": final["dev"],
        "rows": rows,
        "wall_s": json.loads(wall.read_text())["wall_s"] if wall.exists() else None,
    }


def table(results: dict) -> str:
    lines = ["| collection | preset | training queries (dev) | BM25 | teacher | MiniLM-L6 | warm-up | last | "
             "final (picked) | final / MiniLM-L6 | final / teacher | hybrid with BM25 | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for collection, presets in results.items():
        minilm = presets.get("default", {}).get("rows", {}).get("minilm-l6", {}).get("ndcg@10")
        for preset, run in presets.items():
            ndcg = {n: r["ndcg@10"] for n, r in run["rows"].items()}
            final = ndcg[run["final"]]
            teacher = ndcg[run["teacher"]]
            warmup = "" if run["warmup"] is None else f"{ndcg[run['warmup']]:.4f}"
            hybrid = f"{ndcg['hybrid']:.4f}" if "hybrid" in ndcg else ""
            lines.append(
                f"| {collection} | {preset} | {run['training_queries']}"
                f"{f' + {extra} by the teacher' if (extra := run['teacher_labelled_queries']) else ''} ({run['dev_queries']}) | "
                f"{ndcg.get('bm25', float('nan')):.4f} | {run['teacher']} {teacher:.4f} | "
                f"{'' if minilm is None else f'{minilm:.4f}'} | "
                f"{warmup} | "
                f"{ndcg[run['last']]:.4f} | {final:.4f} ({run['final']}) | "
                f"{'' if minilm is None else f'{final / minilm:.0%}'} | {final / teacher:.0%} | "
                f"{hybrid} | {run['wall_s']} |")
    return "\n".join(lines)


def main(out: str, *runs: str) -> None:
    results: dict[str, dict] = {}
    for spec in runs:
        key, path = spec.split("=", 1)
        collection, preset = key.split(":", 1)
        results.setdefault(collection, {})[preset] = collect(Path(path))
    result = {"collections": results, "table": table(results), "machine": {"platform": platform.platform()}}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])


if __name__ == "__main__":
    main(*sys.argv[1:])
