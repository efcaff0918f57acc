"""The plan of a run: which models, iterations, artifacts and job arguments a validated config asks for.

The Snakefile and its rules read like a table of contents; every decision they need (the config of an
iteration, the miner of iteration k, which models a scorer needs, which scores the training of an
iteration reads, the cross-field checks of the config) is made here, by one object that unit tests
build without Snakemake. Torch-free: it runs at parse time, also on every cluster node.

:class:`Plan` is composed of parts, one concern each, that read one another through the plan:

- :mod:`.data` -- the data folder, the prepared data and the training labels (``DataAndLabels``);
- :mod:`.models` -- named models, students, fine-tunes and exports (``Models``);
- :mod:`.iterations` -- each iteration's config, its methods' merged needs, candidates and train job
  (``Iterations``);
- :mod:`.evaluation` -- the evaluated models and the hybrid (``Evaluation``);
- :mod:`.arguments` -- the job arguments' JSON and folder tokens.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, complete
from .arguments import DATA_DIR_TOKEN, ROOT_TOKEN, deep_merge, expand_tokens, replace_prefixes, to_json
from .data import DataAndLabels, auto_label_source, download_name
from .evaluation import Evaluation
from .iterations import Iterations
from .models import EXPORTED, STUDENT, Models

__all__ = ["DATA_DIR_TOKEN", "EXPORTED", "ROOT_TOKEN", "STUDENT", "Plan", "auto_label_source", "deep_merge",
           "download_name", "expand_tokens", "replace_prefixes", "to_json"]


class Plan(DataAndLabels, Models, Iterations, Evaluation):
    """What a validated config (schema defaults filled in) asks the workflow to do."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.root = f"{config['results_dir']}/{config['experiment']}"
        self._forget_iterations()
        self._plan_data()

    def _calibrates(self) -> bool:
        """Whether an iteration fits its teachers' scales on judged positives (train.teacher_scale: calibrated);
        an iteration whose config is wrong counts as not (check() reports it)."""
        try:
            return any(self.iteration(it)["train"]["teacher_scale"] == "calibrated" for it in self.iterations)
        except ConfigError:
            return False

    def to_json(self, **kwargs) -> str:
        """:func:`to_json` with the experiment's and the data's folders as tokens (:data:`ROOT_TOKEN`)."""
        return to_json(**replace_prefixes(kwargs, {self.root: ROOT_TOKEN, self.data_dir: DATA_DIR_TOKEN}))

    def problems(self) -> list[str]:
        """Cross-field checks the schema cannot express, for the models and for every iteration; first the
        config as a whole against the schema with every method's section (a typo in a section's name)."""
        try:
            complete(self.config)
        except ConfigError as err:
            return [str(err)]
        return (self.hybrid_problems() + self.model_problems() + self.data_problems() + self.student_problems()
                + self.iteration_problems())

    def check(self) -> None:
        """Fail at parse time, before any job runs, with every problem found."""
        problems = self.problems()
        if problems:
            raise ConfigError("config: " + "; ".join(dict.fromkeys(problems)))
