"""What a distillation method is to the workflow: the one interface every method implements.

A method answers two kinds of question. At parse time (torch-free, from :class:`pipeline.plan.Plan`), it
declares what each iteration needs of the workflow, :meth:`Method.plan` returning a :class:`Needs` (the
scorers of the candidates, the models and embeddings its training loads, the students it keeps, its peers,
the candidates it scores or trains on instead of the mined ones, its reports, a description), checks the
config rules the schema cannot express (:meth:`Method.check`) and may set the iterations itself
(:meth:`Method.schedule`); its class says which config sections its training reads
(:attr:`Method.sections`; a section's schema is ``schemas/methods/<method>.schema.yaml``), which rule file
adds its stages to the DAG (:attr:`Method.rules`) and which steps those run (:attr:`Method.steps`), and
whether it is a recipe, one of which each iteration lists (:attr:`Method.recipe`). At
training time (from :mod:`pipeline.training.driver`): which phases it trains (:meth:`Method.phases`),
which loss terms it adds to a phase (:meth:`Method.loss_terms`) and how it weighs a phase's queries
(:meth:`Method.instance_weights`).

Methods compose: a config lists several (``methods: [standard, adam]``); the phases of all of them run
in config order, and the loss of each phase is the weighted sum of every method's terms for that phase.
A method module imports torch inside the functions that train, so the Snakefile can ask the parse-time
questions without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, Sequence

from ..config import ConfigError

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
    root: str  # the run's results folder (with seeds, the seed's; a method's own artifacts go there)
    data: dict[str, str]  # the prepared data: corpus, queries, qrels per split

    def iteration(self, it: int | str) -> dict[str, Any]:
        """Iteration ``it``'s settings: the config with its overrides merged in."""

    def kind(self, name: str) -> str | None:
        """A configured model's kind (bi-encoder, cross-encoder, bm25, fusion), None when unknown."""

    def scored_candidates(self, it: int | str) -> str:
        """The candidates artifact iteration ``it``'s scorers score (for rule inputs: it is the merge of the
        methods' :class:`Needs`, so :meth:`Method.plan` must not ask it)."""

    def scores_path(self, it: int | str, scorer: str) -> str:
        """Where ``scorer``'s scores of iteration ``it``'s scored candidates are (shared by the seeds of
        ``seeds`` unless the scorer or the candidates change with the seed; as :meth:`scored_candidates`,
        not for :meth:`Method.plan`)."""

    def metrics(self, name: str, split: str = "test") -> str:
        """The metrics file of model ``name`` on ``split``."""


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Needs:
    """What a method asks of the workflow for one iteration (:meth:`Method.plan`), or every configured
    method's merged (:func:`merge_needs`). Lists may be given; they are kept as tuples, first mention first."""

    #: models whose scores of the iteration's scored candidates the training reads (one scoring job each)
    scorers: Sequence[str] = ()
    #: configured models the training job loads itself (their configs are passed to it)
    models: Sequence[str] = ()
    #: models whose cached corpus embeddings the training job reads
    embeddings: Sequence[str] = ()
    #: phases after which the student is kept (``students/it<k>/<phase>``), evaluated and a candidate for
    #: the final student; their phases set ``snapshot``
    snapshots: Sequence[str] = ()
    #: models trained beside the student (OnMKD's peer), by the subfolder of ``students/it<k>`` each is saved
    #: in, with its settings as a model (``student-it<k>-<subfolder>``: evaluated, a candidate for the final
    #: student); iteration 1's start from ``students/it0/<subfolder>``, later ones from the previous iteration's
    peers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: a candidates artifact the method's rules make from the mined one, which scoring and training read
    #: instead (ADAM's, dark examples added)
    scored_candidates: str | None = None
    #: a candidates artifact the iteration trains on instead of the scored one (PROD's rounds' selection)
    training_candidates: str | None = None
    #: JSON artifacts whose ``summary`` line the run's summary shows
    reports: Sequence[str] = ()
    #: what the iteration is to the method, for the dry run and the summary (``PROD stage 2 of 2: ...``)
    description: str | None = None

    def __post_init__(self):
        for name in ("scorers", "models", "embeddings", "snapshots", "reports"):
            object.__setattr__(self, name, _unique(getattr(self, name)))
        object.__setattr__(self, "peers", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.peers.items()}))


