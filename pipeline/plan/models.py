"""The plan's models: a named model's settings (configured, a student of an iteration, a fine-tuned or an
exported copy), its kind, the embeddings and workflow-made folders scoring with it needs, the fine-tunes
and the exports.

A part of :class:`pipeline.plan.Plan`; it reads the plan's ``config``, ``shared_root``, ``folder_of`` (a
seed's own folder, or the shared one) and ``peers`` (a peer trained beside the student keeps its own settings).
"""

from __future__ import annotations

import re
from typing import Any

from ..config import ConfigError, complete
from ..export import FORMATS as EXPORT_FORMATS
from ..export import QUANTIZED_FORMATS
from ..export import missing_backends

# the student after iteration K, or after one of its phases (``student-it1-warmup``: students/it1/warmup)
STUDENT = re.compile(r"^student-it(\d+)(?:-([a-z]+))?$")
# a model exported for serving, in one format (``student-it2.onnx-int8``: pipeline/export.py)
EXPORTED = re.compile(r"^(.+)\.(%s)$" % "|".join(map(re.escape, EXPORT_FORMATS)))


class Models:
    """Named models (``models``, ``student``, ``export``, ``models.<name>.finetune``)."""

    config: dict[str, Any]
    shared_root: str
    folder_of: Any

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
            source = f"{self.folder_of(name)}/students/it{it}" + (f"/{phase}" if phase else "")
            # a peer trained beside the student (OnMKD's) keeps its own settings (pooling, lengths)
            settings = self.peers(it).get(phase, self.config["student"]) if phase and int(it) > 0 else self.config["student"]
            return dict(settings, layers=None, source=source, name=name)
        if name not in self.config["models"]:
            raise ConfigError(f"config: unknown model {name!r}; models are {sorted(self.config['models'])}")
        # what the workflow does before the model serves (fine-tune it, choose its weights) is not the model's
        model = {k: v for k, v in self.config["models"][name].items() if k not in ("finetune", "choose_weights")}
        if self.finetuned(name):  # from then on the model is the workflow's own fine-tuned copy
            return dict(model, source=self.finetuned_model_dir(name), layers=None, name=name)
        if self.chooses_weights(name):  # every job scoring with it reads the weights chosen on judged queries
            return dict(model, weights_path=self.fusion_weights_path(name), name=name)
        return dict(model, name=name)

    def kind(self, name: str) -> str | None:
        """A model's kind, or None for a name that is neither a configured model nor a student."""
        exported = EXPORTED.match(name)
        if exported:
            return self.kind(exported.group(1))
        if STUDENT.match(name):
            return "bi-encoder"
        return self.config["models"].get(name, {}).get("kind")

    @staticmethod
    def role_of(name: str) -> tuple[str, int | None, str | None]:
        """(role, iteration, phase): ``("student", 1, "warmup")`` for ``student-it1-warmup``; an export
        has its model's (``student-it2.onnx``: ``("student", 2, None)``)."""
        exported = EXPORTED.match(name)
        match = STUDENT.match(exported.group(1) if exported else name)
        return ("student", int(match.group(1)), match.group(2)) if match else ("teacher", None, None)

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
        return [f"{self.folder_of(model)}/embeddings/{model}/shard-{k}-of-{n}.parquet" for k in range(n)]

    def index_dir(self, model: str) -> str:
        return f"{self.folder_of(model)}/index/{model}"

    def embedding_shards(self, names) -> dict[str, list[str]]:
        """Corpus embedding shards of every bi-encoder that scoring with any of ``names`` needs."""
        return {b: self.shards(b) for name in names for b in self.bi_encoders_of(name)}

    def model_inputs(self, name: str) -> list[str]:
        """The folder of a model the workflow makes (a student, a fine-tuned model, an export); none for
        the others."""
        if exported := EXPORTED.match(name):
            return [self.export_dir(exported.group(1))]
        role, it, phase = self.role_of(name)
        if role == "student":
            return [f"{self.folder_of(name)}/students/it{it}"]
        if self.chooses_weights(name):
            return [self.fusion_weights_path(name)]
        return [self.finetuned_model_dir(name)] if self.finetuned(name) else []

    def scorer_inputs(self, name: str) -> list[str]:
        """The folders of the workflow-made models that scoring with ``name`` loads (itself, fusion members)."""
        return [p for n in self.models_of(name) for p in self.model_inputs(n)]

    # -- models the workflow fine-tunes before they serve (``models.<name>.finetune``) -------------

    def finetuned(self, name: str) -> bool:
        return self.config["models"].get(name, {}).get("finetune") is not None

    def finetuned_model_dir(self, name: str) -> str:
        return f"{self.shared_root}/models/{name}"

    def finetune_settings(self, name: str) -> dict[str, Any]:
        return complete(self.config["models"][name]["finetune"], "finetune", where=f"models.{name}.finetune")

    def finetune_miner_inputs(self, name: str) -> list[str]:
        """The index a fine-tune mines its hard negatives with, when its miner is a bi-encoder."""
        miner = self.finetune_settings(name)["miner"]
        return [self.index_dir(miner)] if self.kind(miner) == "bi-encoder" else []

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
            scratch_dir=f"{self.shared_root}/scratch/finetune-{name}",
            include_title=self.config["include_title"],
            device=self.config["device"],
            seed=self.config["seed"],
            provenance={"finetuned": name},
        )

    # -- fusions whose weights are chosen on the judged training queries (``models.<name>.choose_weights``)

    def chooses_weights(self, name: str) -> bool:
        """Whether the run chooses the fusion ``name``'s weights: it asks to, and judged training queries are read."""
        model = self.config["models"].get(name, {})
        return model.get("kind") == "fusion" and model.get("choose_weights") is not None and self.judged_training

    def fusion_weights_path(self, name: str) -> str:
        return f"{self.shared_root}/fusion-weights/{name}.json"

    def weight_choice_inputs(self, name: str) -> dict[str, Any]:
        """What choosing the fusion's weights reads: the data, the prepared train split's judgments (sampled
        as the dev split is), the test split's query ids, and what its members score with."""
        members = self.model(name)["members"]
        return {"corpus": self.data["corpus"], "queries": self.data["queries"],
                "qrels": self.prepared_qrels(self.config["splits"]["train"]), "test": self.data["qrels_test"],
                "shards": [p for shards in self.embedding_shards(members).values() for p in shards],
                "models": [p for m in members for p in self.scorer_inputs(m)]}

    def weight_choice_settings(self, name: str) -> dict[str, Any]:
        """What decides the choice, without paths: the rule's tracked params."""
        model = {k: v for k, v in self.model(name).items() if k != "weights_path"}
        return {"model": model, "models": self.models_of(name),
                **self.config["models"][name]["choose_weights"], "seed": self.config["seed"],
                "train_queries": self.config["splits"]["train_queries"],
                "rerank_depth": self.config["evaluate"]["rerank_depth"], "include_title": self.config["include_title"]}

    def weight_choice_args(self, name: str, input, output) -> str:
        members = self.model(name)["members"]
        return self.to_json(**self.weight_choice_settings(name), queries_path=input.queries,
                            corpus_path=input.corpus, qrels_path=input.qrels, test_qrels_path=input.test,
                            out_path=output[0], embedding_shards=self.embedding_shards(members),
                            device=self.config["device"])

    # -- exports for serving (``export``) -----------------------------------------------------------

    def export_dir(self, name: str) -> str:
        return f"{self.folder_of(name)}/export/{name}"

    @property
    def last_student(self) -> str:
        """The student of the last iteration: the one the run exports."""
        return f"student-it{self.config['iterations']}"

    def export_dirs(self) -> list[str]:
        """The export folders the run makes: the last iteration's student's, when it has formats."""
        return [self.export_dir(self.last_student)] if self.config["export"]["formats"] else []

    def exported_models(self) -> list[str]:
        """The last iteration's student in each format ``export.evaluate`` names (``auto``: the quantized
        ones), each evaluated like any model; the others are checked in the export job only."""
        return [f"{self.last_student}.{fmt}" for fmt in self.evaluated_export_formats()]

    def evaluated_export_formats(self) -> list[str]:
        formats, evaluate = self.config["export"]["formats"], self.config["export"]["evaluate"]
        if evaluate == "auto":
            return [fmt for fmt in formats if fmt in QUANTIZED_FORMATS]
        return [fmt for fmt in formats if fmt in evaluate]

    # -- checks -------------------------------------------------------------------------------------

    def model_problems(self) -> list[str]:
        """The models' checks the schema cannot express (sources, fusion members, fine-tunes, baselines)."""
        problems, models = [], self.config["models"]
        for name, model in models.items():
            if model.get("finetune") is not None:
                problems += self._finetune_problems(name)
            if model["kind"] in ("bi-encoder", "cross-encoder") and not model.get("source"):
                problems.append(f"models.{name}: a {model['kind']} needs a source")
            if model.get("choose_weights") is not None and model["kind"] != "fusion":
                problems.append(f"models.{name}.choose_weights: only a fusion's weights are chosen; {name!r} is a "
                                f"{model['kind']}")
            elif model.get("choose_weights") is not None:
                step = model["choose_weights"]["step"]
                if abs(round(1 / step) * step - 1) > 1e-9:
                    problems.append(f"models.{name}.choose_weights.step: {step} does not divide 1 (0.5, 0.25, 0.1)")
            if model["kind"] == "fusion":
                if not model.get("members"):
                    problems.append(f"models.{name}: a fusion needs members")
                problems += [f"models.{name}.members: unknown model {m!r}" for m in model.get("members", {})
                             if m not in models]
        problems += [f"evaluate.baselines: unknown model {name!r}; models are {sorted(models)}"
                     for name in self.config["evaluate"]["baselines"] if name not in models]
        return problems

    def student_problems(self) -> list[str]:
        problems = [] if self.config["student"]["kind"] == "bi-encoder" else ["student.kind: the student must be a bi-encoder"]
        export = self.config["export"]
        if export["evaluate"] != "auto":
            problems += [f"export.evaluate: {fmt!r} is not exported (export.formats: {export['formats']})"
                         for fmt in export["evaluate"] if fmt not in export["formats"]]
        return problems + missing_backends(export["formats"])

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
        missing = self.missing_training_judgments() if self.judged_training else None
        if missing:
            problems.append(f"{where}: fine-tuning needs judged training queries, and {missing} does not exist")
        return problems
