"""The plan's data and labels: where the BEIR folder comes from, the prepared data's paths, which source
labels the training queries (judgments, the teacher, or both) and the labelling job's arguments.

A part of :class:`pipeline.plan.Plan`; it reads the plan's ``config``, ``shared_root``, ``iteration`` (iteration 1's
teacher labels) and ``eval_inputs`` (the labeller retrieves as evaluation does).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from ..data import count_judged_queries
from ..labels import TEACHER_LABEL_SOURCES


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


class DataAndLabels:
    """The data folder, the prepared data and the training labels (``data_dir``, ``splits``, ``labels``)."""

    config: dict[str, Any]
    root: str
    shared_root: str

    def _plan_data(self) -> None:
        config = self.config
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
            self._forget_iterations()  # made with source: auto
        #: judged training queries are read (labels.source: qrels, qrels+teacher): they give the dev split
        self.judged_training = labels["source"] in ("qrels", "qrels+teacher")
        #: a teacher labels queries (labels.source: teacher, qrels+teacher): every query with qrels+teacher
        #: but the judged ones, which keep their judgments
        self.teacher_labelled = labels["source"] in TEACHER_LABEL_SOURCES
        #: every split prepare validates: train (when judged training queries are read), test and a named dev split
        self.prepared_splits = sorted({*([splits["train"]] if self.judged_training else []), splits["test"],
                                       *filter(None, [splits["dev"]["split"]])})
        self.prepared_queries = f"{self.shared_root}/data/queries.parquet"
        self.pseudo_queries = self.teacher_labelled and labels["pseudo_queries"]["count"] > 0
        #: a further seed's run draws its own training sample and dev split (``splits.per_seed``): then what
        #: reads them (iteration 1's candidates and their scores, every model's dev figures) is its own too
        self.own_splits = bool(splits["per_seed"]) and self.shared_root != self.root
        #: the seed the training sample and dev split were drawn with: this run's, or the first seed's
        self.split_seed = config["seed_of"]["seed"] if config.get("seed_of") and not self.own_splits else config["seed"]
        splits_root = self.root if self.own_splits else self.shared_root
        self.data = {
            "corpus": f"{self.shared_root}/data/corpus.parquet",
            # the queries every step reads texts from: queries.jsonl's, and pseudo-queries when made
            "queries": f"{self.shared_root}/data/queries-and-pseudo.parquet" if self.pseudo_queries else self.prepared_queries,
            # what training reads: the train split less the dev queries (and cut to train_queries)
            "qrels_train": f"{splits_root}/data/training-qrels.parquet",
            "qrels_dev": f"{splits_root}/data/dev-qrels.parquet",
            # the split's report (how many dev queries, or why none): the seed's own with splits.per_seed
            "splits_report": f"{splits_root}/data/splits.json",
            "qrels_test": self.prepared_qrels(splits["test"]),
        }

    def prepared_qrels(self, split: str) -> str:
        return f"{self.shared_root}/data/qrels-{split}.parquet"

    def training_labels(self) -> str:
        """The labelled training queries the dev split is carved from: the judged train split, or the
        teacher's labels."""
        return self.prepared_qrels(self.config["splits"]["train"]) if self.judged_training else self.teacher_labels

    @property
    def teacher_labels(self) -> str:
        return f"{self.shared_root}/data/qrels-teacher.parquet"

    @property
    def teacher_graded_labels(self) -> str:
        return f"{self.shared_root}/data/qrels-teacher-graded.parquet"

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

    def data_problems(self) -> list[str]:
        """The splits and labels checks the schema cannot express."""
        problems, splits = [], self.config["splits"]
        if splits["train"] == splits["test"] and self.judged_training:
            problems.append(f"splits: train and test are both {splits['train']!r}; the student would be trained on "
                            "the judgments it is evaluated with. Name another training split (with qrels/<name>.tsv), "
                            "or, for a collection judged on its test split only, let the teacher label the training "
                            "queries (labels: {source: teacher})")
        if self.teacher_labelled:
            problems += self._labelling_problems()
        if self.judged_training:
            missing = self.missing_training_judgments()
            if missing:
                problems.append(f"splits.train: {missing} does not exist; without training "
                                "judgments let the teacher label the training queries (labels: {source: teacher}; "
                                "configs/label-free.yaml)")
        if splits["dev"]["split"] in (splits["train"], splits["test"]):
            problems.append(f"splits.dev.split: {splits['dev']['split']!r} is the {'train' if splits['dev']['split'] == splits['train'] else 'test'} "
                            "split; the dev split must be held out of both")
        return problems

    def missing_training_judgments(self) -> str | None:
        """``data_dir/qrels/<splits.train>.tsv`` when the data folder exists without it (a folder still to be
        downloaded has not been looked at: None)."""
        data_dir, split = self.config["data_dir"], self.config["splits"]["train"]
        path = Path(data_dir or "") / "qrels" / f"{split}.tsv"
        return f"{data_dir}/qrels/{split}.tsv" if data_dir and Path(data_dir).is_dir() and not path.is_file() else None

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
