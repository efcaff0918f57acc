r"""MTA4DPR: several teaching assistants between the teacher and the student, iteration by iteration.

A strong teacher is far from a small student; assistants of intermediate strength bridge the gap. Each
batch learns from the teacher and from one assistant: the one whose distribution over the batch's
candidates is closest to the teacher's. After an iteration the student, if it beats the worst assistant
on the dev split, replaces it, and the next iteration trains on harder data. With :math:`s` the student's
scores of a query's candidates, :math:`t` the teacher's and :math:`a^*` the selected assistant's:

.. math::
    \mathcal{L} = \alpha\,\mathrm{NLL}(s) + \beta\,T^2\,\mathrm{KL}(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T))
        + \gamma\,T^2\,\mathrm{KL}(\mathrm{softmax}(a^*/T)\,\|\,\mathrm{softmax}(s/T))

[ours] :math:`\alpha, \beta` are the recipe's ``train.w_nll`` and ``train.w_kd`` (the first two terms are
the recipe's own, :mod:`pipeline.methods.standard`), :math:`\gamma` is ``w_assistant``.

[sec] **Selection**, per batch, over the pool :math:`A` (every distance a batch mean over its queries, with
:math:`\pi^x = \mathrm{softmax}(x/T)` over a query's group and :math:`r^x_j` candidate j's rank by x):

.. math::
    a^* = \arg\min_{a \in A} d(t, a), \qquad
    d_{KL} = \mathrm{KL}(\pi^t \,\|\, \pi^a), \qquad
    d_{footrule} = \textstyle\sum_j |r^t_j - r^a_j|, \qquad
    d_{rbo} = 1 - \mathrm{RBO}_{ext}(r^t, r^a; p)

with Webber et al.'s extrapolated rank-biased overlap of two rankings of the same G candidates,
:math:`\mathrm{RBO}_{ext} = \frac{X_G}{G} p^G + \frac{1-p}{p} \sum_{d=1}^{G} \frac{X_d}{d} p^d` (:math:`X_d`:
the overlap of the two top-d sets; 1 for equal rankings). ``selection: fused`` distils from the *fused
assistant* :math:`\bar\pi = \frac{1}{|A|}\sum_a \pi^a` instead (its KL against the student's
:math:`\mathrm{softmax}(s/T)`); ``all`` averages every assistant's KL term. Ties go to the first assistant
of the pool. The history logs each assistant's share of the batches that chose it
(``mta4dpr_selected:<name>``) and its mean distance to the teacher (``mta4dpr_distance:<name>``).

[sec] **Iterations.** Pool of iteration 1: ``assistants``. From iteration k = 2 on, with
``replace_worst``: the previous student replaces the pool's worst assistant by the dev metric
(``splits.dev.metric``) when it is better there, else the pool stays (no dev split: it stays, and the
report says why). **Harder data**: training queries whose judged positive the previous student ranks
below ``hard_queries.top_k`` among the mined candidates weigh ``hard_queries.weight`` in the loss.
[ours] **Negatives**: each query's mined non-positives reranked by reciprocal rank fusion of the pool's
scores, :math:`\mathrm{RRF}(d) = \sum_{a \in A} 1 / (k + r^a_d)`, its best ``negatives.keep`` kept (the
fused candidate list). The DAG is static: every iteration scores every assistant that may be in its pool
(the configured ones and earlier students), and the rule ``mta4dpr_select`` writes the pool, the hard
queries and the reranked negatives as an artifact (``it<k>/mta4dpr/``) that training reads.

References:
    - Lu, Xun, Tang, "MTA4DPR: Multi-Teaching-Assistants Based Iterative Knowledge Distillation for
      Dense Passage Retrieval", EMNLP 2024 (no public code; [sec] marks what secondary sources report).
    - Webber, Moffat, Zobel, 2010, "A Similarity Measure for Indefinite Rankings" (rank-biased overlap).
    - Diaconis & Graham, 1977, "Spearman's Footrule as a Measure of Disarray".
    - Cormack, Clarke, Büttcher, 2009, "Reciprocal Rank Fusion Outperforms Condorcet and Individual Rank
      Learning Methods".
    - Mirzadeh et al., 2020, "Improved Knowledge Distillation via Teacher Assistant" (one assistant).

Requirements:
    - a recipe before it in ``methods`` (``standard``, ``lead``, ``onmkd``): it adds to the recipe's
      ``distill`` phase; PROD's rounds select their own training candidates and cannot be combined;
    - ``assistants``: configured models the score rule can score with (bi-encoders, cross-encoders, BM25,
      fusions); the teacher is not its own assistant;
    - a dev split for the replacement (:mod:`pipeline.splits`).

Inputs:
    +------------------------------------+------------------------------------------------------+
    | Batch                              | Scores                                               |
    +====================================+======================================================+
    | (query, [positive, k negatives]),  | the teacher's and every pool assistant's cached      |
    | negatives reranked by RRF          | scores of each pair, on the student's scale          |
    +------------------------------------+------------------------------------------------------+

Relations:
    - With ``w_assistant = 0``, ``hard_queries.weight = 1`` and ``negatives.keep: null`` it is the recipe.
    - ``selection: fused`` with one assistant is teacher-assistant distillation (Mirzadeh et al.) on top of
      the teacher's KL; the standard recipe's ``teacher_weights`` mix fixed teachers, MTA4DPR picks one per batch.
    - Composes with ADAM (``methods: [standard, mta4dpr, adam]``: dark examples are in every
      distribution; the hard-query and self-paced weights multiply) and with LEAD.

Example:
    .. code-block:: yaml

        methods: [standard, mta4dpr]
        teacher: fusion
        mta4dpr:
          assistants: [bm25, minilm-l6, fusion-even]
          selection: kl               # kl | footrule | rbo | fused | all
          w_assistant: 1.0
          replace_worst: true
          hard_queries: {top_k: 10, weight: 2.0}
          negatives: {keep: 20, rrf_k: 60}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from ..config import complete_section
from ..data import load_qrels, read_table, write_json, write_table
from ..ranking import footrule, positive_ranks, rank_biased_overlap, rrf_negatives
from .base import LossTerm, Method, Needs, PlanView, TrainingRun, register

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..losses import Batch, StudentScores

log = logging.getLogger(__name__)

SELECTIONS = ("kl", "footrule", "rbo", "fused", "all")


# ------------------------------------------------------------------------------------------------
# selection: distances between the teacher's and an assistant's view of each query's group
# ------------------------------------------------------------------------------------------------

def assistant_distances(teacher: "torch.Tensor", assistants: dict[str, "torch.Tensor"], measure: str,
                        temperature: float, persistence: float = 0.9) -> dict[str, float]:
    """Each assistant's batch-mean distance to the teacher over the batch's groups (``[B, G]`` scores)."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..losses import kl_divergence

    distances = {}
    for name, scores in assistants.items():
        if measure == "kl":
            # T² is the same for every assistant: the plain KL ranks them alike
            per_query = kl_divergence(teacher, scores, temperature) / temperature ** 2
        elif measure == "footrule":
            per_query = footrule(teacher, scores)
        elif measure == "rbo":
            per_query = 1.0 - rank_biased_overlap(teacher, scores, persistence)
        else:
            raise ValueError(f"mta4dpr.selection: no distance for {measure!r}")
        distances[name] = float(per_query.mean())
    return distances


