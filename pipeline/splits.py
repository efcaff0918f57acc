"""The queries training may read, and a dev split held out of them for model selection.

From the prepared training qrels: optionally a seeded sample of ``train_queries`` judged queries (a
user with few labels, or a benchmark of one), then a seeded ``dev.fraction`` of them (at most
``dev.max_queries``) held out as the dev split. Training (mining, scoring, warm-up texts, distillation)
reads only the rest; every student is evaluated on dev and the best one becomes the run's final
student. With fewer than ``dev.min_queries`` dev queries there is no dev split: the report says why and
``splits.dev.fallback`` names the final student (:func:`pipeline.evaluation.select_final_student`). A test
query never enters the dev split. Torch-free.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .config import complete_section
from .data import QRELS_SCHEMA, read_provenance, read_table, write_json, write_table
from .labels import is_pseudo

log = logging.getLogger(__name__)


def judged_queries(qrels: pd.DataFrame) -> list[str]:
    return sorted(qrels.loc[qrels["relevance"] > 0, "query_id"].unique())


def choose_queries(judged: list[str], test_ids: set[str], seed: int, train_queries: int | None,
                   fraction: float, min_queries: int, max_queries: int,
                   labelled: str = "judged") -> tuple[list[str], list[str], str | None]:
    """(training query ids, dev query ids, why there is no dev split or None); deterministic in ``seed``.
    ``labelled`` names the labels' source in that reason ("teacher-labelled" where a teacher made them).

    The sample and the dev split use separate random streams, so the same sample of N training queries
    gets the same dev split whatever else changes."""
    sample = list(judged)
    if train_queries is not None and train_queries < len(judged):
        picks = np.random.default_rng([seed, 1]).choice(len(judged), size=train_queries, replace=False)
        sample = sorted(judged[i] for i in picks)
    # pseudo-queries (labels.pseudo_queries) are training data only: never dev queries, nor counted in its fraction
    real = [q for q in sample if not is_pseudo(q)]
    eligible = [q for q in real if q not in test_ids]
    wanted = min(max_queries, int(round(fraction * len(real))), len(eligible))
    if fraction <= 0:
        return sample, [], "splits.dev.fraction is 0: no dev split"
    if wanted < min_queries:
        pseudo = f" and {len(sample) - len(real)} pseudo-queries (never dev queries)" if len(real) < len(sample) else ""
        return sample, [], (f"{len(real)} {labelled} training queries{pseudo}: a dev fraction of {fraction} gives {wanted} "
                            f"dev queries, fewer than splits.dev.min_queries={min_queries}: no dev split")
    order = np.random.default_rng([seed, 2]).permutation(len(eligible))
    dev = sorted(eligible[i] for i in order[:wanted])
    held_out = set(dev)
    return [q for q in sample if q not in held_out], dev, None


def split_training_queries(qrels_path: str, test_qrels_path: str, out_training: str, out_dev: str, out_report: str,
                           seed: int, train_queries: int | None = None, dev: dict[str, Any] | None = None,
                           dev_qrels_path: str | None = None, teacher_qrels_path: str | None = None,
                           graded_dev_path: str | None = None) -> dict[str, Any]:
    """Write the training qrels, the dev qrels (possibly empty) and a report of the choice.

    ``dev`` is the config's ``splits.dev`` section; ``dev_qrels_path`` a prepared named split to use as
    dev instead of a fraction of the training queries. ``teacher_qrels_path`` (``labels.source:
    qrels+teacher``): a teacher's labels, whose queries join training unless they are judged training,
    dev or test queries; the dev split stays judged. ``graded_dev_path`` (``labels.dev_depth`` > 1): the
    dev queries' labels are read from there (the teacher's graded top passages) instead."""
    dev = complete_section("splits", {"dev": dev or {}})["dev"]
    qrels = read_table(qrels_path)
    test_ids = set(judged_queries(read_table(test_qrels_path)))
    judged = judged_queries(qrels)
    labels = read_provenance(qrels_path).get("labels", "qrels")  # or "teacher" (pipeline/labels.py)
    if dev_qrels_path:
        dev_qrels = read_table(dev_qrels_path)
        dev_ids = judged_queries(dev_qrels)
        overlap = sorted(set(dev_ids) & test_ids)
        if overlap:
            raise ValueError(f"{dev_qrels_path}: the dev split shares {len(overlap)} queries with the test split, "
                             f"e.g. {overlap[0]!r}")
        training, _, _ = choose_queries(judged, test_ids, seed, train_queries, 0.0, 0, 0)
        training = [q for q in training if q not in set(dev_ids)]
        reason = None if dev_ids else f"{dev_qrels_path}: no judged query: no dev split"
    else:
        training, dev_ids, reason = choose_queries(judged, test_ids, seed, train_queries, dev["fraction"],
                                                   dev["min_queries"], dev["max_queries"],
                                                   "teacher-labelled" if labels == "teacher" else "judged")
        dev_qrels = qrels[qrels["query_id"].isin(set(dev_ids))]
        if graded_dev_path:
            graded = read_table(graded_dev_path)
            dev_qrels = graded[graded["query_id"].isin(set(dev_ids))]
    provenance = {**read_provenance(qrels_path), "seed": seed, "train_queries": train_queries, "dev": dev}
    training_qrels = qrels[qrels["query_id"].isin(set(training))]
    teacher_labelled = []
    if teacher_qrels_path:
        teacher_qrels = read_table(teacher_qrels_path)
        teacher_qrels = teacher_qrels[~teacher_qrels["query_id"].isin(set(training) | set(dev_ids) | test_ids)]
        teacher_labelled = judged_queries(teacher_qrels)
        training_qrels = pd.concat([training_qrels, teacher_qrels], ignore_index=True)
        provenance["teacher_labels"] = read_provenance(teacher_qrels_path).get("teacher")
    write_table(training_qrels.reset_index(drop=True), out_training, {**provenance, "role": "training"}, QRELS_SCHEMA)
    write_table(dev_qrels.reset_index(drop=True), out_dev, {**provenance, "role": "dev"}, QRELS_SCHEMA)
    report = {"labels": labels,
              "judged_training_queries": len(judged), "training_queries": len(training), "dev_queries": len(dev_ids),
              "no_dev_reason": reason, "seed": seed, "train_queries": train_queries, "dev": dev,
              "dev_source": dev_qrels_path or "fraction of the training queries", "dev_query_ids": dev_ids,
              "teacher_labelled_queries": len(teacher_labelled),
              "dev_labels": "the teacher's graded top passages" if graded_dev_path and dev_ids else None}
    if reason:
        log.warning("%s", reason)
    write_json(report, out_report)
    return report
