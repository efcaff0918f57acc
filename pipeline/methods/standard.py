r"""The standard recipe: a label-free warm-up, then distillation on mined candidates.

Every other method starts from this one. Per iteration, the student first (optionally) warms up on the
teacher's embeddings without labels, then trains on each training query's group
``[p+, n_1 .. n_k]`` (mined negatives) with in-batch negatives:

.. math::
    \mathcal{L} = w_{nll}\,\mathrm{NLL}(s)
        + \sum_{t} \omega_t \big(w_{kd}\,T^2\,\mathrm{KL}(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T))
        + w_{mse}\,\mathrm{MarginMSE}(s, t)\big)
        + w_{lwf}\,T^2\,\mathrm{KL}(\mathrm{softmax}(s_{old}/T)\,\|\,\mathrm{softmax}(s/T))
        + w_{emb}\,\frac{1}{1+G}\sum_{x \in \{q, p^+, n_1 .. n_k\}} \lVert E_S(x) - E_W(x) \rVert^2

with ``s`` the student's scaled similarities, ``t`` each teacher's scores on the student's scale
(:func:`pipeline.training.teachers.teacher_scale`) and ``ω_t`` the ``teacher_weights`` (1 each by
default) and ``s_old`` the scores of a frozen copy of the student as it was when distillation began
(after the warm-up, or the previous iteration's student; learning without forgetting,
:mod:`pipeline.training.regularisers`); ``E_W`` the warm-up teacher's embeddings (``warmup.teacher``, else
the teacher: the space the warm-up pulled the student into, kept through distillation with
``w_embedding_mse``; :class:`pipeline.losses.EmbeddingMSE`). The warm-up minimises
``w_embedding_mse·||E_S(x) - E_T(x)||² + w_rank_kl·KL`` of the ranking of the teacher's other-side
embeddings (:func:`pipeline.losses.anchored_rank_kl`) over corpus passages, training queries and titles.

Settings (config sections):
    - ``teacher``: the model whose scores of the mined candidates the student learns from.
    - ``train``: ``w_nll``, ``w_kd``, ``w_mse``, ``w_lwf``, ``w_embedding_mse``, ``temperature``,
      ``teacher_weights``, ``kd_in_batch`` (the KL over every passage of the batch, scored by a bi-encoder
      teacher from its cached corpus embeddings), batch and group sizes, optimiser, ``denoise``.
    - ``warmup``: ``epochs``, ``iterations`` (which iterations warm up), ``teacher`` (a bi-encoder;
      default the teacher), ``texts`` (``auto``: the corpus, training queries and titles, and the corpus
      passages' sentences where the teacher labels training queries), ``w_embedding_mse``, ``w_rank_kl``,
      ``rank_scale``.

References:
    - Karpukhin et al., 2020, "Dense Passage Retrieval for Open-Domain Question Answering" (NLL with
      in-batch and hard negatives).
    - Hinton et al., 2015, "Distilling the Knowledge in a Neural Network" (KL with temperature).
    - Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
      Knowledge Distillation" (MarginMSE); Hofstätter et al., 2021, TAS-B (in-batch distillation).
    - Reimers & Gurevych, 2020, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
      Distillation" (embedding MSE); the ranking-KL warm-up term is this project's.
    - Li & Hoiem, 2016, "Learning without Forgetting" (the regulariser toward the previous student).

Requirements:
    - judged training queries (``splits.train``) and a teacher score artifact for the mined candidates;
    - a bi-encoder warm-up teacher with the student's embedding size (also for ``w_embedding_mse``);
      bi-encoder teachers for ``kd_in_batch``.

Inputs:
    +------------------------------------+-----------------------------------------+
    | Batch                              | Teacher scores                          |
    +====================================+=========================================+
    | (query, [positive, k negatives])   | cached scores of every pair, per teacher|
    +------------------------------------+-----------------------------------------+

Relations:
    - With ``w_kd = w_mse = 0`` this is sentence-transformers' ``MultipleNegativesRankingLoss`` with hard
      negatives; with ``w_nll = w_mse = 0`` its ``DistillKLDivLoss``; with ``w_nll = w_kd = 0`` its
      ``MarginMSELoss``.
    - PROD's first (bi-encoder teacher) stage is this recipe with ``w_nll = 0.1``, ``w_kd = 0.9``, ``T = 4``;
      its cross-encoder stages add ``w_lwf = 1``.

Example:
    .. code-block:: yaml

        methods: [standard]
        teacher: minilm-l6
        warmup: {epochs: 1, iterations: [1], w_rank_kl: 4.0}
        train: {w_nll: 1.0, w_kd: 1.0, temperature: 1.0, group_size: 4}
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from ..labels import TEACHER_LABEL_SOURCES, corpus_sentences
from .base import LossTerm, Method, Needs, PlanView, TrainingRun, register

log = logging.getLogger(__name__)

#: warmup.texts: sentences: a sentence of at least 4 words, cut to 48 (query-sized: max_query_length is 64 tokens)
SENTENCE_WORDS = (4, 48)

if TYPE_CHECKING:  # pragma: no cover
    from ..training.loop import Phase


#: warmup.texts: auto: these, and the corpus passages' sentences where the teacher labels training queries
JUDGED_WARMUP_TEXTS = ("corpus", "train_queries", "titles")


def resolve_warmup_texts(texts: str | list[str], label_source: str) -> list[str]:
    """``warmup.texts`` as the warm-up reads it: a list stays as it is; ``auto`` is the corpus, the training
    queries and the titles, with the corpus passages' sentences added where the teacher labels training
    queries (``label_source`` in :data:`pipeline.labels.TEACHER_LABEL_SOURCES`). There the judged queries are
    few or none, and the sentences give the warm-up's query side thousands of short texts: MED with 15 judged
    queries, warm-up 0.7831 test nDCG@10 against 0.7058 (benchmarks/README.md, issue 35). The workflow resolves
    it once per iteration config (:meth:`pipeline.plan.Plan.iteration`); a step called by hand with ``auto``
    gets the judged-queries texts (it does not know the label source)."""
    if texts != "auto":
        return list(texts)
    return [*JUDGED_WARMUP_TEXTS, *(["sentences"] if label_source in TEACHER_LABEL_SOURCES else [])]


def embedding_teacher(train: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The bi-encoder whose embeddings ``train.w_embedding_mse`` keeps the student near through
    distillation (the warm-up's teacher: ``warmup.teacher``, else the teacher), or None when the term is off
    (``train``: the section the phase trains with)."""
    if train["w_embedding_mse"] <= 0 or train["epochs"] <= 0:
        return None
    return config["warmup"]["teacher"] or config["teacher"]


