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

With ``seeds``, the experiment runs once per seed (the Snakefile loads itself as a module for each seed
after the first, with :meth:`Plan.seed_configs`). The first seed's run is the experiment's folder, as
without ``seeds``; each further seed's is ``seed-<K>/`` inside it, whose plan (``seed_of`` set) takes every
artifact the seed does not change from the experiment's folder (``shared_root``): the data and its splits,
the teachers' work, the untrained student, iteration 1's candidates and their teacher scores. What a trained
student enters into (:meth:`Plan.seeded`) is the seed's own. With ``splits.per_seed`` the training sample
and dev split are each seed's own too, and so are what reads them: iteration 1's candidates and their
scores, and every model's evaluation (one job evaluates a model on test and dev); the teachers' encodings,
indexes and labels stay shared.
"""

from __future__ import annotations

import copy
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
        if config.get("seeds"):  # the first seed is the experiment's own: `seeds` replaces `seed`
            config["seed"] = config["seeds"][0]
        #: this run's folder; with seeds, a further seed's run is a folder inside the experiment's
        self.root = f"{config['results_dir']}/{config['experiment']}"
        seed_of = config.get("seed_of")
        #: the folder of what every seed shares (the experiment's: the first seed's run)
        self.shared_root = f"{seed_of['results_dir']}/{seed_of['experiment']}" if seed_of else self.root
        #: the experiment's name in summaries (a further seed's run: ``<experiment>/seed-<K>``)
        self.experiment_name = f"{seed_of['experiment']}/{config['experiment']}" if seed_of else config["experiment"]
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
        return to_json(**replace_prefixes(kwargs, {self.shared_root: ROOT_TOKEN, self.data_dir: DATA_DIR_TOKEN}))

    # -- seeds: the experiment once per seed (``seeds``) --------------------------------------------------

    def seeded(self, name: str) -> bool:
        """Whether model ``name`` changes with the seed: a student the run trains (not the untrained cut,
        ``student-it0``), its exports, and the final student fused with BM25 (``hybrid``)."""
        role, it, _ = self.role_of(name)
        return name == "hybrid" or (role == "student" and it > 0)

    def folder_of(self, name: str) -> str:
        """The folder of model ``name``'s artifacts: this seed's when the seed changes it, else the shared one."""
        return self.root if self.seeded(name) else self.shared_root

    def seeds_own(self, path: str) -> bool:
        """Whether ``path`` is this seed's own artifact (a further seed's run, inside its folder)."""
        return self.root != self.shared_root and path.startswith(self.root + "/")

    def seed_configs(self) -> list[dict[str, Any]]:
        """The config of each seed's run after the first (``seeds``): the same config at that seed, in
        ``<experiment>/seed-<K>``, taking what the seed does not change from this experiment (``seed_of``)."""
        seeds = self.config["seeds"]
        if not seeds:
            return []
        seed_of = {"experiment": self.config["experiment"], "results_dir": self.config["results_dir"], "seed": seeds[0]}
        return [dict(copy.deepcopy(self.config), seed=seed, seeds=None, results_dir=self.root,
                     experiment=f"seed-{seed}", seed_of=seed_of) for seed in seeds[1:]]

    def seed_roots(self) -> dict[int, str]:
        """Each seed's run folder (the first seed's is the experiment's); one entry without ``seeds``."""
        seeds = self.config["seeds"] or [self.config["seed"]]
        return {seed: self.root if k == 0 else f"{self.root}/seed-{seed}" for k, seed in enumerate(seeds)}

    def seed_problems(self) -> list[str]:
        if self.config["seeds"] and self.config.get("seed_of"):
            return ["seed_of: set by the workflow for each seed's run of `seeds`; a config sets seeds, not both"]
        if self.config["splits"]["per_seed"]:
            finetuned = [name for name in self.config["models"] if self.finetuned(name)]
            if finetuned:
                return [f"splits.per_seed: models.{finetuned[0]}.finetune trains on the training queries, which "
                        "differ by seed with per_seed, and a fine-tuned model is made once for every seed; set "
                        "splits.per_seed: false (the seeds then share the first seed's split)"]
        return []

    def problems(self) -> list[str]:
        """Cross-field checks the schema cannot express, for the models and for every iteration; first the
        config as a whole against the schema with every method's section (a typo in a section's name)."""
        try:
            complete(self.config)
        except ConfigError as err:
            return [str(err)]
        return (self.seed_problems() + self.hybrid_problems() + self.model_problems() + self.data_problems()
                + self.student_problems() + self.iteration_problems())

    def check(self) -> None:
        """Fail at parse time, before any job runs, with every problem found."""
        problems = self.problems()
        if problems:
            raise ConfigError("config: " + "; ".join(dict.fromkeys(problems)))
