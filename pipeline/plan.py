"""The plan of a run: which models, iterations, artifacts and job arguments a validated config asks for.

The Snakefile and its rules read like a table of contents; every decision they need (the config of an
iteration, the miner of iteration k, which models a scorer needs, which scores the training of an
iteration reads, the cross-field checks of the config) is made here, by one object that unit tests
build without Snakemake. Torch-free: it runs at parse time, also on every cluster node.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from .config import ConfigError, complete
from .data import count_judged_queries
from .export import FORMATS as EXPORT_FORMATS
from .export import missing_backends
from .methods import Method, get_method

# the student after iteration K, or after one of its phases (``student-it1-warmup``: students/it1/warmup)
STUDENT = re.compile(r"^student-it(\d+)(?:-([a-z]+))?$")
# a model exported for serving, in one format (``student-it2.onnx-int8``: pipeline/export.py)
EXPORTED = re.compile(r"^(.+)\.(%s)$" % "|".join(map(re.escape, EXPORT_FORMATS)))


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in: nested dicts merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def to_json(**kwargs) -> str:
    """A step's keyword arguments as the JSON that ``python -m pipeline STEP`` reads (sorted: stable params)."""
    return json.dumps(kwargs, sort_keys=True)


# Paths in a job's arguments name the experiment's folder and the data folder by these tokens; the job's
# environment (``PIPELINE_ROOT``, ``PIPELINE_DATA_DIR``; by hand: ``--root``, ``--data-dir``) gives them back
# (:func:`expand_tokens`). So a job's params are the same in every experiment on the same data, and
# Snakemake's between-workflow cache (``cache:``, ``--cache``), which keys an output by the params of its job
# and of every job upstream, serves one experiment's teacher work to the next.
ROOT_TOKEN = "{root}"
DATA_DIR_TOKEN = "{data_dir}"


