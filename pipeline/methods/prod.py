r"""PROD: progressive distillation, teacher by teacher and then on the queries the student still gets wrong.

A much better teacher often gives a worse student: the gap is too wide. PROD lets the student climb a
chain of teachers, weakest first (**teacher-progressive** stages), then trains it on the queries it
still confuses (**data-progressive** rounds). Each stage and each round is one iteration of the DAG
(mine with the newest student, score, train, evaluate), so every stage's student is evaluated and a
candidate for the final student (chosen on the dev split).

Every stage trains with the standard recipe (:mod:`pipeline.methods.standard`) against its teacher's
scores of the candidates the previous student mined; from the second stage on it adds learning without
forgetting toward a frozen copy of the student as the stage begins:

.. math::
    \mathcal{L} = w_{nll}\,\mathrm{NLL}(s) + w_{kd}\,T^2\,\mathrm{KL}(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T))
        + w_{lwf}\,T^2\,\mathrm{KL}(\mathrm{softmax}(s_{old}/T)\,\|\,\mathrm{softmax}(s/T))

A round retrieves with the current student over the training queries and keeps the *confusing* ones:

.. math::
    Q_{conf} = \{\, q : 2 \le \mathrm{rank}_s(p^+_q) \le r \ \wedge\ \arg\max_{d \in \mathrm{top}_r^s(q)} t(q, d) \in P_q \,\}

with :math:`p^+_q` the student's best-ranked judged positive, :math:`\mathrm{top}_r^s(q)` the student's
top ``r`` passages and :math:`P_q` the judged positives: the student ranks the positive just below the
top, the teacher ranks a positive first. The round trains on those queries only, each with the student's
``negatives`` highest-ranked non-positives (not a random sample), at a lower learning rate.

Settings (config section ``prod``):
    - ``stages``: ``[{teacher, iterations: 1, train: {}, mine: {}, warmup: {}}, ...]``, weakest teacher first;
      a stage's ``train``/``mine``/``warmup`` are deep-merged over the base config for its iterations.
    - ``w_lwf``: ``train.w_lwf`` of every stage after the first unless the stage sets its own (PROD: 1.0).
    - ``rounds``: ``count``, ``teacher`` (null: the last stage's), ``max_rank`` (PROD: 15), ``negatives``
      (PROD: 15), ``train`` (deep-merged over ``train`` in the rounds; PROD lowers the rate five-fold).
    The stages and rounds *are* the iterations: ``iterations`` must equal their number (a parse-time check).

References:
    - Lin et al., 2023, "PROD: Progressive Distillation for Dense Retrieval", WWW 2023
      (https://arxiv.org/abs/2209.13335); released code: microsoft/SimXNS, folder PROD.
    - Li & Hoiem, 2016, "Learning without Forgetting" (the regulariser toward the previous student).

Requirements:
    - teachers the workflow can score candidates with (bi-encoders, cross-encoders, BM25, fusions; made
      by the workflow, see ``models.<name>.finetune``) and judged training queries.

Inputs:
    +--------------------------------------+-------------------------------------------------+
    | Stage                                | Round                                           |
    +======================================+=================================================+
    | (query, [positive, k mined negatives])| confusing query, [positive, its top non-positives]|
    | scored by the stage's teacher        | scored by the strongest teacher                 |
    +--------------------------------------+-------------------------------------------------+

Relations:
    - A stage is :mod:`pipeline.methods.standard` with the stage's teacher; PROD's own loss weights are
      ``w_nll = 0.1, w_kd = 0.9, T = 4`` (``kd_in_batch`` with a bi-encoder teacher), which the preset
      replaces by the ones measured better on this scale's dev split (``configs/prod.yaml``).
    - Without rounds (``rounds.count: 0``) PROD is a teacher curriculum; with one stage and no rounds it is
      the standard recipe plus nothing.

Example:
    .. code-block:: yaml

        methods: [prod]
        iterations: 4
        prod:
          stages:
            - {teacher: minilm-l6}
            - {teacher: fusion, train: {teacher_scale: calibrated}}
          rounds: {count: 2, max_rank: 15, negatives: 15}
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pandas as pd

from ..data import CANDIDATES_SCHEMA, load_qrels, read_provenance, read_table, write_json, write_table
from .base import Needs, PlanView, register
from .standard import Standard

log = logging.getLogger(__name__)


def prod_iterations(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per iteration PROD's config makes: ``{"kind": "stage"|"round", "number", "of", "teacher",
    "override"}``, stages first."""
    prod = config.get("prod") or {}
    stages = prod.get("stages") or []
    entries = []
    for number, stage in enumerate(stages, start=1):
        override: dict[str, Any] = {"teacher": stage["teacher"]}
        override.update({section: stage[section] for section in ("train", "mine", "warmup") if stage.get(section)})
        if number > 1 and "w_lwf" not in stage.get("train", {}):
            override["train"] = {**override.get("train", {}), "w_lwf": prod.get("w_lwf", 1.0)}
        entries += [{"kind": "stage", "number": number, "of": len(stages), "teacher": stage["teacher"],
                     "override": override} for _ in range(stage.get("iterations", 1))]
    rounds = prod.get("rounds") or {}
    if stages and rounds.get("count", 0):
        teacher = rounds.get("teacher") or stages[-1]["teacher"]
        window = [0, max(rounds["max_rank"] - 1, rounds["negatives"])]
        override = {"teacher": teacher, "mine": {"miner": "student", "window": window},
                    "train": {"group_size": rounds["negatives"] + 1, **rounds.get("train", {})}}
        entries += [{"kind": "round", "number": number, "of": rounds["count"], "teacher": teacher,
                     "override": override} for number in range(1, rounds["count"] + 1)]
    return entries


