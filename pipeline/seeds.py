"""One experiment over several seeds (``seeds``): each model's mean, standard deviation and per-seed figures.

The workflow runs the experiment once per seed and shares what a seed does not change (pipeline.plan);
each seed's run chooses its own final student on the dev split and writes its own ``summary.json``. This
step reads them all and writes ``seeds.md`` and ``seeds.json`` beside the first seed's summary: a row per
model every seed evaluated (the teachers, shared, have the same figure at every seed, and sd 0), and a row
``final`` with each seed's final student, whichever it is. The standard deviation is the sample one (n - 1),
None with one seed. ``python -m pipeline.compare`` tests two experiments' seeds against each other.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .data import atomic_path, write_json
from .evaluation import _cell

#: the metrics the table gives per seed (the test split's; the summary's columns)
METRICS = ("ndcg@10", "mrr@10", "recall@100")
TITLES = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100"}


def spread(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (None for one value)."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None}


def seed_rows(summaries: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per model every seed's summary has (in the first seed's order), then ``final``: for each
    metric the per-seed values (in seed order), their mean and sd."""
    seeds = list(summaries)
    by_seed = {seed: {row["name"]: row for row in summary["rows"]} for seed, summary in summaries.items()}
    finals = {}
    for seed, summary in summaries.items():
        if not summary.get("final"):
            raise ValueError(f"seed {seed}: its summary names no final student")
        finals[seed] = by_seed[seed][summary["final"]["selected"]]
    first = summaries[seeds[0]]["rows"]
    named = [(row["name"], row["model"], {seed: by_seed[seed][row["name"]] for seed in seeds})
             for row in first if all(row["name"] in by_seed[seed] for seed in seeds)]
    named.append(("final", "final", finals))
    rows = []
    for name, model, per_seed in named:
        row: dict[str, Any] = {"name": name, "model": model, "seeds": seeds}
        if name == "final":
            row["selected"] = {str(seed): per_seed[seed]["name"] for seed in seeds}
        for metric in METRICS:
            values = [per_seed[seed].get(metric) for seed in seeds]
            if any(v is None for v in values):
                continue
            row[metric] = {"per_seed": {str(seed): v for seed, v in zip(seeds, values)}, **spread(values)}
        rows.append(row)
    return rows


def summarize_seeds(seeds: list[int], summary_paths: list[str], out_markdown: str, out_json: str, experiment: str,
                    shared_from_seed: int | None = None, splits_per_seed: bool = False) -> list[dict[str, Any]]:
    """``summary_paths``: each seed's ``summary.json``, in the order of ``seeds`` (the first seed's run is the
    experiment's). (Two lists, not a mapping: a job's arguments are JSON with sorted keys, "21" before "7".)"""
    if len(seeds) != len(summary_paths):
        raise ValueError(f"{len(seeds)} seeds and {len(summary_paths)} summaries")
    summaries = {int(seed): json.loads(Path(path).read_text()) for seed, path in zip(seeds, summary_paths)}
    rows = seed_rows(summaries)
    seeds = list(summaries)
    header = ["model", "name"] + [f"{TITLES[m]} mean (sd)" for m in METRICS] + [f"nDCG@10 at seed {s}" for s in seeds]
    lines = [f"# {experiment}: {len(seeds)} seeds ({', '.join(map(str, seeds))})", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [row["model"], row["name"]]
        for metric in METRICS:
            figure = row.get(metric)
            cells.append("-" if figure is None else f"{_cell(figure['mean'])} ({_cell(figure['sd'])})")
        ndcg = row.get("ndcg@10", {}).get("per_seed", {})
        cells += [_cell(ndcg.get(str(s))) + (f" ({row['selected'][str(s)]})" if row["name"] == "final" else "")
                  for s in seeds]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Each seed's run chose its final student on its dev split (row `final`); sd is the sample "
              "standard deviation over the seeds."]
    if shared_from_seed is not None and splits_per_seed:
        lines.append(f"The data and the teachers' encodings are shared, made at seed {shared_from_seed}; each seed "
                     "drew its own training sample and dev split (splits.per_seed): the seeds vary the split and "
                     "the students' training.")
    elif shared_from_seed is not None:
        lines.append(f"The data, the dev split and the teachers' work are shared, drawn and made at seed "
                     f"{shared_from_seed}: the seeds vary the students' training only.")
    table = "\n".join(lines) + "\n"
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(table)
    write_json({"experiment": experiment, "seeds": seeds, "shared_from_seed": shared_from_seed,
                "splits_per_seed": splits_per_seed, "rows": rows,
                "summaries": dict(zip(map(str, seeds), summary_paths))}, out_json)
    print(table)
    return rows
