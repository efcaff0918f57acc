"""One configuration over several seeds, beside another: medians, spreads and paired differences.

    .venv/bin/python benchmarks/seeds.py --out benchmarks/results/scifact-strong-teacher-seeds.json \\
        strong-teacher=13:scifact-strong-teacher.json,7:scifact-strong-teacher-seed7.json,21:scifact-strong-teacher-seed21.json \\
        default=13:scifact.json,7:scifact-seed7-default.json,21:scifact-seed21-default.json

Each ``NAME=SEED:FILE,...`` is one configuration; each file a run in the format ``scifact.sh`` writes
(under ``benchmarks/results/``). The seed draws the dev split (and so the training queries), the negatives
sampled, the batch order and dropout, so two configurations run at the same seed differ only in their
settings: the script pairs them by seed and reports each seed's difference of the final student's test
nDCG@10 besides the medians. Files that record their seed (``collect_scifact.py`` writes it) must agree
with the one given; older files do not record it, hence the seeds on the command line.

Writes the JSON given by ``--out`` and prints a markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.evaluation import _cell  # noqa: E402
from pipeline.significance import paired_seed_test  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def parse_group(spec: str) -> tuple[str, list[tuple[int, str]]]:
    name, sep, runs = spec.partition("=")
    if not sep or not name or not runs:
        raise ValueError(f"{spec!r}: expected NAME=SEED:FILE,SEED:FILE,...")
    pairs = []
    for item in runs.split(","):
        seed, sep, file = item.partition(":")
        if not sep or not seed.isdigit() or not file:
            raise ValueError(f"{spec!r}: {item!r} is not SEED:FILE")
        pairs.append((int(seed), file))
    seeds = [seed for seed, _ in pairs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{spec!r}: a seed is given twice")
    return name, pairs


def seed_row(seed: int, file: str) -> dict:
    path = RESULTS / file
    if not path.is_file():
        raise ValueError(f"{path}: no such benchmark result")
    result = json.loads(path.read_text())
    if result.get("seed", seed) != seed:
        raise ValueError(f"{path}: field 'seed' is {result['seed']}, the command line says {seed}")
    students = {r["name"]: r for r in result["rows"] if r["model"] == "student"}
    final = students[result["final_student"]]
    first = students.get("student-it1")
    return {"seed": seed, "file": f"benchmarks/results/{file}", "final": result["final_student"],
            "it1_ndcg@10": first["ndcg@10"] if first else None, "ndcg@10": final["ndcg@10"],
            "mrr@10": final["mrr@10"], "recall@100": final["recall@100"], "dev_ndcg@10": final.get("dev"),
            "wall_s": result["wall_s"], "encode_speedup": result["student_over_teacher_encode_speed"]}


def summarise(rows: list[dict]) -> dict:
    keys = ("it1_ndcg@10", "ndcg@10", "mrr@10", "recall@100", "wall_s", "encode_speedup")
    median = {k: statistics.median(r[k] for r in rows) for k in keys if all(r[k] is not None for r in rows)}
    finals = [r["ndcg@10"] for r in rows]
    return {"median": median, "min_ndcg@10": min(finals), "max_ndcg@10": max(finals),
            "mean_ndcg@10": statistics.mean(finals), "sd_ndcg@10": statistics.stdev(finals) if len(finals) > 1 else None}


def paired(groups: dict[str, list[dict]]) -> list[dict]:
    """Each later configuration against the first, seed by seed (the seeds both ran), with the paired t-test
    over the seeds (:func:`pipeline.significance.paired_seed_test`; None under two common seeds)."""
    (base_name, base), *others = groups.items()
    base_by_seed = {r["seed"]: r for r in base}
    out = []
    for name, rows in others:
        common = [r for r in rows if r["seed"] in base_by_seed]
        diffs = [r["ndcg@10"] - base_by_seed[r["seed"]]["ndcg@10"] for r in common]
        if diffs:
            test = paired_seed_test({r["seed"]: base_by_seed[r["seed"]]["ndcg@10"] for r in common},
                                    {r["seed"]: r["ndcg@10"] for r in common})
            out.append({"configuration": name, "against": base_name, "seeds": [r["seed"] for r in common],
                        "ndcg@10_differences": diffs, "median_difference": statistics.median(diffs),
                        "mean_difference": test["mean_difference"], "higher_in": sum(d > 0 for d in diffs),
                        "p_t_seeds": test["p_t"]})
    return out


def markdown(groups: dict[str, list[dict]], summaries: dict[str, dict]) -> str:
    lines = ["| configuration | seed | file | it1 nDCG@10 | final nDCG@10 | MRR@10 | R@100 | dev nDCG@10 | wall s "
             "| encode speed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in groups.items():
        for r in rows:
            lines.append(f"| {name} | {r['seed']} | `{Path(r['file']).name}` | {_cell(r['it1_ndcg@10'])} "
                         f"| {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} "
                         f"| {_cell(r['dev_ndcg@10'])} | {r['wall_s']:.0f} "
                         f"| {r['encode_speedup']:.2f}x |")
        m = summaries[name]["median"]
        lines.append(f"| **{name}, median** | | | {_cell(m.get('it1_ndcg@10'))} | **{m['ndcg@10']:.4f}** | {m['mrr@10']:.4f} "
                     f"| {m['recall@100']:.4f} | | **{m['wall_s']:.0f}** | {m['encode_speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="+", metavar="NAME=SEED:FILE,...")
    parser.add_argument("--out", required=True, help="the JSON to write")
    args = parser.parse_args(argv)
    try:
        specs = [parse_group(spec) for spec in args.groups]
        if len({name for name, _ in specs}) != len(specs):
            raise ValueError("a configuration name is given twice")
        groups = {name: [seed_row(seed, file) for seed, file in pairs] for name, pairs in specs}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summaries = {name: summarise(rows) for name, rows in groups.items()}
    result = {"configurations": {name: {"seeds": rows, **summaries[name]} for name, rows in groups.items()},
              "paired": paired(groups)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(groups, summaries))
    for entry in result["paired"]:
        diffs = ", ".join(f"{d:+.4f}" for d in entry["ndcg@10_differences"])
        print(f"\n{entry['configuration']} - {entry['against']}, per seed {entry['seeds']}: {diffs} "
              f"(median {entry['median_difference']:+.4f}, mean {entry['mean_difference']:+.4f}, higher in "
              f"{entry['higher_in']} of {len(entry['seeds'])}, seed-paired t p {_cell(entry['p_t_seeds'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
