"""Several experiments on the same data side by side: one table and one quality-speed plot.

    python -m pipeline.compare results/bench-scifact results/prod results/lead --out results/comparison

For each experiment (a finished run's folder, ``results_dir/experiment``): its final student's nDCG@10,
MRR@10 and R@100 on the test split, corpus encoding speed and parameters; the teacher it learnt from; the
seconds its training took (the sum over its iterations' ``training.json``) and its wall time (from its
first artifact, the prepared data, to its last evaluation or the choice of its final student: the run's
span when it ran uninterrupted).
Writes ``comparison.md``, ``comparison.json`` and ``quality-speed.svg`` (every final student and every
teacher that encodes, once).

Experiments are compared only on the same data: the same passages (ids) and the same test judgments, read
from each run's prepared Parquet files. Anything else is refused, saying which run differs and how.

One configuration run at several seeds is one experiment: a run made with ``seeds`` (its folder), or
``NAME=RUN,RUN,...`` (each run's seed read from its summary or its ``data/splits.json``). Its row holds
the mean of its final students' figures, their standard deviation and each seed's figure; its per-query
figures are the seeds' mean per query.

    python -m pipeline.compare default=results/s13,results/s7,results/s21 lead=results/l13,results/l7,results/l21 --out cmp

Against a baseline (``--baseline EXPERIMENT``, by default the first), each other final student's nDCG@10 is
tested query by query (:mod:`pipeline.significance`: paired t-test and Wilcoxon signed-rank, Fisher's
randomisation test with ``--randomisation``; Holm-corrected over the compared experiments), with the
queries it improves and degrades; where both experiments have seeds, their per-seed means are also tested
paired by seed (the paired t-test, Holm-corrected likewise): training randomness, which the query-level
tests do not see. In the table, in ``comparison.json`` (``significance``), and in the plot (a final student
whose query-level t-test p, Holm-corrected, is below 0.05 is starred).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq

from .data import InputError, atomic_path, load_qrels, write_json
from .evaluation import _cell, per_query_metrics, read_trec_run
from .report import plot_quality_speed
from .significance import correct_across_systems, holm, paired_query_tests, paired_seed_test

COLUMNS = [("experiment", "experiment"), ("seeds", "seeds"), ("final", "final student"), ("ndcg@10", "nDCG@10"),
           ("mrr@10", "MRR@10"), ("recall@100", "R@100"), ("encode_docs_per_s", "encode docs/s"),
           ("params", "parameters"), ("teacher", "teacher (nDCG@10)"), ("train_s", "training s"),
           ("wall_s", "wall s")]


SIGNIFICANCE_COLUMNS = [("difference", "Δ nDCG@10"), ("p_t_holm", "p, t-test"), ("p_wilcoxon_holm", "p, Wilcoxon"),
                        ("queries", "+/- queries"), ("seeds", "p, seeds (higher in)")]


def significance_cells(tests: dict[str, Any] | None) -> list[str]:
    """A row's cells of :data:`SIGNIFICANCE_COLUMNS` (the baseline's say so)."""
    if tests is None:
        return ["baseline", "-", "-", "-", "-"]
    p = [f"{tests[key]:.3g}" for key in ("p_t_holm", "p_wilcoxon_holm")]
    if "p_randomisation_holm" in tests:
        p[0] += f" (randomisation {tests['p_randomisation_holm']:.3g})"
    seeds = tests.get("seeds")
    seed_cell = "-" if not seeds or seeds["p_t_holm"] is None else \
        f"{seeds['p_t_holm']:.3g} ({seeds['higher_in']} of {len(seeds['seeds'])})"
    return [f"{tests['mean_difference']:+.4f}", *p, f"+{tests['improved']} / -{tests['degraded']}", seed_cell]


def row_cells(row: dict[str, Any], cell) -> list[str]:
    """A row's cells of :data:`COLUMNS`: seconds whole, an experiment's seeds with their spread."""
    cells = []
    for key, _ in COLUMNS:
        if key in ("train_s", "wall_s"):
            cells.append(f"{row[key]:.0f}")
        elif key == "seeds" and row.get("ndcg@10_sd") is not None:
            cells.append(f"{row['seeds']} (sd {row['ndcg@10_sd']:.4f})")
        else:
            cells.append(cell(row.get(key)))
    return cells


def significance_mark(tests: dict[str, Any] | None, level: float = 0.05) -> str:
    return " *" if tests is not None and tests["p_t_holm"] < level else ""


def data_fingerprint(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' evaluations comparable: their passage ids and their test judgments."""
    split = judged_split(summary)
    corpus_ids = pq.read_table(data_dir(run) / "corpus.parquet", columns=["doc_id"]).column("doc_id").to_pylist()
    qrels = pq.read_table(data_dir(run) / f"qrels-{split}.parquet").to_pylist()
    judgments = sorted((str(q["query_id"]), str(q["doc_id"]), int(q["relevance"])) for q in qrels)
    return {"passages": len(corpus_ids),
            "passage_ids": hashlib.sha256("\n".join(sorted(map(str, corpus_ids))).encode()).hexdigest(),
            "test_judgments": len(judgments),
            "test_qrels": hashlib.sha256(json.dumps(judgments).encode()).hexdigest()}


