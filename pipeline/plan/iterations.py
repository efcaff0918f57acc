"""The plan's iterations: each iteration's config, what its methods need (their :class:`Needs`, merged once),
its miner, candidates and training job.

A part of :class:`pipeline.plan.Plan`; it reads the plan's ``config``, ``root`` (this seed's folder),
``shared_root``, ``seeded``, ``seeds_own``, ``data`` and its models' part (``kind``, ``index_dir``,
``embedding_shards``, ``scorer_inputs``, ``models_of``).
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, complete
from ..methods import Method, get_method
from ..methods.base import Needs, merge_needs, recipe_problems
from ..methods.standard import resolve_warmup_texts
from .arguments import deep_merge


class Iterations:
    """The iterations (``iterations``, ``overrides``, ``methods``, ``mine``, ``train``) and their needs."""

    config: dict[str, Any]
    root: str
    own_splits: bool
    data: dict[str, str]

    def _forget_iterations(self) -> None:
        """Drop what was derived from the config (after parse time changes it: labels.source: auto)."""
        self._iteration_configs: dict[int, dict[str, Any]] = {}
        self._needs: dict[int, Needs] = {}

    @property
    def iterations(self) -> range:
        return range(1, self.config["iterations"] + 1)

    def iteration(self, it: int | str) -> dict[str, Any]:
        """The config of iteration ``it``: the base config with ``overrides[it]`` deep-merged over it, and
        validated again, so that a typo in an override fails like one in the base config."""
        it = int(it)
        if it not in self._iteration_configs:
            scheduled = self.schedule()
            override = deep_merge(scheduled[it - 1] if it <= len(scheduled) else {},
                                  self.config["overrides"].get(str(it), {}))
            base = {k: v for k, v in self.config.items() if k != "overrides"}
            c = complete(deep_merge(base, override), where=f"overrides.{it}")
            # warmup.texts: auto, resolved here so that the train job (and the needs of its methods) read a list
            c["warmup"]["texts"] = resolve_warmup_texts(c["warmup"]["texts"], self.config["labels"]["source"])
            self._iteration_configs[it] = c
        return self._iteration_configs[it]

    def schedule(self) -> list[dict[str, Any]]:
        """Per-iteration overrides of a method that sets the iterations itself (PROD's stages and rounds),
        asked of the base config's methods; the user's ``overrides`` go over them."""
        for name in self.config["methods"]:
            scheduled = get_method(name).schedule(self.config)
            if scheduled is not None:
                return scheduled
        return []

    def methods(self, it: int | str) -> list[Method]:
        """The distillation methods iteration ``it`` trains with, in config order."""
        return [get_method(name) for name in self.iteration(it)["methods"]]

    def needs(self, it: int | str) -> Needs:
        """What iteration ``it``'s methods need of the workflow, merged (:func:`merge_needs`); a conflict
        between methods names the iteration."""
        it = int(it)
        if it not in self._needs:
            try:
                self._needs[it] = merge_needs({m.name: m.plan(self, it) for m in self.methods(it)})
            except ConfigError as err:
                raise ConfigError(f"iteration {it}: {err}") from None
        return self._needs[it]

    def describe(self, it: int | str) -> str:
        """What iteration ``it`` is, for the dry run and the summary."""
        return self.needs(it).description or f"teacher {self.iteration(it)['teacher']}"

    def teachers_of(self, it: int | str) -> list[str]:
        """Scorers whose scores of the candidates the training of iteration ``it`` reads."""
        return list(self.needs(it).scorers)

    def train_models(self, it: int | str) -> list[str]:
        """Configured models the training job loads itself (warm-up teachers, in-batch teachers)."""
        return list(self.needs(it).models)

    def train_embeddings(self, it: int | str) -> list[str]:
        """Models whose cached corpus embeddings the training job reads."""
        return list(self.needs(it).embeddings)

    def peers(self, it: int | str) -> dict[str, dict[str, Any]]:
        """Models iteration ``it`` trains beside the student (subfolder -> settings; OnMKD's peer)."""
        return {name: dict(settings) for name, settings in self.needs(it).peers.items()}

    def reports(self, it: int | str) -> list[str]:
        """Methods' JSON reports of iteration ``it`` (e.g. PROD's selection) that the summary shows."""
        return list(self.needs(it).reports)

    def method_rules(self) -> list[str]:
        """Rule files of the configured methods that add stages to the DAG (``rules/methods/<name>.smk``)."""
        files: dict[str, None] = {}
        for it in self.iterations:
            files.update(dict.fromkeys(m.rules for m in self.methods(it) if m.rules))
        return list(files)

    # -- candidates -----------------------------------------------------------------------------------

    def miner_of(self, it: int | str) -> str:
        c = self.iteration(it)["mine"]
        name = c["first_miner"] if int(it) == 1 else c["miner"]
        return f"student-it{int(it) - 1}" if name == "student" else name

    def miner_inputs(self, it: int | str) -> list[str]:
        """The index iteration ``it`` mines with, when its miner is a bi-encoder (BM25 needs none)."""
        miner = self.miner_of(it)
        return [self.index_dir(miner)] if self.kind(miner) == "bi-encoder" else []

    def mined_candidates(self, it: int | str) -> str:
        """Iteration ``it``'s mined candidates: shared by the seeds unless the miner changes with the seed or
        the training queries do (``splits.per_seed``)."""
        folder = self.root if self.own_splits else self.folder_of(self.miner_of(it))
        return f"{folder}/it{int(it)}/candidates.parquet"

    def scored_candidates(self, it: int | str) -> str:
        """The candidates iteration ``it`` scores: the mined ones, or a method's additions to them (ADAM)."""
        return self.needs(it).scored_candidates or self.mined_candidates(it)

    def scores_path(self, it: int | str, scorer: str) -> str:
        """Where ``scorer``'s scores of iteration ``it``'s candidates are: the seed's own when the scorer or the
        candidates are (a further seed's run), else shared."""
        seeded = self.seeded(scorer) or self.seeds_own(self.scored_candidates(it))
        return f"{self.root if seeded else self.shared_root}/it{int(it)}/scores/{scorer}.parquet"

    def training_candidates(self, it: int | str) -> str:
        """The candidates iteration ``it`` trains on: the scored ones, or a method's selection (PROD's rounds)."""
        return self.needs(it).training_candidates or self.scored_candidates(it)

    # -- the train job ----------------------------------------------------------------------------------

    def train_inputs(self, it: int | str) -> dict[str, Any]:
        it = int(it)
        return {
            "corpus": self.data["corpus"],
            "queries": self.data["queries"],
            "qrels_train": self.data["qrels_train"],
            "student": self.model_inputs(f"student-it{it - 1}")[0],
            "candidates": self.training_candidates(it),
            "scores": [self.scores_path(it, t) for t in self.teachers_of(it)],
            "embeddings": [p for shards in self.embedding_shards(self.train_embeddings(it)).values() for p in shards],
            "models": [p for name in dict.fromkeys(self.train_models(it) + self.train_embeddings(it))
                       for p in self.scorer_inputs(name)],
        }

    def _train_settings(self, it: int) -> dict[str, Any]:
        c = self.iteration(it)
        models = dict.fromkeys(self.train_models(it) + self.train_embeddings(it))
        sections = {"train"} | {s for m in self.methods(it) for s in m.sections}
        return {"methods": c["methods"], "config": {s: c[s] for s in sorted(sections)},
                "models": {n: m for name in models for n, m in self.models_of(name).items()},
                "include_title": self.config["include_title"], "seed": self.config["seed"] + it}

    def train_settings(self, it: int | str) -> str:
        """What iteration ``it``'s training does, without paths: the train rule's tracked params (a change
        reruns the iteration and what follows)."""
        return self.to_json(teachers=self.teachers_of(it), **self._train_settings(int(it)))

    def train_processes(self, it: int | str) -> int:
        return self.iteration(it)["train"]["processes"]

    def train_launcher(self, it: int | str) -> str:
        """What starts iteration ``it``'s train step after the interpreter: the step itself, or torchrun
        starting ``train.processes`` of it on this node (a free port each, so jobs side by side do not meet)."""
        processes = self.train_processes(it)
        if processes == 1:
            return "-m pipeline train"
        return f"-m torch.distributed.run --standalone --nproc-per-node {processes} -m pipeline train"

    def train_args(self, it: int | str, input, output) -> str:
        """The arguments of iteration ``it``'s train job; paths come from the job's ``input`` and ``output``."""
        it = int(it)
        return self.to_json(
            student_dir=input.student,
            out_dir=output[0],
            candidates_path=input.candidates,
            score_paths=dict(zip(self.teachers_of(it), input.scores)),
            qrels_path=input.qrels_train,
            queries_path=input.queries,
            corpus_path=input.corpus,
            embedding_shards=self.embedding_shards(self.train_embeddings(it)),
            iteration=it,
            scratch_dir=f"{self.root}/scratch/train-it{it}",
            device=self.config["device"],
            provenance={"iteration": it, "experiment": self.experiment_name},
            **self._train_settings(it),
        )

    # -- checks ---------------------------------------------------------------------------------------

    def iteration_problems(self) -> list[str]:
        """Every iteration's checks: its teacher and miner, and each of its methods' (:meth:`Method.check`)."""
        problems, models = [], self.config["models"]
        for it in self.iterations:
            try:
                c = self.iteration(it)
            except ConfigError as err:
                problems.append(str(err))
                continue
            where = f"iteration {it}"
            if c["teacher"] not in models:
                problems.append(f"{where}: teacher: unknown model {c['teacher']!r}; models are {sorted(models)}")
            miner = c["mine"]["first_miner"] if it == 1 else c["mine"]["miner"]
            if miner != "student":
                if miner not in models:
                    problems.append(f"{where}: mine: unknown miner {miner!r}")
                elif models[miner]["kind"] not in ("bm25", "bi-encoder"):
                    problems.append(f"{where}: mine: {miner!r} is a {models[miner]['kind']}; "
                                    "miners are bm25 or bi-encoders")
            low, high = c["mine"]["window"]
            if not low < high:
                problems.append(f"{where}: mine.window [{low}, {high}) is empty")
            method_problems = recipe_problems(self.methods(it))
            method_problems += [p for method in self.methods(it) for p in method.check(self, it)]
            problems += [f"{where}: {p}" for p in method_problems]
            if not method_problems:  # a method's plan may assume its checks passed
                try:
                    self.needs(it)
                except ConfigError as err:
                    problems.append(str(err))
        return problems