@register
class Prod(Standard):
    """The standard recipe on PROD's schedule; its rounds train on the confusing queries only."""

    name = "prod"
    rules = "rules/methods/prod.smk"
    steps = {"prod_confusing": "select_confusing"}

    # -- parse time ------------------------------------------------------------------------------

    def schedule(self, config: dict[str, Any]) -> list[dict[str, Any]] | None:
        return [entry["override"] for entry in prod_iterations(config)]

    @staticmethod
    def entry(plan: PlanView, it: int) -> dict[str, Any] | None:
        entries = prod_iterations(plan.config)
        return entries[it - 1] if 0 < it <= len(entries) else None

    def check(self, plan: PlanView, it: int) -> list[str]:
        problems = super().check(plan, it)
        if it != 1:  # the config-wide checks, once
            return problems
        prod, models = plan.config["prod"], plan.config["models"]
        if "prod" not in plan.config["methods"]:
            problems.append("prod: list prod in the base config's methods (its stages set every iteration)")
        stages = prod.get("stages")
        if not stages:
            return problems + ["prod.stages: list at least one stage teacher, weakest first (e.g. [{teacher: minilm-l6}])"]
        for k, stage in enumerate(stages):
            if stage["teacher"] not in models:
                problems.append(f"prod.stages[{k}].teacher: unknown model {stage['teacher']!r}; models are {sorted(models)}")
        rounds = prod["rounds"]
        if rounds["teacher"] is not None and rounds["teacher"] not in models:
            problems.append(f"prod.rounds.teacher: unknown model {rounds['teacher']!r}; models are {sorted(models)}")
        planned = len(prod_iterations(plan.config))
        if plan.config["iterations"] != planned:
            problems.append(f"prod: {len(stages)} stage(s) of {[s['iterations'] for s in stages]} iteration(s) and "
                            f"{rounds['count']} round(s) make {planned} iterations; set iterations: {planned} "
                            f"(got {plan.config['iterations']})")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        recipe, entry = super().plan(view, it), self.entry(view, it)
        if entry is None:
            return recipe
        what = "confusing queries of the student" if entry["kind"] == "round" else "mined candidates"
        description = f"PROD {entry['kind']} {entry['number']} of {entry['of']}: teacher {entry['teacher']} on {what}"
        if entry["kind"] != "round":
            return dataclasses.replace(recipe, description=description)
        return dataclasses.replace(recipe, description=description,
                                   training_candidates=f"{view.root}/it{it}/confusing.parquet",
                                   reports=[*recipe.reports, f"{view.root}/it{it}/confusing.json"])