def fused_log_distribution(assistants: Sequence["torch.Tensor"], temperature: float) -> "torch.Tensor":
    """``[B, G]``: the log of the fused assistant, the mean of the assistants' ``softmax(a/T)``."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    probabilities = torch.stack([torch.softmax(a.float() / temperature, dim=-1) for a in assistants])
    return probabilities.mean(0).log()


class AssistantKL:
    r"""``T²·KL(softmax(a*/T) ‖ softmax(s/T))`` per query, ``a*`` the assistant of the pool chosen for the
    batch by ``selection`` (``fused``: the mean distribution; ``all``: the mean of every assistant's KL).
    After each call, :attr:`last_parts` holds which assistant was chosen and each one's distance (logged
    with the loss parts)."""

    def __init__(self, teacher: str, pool: Sequence[str], selection: str, temperature: float,
                 persistence: float = 0.9):
        if not pool:
            raise ValueError("mta4dpr: the pool of assistants is empty")
        if selection not in SELECTIONS:
            raise ValueError(f"mta4dpr.selection: {selection!r} is not one of {list(SELECTIONS)}")
        self.teacher, self.pool, self.selection = teacher, list(pool), selection
        self.temperature, self.persistence = temperature, persistence
        self.last_parts: dict[str, float] = {}

    def select(self, batch: "Batch") -> tuple[str, dict[str, float]]:
        """The pool's assistant closest to the teacher on this batch, and every assistant's distance."""
        distances = assistant_distances(batch.teacher_scores[self.teacher],
                                        {name: batch.teacher_scores[name] for name in self.pool},
                                        self.selection, self.temperature, self.persistence)
        chosen = min(self.pool, key=lambda name: distances[name])  # min keeps the first on a tie
        return chosen, distances

    def __call__(self, out: "StudentScores", batch: "Batch") -> "torch.Tensor":
        # torch: not at parse time (the Snakefile imports this module)
        import torch

        from ..losses import kl_divergence

        student, t = out.group_scores, self.temperature
        if self.selection == "fused":
            fused = fused_log_distribution([batch.teacher_scores[name] for name in self.pool], t)
            self.last_parts = {}
            return kl_divergence(t * fused, student, t)  # log_softmax(log π̄) = log π̄
        if self.selection == "all":
            self.last_parts = {}
            return torch.stack([kl_divergence(batch.teacher_scores[name], student, t) for name in self.pool]).mean(0)
        chosen, distances = self.select(batch)
        self.last_parts = {**{f"mta4dpr_selected:{name}": float(name == chosen) for name in self.pool},
                           **{f"mta4dpr_distance:{name}": value for name, value in distances.items()}}
        return kl_divergence(batch.teacher_scores[chosen], student, t)


# ------------------------------------------------------------------------------------------------
# between iterations: the pool, the harder queries, the fused negatives (the rule mta4dpr_select)
# ------------------------------------------------------------------------------------------------

def next_pool(pool: Sequence[str], dev: dict[str, float | None], student: str) -> tuple[list[str], dict[str, Any]]:
    """The pool after an iteration: ``student`` replaces the pool's worst assistant by ``dev`` (the first
    of equals) when it is strictly better there. Returns the pool and what was decided."""
    if any(dev.get(name) is None for name in [*pool, student]):
        return list(pool), {"replaced": None, "reason": "no dev figures (no dev split): the pool stays"}
    worst = min(pool, key=lambda name: dev[name])
    decision = {"student": student, "student_dev": dev[student], "worst": worst, "worst_dev": dev[worst]}
    if dev[student] > dev[worst]:
        return [student if name == worst else name for name in pool], {
            **decision, "replaced": worst, "reason": f"{student} ({dev[student]:.4f}) beats {worst} ({dev[worst]:.4f}) on dev"}
    return list(pool), {**decision, "replaced": None,
                        "reason": f"{student} ({dev[student]:.4f}) does not beat the worst, {worst} ({dev[worst]:.4f}), on dev"}


def select_training_data(candidates_path: str, qrels_path: str, score_paths: dict[str, str], out_path: str,
                         report_path: str, settings: dict[str, Any], iteration: int,
                         previous_pool_path: str | None = None, dev_metric_paths: dict[str, str] | None = None,
                         student: str | None = None, student_scores_path: str | None = None,
                         metric: str = "ndcg@10", provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``mta4dpr_select`` step of iteration ``iteration``: decide its pool (the previous pool, the
    previous ``student`` in place of the worst assistant when it beats it on dev), its hard queries (from
    ``student_scores_path``) and its negatives (RRF of the pool's ``score_paths``); write the candidates to
    train on, with that decision in their provenance, and a report."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..training.sampling import synthetic_rows

    settings = complete_section("mta4dpr", settings)
    assistants = list(settings["assistants"])
    pool, decision = assistants, {"replaced": None, "reason": "the configured assistants"}
    if previous_pool_path:
        previous = json.loads(Path(previous_pool_path).read_text())
        if previous["assistants"] != assistants:
            decision["reason"] = "the configured assistants (they differ from the previous iteration's)"
        elif settings["replace_worst"] and student:
            dev = {name: json.loads(Path(path).read_text()).get(metric) for name, path in (dev_metric_paths or {}).items()}
            pool, decision = next_pool(previous["pool"], dev, student)
        else:
            pool, decision = list(previous["pool"]), {"replaced": None, "reason": "the previous pool (no replacement)"}
    missing = [name for name in pool if name not in score_paths]
    if missing:
        raise ValueError(f"mta4dpr: no scores of pool members {missing} (scores: {sorted(score_paths)})")

    candidates, qrels = read_table(candidates_path), load_qrels(qrels_path)
    made = synthetic_rows(candidates)
    negatives = settings["negatives"]
    mined = rrf_negatives(candidates[~made], {name: read_table(score_paths[name]) for name in pool},
                          negatives["keep"], negatives["rrf_k"])
    selected = pd.concat([mined, candidates[made]], ignore_index=True) if made.any() else mined

    hard = settings["hard_queries"]
    hard_ids: list[str] = []
    ranks_of: dict[str, int] = {}
    if student_scores_path and hard["weight"] != 1.0:
        ranks_of = positive_ranks(candidates[~made], read_table(student_scores_path), qrels)
        hard_ids = sorted(q for q, rank in ranks_of.items() if rank > hard["top_k"])
    choice = {"pool": pool, "hard_queries": hard_ids, "hard_weight": hard["weight"]}
    queries = candidates["query_id"].nunique()
    kept = (f"top {negatives['keep']} of each query's mined negatives by RRF of the pool" if negatives["keep"]
            else "every mined negative")
    summary = (f"pool {pool}: {decision['reason']}; "
               + (f"{len(hard_ids)} of {len(ranks_of)} queries hard for {student} (positive below top "
                  f"{hard['top_k']}, weight {hard['weight']:g}); " if ranks_of else "")
               + f"{kept} ({len(mined)} rows for {queries} queries)")
    report = {"iteration": iteration, "assistants": assistants, **choice, "decision": decision,
              "student": student, "negatives": negatives, "rows": len(selected), "summary": summary,
              **(provenance or {})}
    meta = {"selection": "mta4dpr", "selected_from": candidates_path, "mta4dpr": choice, **(provenance or {})}
    write_table(selected, out_path, meta)
    write_json(report, report_path)
    log.info(summary)
    return report


# ------------------------------------------------------------------------------------------------
# the method
# ------------------------------------------------------------------------------------------------

def possible_pool(plan: PlanView, it: int) -> list[str]:
    """Every model that may be in iteration ``it``'s pool: its configured assistants and the earlier
    students that could have replaced one (students after an iteration that replaces)."""
    names = list(plan.iteration(it)["mta4dpr"]["assistants"])
    later = it
    while carries_pool(plan, later):
        if plan.iteration(later)["mta4dpr"]["replace_worst"]:
            names.append(f"student-it{later - 1}")
        later -= 1
    return names


def uses_mta4dpr(plan: PlanView, it: int) -> bool:
    return "mta4dpr" in plan.iteration(it)["methods"]


def carries_pool(plan: PlanView, it: int) -> bool:
    """Whether iteration ``it`` starts from the previous iteration's pool (both use MTA4DPR with the same
    configured assistants), rather than from its configured assistants."""
    return it > 1 and uses_mta4dpr(plan, it - 1) and \
        plan.iteration(it - 1)["mta4dpr"]["assistants"] == plan.iteration(it)["mta4dpr"]["assistants"]


def dev_members(plan: PlanView, it: int) -> list[str]:
    """The models whose dev figures iteration ``it``'s pool decision reads (the previous iteration's
    possible pool and the previous student), or none when it does not replace."""
    if not (carries_pool(plan, it) and plan.iteration(it)["mta4dpr"]["replace_worst"]):
        return []
    return possible_pool(plan, it - 1) + [f"student-it{it - 1}"]


def select_inputs(plan: PlanView, it: int | str) -> dict[str, Any]:
    """The inputs of iteration ``it``'s ``mta4dpr_select`` job (named like its arguments)."""
    it = int(it)
    settings = plan.iteration(it)["mta4dpr"]
    inputs: dict[str, Any] = {
        "candidates": plan.scored_candidates(it),
        "qrels_train": plan.data["qrels_train"],
        "scores": [plan.scores_path(it, name) for name in possible_pool(plan, it)],
    }
    if carries_pool(plan, it):
        inputs["previous_pool"] = f"{plan.root}/it{it - 1}/mta4dpr/pool.json"
    if dev_members(plan, it):
        inputs["dev"] = [plan.metrics(name, "dev") for name in dev_members(plan, it)]
    if it > 1 and settings["hard_queries"]["weight"] != 1.0:
        inputs["student_scores"] = plan.scores_path(it, f"student-it{it - 1}")
    return inputs


