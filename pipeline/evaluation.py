"""Evaluation: retrieve for the test split, write a TREC run, compute metrics with ``ir_measures``
(pytrec_eval underneath), and gather the per-model results into a summary table."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .config import allowed_values
from .data import atomic_path, load_qrels, load_queries, read_table, write_json

if TYPE_CHECKING:  # torch only where a model runs: selecting the final student and the summary import this too
    from .models import ModelSpec

log = logging.getLogger(__name__)

METRICS = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "recall@100": "R@100"}


def judged_queries(qrels: dict[str, dict[str, int]]) -> list[str]:
    """The queries of ``qrels`` with a relevant (relevance > 0) passage, in the qrels' order."""
    return [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]


def ranked_pairs(query_ids: Sequence[str], ranked_ids: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Each query's ranked passages as (query_id, doc_id) rows, in rank order: the frame scorers score."""
    return pd.DataFrame([(q, d) for q, ids in zip(query_ids, ranked_ids) for d in ids], columns=["query_id", "doc_id"])


def run_of(scored: pd.DataFrame) -> dict[str, dict[str, float]]:
    """A run (query -> passage -> score) from scored (query_id, doc_id, score) rows."""
    return {q: dict(zip(group.doc_id, group.score.astype(float))) for q, group in scored.groupby("query_id")}


def per_query_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """nDCG@10, MRR@10 and R@100 of every judged query, in the qrels' order (a query with no results: 0)."""
    # ir_measures: only where per-query figures are computed
    import ir_measures

    measures = {name: ir_measures.parse_measure(spec) for name, spec in METRICS.items()}
    per_query = {name: {} for name in measures}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, run):
        for name, measure in measures.items():
            if metric.measure == measure:
                per_query[name][metric.query_id] = metric.value
    judged = judged_queries(qrels)
    return {name: {q: values.get(q, 0.0) for q in judged} for name, values in per_query.items()}