def confusing_queries(candidates: pd.DataFrame, student_scores: pd.DataFrame, teacher_scores: pd.DataFrame,
                      qrels: dict[str, dict[str, int]], max_rank: int, negatives: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PROD's data-progressive selection.

    ``candidates`` are the student's top non-positives of each training query (ranks from 0), the score
    frames hold the student's and the teacher's scores of those and of every judged positive. Returns the
    candidates to train on (each confusing query's ``negatives`` best-ranked non-positives) and one row per
    query: the student's rank of its best positive (1-based), whether the teacher ranks a positive first
    among the student's top ``max_rank``, and whether the query is kept.
    """
    student = dict(zip(zip(student_scores.query_id, student_scores.doc_id), student_scores.score))
    teacher = dict(zip(zip(teacher_scores.query_id, teacher_scores.doc_id), teacher_scores.score))
    rows = []
    for query_id, group in candidates.groupby("query_id", sort=True):
        positives = {d for d, rel in qrels.get(query_id, {}).items() if rel > 0}
        docs = list(positives) + [d for d in group["doc_id"] if d not in positives]
        missing = [d for d in docs if (query_id, d) not in student or (query_id, d) not in teacher]
        if missing:
            raise KeyError(f"query {query_id!r}: no student or teacher score for passage {missing[0]!r}")
        # the student's ranking of its positives among its own top non-positives; ties go against the positive
        ranked = sorted(docs, key=lambda d: (-student[(query_id, d)], d in positives))
        student_rank = next(i for i, d in enumerate(ranked, start=1) if d in positives)
        top = ranked[:max_rank]
        teacher_first = max(top, key=lambda d: (teacher[(query_id, d)], d not in positives)) in positives
        rows.append((query_id, student_rank, teacher_first, 2 <= student_rank <= max_rank and teacher_first))
    per_query = pd.DataFrame(rows, columns=["query_id", "student_rank", "teacher_ranks_positive_first", "confusing"])
    kept = set(per_query.loc[per_query["confusing"], "query_id"])
    selected = candidates[candidates["query_id"].isin(kept) & (candidates["rank"] < negatives)]
    return selected.sort_values(["query_id", "rank"]).reset_index(drop=True), per_query


def select_confusing(candidates_path: str, student_scores_path: str, teacher_scores_path: str, qrels_path: str,
                     out_path: str, report_path: str, max_rank: int, negatives: int,
                     provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``prod_confusing`` step: write the confusing queries' candidates and a report of the selection."""
    candidates = read_table(candidates_path)
    window = read_provenance(candidates_path).get("window")
    if window and (window[0] != 0 or window[1] < max(max_rank - 1, negatives)):
        raise ValueError(f"{candidates_path}: mined window {window} must start at 0 and hold the student's top "
                         f"{max(max_rank - 1, negatives)} non-positives")
    student_scores, teacher_scores = read_table(student_scores_path), read_table(teacher_scores_path)
    selected, per_query = confusing_queries(candidates, student_scores, teacher_scores, load_qrels(qrels_path),
                                            max_rank, negatives)
    student_name = student_scores["scorer"].iloc[0] if len(student_scores) else None
    teacher_name = teacher_scores["scorer"].iloc[0] if len(teacher_scores) else None
    counts = {
        "queries": len(per_query),
        "selected": int(per_query["confusing"].sum()),
        "student_ranks_positive_first": int((per_query["student_rank"] == 1).sum()),
        "student_rank_beyond_max_rank": int((per_query["student_rank"] > max_rank).sum()),
        "teacher_disagrees": int(((per_query["student_rank"].between(2, max_rank)) &
                                  ~per_query["teacher_ranks_positive_first"]).sum()),
    }
    report = {**counts, "max_rank": max_rank, "negatives": negatives, "student": student_name, "teacher": teacher_name,
              "selected_query_ids": per_query.loc[per_query["confusing"], "query_id"].tolist(),
              "summary": f"{counts['selected']} of {counts['queries']} training queries confusing (student ranks "
                         f"the positive 2..{max_rank}, {teacher_name} ranks a positive first); "
                         f"{counts['student_ranks_positive_first']} already first, "
                         f"{counts['teacher_disagrees']} where {teacher_name} disagrees",
              **(provenance or {})}
    meta = {"selection": "prod-confusing", "selected_from": candidates_path, "max_rank": max_rank,
            "negatives": negatives, "selected": counts["selected"], **(provenance or {})}
    write_table(selected, out_path, meta, CANDIDATES_SCHEMA)
    write_json(report, report_path)
    log.info(report["summary"])
    return report