def select_args(plan: PlanView, it: int | str, input) -> dict[str, Any]:
    """The keyword arguments of :func:`select_training_data` for iteration ``it``'s job."""
    it = int(it)
    return dict(candidates_path=input.candidates, qrels_path=input.qrels_train,
                score_paths=dict(zip(possible_pool(plan, it), input.scores)),
                settings=plan.iteration(it)["mta4dpr"], iteration=it,
                previous_pool_path=input.get("previous_pool"), dev_metric_paths=dict(zip(dev_members(plan, it), input.get("dev", []))),
                student=f"student-it{it - 1}" if it > 1 else None, student_scores_path=input.get("student_scores"),
                metric=plan.config["splits"]["dev"]["metric"])


@register
class Mta4dpr(Method):
    """Adds the selected assistant's KL to a recipe's ``distill`` phase, trains it on MTA4DPR's selection
    of the candidates and weighs the previous student's hard queries."""

    name = "mta4dpr"
    sections = ("mta4dpr", "teacher")
    rules = "rules/methods/mta4dpr.smk"
    steps = {"mta4dpr_select": "select_training_data"}

    # -- parse time ------------------------------------------------------------------------------

    def check(self, plan: PlanView, it: int) -> list[str]:
        c = plan.iteration(it)
        settings, models = c["mta4dpr"], c["models"]
        problems = []
        if not settings["assistants"]:
            problems.append("mta4dpr.assistants: list at least one assistant, a name from models "
                            "(e.g. [bm25, minilm-l6])")
        for k, name in enumerate(settings["assistants"]):
            if name not in models:
                problems.append(f"mta4dpr.assistants[{k}]: {name!r} is not a configured model; models are {sorted(models)}")
            elif name == c["teacher"]:
                problems.append(f"mta4dpr.assistants[{k}]: {name!r} is the teacher; an assistant sits between the "
                                "teacher and the student")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        c = view.iteration(it)
        settings, pool = c["mta4dpr"], possible_pool(view, it)
        may_join = [n for n in pool if n not in settings["assistants"]]
        return Needs(scorers=pool, training_candidates=f"{view.root}/it{it}/mta4dpr/candidates.parquet",
                     reports=[f"{view.root}/it{it}/mta4dpr/pool.json"],
                     description=(f"MTA4DPR: teacher {c['teacher']}, assistants {settings['assistants']}"
                                  + (f" (or {', '.join(may_join)} in place of the worst)" if may_join else "")
                                  + f", selection {settings['selection']}"))

    # -- training time ---------------------------------------------------------------------------

    @staticmethod
    def choice(run: "TrainingRun") -> dict[str, Any]:
        choice = run.candidates_provenance.get("mta4dpr")
        if choice is None:
            raise ValueError("mta4dpr: the training candidates carry no pool; they must come from the "
                             "mta4dpr_select step (rules/methods/mta4dpr.smk)")
        return choice

    def loss_terms(self, run: "TrainingRun", phase: str) -> dict[str, tuple[float, LossTerm]]:
        if phase != "distill":
            return {}
        settings = run.config["mta4dpr"]
        temperature = settings["temperature"] or run.train["temperature"]
        term = AssistantKL(run.config["teacher"], self.choice(run)["pool"], settings["selection"], temperature,
                           settings["rbo_persistence"])
        return {"assistant_kl": (settings["w_assistant"], term)}

    def instance_weights(self, run: "TrainingRun", phase: str):
        choice = self.choice(run) if phase == "distill" else {}
        hard, weight = set(choice.get("hard_queries", [])), choice.get("hard_weight", 1.0)
        if not hard or weight == 1.0:
            return None
        # torch: not at parse time (the Snakefile imports this module)
        import torch

        def weights(batch, step):
            return torch.tensor([weight if q in hard else 1.0 for q in batch.query_ids])

        return weights