def warmup_teacher(config: dict[str, Any], iteration: int) -> str | None:
    """The bi-encoder the warm-up of ``iteration`` distils from, or None when it does not warm up."""
    warmup = config["warmup"]
    if warmup["epochs"] <= 0 or int(iteration) not in warmup["iterations"]:
        return None
    return warmup["teacher"] or config["teacher"]


@register
class Standard(Method):
    name = "standard"
    sections = ("teacher", "warmup")
    recipe = True

    @staticmethod
    def teachers(config: dict[str, Any]) -> list[str]:
        return [config["teacher"]]

    # -- parse time ------------------------------------------------------------------------------

    def check(self, plan: PlanView, it: int) -> list[str]:
        c = plan.iteration(it)
        problems = []
        teacher = warmup_teacher(c, it)
        if teacher and plan.kind(teacher) != "bi-encoder":
            problems.append(f"warmup needs a bi-encoder teacher; set warmup.teacher (got {teacher!r})")
        if c["train"]["kd_in_batch"]:
            problems += [f"train.kd_in_batch needs bi-encoder teachers; {name!r} is not one"
                         for name in self.teachers(c) if plan.kind(name) != "bi-encoder"]
        anchor = embedding_teacher(c["train"], c)
        if anchor and plan.kind(anchor) != "bi-encoder":
            problems.append(f"train.w_embedding_mse needs a bi-encoder warm-up teacher; set warmup.teacher "
                            f"(got {anchor!r})")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        c = view.iteration(it)
        teacher = warmup_teacher(c, it)
        warm = [teacher] if teacher else []
        in_batch = self.live_teacher_names(c["train"], c)
        return Needs(scorers=self.teachers(c), models=warm + in_batch,
                     embeddings=(warm if "corpus" in c["warmup"]["texts"] else [])
                     + in_batch,
                     snapshots=["warmup"] if teacher and c["train"]["epochs"] > 0 else [])

    # -- training time ---------------------------------------------------------------------------

    def phases(self, run: "TrainingRun") -> list["Phase"]:
        # torch: not at parse time (the Snakefile imports this module)
        from ..training.distill import distill_phase

        frozen, take_copy, adds = self.previous_student(run)
        distill = distill_phase(run.train, run.examples, run.doc_text, run.queries, run.teacher_scores,
                                run.loss("distill"), run.seed, self.in_batch_teachers(run), frozen_scorers=frozen,
                                on_start=take_copy, instance_weights=run.instance_weights("distill"))
        return self.warmup_phases(run) + [dataclasses.replace(distill, adds=adds)]

    def previous_student(self, run: "TrainingRun") -> tuple[tuple[str, ...], Any, dict[str, Any]]:
        """For ``train.w_lwf``: the name of the frozen copy of the student that scores each batch
        (``frozen_scorers``), the ``on_start`` hook that takes the copy, and the copy by that name for the
        phase to bring into the loop (:attr:`Phase.adds`); ``((), None, {})`` without."""
        # torch: not at parse time (the Snakefile imports this module)
        from ..training.regularisers import PREVIOUS_STUDENT, frozen_copy

        if run.train["w_lwf"] > 0 and run.train["epochs"] > 0:
            frozen, take_copy = frozen_copy(run.student)
            return (PREVIOUS_STUDENT,), take_copy, {PREVIOUS_STUDENT: frozen}
        return (), None, {}

    def warmup_phases(self, run: "TrainingRun", trains: tuple[str, ...] = ("student",)) -> list["Phase"]:
        """The label-free warm-up of the models in ``trains``, when the iteration warms up."""
        # torch: not at parse time (the Snakefile imports this module)
        from ..models import ModelSpec
        from ..training.warmup import warmup_phase

        c = run.config
        teacher = warmup_teacher(c, run.iteration)
        if not teacher:
            return []
        if teacher not in run.models:
            raise ValueError(f"warmup: teacher {teacher!r} is not among the models given to training "
                             f"({sorted(run.models)}); it must be a configured bi-encoder")
        warm = c["warmup"]
        texts = resolve_warmup_texts(warm["texts"], "qrels")  # resolved by the plan; "auto" only in a call by hand
        short_by_kind = {
            "train_queries": [run.queries[q] for q in sorted(run.qrels)] if "train_queries" in texts else [],
            "titles": [t for t in run.corpus["title"] if t.strip()] if "titles" in texts else [],
            "sentences": corpus_sentences(list(run.corpus["text"]), SENTENCE_WORDS, warm["max_sentences"], run.seed)
            if "sentences" in texts else [],
        }
        short = [text for kind in short_by_kind.values() for text in kind]
        shards = list(run.embedding_shards.get(teacher, [])) if "corpus" in texts else []
        log.info("warm-up onto %s: texts %s (%s)", teacher, texts,
                 ", ".join([f"{len(v)} {k}" for k, v in short_by_kind.items() if k in texts]
                           + (["corpus passages: the teacher's embeddings"] if shards else [])))
        warm_phase = warmup_phase(warm, ModelSpec.from_config(teacher, run.models[teacher]), shards,
                                  run.corpus, run.include_title, short, run.device, run.seed, trains=trains)
        # the warmed-up student is a candidate of its own for the final student (chosen on dev)
        return [dataclasses.replace(warm_phase, snapshot=run.train["epochs"] > 0)]

    def live_teacher_names(self, train: dict[str, Any], config: dict[str, Any]) -> list[str]:
        """The bi-encoders that see every text of a batch: the teachers for ``train.kd_in_batch``, the
        warm-up teacher for ``train.w_embedding_mse``."""
        if train["epochs"] <= 0:
            return []
        names = self.teachers(config) if train["kd_in_batch"] else []
        anchor = embedding_teacher(train, config)
        return list(dict.fromkeys(names + ([anchor] if anchor else [])))

    def in_batch_teachers(self, run: "TrainingRun") -> dict:
        """Live bi-encoder teachers of every text of a batch (:meth:`live_teacher_names`; none without
        ``train.kd_in_batch`` or ``train.w_embedding_mse``)."""
        # torch: not at parse time (the Snakefile imports this module)
        from ..training.teachers import in_batch_teacher_scorers

        settings = run.train
        names = self.live_teacher_names(settings, run.config)
        if not names:
            return {}
        return in_batch_teacher_scorers(names, run.models, run.embedding_shards, settings,
                                        run.queries, run.corpus_path, [e.query_id for e in run.examples],
                                        run.synthetic_texts, run.include_title, run.device, run.teacher_factors)

    def loss_terms(self, run: "TrainingRun", phase: str) -> dict[str, tuple[float, LossTerm]]:
        if phase != "distill":
            return {}
        return recipe_terms(run.train, self.teachers(run.config), embedding_teacher(run.train, run.config))


