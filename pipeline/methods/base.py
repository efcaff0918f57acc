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

from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ..plan import Plan
    from ..training.driver import TrainingRun
    from ..training.loop import Phase

LossTerm = Callable[..., Any]  # (StudentScores, Batch) -> per-query loss [B]


class Method:
    """Base class: a method that asks for nothing and trains nothing."""

    name: ClassVar[str] = ""
    #: config sections its training reads (besides ``train``, which every training reads)
    sections: ClassVar[tuple[str, ...]] = ()
    #: a rule file that adds stages to the DAG, included by the Snakefile when the method is configured
    rules: ClassVar[str | None] = None

    def check(self, plan: "Plan", it: int) -> list[str]:
        """Problems with the config of iteration ``it`` that the schema cannot express."""
        return []

    def scorers(self, plan: "Plan", it: int) -> list[str]:
        """Models whose scores of iteration ``it``'s mined candidates the training reads."""
        return []

    def models(self, plan: "Plan", it: int) -> list[str]:
        """Configured models the training job loads itself (their configs are passed to it)."""
        return []

    def embeddings(self, plan: "Plan", it: int) -> list[str]:
        """Models whose cached corpus embeddings the training job reads (inputs of the train rule)."""
        return []

    def snapshots(self, plan: "Plan", it: int) -> list[str]:
        """Phases of iteration ``it`` after which the student is kept (``students/it<k>/<phase>``), evaluated
        and a candidate for the final student; their phases set ``snapshot``."""
        return []

    def peers(self, plan: "Plan", it: int) -> dict[str, dict[str, Any]]:
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

    def scored_candidates(self, plan: "Plan", it: int) -> str | None:
        """A candidates artifact that the method's rules make from the mined one and that scoring and
        training read instead (ADAM's, with dark examples added), or None."""
        return None

    def training_candidates(self, plan: "Plan", it: int) -> str | None:
        """A candidates artifact that iteration ``it`` trains on instead of the mined one (a selection the
        method's own rules make from it), or None."""
        return None

    def describe(self, plan: "Plan", it: int) -> str | None:
        """What iteration ``it`` is to this method, for the dry run and the summary (``PROD stage 2``)."""
        return None

    def reports(self, plan: "Plan", it: int) -> list[str]:
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
