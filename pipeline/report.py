"""What a run shows a person: the figures and the table of Snakemake's HTML report (``snakemake --report``).

The summary job draws them, from the run's summary and each iteration's ``training.json``:

- ``ndcg-per-iteration.svg``: the student's nDCG@10 on the test split after each iteration (and its dev
  figure, which chose the final student), against the teacher(s) and the baselines as horizontal lines;
- ``quality-speed.svg``: nDCG@10 against corpus encoding speed, one point per model that encodes (teachers,
  assistants, students, exports), its area by parameters: what a smaller student buys and costs;
- ``training-curves.svg``: every loss term of every iteration's training, per step, by phase;
- ``summary.html``: the summary table, as the report shows tables.

The runtime of each rule is in the report's own statistics (Snakemake's job metadata); the comparison of
several experiments is :mod:`pipeline.compare`.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .data import atomic_path

# terms a training history logs that are not losses
NOT_LOSSES = {"phase", "step", "epoch", "lr", "seconds"}
# how a metric is written on an axis
METRIC_NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100"}


def _pyplot():
    # matplotlib (slow to import): only where a plot is drawn
    import matplotlib

    matplotlib.use("Agg")  # no display: jobs run headless, on cluster nodes too
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, selectable, smaller
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip("."), bbox_inches="tight")
    _pyplot().close(figure)


def plot_ndcg_per_iteration(summary: dict[str, Any], path: str | Path, metric: str = "ndcg@10") -> None:
    """The students' test (and dev) ``metric`` per iteration; teachers and baselines as horizontal lines."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2))
    students = [r for r in summary["rows"] if r["model"] == "student" and not r.get("phase")
                and (r.get("backend") or "torch") == "torch"]
    students.sort(key=lambda r: r["iteration"])
    iterations = [r["iteration"] for r in students]
    axes.plot(iterations, [r[metric] for r in students], "o-", color="tab:blue", label="student (test)")
    dev = [(r["iteration"], r["dev"]) for r in students if r.get("dev") is not None]
    if dev:
        axes.plot(*zip(*dev), "s:", color="tab:blue", alpha=0.6, label="student (dev)")
    for row in summary["rows"]:  # a warm-up is a point of its own, between iteration k-1 and k
        if row["model"] == "student" and row.get("phase") and (row.get("backend") or "torch") == "torch":
            axes.plot(row["iteration"] - 0.5, row[metric], "^", color="tab:cyan")
            axes.annotate(row["phase"], (row["iteration"] - 0.5, row[metric]), textcoords="offset points",
                          xytext=(4, -10), fontsize=8)
    final = next((r for r in students if r.get("final")), None)
    if final:
        axes.plot(final["iteration"], final[metric], "*", color="gold", markersize=16, markeredgecolor="black",
                  label=f"final ({final['name']})")
    styles = {"teacher": ("tab:red", "--"), "baseline": ("tab:gray", "-."), "hybrid": ("tab:purple", ":")}
    for row in summary["rows"]:
        if row["model"] in styles:
            color, style = styles[row["model"]]
            axes.axhline(row[metric], color=color, linestyle=style, label=f"{row['model']}: {row['name']}")
    axes.set_xlabel("iteration (0: the student before training)")
    axes.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (test split; dev where marked)")
    axes.set_xticks(range(0, max(iterations, default=0) + 1))
    axes.set_title(f"{summary['experiment']}: the student per iteration")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    _save(figure, path)