def replace_prefixes(value: Any, prefixes: dict[str, str]) -> Any:
    """``value`` (JSON-like) with every string that is, or starts with, ``old`` + "/" made to start with
    ``prefixes[old]`` instead."""
    if isinstance(value, dict):
        return {k: replace_prefixes(v, prefixes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_prefixes(v, prefixes) for v in value]
    if isinstance(value, str):
        for old, new in prefixes.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
    return value


def expand_tokens(kwargs: dict[str, Any], root: str | None, data_dir: str | None) -> dict[str, Any]:
    """A job's arguments with :data:`ROOT_TOKEN` and :data:`DATA_DIR_TOKEN` replaced by the folders named
    on its command line (or in its environment: the workflow's jobs); a token without its folder is an
    error, not a path that silently does not exist."""
    text = json.dumps(kwargs)
    for token, folder, option in ((ROOT_TOKEN, root, "--root (nor $PIPELINE_ROOT)"),
                                  (DATA_DIR_TOKEN, data_dir, "--data-dir (nor $PIPELINE_DATA_DIR)")):
        if folder is None and json.dumps(token)[1:-1] in text:
            raise ConfigError(f"the step's arguments name {token} but its command line gives no {option}")
    prefixes = {token: folder for token, folder in ((ROOT_TOKEN, root), (DATA_DIR_TOKEN, data_dir)) if folder}
    return replace_prefixes(kwargs, prefixes)


def download_name(url: str) -> str:
    """The folder a downloaded BEIR zip unpacks into: its file name less ``.zip`` (``scifact``)."""
    name = Path(urllib.parse.urlparse(url).path).name
    return name[: -len(".zip")] if name.endswith(".zip") else name or "download"


def auto_label_source(data_dir: str | None, train_split: str, train_queries: int | None,
                      few_judged_queries: int, calibrated: bool = False) -> tuple[str, str]:
    """``labels.source: auto``: (the source, why), from the number of queries the train split judges
    (``data_dir/qrels/<train_split>.tsv``; a collection still to be downloaded, ``data_dir`` None, counts
    as many). Few judged queries leave distillation almost nothing to train on (15 judged MED queries: one
    step), so the teacher labels the others and pseudo-queries (benchmarks/README.md, collections), unless
    ``calibrated`` (an iteration's ``train.teacher_scale: calibrated`` fits teachers on judged positives,
    which the teacher's own labels would bias)."""
    if data_dir is None:
        return "qrels", "a downloaded collection: its judged training queries"
    path = Path(data_dir) / "qrels" / f"{train_split}.tsv"
    if not path.is_file():
        return "teacher", f"{path} does not exist: the teacher labels the training queries"
    judged = count_judged_queries(path)
    if train_queries is not None:
        judged = min(judged, train_queries)
    if judged >= few_judged_queries:
        return "qrels", f"{judged} judged training queries (labels.few_judged_queries: {few_judged_queries})"
    if calibrated:
        return "qrels", (f"{judged} judged training queries, fewer than labels.few_judged_queries "
                         f"({few_judged_queries}), but train.teacher_scale: calibrated fits teachers on judged "
                         "positives only, so the teacher labels nothing (teacher_scale: auto lets it)")
    return "qrels+teacher", (f"{judged} judged training queries, fewer than labels.few_judged_queries "
                             f"({few_judged_queries}): the teacher labels the other queries and pseudo-queries")


class Plan:
    """What a validated config (schema defaults filled in) asks the workflow to do."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self._iteration_configs: dict[int, dict[str, Any]] = {}
        self.root = f"{config['results_dir']}/{config['experiment']}"
        #: the BEIR folder is downloaded (``download``: SciFact by default) when no ``data_dir`` is given
        self.downloads = not config["data_dir"]
        #: the BEIR folder prepare reads: ``data_dir``, or the download's, named after its zip
        self.data_dir = config["data_dir"] or f"{config['cache_dir']}/beir/{download_name(config['download']['url'])}"
        splits, labels = config["splits"], config["labels"]
        #: why labels.source is what it is, when auto chose it (the Snakefile says so at parse time)
        self.label_source_reason = None
        if labels["source"] == "auto":  # resolved once, here, so that every rule and job reads the same source
            labels["source"], self.label_source_reason = auto_label_source(
                None if self.downloads else self.data_dir, splits["train"], splits["train_queries"],
                labels["few_judged_queries"], self._calibrates())
            self._iteration_configs.clear()  # made with source: auto
        #: judged training queries are read (labels.source: qrels, qrels+teacher): they give the dev split
        self.judged_training = labels["source"] in ("qrels", "qrels+teacher")
        #: a teacher labels queries (labels.source: teacher, qrels+teacher): every query with qrels+teacher
        #: but the judged ones, which keep their judgments
        self.teacher_labelled = labels["source"] in ("teacher", "qrels+teacher")
        #: every split prepare validates: train (when judged training queries are read), test and a named dev split
        self.prepared_splits = sorted({*([splits["train"]] if self.judged_training else []), splits["test"],
                                       *filter(None, [splits["dev"]["split"]])})
        self.prepared_queries = f"{self.root}/data/queries.parquet"
        self.pseudo_queries = self.teacher_labelled and labels["pseudo_queries"]["count"] > 0
        self.data = {
            "corpus": f"{self.root}/data/corpus.parquet",
            # the queries every step reads texts from: queries.jsonl's, and pseudo-queries when made
            "queries": f"{self.root}/data/queries-and-pseudo.parquet" if self.pseudo_queries else self.prepared_queries,
            # what training reads: the train split less the dev queries (and cut to train_queries)
            "qrels_train": f"{self.root}/data/training-qrels.parquet",
            "qrels_dev": f"{self.root}/data/dev-qrels.parquet",
            "qrels_test": self.prepared_qrels(splits["test"]),
        }

    def _calibrates(self) -> bool:
        """Whether an iteration fits its teachers' scales on judged positives (train.teacher_scale: calibrated);
        an iteration whose config is wrong counts as not (check() reports it)."""
        try:
            return any(self.iteration(it)["train"]["teacher_scale"] == "calibrated" for it in self.iterations)
        except ConfigError:
            return False

    def prepared_qrels(self, split: str) -> str:
        return f"{self.root}/data/qrels-{split}.parquet"

    # ----------------------------------------------------------------------------------------------
    # training labels (``labels``): judged qrels, or a teacher's top-ranked passages
    # ----------------------------------------------------------------------------------------------

    def training_labels(self) -> str:
        """The labelled training queries the dev split is carved from: the judged train split, or the
        teacher's labels."""
        return self.prepared_qrels(self.config["splits"]["train"]) if self.judged_training else self.teacher_labels

    @property
    def teacher_labels(self) -> str:
        return f"{self.root}/data/qrels-teacher.parquet"

    @property
    def teacher_graded_labels(self) -> str:
        return f"{self.root}/data/qrels-teacher-graded.parquet"

    def graded_dev_labels(self) -> list[str]:
        """The teacher's graded top passages, when they label the dev split (labels.dev_depth > 1 with no
        judged training queries)."""
        graded = self.teacher_labelled and not self.judged_training and self.config["labels"]["dev_depth"] > 1
        return [self.teacher_graded_labels] if graded else []

    @property
    def labeller(self) -> str:
        """The model whose top-ranked passages are the positives (``labels.teacher``, else iteration 1's teacher)."""
        return self.config["labels"]["teacher"] or self.iteration(1)["teacher"]

    def labelling_inputs(self) -> dict[str, Any]:
        """What labelling reads: the queries, the test split's query ids (``labels.queries: unjudged``) and,
        as evaluation does, the labeller's index and corpus embeddings and the models it loads."""
        # the labeller retrieves as evaluation does, less the judged splits (the dev split comes from its labels)
        inputs = {k: v for k, v in self.eval_inputs(self.labeller).items() if not k.startswith("qrels_")}
        inputs["test"] = [self.data["qrels_test"]] if self.config["labels"]["queries"] == "unjudged" else []
        return inputs

    def to_json(self, **kwargs) -> str:
        """:func:`to_json` with the experiment's and the data's folders as tokens (:data:`ROOT_TOKEN`)."""
        return to_json(**replace_prefixes(kwargs, {self.root: ROOT_TOKEN, self.data_dir: DATA_DIR_TOKEN}))

    def labelling_args(self, input, output) -> str:
        return self.to_json(
            model=self.model(self.labeller),
            queries_path=input.queries,
            corpus_path=input.corpus,
            out_path=output.qrels,
            graded_path=output.graded,
            report_path=output.report,
            test_qrels_path=input.test[0] if input.test else None,
            index_dir=input.get("index"),
            embedding_shards=self.embedding_shards([self.labeller]),
            models=self.models_of(self.labeller),
            include_title=self.config["include_title"],
            device=self.config["device"],
            rerank_depth=self.config["evaluate"]["rerank_depth"],
            **self.labelling_settings(),
        )

    def labelling_settings(self) -> dict[str, Any]:
        """What decides the labels, without paths: the labelling rule's tracked params."""
        labels = self.config["labels"]
        return {**{k: labels[k] for k in ("queries", "positives", "min_probability", "scale", "depth", "dev_depth")},
                "similarity_scale": self.iteration(1)["train"]["similarity_scale"]}

    # ----------------------------------------------------------------------------------------------
    # iterations and models
    # ----------------------------------------------------------------------------------------------

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
            self._iteration_configs[it] = complete(deep_merge(base, override), where=f"overrides.{it}")
        return self._iteration_configs[it]

    def schedule(self) -> list[dict[str, Any]]:
        """Per-iteration overrides of a method that sets the iterations itself (PROD's stages and rounds),
        asked of the base config's methods; the user's ``overrides`` go over them."""
        for name in self.config["methods"]:
            scheduled = get_method(name).schedule(self.config)
            if scheduled is not None:
                return scheduled
        return []

    def describe(self, it: int | str) -> str:
        """What iteration ``it`` is, for the dry run and the summary."""
        labels = [label for m in self.methods(it) if (label := m.describe(self, int(it)))]
        return "; ".join(labels) or f"teacher {self.iteration(it)['teacher']}"

    def model(self, name: str) -> dict[str, Any]:
        """The settings of a named model, of the student of an iteration (``student-itK``), or of either
        exported in a format (``student-itK.onnx``: the export folder, run by that format's backend)."""
        exported = EXPORTED.match(name)
        if exported:
            base, fmt = exported.groups()
            backend, file_name = EXPORT_FORMATS[fmt]
            return dict(self.model(base), source=self.export_dir(base), layers=None, backend=backend,
                        file_name=file_name, name=name)
        match = STUDENT.match(name)
        if match:
            it, phase = match.groups()
            source = f"{self.root}/students/it{it}" + (f"/{phase}" if phase else "")
            # a peer trained beside the student (OnMKD's) keeps its own settings (pooling, lengths)
            settings = self.peers(it).get(phase, self.config["student"]) if phase and int(it) > 0 else self.config["student"]
            return dict(settings, layers=None, source=source, name=name)
        if name not in self.config["models"]:
            raise ConfigError(f"config: unknown model {name!r}; models are {sorted(self.config['models'])}")
        model = {k: v for k, v in self.config["models"][name].items() if k != "finetune"}
        if self.finetuned(name):  # from then on the model is the workflow's own fine-tuned copy
            return dict(model, source=self.finetuned_model_dir(name), layers=None, name=name)
        return dict(model, name=name)

    # ----------------------------------------------------------------------------------------------
    # models the workflow fine-tunes before they serve (``models.<name>.finetune``)
    # ----------------------------------------------------------------------------------------------

    def finetuned(self, name: str) -> bool:
        return self.config["models"].get(name, {}).get("finetune") is not None

    def finetuned_model_dir(self, name: str) -> str:
        return f"{self.root}/models/{name}"

    def finetune_settings(self, name: str) -> dict[str, Any]:
        return complete(self.config["models"][name]["finetune"], "finetune", where=f"models.{name}.finetune")

    def finetune_miner_inputs(self, name: str) -> list[str]:
        """The index a fine-tune mines its hard negatives with, when its miner is a bi-encoder."""
        miner = self.finetune_settings(name)["miner"]
        return [f"{self.root}/index/{miner}"] if self.kind(miner) == "bi-encoder" else []

    def finetune_args(self, name: str, input, output) -> str:
        """The arguments of the job that fine-tunes ``name``; paths from the job's ``input`` and ``output``."""
        start = {k: v for k, v in self.config["models"][name].items() if k != "finetune"}
        return self.to_json(
            model=dict(start, name=name),
            out_dir=output[0],
            candidates_path=input.candidates,
            qrels_path=input.qrels_train,
            queries_path=input.queries,
            corpus_path=input.corpus,
            settings=self.finetune_settings(name),
            scratch_dir=f"{self.root}/scratch/finetune-{name}",
            include_title=self.config["include_title"],
            device=self.config["device"],
            seed=self.config["seed"],
            provenance={"finetuned": name},
        )

    # ----------------------------------------------------------------------------------------------
    # exports for serving (``export``)
    # ----------------------------------------------------------------------------------------------

    def export_dir(self, name: str) -> str:
        return f"{self.root}/export/{name}"

    def exported_models(self) -> list[str]:
        """The last iteration's student in each configured format, each evaluated like any model."""
        last = f"student-it{self.config['iterations']}"
        return [f"{last}.{fmt}" for fmt in self.config["export"]["formats"]]

    def kind(self, name: str) -> str | None:
        """A model's kind, or None for a name that is neither a configured model nor a student."""
        exported = EXPORTED.match(name)
        if exported:
            return self.kind(exported.group(1))
        if STUDENT.match(name):
            return "bi-encoder"
        return self.config["models"].get(name, {}).get("kind")

    def bi_encoders_of(self, name: str) -> list[str]:
        """The bi-encoders whose corpus embeddings scoring with ``name`` needs (itself, or fusion members)."""
        model = self.model(name)
        if model["kind"] == "bi-encoder":
            return [name]
        if model["kind"] == "fusion":
            return sorted({b for member in model["members"] for b in self.bi_encoders_of(member)})
        return []

    def models_of(self, name: str) -> dict[str, dict[str, Any]]:
        """The configured models a scorer needs to be rebuilt: itself and, for a fusion, its members."""
        model = self.model(name)
        names = {name} | {n for member in model.get("members", {}) for n in self.models_of(member)}
        return {n: self.model(n) for n in sorted(names) if n in self.config["models"]}

    def shards(self, model: str) -> list[str]:
        n = self.config["encode"]["shards"]
        return [f"{self.root}/embeddings/{model}/shard-{k}-of-{n}.parquet" for k in range(n)]

    def embedding_shards(self, names) -> dict[str, list[str]]:
        """Corpus embedding shards of every bi-encoder that scoring with any of ``names`` needs."""
        return {b: self.shards(b) for name in names for b in self.bi_encoders_of(name)}

    def miner_of(self, it: int | str) -> str:
        c = self.iteration(it)["mine"]
        name = c["first_miner"] if int(it) == 1 else c["miner"]
        return f"student-it{int(it) - 1}" if name == "student" else name

    def model_inputs(self, name: str) -> list[str]:
        """The folder of a model the workflow makes (a student, a fine-tuned model, an export); none for
        the others."""
        if exported := EXPORTED.match(name):
            return [self.export_dir(exported.group(1))]
        role, it, phase = self.role_of(name)
        if role == "student":
            return [f"{self.root}/students/it{it}"]
        return [self.finetuned_model_dir(name)] if self.finetuned(name) else []

    def scorer_inputs(self, name: str) -> list[str]:
        """The folders of the workflow-made models that scoring with ``name`` loads (itself, fusion members)."""
        return [p for n in self.models_of(name) for p in self.model_inputs(n)]

    def miner_inputs(self, it: int | str) -> list[str]:
        """The index iteration ``it`` mines with, when its miner is a bi-encoder (BM25 needs none)."""
        miner = self.miner_of(it)
        return [f"{self.root}/index/{miner}"] if self.kind(miner) == "bi-encoder" else []

    #: every model is evaluated on both in one job: the test split (the table people read) and the dev split
    EVAL_SPLITS = ("test", "dev")

    def eval_inputs(self, name: str) -> dict[str, Any]:
        """The data, each split's qrels (``qrels_test``, ``qrels_dev``), the model's index (bi-encoders) and
        the corpus embeddings scoring with it needs."""
        inputs: dict[str, Any] = {"corpus": self.data["corpus"], "queries": self.data["queries"],
                                  **{f"qrels_{split}": self.data[f"qrels_{split}"] for split in self.EVAL_SPLITS}}
        if self.kind(name) == "bi-encoder":
            inputs["index"] = f"{self.root}/index/{name}"
        inputs["shards"] = [p for shards in self.embedding_shards([name]).values() for p in shards]
        inputs["models"] = self.scorer_inputs(name)
        return inputs

    @staticmethod
    def role_of(name: str) -> tuple[str, int | None, str | None]:
        """(role, iteration, phase): ``("student", 1, "warmup")`` for ``student-it1-warmup``; an export
        has its model's (``student-it2.onnx``: ``("student", 2, None)``)."""
        exported = EXPORTED.match(name)
        match = STUDENT.match(exported.group(1) if exported else name)
        return ("student", int(match.group(1)), match.group(2)) if match else ("teacher", None, None)

    # ----------------------------------------------------------------------------------------------
    # methods
    # ----------------------------------------------------------------------------------------------

    def methods(self, it: int | str) -> list[Method]:
        """The distillation methods iteration ``it`` trains with, in config order."""
        return [get_method(name) for name in self.iteration(it)["methods"]]

    def teachers_of(self, it: int | str) -> list[str]:
        """Scorers whose scores of the mined candidates the training of iteration ``it`` reads."""
        return self._union(it, "scorers")

    def _union(self, it: int | str, question: str) -> list[str]:
        names: dict[str, None] = {}
        for method in self.methods(it):
            names.update(dict.fromkeys(getattr(method, question)(self, int(it))))
        return list(names)

    def train_models(self, it: int | str) -> list[str]:
        """Configured models the training job loads itself (warm-up teachers, in-batch teachers)."""
        return self._union(it, "models")

    def train_embeddings(self, it: int | str) -> list[str]:
        """Models whose cached corpus embeddings the training job reads."""
        return self._union(it, "embeddings")

    def peers(self, it: int | str) -> dict[str, dict[str, Any]]:
        """Models iteration ``it`` trains beside the student (subfolder -> settings; OnMKD's peer)."""
        peers: dict[str, dict[str, Any]] = {}
        for method in self.methods(it):
            peers.update(method.peers(self, int(it)))
        return peers

    def method_rules(self) -> list[str]:
        """Rule files of the configured methods that add stages to the DAG (``rules/methods/<name>.smk``)."""
        files: dict[str, None] = {}
        for it in self.iterations:
            files.update(dict.fromkeys(m.rules for m in self.methods(it) if m.rules))
        return list(files)

    def train_inputs(self, it: int | str) -> dict[str, Any]:
        it = int(it)
        return {
            "corpus": self.data["corpus"],
            "queries": self.data["queries"],
            "qrels_train": self.data["qrels_train"],
            "student": f"{self.root}/students/it{it - 1}",
            "candidates": self.training_candidates(it),
            "scores": [f"{self.root}/it{it}/scores/{t}.parquet" for t in self.teachers_of(it)],
            "embeddings": [p for shards in self.embedding_shards(self.train_embeddings(it)).values() for p in shards],
            "models": [p for name in dict.fromkeys(self.train_models(it) + self.train_embeddings(it))
                       for p in self.scorer_inputs(name)],
        }

    def mined_candidates(self, it: int | str) -> str:
        return f"{self.root}/it{int(it)}/candidates.parquet"

    def _one_of(self, it: int | str, question: str) -> str | None:
        chosen = [path for m in self.methods(it) if (path := getattr(m, question)(self, int(it)))]
        if len(chosen) > 1:
            raise ConfigError(f"iteration {it}: methods {[m.name for m in self.methods(it)]} each answer "
                              f"{question} ({chosen}); at most one may")
        return chosen[0] if chosen else None

    def scored_candidates(self, it: int | str) -> str:
        """The candidates iteration ``it`` scores: the mined ones, or a method's additions to them (ADAM)."""
        return self._one_of(it, "scored_candidates") or self.mined_candidates(it)

    def training_candidates(self, it: int | str) -> str:
        """The candidates iteration ``it`` trains on: the scored ones, or a method's selection (PROD's rounds)."""
        return self._one_of(it, "training_candidates") or self.scored_candidates(it)

    def reports(self, it: int | str) -> list[str]:
        """Methods' JSON reports of iteration ``it`` (e.g. PROD's selection) that the summary shows."""
        return self._union(it, "reports")

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
            provenance={"iteration": it, "experiment": self.config["experiment"]},
            **self._train_settings(it),
        )

    # ----------------------------------------------------------------------------------------------
    # evaluation
    # ----------------------------------------------------------------------------------------------

    def students(self) -> list[str]:
        """Every student the run makes, in the order it makes them: the untrained one, then per iteration
        the snapshots its methods keep (``student-it1-warmup``) and the iteration's student."""
        names = ["student-it0"]
        for it in self.iterations:
            names += [f"student-it{it}-{phase}" for phase in self._union(it, "snapshots")]
            names.append(f"student-it{it}")
            names += [f"student-it{it}-{peer}" for peer in self.peers(it)]
        return names

    def evaluated_models(self) -> list[str]:
        teachers = sorted({self.iteration(it)["teacher"] for it in self.iterations})
        return ((teachers if self.config["evaluate"]["teacher"] else []) + self.baselines() + self.students()
                + self.exported_models())

    def baselines(self) -> list[str]:
        """Models evaluated beside the teachers for comparison (``evaluate.baselines``; BM25 by default)."""
        teachers = {self.iteration(it)["teacher"] for it in self.iterations}
        return [name for name in self.config["evaluate"]["baselines"] if name not in teachers]

    def evaluated_role(self, name: str) -> str:
        """The role an evaluated model's row has in the summary: teacher, baseline or student."""
        return "baseline" if name in self.baselines() else self.role_of(name)[0]

    def metrics(self, name: str, split: str = "test") -> str:
        return f"{self.root}/eval/{split}/{name}/metrics.json"

    # ----------------------------------------------------------------------------------------------
    # the final student fused with BM25 (``hybrid``; pipeline/hybrid.py)
    # ----------------------------------------------------------------------------------------------

    @property
    def hybrid(self) -> bool:
        return self.config["hybrid"]["lexical"] is not None

    def hybrid_metrics(self, split: str = "test") -> list[str]:
        return [self.metrics("hybrid", split)] if self.hybrid else []

    def hybrid_inputs(self) -> dict[str, Any]:
        """What fusing the final student needs: the choice, the data, every student (the final one is known
        only when the run has chosen it), their corpus embeddings and test metrics (the encode speed)."""
        students = self.students()
        return {"final": f"{self.root}/final.json", "corpus": self.data["corpus"], "queries": self.data["queries"],
                **{f"qrels_{split}": self.data[f"qrels_{split}"] for split in self.EVAL_SPLITS},
                "students": list(dict.fromkeys(p for m in students for p in self.model_inputs(m))),
                "shards": [p for shards in self.embedding_shards(students).values() for p in shards],
                "metrics": [self.metrics(m) for m in students]}

    def hybrid_args(self, input, output) -> str:
        settings = self.config["hybrid"]
        students = self.students()
        return self.to_json(
            final_path=input.final, queries_path=input.queries, corpus_path=input.corpus,
            students={m: {"model": self.model(m), "embedding_shards": self.shards(m)} for m in students},
            lexical=self.model(settings["lexical"]),
            splits={split: {"qrels_path": input[f"qrels_{split}"], "out_dir": str(Path(output[f"{split}_metrics"]).parent)}
                    for split in self.EVAL_SPLITS},
            student_metrics={m: self.metrics(m) for m in students}, out_dir=output.export,
            student_weight=settings["student_weight"], grid=settings["grid"], normalization=settings["normalization"],
            choose_on_dev=self.judged_training, rerank_depth=self.config["evaluate"]["rerank_depth"],
            include_title=self.config["include_title"], device=self.config["device"])

    # ----------------------------------------------------------------------------------------------
    # checks
    # ----------------------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Cross-field checks the schema cannot express, for the models and for every iteration."""
        problems = []
        models = self.config["models"]
        if "hybrid" in models:
            problems.append("models.hybrid: the name is the summary's row of the final student fused with BM25 "
                            "(hybrid); name the model otherwise")
        lexical = self.config["hybrid"]["lexical"]
        if lexical is not None and models.get(lexical, {}).get("kind") != "bm25":
            problems.append(f"hybrid.lexical: {lexical!r} is not a bm25 model of `models`; add "
                            f"`{lexical}: {{kind: bm25}}` to models, or set hybrid.lexical: null for no hybrid")
        for name, model in models.items():
            if model.get("finetune") is not None:
                problems += self._finetune_problems(name)
            if model["kind"] in ("bi-encoder", "cross-encoder") and not model.get("source"):
                problems.append(f"models.{name}: a {model['kind']} needs a source")
            if model["kind"] == "fusion":
                if not model.get("members"):
                    problems.append(f"models.{name}: a fusion needs members")
                problems += [f"models.{name}.members: unknown model {m!r}" for m in model.get("members", {})
                             if m not in models]
        problems += [f"evaluate.baselines: unknown model {name!r}; models are {sorted(models)}"
                     for name in self.config["evaluate"]["baselines"] if name not in models]
        splits = self.config["splits"]
        if splits["train"] == splits["test"] and self.judged_training:
            problems.append(f"splits: train and test are both {splits['train']!r}; the student would be trained on "
                            "the judgments it is evaluated with. Name another training split (with qrels/<name>.tsv), "
                            "or, for a collection judged on its test split only, let the teacher label the training "
                            "queries (labels: {source: teacher})")
        if self.teacher_labelled:
            problems += self._labelling_problems()
        if self.judged_training:
            data_dir = self.config["data_dir"]
            if data_dir and Path(data_dir).is_dir() and not (Path(data_dir) / "qrels" / f"{splits['train']}.tsv").is_file():
                problems.append(f"splits.train: {data_dir}/qrels/{splits['train']}.tsv does not exist; without training "
                                "judgments let the teacher label the training queries (labels: {source: teacher}; "
                                "configs/label-free.yaml)")
        if splits["dev"]["split"] in (splits["train"], splits["test"]):
            problems.append(f"splits.dev.split: {splits['dev']['split']!r} is the {'train' if splits['dev']['split'] == splits['train'] else 'test'} "
                            "split; the dev split must be held out of both")
        if self.config["student"]["kind"] != "bi-encoder":
            problems.append("student.kind: the student must be a bi-encoder")
        problems += missing_backends(self.config["export"]["formats"])
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
            for method in self.methods(it):
                problems += [f"{where}: {p}" for p in method.check(self, it)]
            for question, what in (("scored_candidates", "scores"), ("training_candidates", "trains on")):
                chosen = [m.name for m in self.methods(it) if getattr(m, question)(self, it)]
                if len(chosen) > 1:  # e.g. PROD's rounds and MTA4DPR's harder data
                    problems.append(f"{where}: {' and '.join(chosen)} each choose the candidates the iteration "
                                    f"{what}; they do not compose, at most one method may")
        return problems

    def _labelling_problems(self) -> list[str]:
        labels, models = self.config["labels"], self.config["models"]
        problems = []
        if labels["teacher"] is not None and labels["teacher"] not in models:
            problems.append(f"labels.teacher: unknown model {labels['teacher']!r}; models are {sorted(models)}")
        elif self.finetuned(self.labeller):
            problems.append(f"labels.teacher: {self.labeller!r} is fine-tuned on the training labels, which it would "
                            "make itself; label with a model as it is")
        if labels["queries"] == "none" and not self.pseudo_queries:
            problems.append("labels: queries: none and no pseudo-queries (labels.pseudo_queries.count: 0) leave "
                            "nothing to train on")
        for it in self.iterations:
            if self.iteration(it)["train"]["teacher_scale"] == "calibrated":
                problems.append(f"iteration {it}: train.teacher_scale: calibrated fits a teacher's scale on judged "
                                "positives; with labels.source: teacher it would fit the teacher to its own labels. "
                                "Use auto or a number")
                break
        return problems

    def _finetune_problems(self, name: str) -> list[str]:
        where, models = f"models.{name}.finetune", self.config["models"]
        if models[name]["kind"] not in ("bi-encoder", "cross-encoder"):
            return [f"{where}: only bi-encoders and cross-encoders are trained; {name!r} is a {models[name]['kind']}"]
        try:
            settings = self.finetune_settings(name)
        except ConfigError as err:
            return [str(err)]
        problems, miner = [], settings["miner"]
        if miner not in models:
            problems.append(f"{where}.miner: unknown model {miner!r}; models are {sorted(models)}")
        elif models[miner]["kind"] not in ("bm25", "bi-encoder"):
            problems.append(f"{where}.miner: {miner!r} is a {models[miner]['kind']}; miners are bm25 or bi-encoders")
        elif self.finetuned(miner):
            problems.append(f"{where}.miner: {miner!r} is fine-tuned itself; mine with bm25 or a bi-encoder as it is")
        low, high = settings["window"]
        if not low < high:
            problems.append(f"{where}.window [{low}, {high}) is empty")
        data_dir, split = self.config["data_dir"], self.config["splits"]["train"]
        if self.judged_training and data_dir and Path(data_dir).is_dir() \
                and not (Path(data_dir) / "qrels" / f"{split}.tsv").is_file():
            problems.append(f"{where}: fine-tuning needs judged training queries, and {data_dir}/qrels/{split}.tsv "
                            "does not exist")
        return problems

    def check(self) -> None:
        """Fail at parse time, before any job runs, with every problem found."""
        problems = self.problems()
        if problems:
            raise ConfigError("config: " + "; ".join(problems))
