"""What a distillation method is to the workflow: the one interface every method implements.

A method answers two kinds of question. At parse time (torch-free, from :class:`pipeline.plan.Plan`):
which cross-field rules its config must obey (:meth:`Method.check`), which scorers must score the
mined candidates of an iteration (:meth:`Method.scorers`), which models and corpus embeddings its
training reads (:meth:`Method.models`, :meth:`Method.embeddings`), which config sections it reads
(:attr:`Method.sections`), whether it adds stages to the DAG (:attr:`Method.rules`), which
intermediate students it keeps (:meth:`Method.snapshots`), which models it trains beside the student
(:meth:`Method.peers`), whether it sets the iterations itself
(:meth:`Method.schedule`), which candidates an iteration scores and trains on
(:meth:`Method.scored_candidates`, :meth:`Method.training_candidates`)
and how an iteration is described in the summary (:meth:`Method.describe`, :meth:`Method.reports`). At training
time (from :mod:`pipeline.training.driver`): which phases it trains (:meth:`Method.phases`), which
loss terms it adds to a phase (:meth:`Method.loss_terms`) and how it weighs a phase's queries
(:meth:`Method.instance_weights`).

Methods compose: a config lists several (``methods: [standard, adam]``); the phases of all of them run
in config order, and the loss of each phase is the weighted sum of every method's terms for that phase.
A method module imports torch inside the functions that train, so the Snakefile can ask the parse-time
questions without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from ..losses import CompositeLoss
    from ..training.loop import Phase
    from ..training.sampling import Example
    from ..training.teachers import ScoreLookup

LossTerm = Callable[..., Any]  # (StudentScores, Batch) -> per-query loss [B]


class PlanView(Protocol):
    """What a method reads of the workflow's plan at parse time (:class:`pipeline.plan.Plan` is one):
    the config, each iteration's merged settings, and the paths of artifacts."""

    config: dict[str, Any]
    root: str  # the experiment's results folder
    data: dict[str, str]  # the prepared data: corpus, queries, qrels per split

    def iteration(self, it: int | str) -> dict[str, Any]:
        """Iteration ``it``'s settings: the config with its overrides merged in."""

    def kind(self, name: str) -> str | None:
        """A configured model's kind (bi-encoder, cross-encoder, bm25, fusion), None when unknown."""

    def scored_candidates(self, it: int | str) -> str:
        """The candidates artifact iteration ``it``'s scorers score."""

    def metrics(self, name: str, split: str = "test") -> str:
        """The metrics file of model ``name`` on ``split``."""