def recipe_terms(settings: dict[str, Any], teachers: list[str],
                 embedding_target: str | None = None) -> dict[str, tuple[float, LossTerm]]:
    """``w_nll·NLL + Σ_t ω_t (w_kd·KL_T + w_mse·MarginMSE) + w_lwf·KL_T(s_old, s)
    + w_embedding_mse·MSE(E_S, E_W)`` as named, weighted per-query terms (the last with the bi-encoder
    ``embedding_target``, when given)."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..losses import ContrastiveNLL, EmbeddingMSE, ListwiseKL, MarginMSE
    from ..training.regularisers import PREVIOUS_STUDENT

    terms: dict[str, tuple[float, LossTerm]] = {
        "nll": (settings["w_nll"], ContrastiveNLL(in_batch=settings["in_batch_negatives"]))
    }
    teacher_weights = settings["teacher_weights"] or {name: 1.0 for name in teachers}
    for name in teachers:
        share = teacher_weights.get(name, 0.0)
        terms[f"kl:{name}"] = (settings["w_kd"] * share,
                               ListwiseKL(settings["temperature"], teacher=name, in_batch=settings["kd_in_batch"]))
        terms[f"margin_mse:{name}"] = (settings["w_mse"] * share, MarginMSE(teacher=name))
    terms["lwf"] = (settings["w_lwf"], ListwiseKL(settings["temperature"], teacher=PREVIOUS_STUDENT))
    if embedding_target:
        terms[f"embedding_mse:{embedding_target}"] = (settings["w_embedding_mse"],
                                                      EmbeddingMSE(teacher=embedding_target))
    return terms