def compute_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10, MRR@10 and R@100, averaged over every judged query (a query with no results counts 0)."""
    return {name: float(np.mean(list(values.values()))) for name, values in per_query_metrics(qrels, run).items()}


def write_trec_run(run: dict[str, dict[str, float]], path: str | Path, tag: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        for query_id in sorted(run):
            ranked = sorted(run[query_id].items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    with open(path) as handle:
        for line in handle:
            query_id, _, doc_id, _, score, _ = line.split()
            run.setdefault(query_id, {})[doc_id] = float(score)
    return run


def retrieve(spec: ModelSpec, query_ids: Sequence[str], queries: dict[str, str], corpus_path: str, depth: int,
             index_dir: str | None, models: dict[str, dict], embedding_shards: dict[str, Sequence[str]],
             include_title: bool, device, rerank_depth: int = 100) -> dict[str, dict[str, float]]:
    """A run for ``query_ids``: dense search for bi-encoders, BM25, or BM25 top-``rerank_depth``
    reranked by any other scorer (cross-encoder, fusion)."""
    texts = [queries[q] for q in query_ids]
    if spec.kind == "bi-encoder":
        # torch, FAISS, bm25s: only what the evaluated model's kind needs; the summary runs without
        from .index import ShardedIndex
        from .runtime import load_encoder

        index = ShardedIndex(index_dir)
        scores, indices = index.search(load_encoder(spec, device).encode(texts, is_query=True), depth)
        return {q: {index.doc_ids[i]: float(s) for s, i in zip(row_s, row_i) if i < len(index.doc_ids)}
                for q, row_s, row_i in zip(query_ids, scores, indices)}
    from .lexical import BM25

    bm25 = BM25.from_corpus(read_table(corpus_path), include_title=include_title,
                            **(spec.bm25 if spec.kind == "bm25" else {}))
    ranked_ids, ranked_scores = bm25.search(texts, depth if spec.kind == "bm25" else rerank_depth)
    if spec.kind == "bm25":
        return {q: dict(zip(ids, scores)) for q, ids, scores in zip(query_ids, ranked_ids, ranked_scores)}
    from .scorers import make_scorer

    pairs = ranked_pairs(query_ids, ranked_ids)
    scorer = make_scorer(spec, models, queries, corpus_path, embedding_shards, include_title, device)
    pairs["score"] = scorer.score(pairs)
    return run_of(pairs)


def evaluate_model(model: dict[str, Any], role: str, iteration: int | None, queries_path: str, qrels_path: str,
                   corpus_path: str, out_dir: str, depth: int = 100, index_dir: str | None = None,
                   embedding_shards: dict[str, Sequence[str]] | None = None,
                   models: dict[str, dict] | None = None, include_title: bool = True, device: str = "auto",
                   threads: int | None = None, rerank_depth: int = 100, phase: str | None = None,
                   split: str = "test") -> dict[str, Any]:
    """Evaluate one model on a judged split; writes ``run.trec`` and ``metrics.json`` into ``out_dir``.
    A split without judged queries (no dev split) gives metrics of None."""
    # torch: only when a model is evaluated; the summary runs without
    from .embeddings import encoding_stats
    from .models import ModelSpec, resolve_device, set_threads

    set_threads(threads)
    spec = ModelSpec.from_config(model["name"], model)
    qrels = load_qrels(qrels_path)
    queries = load_queries(queries_path)
    query_ids = sorted(judged_queries(qrels))
    embedding_shards = embedding_shards or {}
    began = time.perf_counter()
    if query_ids:
        run = retrieve(spec, query_ids, queries, corpus_path, depth, index_dir, models or {}, embedding_shards,
                       include_title, resolve_device(device), rerank_depth)
        metrics = compute_metrics(qrels, run)
    else:
        run, metrics = {}, {name: None for name in METRICS}
    seconds = time.perf_counter() - began
    stats = encoding_stats(embedding_shards[spec.name]) if spec.kind == "bi-encoder" and spec.name in embedding_shards \
        else {"encode_docs_per_s": None, "params": None, "size_mb": None}
    # a reranker (cross-encoder, fusion) scores every pair of the first stage's top rerank_depth
    reranked = sum(len(docs) for docs in run.values()) if spec.kind not in ("bi-encoder", "bm25") else None
    fused = {}
    if spec.kind == "fusion":  # the weights it ranked with: configured, or chosen on judged training queries
        # torch (through .scorers): only a fusion's row needs it
        from .scorers import fusion_weights

        fused = {"fusion_weights": fusion_weights(spec), "fusion_weights_chosen": spec.weights_path is not None}
    result = {"model": role, "name": spec.name, "iteration": iteration, "phase": phase, "split": split, **metrics,
              "retrieve_s": round(seconds, 3),
              "rerank_pairs_per_s": round(reranked / max(seconds, 1e-9), 1) if reranked else None,
              "encode_docs_per_s": stats["encode_docs_per_s"], "params": stats["params"], "size_mb": stats["size_mb"],
              "queries": len(query_ids), "depth": depth, "source": spec.source, "kind": spec.kind,
              "backend": spec.backend, **fused}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, out / "run.trec", tag=spec.name)
    write_json(result, out / "metrics.json")
    log.info("%s on %s (%d queries): %s", spec.name, split, len(query_ids), metrics)
    return result


def per_query_matrix(qrels: dict[str, dict[str, int]], runs: Sequence[dict[str, dict[str, float]]],
                     metric: str = "ndcg@10") -> np.ndarray:
    """``metric`` of each judged query (columns, in the qrels' order) for each run (rows)."""
    figures = [per_query_metrics(qrels, run)[metric] for run in runs]
    return np.array([[values[q] for q in figures[0]] for values in figures])


def best_row(per_query: np.ndarray, distance: np.ndarray) -> int:
    """The row of ``per_query`` (candidates x queries) of highest mean; on a tie, the one of least ``distance``
    (means rounded to 12 digits, so that a sum's order does not break a tie)."""
    means = per_query.mean(axis=1).round(12)
    return int(min(np.flatnonzero(means == means.max()), key=lambda i: distance[i]))


class OneStandardErrorChoice(NamedTuple):
    """:func:`one_standard_error_choice`'s answer: rows of its ``per_query``."""

    chosen: int  #: the row to keep
    best: int  #: the row it was measured against (:func:`best_row`)
    errors: np.ndarray  #: each row's standard error to the best row
    within: np.ndarray  #: whether each row's mean is within that standard error of the best's (the eligible rows)


def one_standard_error_choice(per_query: np.ndarray, distance: np.ndarray) -> OneStandardErrorChoice:
    """The row of ``per_query`` (candidates x queries) to keep: among those whose mean is within one
    standard error of the best mean (the standard error of their per-query differences to the best row;
    ties for best: the nearest), the one of least ``distance``, then of higher mean; with the best row,
    each row's standard error to it and which rows were within it."""
    means = per_query.mean(axis=1).round(12)
    best = best_row(per_query, distance)
    differences = per_query[best] - per_query
    errors = differences.std(axis=1, ddof=1) / np.sqrt(per_query.shape[1]) if per_query.shape[1] > 1 \
        else np.zeros(len(per_query))
    within = means[best] - means <= errors + 1e-12
    chosen = int(min(np.flatnonzero(within), key=lambda i: (distance[i], -means[i])))
    return OneStandardErrorChoice(chosen, best, errors, within)


def no_dev_choice(rows: Sequence[dict[str, Any]], fallback: str, labels: str | None) -> tuple[str, str]:
    """The final student without a dev split (``splits.dev.fallback``; :func:`select_final_student`): its
    name, and why, from the students' metric rows in the order the run made them and the source of the
    training labels (the splits report's ``labels``)."""
    allowed = allowed_values("splits.dev.fallback")
    if fallback not in allowed:
        raise ValueError(f"splits.dev.fallback: {fallback!r} is not one of {', '.join(allowed)}")
    why = ""
    if fallback == "auto":
        fallback = "warmup" if labels == "teacher" else "last"
        why = (" (splits.dev.fallback: auto; no judged query trained the students)" if fallback == "warmup" else
               " (splits.dev.fallback: auto; judged queries trained the students)")
    warmups = [row["name"] for row in rows if row.get("phase") == "warmup"]
    if fallback == "warmup" and warmups:
        return warmups[-1], f"the warmed-up student is final{why}"
    if fallback == "warmup":
        return rows[-1]["name"], f"the last student is final (no warmed-up student){why}"
    return rows[-1]["name"], f"the last student is final{why}"


def select_final_student(dev_metric_paths: Sequence[str], splits_report: str, out_path: str,
                         metric: str = "ndcg@10", sources: dict[str, str] | None = None,
                         select: str = "best", dev_qrels_path: str | None = None,
                         fallback: str = "last") -> dict[str, Any]:
    """The run's final student, from every student's figure on the dev split (``dev_metric_paths``, in the
    order the run made the students, each folder holding its ``run.trec``), or the last student when there
    is no dev split (``fallback``, below). ``select``:

    - ``best``: the highest dev ``metric`` (the later student on a tie);
    - ``one-standard-error``: the one-standard-error rule (:func:`one_standard_error_choice`) over the
      per-query figures on ``dev_qrels_path``: of the students whose mean is within one standard error of
      the best's, the earliest trained one (the untrained student last). A later student then replaces
      the warm-up only where the dev queries tell them apart: with 6 dev queries (SciFact with 30 judged
      ones) the best of three students is mostly noise (benchmarks/README.md, "Few labels").

    Without a dev split (the splits report's ``no_dev_reason``), ``fallback``: ``last``, the last student;
    ``warmup``, the warmed-up student (the last when the run has none); ``auto``, ``warmup`` when no judged
    query trained the students (the report's ``labels`` is the teacher's: the label-free preset), else
    ``last``. Why: without judgments nothing checks that the teacher of the later phases ranks better than
    the warm-up's, and where it did not (MED, label-free: the equal-weight fusion, 0.788 on test against the
    warmed-up student's 0.785) the later phases took 0.038 off the warm-up at every seed; with judged
    training queries (MED's 15) they left it +0.004 (benchmarks/README.md, "MED").

    Writes the choice, every student's dev figure and, for the rule, each one's standard error to the best."""
    rows = [json.loads(Path(p).read_text()) for p in dev_metric_paths]  # in the order the run made them
    report = json.loads(Path(splits_report).read_text())
    dev = {row["name"]: row[metric] for row in rows}
    errors = None
    if report.get("no_dev_reason") or any(value is None for value in dev.values()):
        selected, why = no_dev_choice(rows, fallback, report.get("labels"))
        reason = f"{report.get('no_dev_reason') or 'no dev figures'}; {why}"
    elif select == "one-standard-error":
        if dev_qrels_path is None:
            raise ValueError("select_final_student: the one-standard-error rule needs the dev judgments (dev_qrels_path)")
        qrels = load_qrels(dev_qrels_path)
        per_query = per_query_matrix(qrels, [read_trec_run(Path(p).parent / "run.trec") for p in dev_metric_paths],
                                     metric)
        # preference: the order of training, the untrained student (iteration 0) after every trained one
        order = np.array([len(rows) + i if row.get("iteration") == 0 else i for i, row in enumerate(rows)])
        rule = one_standard_error_choice(per_query, order)
        selected, best = rows[rule.chosen]["name"], rows[rule.best]["name"]
        errors = {row["name"]: float(e) for row, e in zip(rows, rule.errors)}
        reason = (f"the earliest trained student within one standard error of the best dev {metric} ({best}) "
                  f"over {report['dev_queries']} dev queries")
    else:
        best = max(dev.values())
        selected = [name for name, value in dev.items() if value == best][-1]
        reason = f"best dev {metric} over {report['dev_queries']} dev queries"
    choice = {"selected": selected, "source": (sources or {}).get(selected), "metric": metric, "reason": reason,
              "select": select, "fallback": fallback, "dev_queries": report.get("dev_queries", 0), "dev": dev,
              **({"standard_error_to_best": errors} if errors is not None else {}), "last": rows[-1]["name"],
              # the order the rules prefer, which the sorted keys of "dev" lose
              "students": [row["name"] for row in rows]}
    write_json(choice, out_path)
    log.info("final student: %s (%s)", selected, reason)
    return choice


def evaluate_splits(model: dict[str, Any], role: str, iteration: int | None, queries_path: str, corpus_path: str,
                    splits: dict[str, dict[str, str]], threads: int | None = None, **settings) -> dict[str, Any]:
    """:func:`evaluate_model` on each of ``splits`` (``{"test": {"qrels_path", "out_dir"}, "dev": {...}}``),
    one after the other in one process: a workflow job evaluates a model on every split at once, as
    process start and imports cost more than a tiny split's retrieval."""
    return {split: evaluate_model(model, role, iteration, queries_path, paths["qrels_path"], corpus_path,
                                  paths["out_dir"], threads=threads, split=split, **settings)
            for split, paths in splits.items()}


COLUMNS = [("model", "model"), ("iteration", "iteration"), ("name", "name"), ("ndcg@10", "nDCG@10"),
           ("mrr@10", "MRR@10"), ("recall@100", "R@100"), ("dev", "dev"), ("encode_docs_per_s", "encode docs/s"),
           ("params", "parameters"), ("size_mb", "size MB")]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value > 10 else f"{value:.4f}"
    if isinstance(value, int) and value > 100_000:
        return f"{value / 1e6:.1f}M"
    return str(value)


def _export_format_line(export: dict[str, Any], fmt: str, evaluated: set[str]) -> str:
    """One format of an export for the summary: its size, its check against PyTorch, whether it has a row."""
    name, check = f"{export['model']['name']}.{fmt}", export.get("check") or {}
    line = f"{fmt} {_cell(export['formats'][fmt]['size_mb'])} MB"
    if fmt in check:
        line += (f", lowest cosine to PyTorch fp32 {check[fmt]['min_cosine']:.6f} over {check['passages']} "
                 "passages")
    return line + (f" (evaluated: row {name})" if name in evaluated else " (not evaluated: export.evaluate)")


def summarize(metric_paths: Sequence[str], out_markdown: str, out_json: str, experiment: str,
              dev_metric_paths: Sequence[str] = (), final_path: str | None = None,
              iterations: Sequence[dict[str, Any]] = (), training_paths: dict[str, str] | None = None,
              figures: dict[str, str] | None = None, export_paths: Sequence[str] = (),
              seed: int | None = None) -> list[dict]:
    """Gather per-model test metrics into a table (teachers first, then the students in the order the run
    made them), with each student's dev figure and the final student marked; then what each iteration was
    (``iterations``: ``{"iteration", "label", "reports": [JSON paths whose "summary" line is shown]}``),
    and each export's formats with their check against PyTorch (``export_paths``: export.json files).
    With ``figures`` (paths of "table", "ndcg", "quality_speed", "training"), also the report's table and
    figures (:func:`pipeline.report.make_report_figures`), from each iteration's ``training_paths``. ``seed``:
    the run's, recorded for ``pipeline.compare``."""
    rows = [json.loads(Path(p).read_text()) for p in metric_paths]
    dev_rows = {row["name"]: row for row in (json.loads(Path(p).read_text()) for p in dev_metric_paths)}
    final = json.loads(Path(final_path).read_text()) if final_path else None
    for row in rows:
        if row["name"] in dev_rows:
            row["dev"] = dev_rows[row["name"]].get(final["metric"] if final else "ndcg@10")
        row["final"] = bool(final and row["name"] == final["selected"])
    # an exported student (``student-it2.onnx``) follows the student it was exported from; the hybrid comes last
    rows.sort(key=lambda r: (r["model"] == "hybrid", r["model"] != "teacher",
                             -1 if r["iteration"] is None else r["iteration"],
                             r.get("phase") is None, (r.get("backend") or "torch") != "torch", r["name"]))
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [f"# {experiment}", "", header, rule]
    lines += ["| " + " | ".join(_cell(row.get(key)) + (" (final)" if key == "name" and row["final"] else "")
                                for key, _ in COLUMNS) + " |" for row in rows]
    if final:
        lines += ["", f"Final student: **{final['selected']}** ({final['reason']}); dev {final['metric']} per "
                      "student: " + ", ".join(f"{k} {_cell(v)}" for k, v in final["dev"].items())]
    for row in rows:
        if row.get("fusion_weights"):
            how = "chosen on the judged training queries" if row.get("fusion_weights_chosen") else "configured"
            lines += ["", f"Fusion {row['name']}: weights " + ", ".join(f"{m} {w:g}" for m, w in row["fusion_weights"].items())
                      + f" ({how})"]
    exports = [dict(json.loads(Path(p).read_text()), folder=str(Path(p).parent)) for p in export_paths]
    evaluated = {row["name"] for row in rows}
    for export in exports:
        lines += ["", f"Export {export['model']['name']} (`{export['folder']}`): " + "; ".join(
            _export_format_line(export, fmt, evaluated) for fmt in export["formats"])]
        if final and export["model"]["name"] != final["selected"]:
            # the run exports the last student, fixed when the DAG is built; the final one is chosen later
            target = Path(export["folder"]).parent / final["selected"]
            lines[-1] += (f". This is the last student, not the final one ({final['selected']}): "
                          f"`snakemake --cores all {target}` exports that one")
            log.warning("the export %s is the last student, not the final %s: snakemake %s exports that one",
                        export["folder"], final["selected"], target)
    described = [dict(entry, reports=[json.loads(Path(p).read_text()) for p in entry.get("reports", [])])
                 for entry in iterations]
    if described:
        lines += ["", "Iterations:"]
        lines += [f"- it{entry['iteration']}: {entry['label']}"
                  + "".join(f"; {report['summary']}" for report in entry["reports"] if report.get("summary"))
                  for entry in described]
    table = "\n".join(lines) + "\n"
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(table)
    summary = {"experiment": experiment, "seed": seed, "rows": rows, "final": final, "iterations": described,
               "exports": exports}
    write_json(summary, out_json)
    if figures:
        # matplotlib (through .report): only in the summary step
        from .report import make_report_figures

        make_report_figures(summary, training_paths or {}, figures, COLUMNS, _cell)
    print(table)
    return rows
