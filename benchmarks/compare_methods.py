"""Every method's SciFact benchmark beside the default run and beside all of them in one config.

    .venv/bin/python benchmarks/compare_methods.py [--runs results/bench-scifact results/bench-all-methods]
    .venv/bin/python benchmarks/compare_methods.py --seeds results/bench-strong-teacher-seeds \
        results/bench-seeds results/bench-prod-seeds ...     # each a three-seed run (``seeds``), baseline first

Reads the committed results (``benchmarks/results/scifact.json``, ``scifact-<method>.json`` for each method
alone, ``scifact-all-methods.json`` for ``configs/all-methods.yaml``; all in the format ``scifact.sh``
writes) and writes ``benchmarks/results/scifact-methods.json`` and its table (printed, for
benchmarks/README.md): the final student's test nDCG@10, MRR@10, R@100, its dev nDCG@10 (what chose it),
the teacher, training and wall seconds.

Each method's run folder is long gone (one to 1.5 hours each); its committed JSON is what remains. Where the
run folders are still here, ``--runs`` also puts them side by side with ``python -m pipeline.compare``
(into ``benchmarks/results/comparison-all-methods/``), which checks that they ran on the same data.

One seed each cannot tell most methods apart (issue 34). ``--seeds`` takes run folders made with ``seeds``
(``benchmarks/three-seeds.yaml``: seeds 13, 7 and 21 sharing data, dev split and teacher work) and tests
each against the first, the same fusion teacher with no method, with ``python -m pipeline.compare``
(into ``benchmarks/results/comparison-methods-seeds/``): per query over the 300 test queries (each query's
nDCG@10 the mean over the seeds), paired t and Wilcoxon, Holm-corrected across the methods, and the per-seed
means paired by seed. Its table, with a verdict per method (the paired t-test's Holm-corrected p below 0.05,
the mark ``pipeline.compare`` sets), goes into ``scifact-methods.json`` under ``three_seeds``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.compare import compare_experiments, significance_mark, teachers_label  # noqa: E402
from pipeline.evaluation import _cell  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# (label, committed result, preset)
RUNS = [("default (no method)", "scifact.json", "config.yaml"),
        ("no method, the methods' teacher", "scifact-strong-teacher.json", "configs/strong-teacher.yaml"),
        # the preset (w_lwf 0) reran stage 2 on, stage 1 kept from the run with PROD's LwF: its wall covers the rerun
        ("PROD (wall: stages 2-4 only)", "scifact-prod-no-lwf.json", "configs/prod.yaml"),
        ("PROD with its published LwF weight 1.0", "scifact-prod.json", "configs/prod.yaml + benchmarks/prod-lwf.yaml"),
        ("MTA4DPR", "scifact-mta4dpr.json", "configs/mta4dpr.yaml"),
        ("LEAD", "scifact-lead.json", "configs/lead.yaml"),
        ("OnMKD", "scifact-onmkd.json", "configs/onmkd.yaml"),
        ("ADAM", "scifact-adam.json", "configs/adam.yaml"),
        ("OnMKD + ADAM + MTA4DPR", "scifact-all-methods.json", "configs/all-methods.yaml")]

# a three-seed experiment's name (benchmarks/scifact.sh's BENCH_EXPERIMENT) -> (label, preset, its result)
SEED_RUNS = {
    "bench-strong-teacher-seeds": ("no method, the methods' teacher", "configs/strong-teacher.yaml",
                                   "scifact-strong-teacher-three-seeds.json"),
    "bench-seeds": ("default (no method)", "config.yaml", "scifact-seeds.json"),
    # PROD's four iterations without PROD: are its rounds more than two more iterations?
    "bench-strong-teacher-4-iterations-seeds": ("no method, 4 iterations (PROD's count)",
                                                "configs/strong-teacher.yaml, iterations=4",
                                                "scifact-strong-teacher-4-iterations-three-seeds.json"),
    **{f"bench-{method}-seeds": (label, f"configs/{method}.yaml", f"scifact-{method}-three-seeds.json")
       for method, label in (("prod", "PROD"), ("lead", "LEAD"), ("onmkd", "OnMKD"), ("mta4dpr", "MTA4DPR"),
                             ("adam", "ADAM"), ("all-methods", "OnMKD + ADAM + MTA4DPR"))}}
SEEDS_COMPARISON = RESULTS / "comparison-methods-seeds"


def train_seconds(iterations: list[dict]) -> float | None:
    seconds = [it.get("train_s") for it in iterations]
    return None if None in seconds else round(sum(seconds), 1)


def method_row(label: str, result_name: str, preset: str) -> dict:
    result = json.loads((RESULTS / result_name).read_text())
    final = next(r for r in result["rows"] if r["name"] == result["final_student"])
    teachers = [r for r in result["rows"] if r["model"] == "teacher"]
    return {"method": label, "preset": preset, "result": f"benchmarks/results/{result_name}",
            "final": result["final_student"], "ndcg@10": final["ndcg@10"], "mrr@10": final["mrr@10"],
            "recall@100": final["recall@100"], "dev_ndcg@10": final.get("dev"),
            "teacher": teachers_label(teachers),
            # older results lack the per-iteration entries or their train job seconds: unknown, not 0
            "train_s": train_seconds(result.get("iterations") or [{}]),
            "wall_s": result["wall_s"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| method (preset) | final student | nDCG@10 | MRR@10 | R@100 | dev nDCG@10 | teacher (nDCG@10) "
             "| training s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dev = _cell(r["dev_ndcg@10"])
        train = f"{r['train_s']:.0f}" if r["train_s"] is not None else "-"
        lines.append(f"| {r['method']} (`{r['preset']}`) | {r['final']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} "
                     f"| {r['recall@100']:.4f} | {dev} | {r['teacher']} | {train} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def verdict(tests: dict | None) -> str:
    """What the per-query paired t-test (Holm-corrected, as ``pipeline.compare`` marks it) says."""
    if tests is None:
        return "baseline"
    if not significance_mark(tests):
        return "cannot be told apart at this scale"
    return "helps" if tests["mean_difference"] > 0 else "hurts"


def seed_rows(run_dirs: list[str]) -> dict:
    """The three-seed runs compared with ``pipeline.compare`` against the first, as the methods table."""
    names = [Path(d).name for d in run_dirs]
    unknown = [n for n in names if n not in SEED_RUNS]
    if unknown:
        raise SystemExit(f"error: --seeds: unknown experiments {unknown}; known: {', '.join(SEED_RUNS)}")
    rows = []
    for row in compare_experiments(run_dirs, str(SEEDS_COMPARISON), baseline=names[0]):
        label, preset, result_name = SEED_RUNS[row["experiment"]]
        result_path = RESULTS / result_name
        wall = json.loads(result_path.read_text())["wall_s"] if result_path.is_file() else None
        tests = row["significance"] or {}  # empty for the baseline
        seeds = tests.get("seeds") or {}
        rows.append({"method": label, "preset": preset, "experiment": row["experiment"],
                     "result": f"benchmarks/results/{result_name}" if wall is not None else None,
                     "final": row["final"], "seeds": sorted(int(k) for k in row["per_seed"]),
                     # keyed as in JSON, whether the table was just made or read back
                     "per_seed": {str(seed): value for seed, value in row["per_seed"].items()},
                     **{k: row[k] for k in ("ndcg@10", "ndcg@10_sd", "mrr@10", "recall@100", "teacher")},
                     "difference": tests.get("mean_difference"),
                     **{k: tests.get(k) for k in ("improved", "degraded", "p_t_holm", "p_wilcoxon_holm")},
                     "p_seeds_holm": seeds.get("p_t_holm"), "higher_in_seeds": seeds.get("higher_in"),
                     "verdict": verdict(row["significance"]),
                     # per seed, its train jobs; the whole three-seed run (shared work once)
                     "train_s_per_seed": row["train_s"], "wall_s": wall})
    return {"baseline": names[0], "metric": "test nDCG@10 of each seed's final student (chosen on dev)",
            "test": "per query (300, mean over seeds) paired t and Wilcoxon, Holm over the methods; "
                    "per-seed means paired by seed (t, Holm)",
            "comparison": "benchmarks/results/comparison-methods-seeds/comparison.json", "rows": rows}


def seeds_markdown(table: dict) -> str:
    lines = ["| method (preset) | nDCG@10 mean ± sd (seeds 13 / 7 / 21) | vs no method | queries +/− "
             "| p t (Holm) | p Wilcoxon (Holm) | p seed-paired (Holm; higher in) | verdict | training s per seed "
             "| wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        per_seed = " / ".join(f"{r['per_seed'][str(s)]:.4f}" for s in (13, 7, 21) if str(s) in r["per_seed"])
        if r["difference"] is None:
            diff = counts = p_t = p_w = p_s = "-"
        else:
            diff, counts = f"{r['difference']:+.4f}", f"+{r['improved']} / −{r['degraded']}"
            p_t, p_w = f"{r['p_t_holm']:.3g}", f"{r['p_wilcoxon_holm']:.3g}"
            p_s = "-" if r["p_seeds_holm"] is None else f"{r['p_seeds_holm']:.3g} ({r['higher_in_seeds']} of 3)"
        wall = "-" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        lines.append(f"| {r['method']} (`{r['preset']}`) | {r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f} ({per_seed}) "
                     f"| {diff} | {counts} | {p_t} | {p_w} | {p_s} | {r['verdict']} | {r['train_s_per_seed']:.0f} "
                     f"| {wall} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], help="run folders to compare with pipeline.compare too")
    parser.add_argument("--seeds", nargs="*", default=[],
                        help="three-seed run folders, the no-method baseline first: the table at three seeds")
    args = parser.parse_args(argv)
    missing = [name for _, name, _ in RUNS if not (RESULTS / name).is_file()]
    if missing:
        print(f"error: missing benchmark results: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [method_row(*run) for run in RUNS]
    out = RESULTS / "scifact-methods.json"
    # the three-seed table is kept when only the one-seed table is redrawn
    three_seeds = seed_rows(args.seeds) if args.seeds else \
        (json.loads(out.read_text()).get("three_seeds") if out.is_file() else None)
    out.write_text(json.dumps({"rows": rows, **({"three_seeds": three_seeds} if three_seeds else {})}, indent=2)
                   + "\n")
    print(markdown(rows))
    if three_seeds:
        print("\nThree seeds each:\n\n" + seeds_markdown(three_seeds))
    if args.runs:
        compare_experiments(args.runs, str(RESULTS / "comparison-all-methods"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