def plot_quality_speed(rows: Sequence[dict[str, Any]], path: str | Path, title: str,
                       metric: str = "ndcg@10", label=lambda row: row["name"]) -> None:
    """``metric`` against corpus encoding speed (docs/s, log scale), one point per row that encodes; the
    area of a point grows with the model's parameters."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = {"teacher": "tab:red", "assistant": "tab:orange", "baseline": "tab:gray", "student": "tab:blue",
              "hybrid": "tab:purple"}
    points = [r for r in rows if r.get("encode_docs_per_s") and r.get(metric) is not None]
    largest = max((r.get("params") or 1 for r in points), default=1)
    for k, row in enumerate(sorted(points, key=lambda r: r["encode_docs_per_s"])):
        area = 40 + 400 * (row.get("params") or 0) / largest
        axes.scatter(row["encode_docs_per_s"], row[metric], s=area, alpha=0.7,
                     color=colors.get(row.get("model"), "tab:green"), edgecolors="black", linewidths=0.5)
        params = f"{row['params'] / 1e6:.1f}M" if row.get("params") else "?"
        axes.annotate(f"{label(row)} ({params})", (row["encode_docs_per_s"], row[metric]),
                      textcoords="offset points", xytext=(6, 4 if k % 2 == 0 else -12), fontsize=8)  # neighbours apart
    for role, color in colors.items():  # a legend of roles, not of points
        if any(r.get("model") == role for r in points):
            axes.scatter([], [], color=color, label=role, edgecolors="black", linewidths=0.5)
    axes.set_xscale("log")
    axes.set_xlabel("corpus encoding speed (passages/s, log scale)")
    axes.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (test split)")
    axes.set_title(title + " (point area: parameters)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="best")
    _save(figure, path)


def plot_training_curves(histories: dict[str, list[dict[str, Any]]], path: str | Path) -> None:
    """Each loss term of each training (``{label: history}``) against its step, a panel per training and
    phase."""
    plt = _pyplot()
    panels = [(label, phase, [h for h in history if h.get("phase") == phase])
              for label, history in histories.items()
              for phase in dict.fromkeys(h.get("phase") for h in history)]
    columns = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / columns) if panels else 1
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axes, (label, phase, entries) in zip(grid.flat, panels):
        terms = [k for k in dict.fromkeys(k for h in entries for k in h)
                 if k not in NOT_LOSSES and isinstance(entries[0].get(k, 0.0), (int, float))]
        for term in terms:
            points = [(h["step"], h[term]) for h in entries if isinstance(h.get(term), (int, float))]
            if points:
                axes.plot(*zip(*points), "o-" if len(points) < 3 else "-", label=term,
                          linewidth=2 if term == "loss" else 1)
        axes.set_title(f"{label}: {phase}", fontsize=9)
        axes.set_xlabel("optimiser step")
        axes.set_ylabel("loss (mean over the logging window)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(panels):]:
        axes.axis("off")
    figure.tight_layout()
    _save(figure, path)


def summary_html(summary: dict[str, Any], columns: Sequence[tuple[str, str]], cell) -> str:
    """The summary table as a small HTML page (the report shows it as it is); ``cell`` formats a value as
    summary.md does."""
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(row.get(key)))}{' (final)' if key == 'name' and row.get('final') else ''}</td>"
                                    for key, _ in columns) + "</tr>" for row in summary["rows"])
    final = summary.get("final") or {}
    note = (f"<p>Final student: <b>{html.escape(final['selected'])}</b> ({html.escape(final['reason'])}).</p>"
            if final else "")
    iterations = "".join(f"<li>it{e['iteration']}: {html.escape(e['label'])}</li>" for e in summary.get("iterations", []))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
            "body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right} th{background:#eee}</style></head><body>"
            f"<h3>{html.escape(summary['experiment'])}</h3><table><tr>{head}</tr>{body}</table>{note}"
            f"<ul>{iterations}</ul></body></html>")


def make_report_figures(summary: dict[str, Any], training_paths: dict[str, str], figures: dict[str, str],
                        columns: Sequence[tuple[str, str]], cell) -> None:
    """The run's table and figures for Snakemake's report (``figures``: paths of "table", "ndcg",
    "quality_speed", "training"); ``columns`` and ``cell`` are summary.md's."""
    with atomic_path(figures["table"]) as tmp:
        tmp.write_text(summary_html(summary, columns, cell))
    plot_ndcg_per_iteration(summary, figures["ndcg"])
    plot_quality_speed(summary["rows"], figures["quality_speed"], f"{summary['experiment']}: quality against speed")
    histories = {label: json.loads(Path(p).read_text())["history"] for label, p in training_paths.items()}
    plot_training_curves(histories, figures["training"])