def merge_needs(answers: Mapping[str, Needs]) -> Needs:
    """The needs of an iteration from each of its methods' (name -> :class:`Needs`, in config order): the
    lists' union, every method's peers, the descriptions joined. At most one method may choose the
    candidates the iteration scores, and one those it trains on; a peer belongs to one method."""
    needs = list(answers.values())
    chosen: dict[str, str | None] = {}
    for question, what in (("scored_candidates", "scores"), ("training_candidates", "trains on")):
        names = [name for name, answer in answers.items() if getattr(answer, question)]
        if len(names) > 1:  # e.g. PROD's rounds and MTA4DPR's harder data
            raise ConfigError(f"{' and '.join(names)} each choose the candidates the iteration {what}; they do not "
                              "compose, at most one method may")
        chosen[question] = getattr(answers[names[0]], question) if names else None
    peers: dict[str, Mapping[str, Any]] = {}
    for name, answer in answers.items():
        for subfolder, settings in answer.peers.items():
            if subfolder in peers:
                raise ConfigError(f"{name}: peer {subfolder!r} is trained by another method of the iteration too")
            peers[subfolder] = settings
    descriptions = [answer.description for answer in needs if answer.description]
    return Needs(**{question: [x for answer in needs for x in getattr(answer, question)]
                    for question in ("scorers", "models", "embeddings", "snapshots", "reports")},
                 peers=peers, description="; ".join(descriptions) or None, **chosen)


class Method:
    """Base class: a method that asks for nothing and trains nothing."""

    name: ClassVar[str] = ""
    #: config sections its training reads (besides ``train``, which every training reads)
    sections: ClassVar[tuple[str, ...]] = ()
    #: a rule file that adds stages to the DAG, included by the Snakefile when the method is configured
    rules: ClassVar[str | None] = None
    #: the pipeline steps its rules run (``python -m pipeline STEP``): step name -> a function of its module
    steps: ClassVar[dict[str, str]] = {}
    #: whether it trains the student's distillation itself (standard and what builds on it: prod, onmkd,
    #: lead); an iteration lists exactly one recipe, and the other methods add to it
    recipe: ClassVar[bool] = False

    def check(self, plan: PlanView, it: int) -> list[str]:
        """Problems with the config of iteration ``it`` that the schema cannot express."""
        return []

    def plan(self, view: PlanView, it: int) -> Needs:
        """What iteration ``it`` needs of the workflow for this method; the plan merges every configured
        method's (:func:`merge_needs`)."""
        return Needs()

    def schedule(self, config: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Per-iteration overrides (``[iteration 1's, iteration 2's, ...]``) when the method sets the
        iterations itself (PROD's stages and rounds); asked of the base config's methods only. Each entry
        is deep-merged over the base config, and the user's ``overrides`` over it."""
        return None

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

    def report(self, run: "TrainingRun") -> dict[str, Any] | None:
        """What the method measured of the run outside a phase of its own (``training.json``'s ``reports``
        under its name); a phase's own measurements are its :attr:`~pipeline.training.loop.Phase.report`."""
        return None

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


def recipe_problems(methods: Sequence[Method]) -> list[str]:
    """An iteration's methods hold exactly one recipe: the others add phases, terms and weights to it."""
    recipes = sorted(name for name, cls in METHODS.items() if cls.recipe)
    chosen = [m.name for m in methods if m.recipe]
    if not chosen:
        return [f"methods {[m.name for m in methods]}: none trains the student's distillation, which they add to; "
                f"list a recipe too (one of {recipes})"]
    if len(chosen) > 1:
        return [f"methods {chosen} each train the student's distillation (a recipe); list one of them"]
    return []


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"methods: unknown method {name!r}; methods are {sorted(METHODS)} (a method of your own: "
                          "a module in pipeline/methods/, docs/methods.md)")
    return METHODS[name]()


@dataclass(frozen=True)
class TrainingRun:
    """Everything an iteration's training has read, handed to the methods to build their phases; read-only:
    what a method brings into training (models, saved folders, reports) its phases declare
    (:class:`pipeline.training.loop.Phase`), and what it measures outside a phase :meth:`Method.report`
    returns."""

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
    student: torch.nn.Module  # the student as training starts (the loop's "student")
    student_dir: str  # where it was loaded from; peers trained beside it continue from its subfolders
    teacher_factors: dict[str, float] = field(default_factory=dict)  # scorer -> the scale its scores were read with
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # configs of models the methods load
    embedding_shards: dict[str, Sequence[str]] = field(default_factory=dict)
    #: the provenance of the candidates trained on (a method's selection records its choices there: MTA4DPR's pool)
    candidates_provenance: dict[str, Any] = field(default_factory=dict)

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
        # torch: not at parse time (the Snakefile imports this module)
        from ..losses import CompositeLoss  # torch: kept out of the parse-time import of the methods

        return CompositeLoss(self.loss_terms(phase))