class Method:
    """Base class: a method that asks for nothing and trains nothing."""

    name: ClassVar[str] = ""
    #: config sections its training reads (besides ``train``, which every training reads)
    sections: ClassVar[tuple[str, ...]] = ()
    #: a rule file that adds stages to the DAG, included by the Snakefile when the method is configured
    rules: ClassVar[str | None] = None

    def check(self, plan: PlanView, it: int) -> list[str]:
        """Problems with the config of iteration ``it`` that the schema cannot express."""
        return []

    def scorers(self, plan: PlanView, it: int) -> list[str]:
        """Models whose scores of iteration ``it``'s mined candidates the training reads."""
        return []

    def models(self, plan: PlanView, it: int) -> list[str]:
        """Configured models the training job loads itself (their configs are passed to it)."""
        return []

    def embeddings(self, plan: PlanView, it: int) -> list[str]:
        """Models whose cached corpus embeddings the training job reads (inputs of the train rule)."""
        return []

    def snapshots(self, plan: PlanView, it: int) -> list[str]:
        """Phases of iteration ``it`` after which the student is kept (``students/it<k>/<phase>``), evaluated
        and a candidate for the final student; their phases set ``snapshot``."""
        return []

    def peers(self, plan: PlanView, it: int) -> dict[str, dict[str, Any]]:
        """Models trained beside the student in iteration ``it`` (OnMKD's peer), by the subfolder of
        ``students/it<k>`` each is saved in, with its settings as a model (``student-it<k>-<subfolder>``:
        evaluated, and a candidate for the final student). Iteration 1's are initialised with the student
        (``students/it0/<subfolder>``); each later iteration's continues from the previous one's."""
        return {}

    def schedule(self, config: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Per-iteration overrides (``[iteration 1's, iteration 2's, ...]``) when the method sets the
        iterations itself (PROD's stages and rounds); asked of the base config's methods only. Each entry
        is deep-merged over the base config, and the user's ``overrides`` over it."""
        return None

    def scored_candidates(self, plan: PlanView, it: int) -> str | None:
        """A candidates artifact that the method's rules make from the mined one and that scoring and
        training read instead (ADAM's, with dark examples added), or None."""
        return None

    def training_candidates(self, plan: PlanView, it: int) -> str | None:
        """A candidates artifact that iteration ``it`` trains on instead of the mined one (a selection the
        method's own rules make from it), or None."""
        return None

    def describe(self, plan: PlanView, it: int) -> str | None:
        """What iteration ``it`` is to this method, for the dry run and the summary (``PROD stage 2``)."""
        return None

    def reports(self, plan: PlanView, it: int) -> list[str]:
        """JSON artifacts of iteration ``it`` whose ``summary`` line the run's summary shows."""
        return []

    def phases(self, run: "TrainingRun") -> list["Phase"]:
        """The training phases this method runs, in order."""
        return []

    def instance_weights(self, run: "TrainingRun", phase: str) -> Callable[..., Any] | None:
        """``(batch, step) -> [B]`` weights of ``phase``'s queries in the loss (self-paced selection), or
        None; the weights of several methods multiply."""
        return None

    def loss_terms(self, run: "TrainingRun", phase: str) -> dict[str, tuple[float, LossTerm]]:
        """Named, weighted per-query loss terms this method adds to ``phase`` (any method's phase)."""
        return {}

    def __repr__(self) -> str:
        return f"<method {self.name}>"


#: config name -> method class, filled by :func:`register` as each method module is imported
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: the method is known to configs by its ``name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"{cls.__name__}: a method needs a name of its own (taken: {sorted(METHODS)})")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; methods are {sorted(METHODS)}")
    return METHODS[name]()


@dataclass
class TrainingRun:
    """Everything an iteration's training has read, handed to the methods to build their phases."""

    config: dict[str, Any]  # the config sections the methods read (``train`` always), defaults filled
    iteration: int
    seed: int
    device: torch.device
    methods: list[Method]
    corpus: pd.DataFrame
    corpus_path: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    doc_text: dict[str, str]  # corpus passages and synthetic training passages
    synthetic_texts: dict[str, str]
    examples: list[Example]
    teacher_scores: dict[str, ScoreLookup]  # scorer -> (query, doc) -> score on the student's scale
    include_title: bool
    teacher_factors: dict[str, float] = field(default_factory=dict)  # scorer -> the scale its scores were read with
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # configs of models the methods load
    embedding_shards: dict[str, Sequence[str]] = field(default_factory=dict)
    loop_models: dict[str, torch.nn.Module] = field(default_factory=dict)  # the loop's: "student", other trained models, frozen copies
    student_dir: str = ""  # the student training starts from; peers trained beside it continue from its subfolders
    #: loop models saved beside the student once training ends: name -> subfolder of the output (OnMKD's peer)
    saved_models: dict[str, str] = field(default_factory=dict)

    #: the provenance of the candidates trained on (a method's selection records its choices there: MTA4DPR's pool)
    candidates_provenance: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)  # what methods measured while building their phases (training.json)

    @property
    def train(self) -> dict[str, Any]:
        return self.config["train"]

    def instance_weights(self, phase: str):
        """``(batch, step) -> [B]``: the product of every configured method's weights for ``phase``'s
        queries, or None when no method weighs them."""
        weighers = [w for method in self.methods if (w := method.instance_weights(self, phase)) is not None]
        if not weighers:
            return None

        def weights(batch, step):
            product = weighers[0](batch, step)
            for weigh in weighers[1:]:
                product = product * weigh(batch, step)
            return product

        return weights

    def loss_terms(self, phase: str) -> dict[str, tuple[float, Any]]:
        """Every configured method's named, weighted terms for ``phase``, in config order."""
        terms: dict[str, tuple[float, Any]] = {}
        for method in self.methods:
            for name, term in method.loss_terms(self, phase).items():
                if name in terms:
                    raise ValueError(f"loss term {name!r} of phase {phase!r} is added twice (by {method.name})")
                terms[name] = term
        return terms

    def loss(self, phase: str) -> "CompositeLoss":
        """The loss of ``phase``: the weighted sum of :meth:`loss_terms`."""
        from ..losses import CompositeLoss  # torch: kept out of the parse-time import of the methods

        return CompositeLoss(self.loss_terms(phase))