def teachers_label(teachers: Sequence[dict[str, Any]]) -> str:
    """The teachers of a run as a table cell: each name with its test nDCG@10."""
    return ", ".join(f"{t['name']} ({t['ndcg@10']:.4f})" for t in teachers) or "-"


def experiment_row(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """One experiment's line: its final student, its teacher, its training and wall seconds."""
    final_name = (summary.get("final") or {}).get("selected")
    final = next(r for r in summary["rows"] if r["name"] == final_name)
    teachers = [r for r in summary["rows"] if r["model"] == "teacher"]
    train_s = sum(json.loads(p.read_text()).get("seconds") or 0.0
                  for p in sorted(run.glob("students/it*/training.json")))
    # the span from the prepared data to the last evaluation and the final student's choice (lstat: an
    # output served by --cache is a link made when it was served; the summary is redrawn by report changes)
    started = (data_dir(run) / "report.json").lstat().st_mtime
    ended = max(p.lstat().st_mtime for p in [run / "final.json", *run.glob("eval/*/*/metrics.json")])
    return {"experiment": summary["experiment"], "run": str(run), "final": final_name,
            **{k: final.get(k) for k in ("ndcg@10", "mrr@10", "recall@100", "encode_docs_per_s", "params",
                                         "size_mb", "iteration")},
            "teacher": teachers_label(teachers),
            "train_s": round(train_s, 1), "wall_s": round(ended - started, 1),
            "teachers": teachers}


def parse_experiment(argument: str) -> tuple[str | None, list[Path]]:
    """``RUN``, or ``NAME=RUN,RUN,...`` (one configuration at several seeds): its name and its runs. A RUN
    that ran at several seeds itself (``seeds``: its ``seeds.json``) is its seeds' runs, under its name."""
    name, sep, runs = argument.partition("=")
    if sep and name and "/" not in name:
        return name, [Path(r) for r in runs.split(",") if r]
    run = Path(argument)
    if (run / "seeds.json").is_file():
        seeds = json.loads((run / "seeds.json").read_text())
        return seeds["experiment"], [run] + [run / f"seed-{seed}" for seed in seeds["seeds"][1:]]
    return None, [run]


def seed_of_experiment(run: Path) -> bool:
    """Whether ``run`` is one seed's run inside an experiment run at several seeds (``seed-K/``), which
    reads what the seed does not change (the data, the teachers' runs) from the experiment's folder."""
    return (run.parent / "seeds.json").is_file()


def data_file(run: Path, name: str) -> Path:
    """``data/<name>`` of a run: its own, or for one seed's run of ``seeds`` (``seed-K/``) without it, the
    experiment's, which every seed shares (a seed's own ``data/`` holds at most its own split,
    ``splits.per_seed``: its ``splits.json`` and ``dev-qrels.parquet``)."""
    own = run / "data" / name
    if not own.is_file() and seed_of_experiment(run):
        return run.parent / "data" / name
    return own


def data_dir(run: Path) -> Path:
    """A run's prepared data (the corpus, queries, test judgments): :func:`data_file`'s folder."""
    return data_file(run, "corpus.parquet").parent


def run_seed(run: Path) -> int | None:
    """The seed a run trained with (its summary's, or its ``data/splits.json``'s)."""
    summary = run / "summary.json"
    seed = json.loads(summary.read_text()).get("seed") if summary.is_file() else None
    path = run / "data" / "splits.json"
    return seed if seed is not None or not path.is_file() else json.loads(path.read_text()).get("seed")


def seeds_row(name: str | None, members: list[dict[str, Any]], seeds: list[int | None]) -> dict[str, Any]:
    """One experiment's line from its runs' lines: one run as it is; several (one per seed) their mean,
    the standard deviation and each seed's nDCG@10."""
    if name is None and len(members) == 1:
        return {**members[0], "seeds": 1, "per_seed": {seeds[0]: members[0]["ndcg@10"]}}
    if None in seeds or len(set(seeds)) < len(seeds):
        raise InputError(members[0]["run"], f"experiment {name}: its runs ({', '.join(m['run'] for m in members)}) "
                         f"must each have a seed of their own (data/splits.json), not {seeds}")
    first, ndcg = members[0], [m["ndcg@10"] for m in members]
    return {**first, "experiment": name, "run": ",".join(m["run"] for m in members), "seeds": len(members),
            "final": ", ".join(sorted({m["final"] for m in members})),
            **{k: float(np.mean([m[k] for m in members])) for k in ("ndcg@10", "mrr@10", "recall@100")},
            "ndcg@10_sd": float(np.std(ndcg, ddof=1)) if len(ndcg) > 1 else None,
            "per_seed": dict(zip(seeds, ndcg)),
            "encode_docs_per_s": float(np.median([m["encode_docs_per_s"] or 0.0 for m in members])) or None,
            **{k: round(float(np.mean([m[k] for m in members])), 1) for k in ("train_s", "wall_s")}}


def judged_split(summary: dict[str, Any]) -> str:
    """The split a run's summary reports (its rows' ``split``; ``test`` by default)."""
    return next(r.get("split") for r in summary["rows"]) or "test"


def eval_folder(run: Path, split: str, model: str) -> Path:
    """Where ``run`` keeps ``model``'s evaluation on ``split`` (metrics.json, run.trec): its own eval/, or
    for one seed's run of ``seeds``, the experiment's where the seed does not change the model (the
    teachers, the untrained student)."""
    folder = run / "eval" / split / model
    if not folder.is_dir() and seed_of_experiment(run):
        return run.parent / "eval" / split / model
    return folder


def per_query_ndcg(run: Path, summary: dict[str, Any], model: str) -> dict[str, float]:
    """nDCG@10 of each judged test query of ``model``'s TREC run in ``run`` (read back from eval/)."""
    split = judged_split(summary)
    trec = eval_folder(run, split, model) / "run.trec"
    if not trec.is_file():
        raise InputError(trec, f"missing: the per-query tests read {model}'s ranking of the {split} queries")
    return per_query_metrics(load_qrels(data_dir(run) / f"qrels-{split}.parquet"), read_trec_run(trec))["ndcg@10"]


def significance_against(rows: list[dict[str, Any]], per_query: list[dict[str, float]], baseline: int,
                         randomisation: bool) -> list[dict[str, Any] | None]:
    """Each row's per-query tests against row ``baseline`` (None for the baseline itself), Holm-corrected
    over the others."""
    queries = sorted(per_query[baseline])
    others = [i for i in range(len(rows)) if i != baseline]
    tests = [paired_query_tests([per_query[baseline][q] for q in queries], [per_query[i][q] for q in queries],
                                randomisation=randomisation) for i in others]
    corrected = dict(zip(others, correct_across_systems(tests)))
    if rows[baseline].get("seeds", 1) > 1:  # and, where both have seeds, the per-seed means paired by seed
        seeded = [i for i in others if rows[i].get("seeds", 1) > 1]
        seed_tests = {i: paired_seed_test(rows[baseline]["per_seed"], rows[i]["per_seed"]) for i in seeded}
        testable = [i for i in seeded if seed_tests[i]["p_t"] is not None]
        for i, p in zip(testable, holm([seed_tests[i]["p_t"] for i in testable])):
            seed_tests[i]["p_t_holm"] = p
        for i in seeded:
            corrected[i]["seeds"] = {"p_t_holm": None, **seed_tests[i]}
    return [None if i == baseline else {"baseline": rows[baseline]["experiment"], "metric": "ndcg@10", **corrected[i]}
            for i in range(len(rows))]


def compare_experiments(run_dirs: Sequence[str], out_dir: str, baseline: str | None = None,
                        randomisation: bool = False) -> list[dict[str, Any]]:
    """Gather ``run_dirs`` into ``out_dir``/comparison.{md,json} and quality-speed.svg, testing each final
    student against the ``baseline`` experiment's (by default the first); refuse runs on different data
    (:class:`InputError`, naming the run and what differs)."""
    experiments = [parse_experiment(d) for d in run_dirs]
    runs = [run for _, members in experiments for run in members]
    for run in runs:
        if not (run / "summary.json").is_file():
            raise InputError(run / "summary.json", "missing; is it a finished run's folder (results_dir/experiment)?")
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    fingerprints = [data_fingerprint(run, summary) for run, summary in zip(runs, summaries)]
    # (hash, count, what it is) of each thing that must be equal
    checked = (("passage_ids", "passages", "passages"), ("test_qrels", "test_judgments", "test judgments"))
    for run, fingerprint in zip(runs[1:], fingerprints[1:]):
        differs = []
        for digest, count, label in checked:
            if fingerprint[digest] != fingerprints[0][digest]:
                ours, theirs = fingerprint[count], fingerprints[0][count]
                differs.append(f"{label} ({ours} vs {theirs}{', not the same ones' if ours == theirs else ''})")
        if differs:
            raise InputError(run / "data", f"run on other data than {runs[0]}: its {' and its '.join(differs)} "
                             "differ; experiments are compared only on the same passages and test judgments")
    run_rows = [experiment_row(run, summary) for run, summary in zip(runs, summaries)]
    run_ndcg = [per_query_ndcg(run, summary, row["final"]) for run, summary, row in zip(runs, summaries, run_rows)]
    rows, per_query, start = [], [], 0
    for name, members in experiments:  # an experiment's runs (its seeds) become one line
        span = slice(start, start + len(members))
        start += len(members)
        rows.append(seeds_row(name, run_rows[span], [run_seed(run) for run in members]))
        per_query.append({q: float(np.mean([values[q] for values in run_ndcg[span]])) for q in run_ndcg[span][0]})
    names = [row["experiment"] for row in rows]
    if baseline is not None and baseline not in names:
        raise InputError(baseline, f"--baseline: no such experiment among {', '.join(names)}")
    base = names.index(baseline) if baseline is not None else 0
    for row, tests in zip(rows, significance_against(rows, per_query, base, randomisation)):
        row["significance"] = tests

    columns = COLUMNS + SIGNIFICANCE_COLUMNS
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row_cells(row, _cell) + significance_cells(row["significance"])) + " |" for row in rows]
    out = Path(out_dir)
    with atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(f"# {len(rows)} experiments on the same data ({fingerprints[0]['passages']} passages, "
                       f"{fingerprints[0]['test_judgments']} test judgments)\n\n" + "\n".join(lines) + "\n\n"
                       f"Tests against {names[base]}, per query, paired (nDCG@10 of the final students over "
                       f"{len(per_query[base])} test queries): p-values two-sided, Holm-corrected over the "
                       f"{len(rows) - 1} experiment(s) compared with it; +/- = queries improved / degraded; an "
                       "experiment run at several seeds is the seeds' mean (per query too), and its per-seed means "
                       "are tested against the baseline's, paired by seed.\n")
    write_json({"data": fingerprints[0], "experiments": [{k: v for k, v in r.items() if k != "teachers"} for r in rows]},
               out / "comparison.json")
    points = [dict(r, model="student", name=f"{r['experiment']}: {r['final']}{significance_mark(r['significance'])}")
              for r in rows]
    teachers = {t["name"]: dict(t, model="teacher") for r in rows for t in r["teachers"]}
    plot_quality_speed(points + list(teachers.values()), out / "quality-speed.svg",
                       f"{len(rows)} experiments: final students and teachers (* p < 0.05 against {names[base]})")
    print("\n".join(lines))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished runs' folders (results_dir/experiment), or "
                        "NAME=RUN,RUN,... for one configuration run at several seeds")
    parser.add_argument("--out", required=True, help="folder for comparison.md, comparison.json, quality-speed.svg")
    parser.add_argument("--baseline", default=None, help="the experiment the others are tested against (default: the first)")
    parser.add_argument("--randomisation", action="store_true",
                        help="also Fisher's randomisation test (10,000 sign flips per experiment)")
    args = parser.parse_args(argv)
    try:
        compare_experiments(args.runs, args.out, baseline=args.baseline, randomisation=args.randomisation)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
