"""The plan's evaluation: which models are evaluated (teachers, baselines, every student, the exports), on
which splits, with what inputs, and the final student fused with BM25 (``hybrid``; pipeline/hybrid.py).

A part of :class:`pipeline.plan.Plan`; it reads the plan's ``config``, ``root``, ``data``, ``judged_training``,
its iterations (``iteration``, ``needs``, ``peers``) and its models' part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Evaluation:
    """The evaluated models and their inputs (``evaluate``, ``hybrid``)."""

    config: dict[str, Any]
    root: str
    own_splits: bool
    split_seed: int
    data: dict[str, str]

    #: every model is evaluated on both in one job: the test split (the table people read) and the dev split
    EVAL_SPLITS = ("test", "dev")

    def eval_inputs(self, name: str) -> dict[str, Any]:
        """The data, each split's qrels (``qrels_test``, ``qrels_dev``), the model's index (bi-encoders) and
        the corpus embeddings scoring with it needs."""
        inputs: dict[str, Any] = {"corpus": self.data["corpus"], "queries": self.data["queries"],
                                  **{f"qrels_{split}": self.data[f"qrels_{split}"] for split in self.EVAL_SPLITS}}
        if self.kind(name) == "bi-encoder":
            inputs["index"] = self.index_dir(name)
        inputs["shards"] = [p for shards in self.embedding_shards([name]).values() for p in shards]
        inputs["models"] = self.scorer_inputs(name)
        return inputs

    def students(self) -> list[str]:
        """Every student the run makes, in the order it makes them: the untrained one, then per iteration
        the snapshots its methods keep (``student-it1-warmup``) and the iteration's student."""
        names = ["student-it0"]
        for it in self.iterations:
            names += [f"student-it{it}-{phase}" for phase in self.needs(it).snapshots]
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
        """Model ``name``'s figures on ``split``: a shared model's are shared by the seeds, unless each seed
        has its own dev split (``splits.per_seed``; the job evaluating a model on test evaluates it on dev)."""
        folder = self.root if self.own_splits else self.folder_of(name)
        return f"{folder}/eval/{split}/{name}/metrics.json"

    # -- the final student fused with BM25 (``hybrid``) --------------------------------------------------

    @property
    def hybrid(self) -> bool:
        return self.config["hybrid"]["lexical"] is not None

    def hybrid_metrics(self, split: str = "test") -> list[str]:
        return [self.metrics("hybrid", split)] if self.hybrid else []

    def hybrid_stand_in(self) -> str | None:
        """The model that scores in the student's place to choose the hybrid's weight when judged training
        queries are read but too few for a dev split (pipeline/hybrid.py): the last iteration's teacher,
        which, unlike the student, never trained on them; None without judged training queries, when that
        teacher is the hybrid's BM25 itself, or when it (or a fusion member) is fine-tuned on them."""
        teacher = self.iteration(self.config["iterations"])["teacher"]
        trained_on_them = any(self.finetuned(name) for name in self.models_of(teacher))
        usable = self.judged_training and teacher != self.config["hybrid"]["lexical"] and not trained_on_them
        return teacher if usable else None

    def hybrid_stand_in_settings(self) -> dict[str, Any] | None:
        """What decides the stand-in's choice, without paths (the rule's tracked params)."""
        name = self.hybrid_stand_in()
        if name is None:
            return None
        return {"name": name, "models": self.models_of(name), "seed": self.split_seed,
                "train_queries": self.config["splits"]["train_queries"],
                "min_queries": self.config["splits"]["dev"]["min_queries"]}

    def hybrid_inputs(self) -> dict[str, Any]:
        """What fusing the final student needs: the choice, the data, every student (the final one is known
        only when the run has chosen it), their corpus embeddings and test metrics (the encode speed), and
        what the stand-in for the student scores with (its teacher, on the judged training queries)."""
        students = self.students()
        stand_in = [name] if (name := self.hybrid_stand_in()) else []
        return {"final": f"{self.root}/final.json", "corpus": self.data["corpus"], "queries": self.data["queries"],
                **{f"qrels_{split}": self.data[f"qrels_{split}"] for split in self.EVAL_SPLITS},
                "students": list(dict.fromkeys(p for m in students for p in self.model_inputs(m))),
                "shards": [p for shards in self.embedding_shards(students + stand_in).values() for p in shards],
                "metrics": [self.metrics(m) for m in students],
                "stand_in": [p for m in stand_in for p in self.scorer_inputs(m)]
                            + ([self.prepared_qrels(self.config["splits"]["train"])] if stand_in else [])}

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
            choose_on_dev=self.judged_training, stand_in=self.hybrid_stand_in_args(),
            rerank_depth=self.config["evaluate"]["rerank_depth"],
            include_title=self.config["include_title"], device=self.config["device"])

    def hybrid_stand_in_args(self) -> dict[str, Any] | None:
        settings = self.hybrid_stand_in_settings()
        if settings is None:
            return None
        return {**settings, "embedding_shards": self.embedding_shards([settings["name"]]),
                "qrels_path": self.prepared_qrels(self.config["splits"]["train"])}

    def hybrid_problems(self) -> list[str]:
        problems, models = [], self.config["models"]
        if "hybrid" in models:
            problems.append("models.hybrid: the name is the summary's row of the final student fused with BM25 "
                            "(hybrid); name the model otherwise")
        lexical = self.config["hybrid"]["lexical"]
        if lexical is not None and models.get(lexical, {}).get("kind") != "bm25":
            problems.append(f"hybrid.lexical: {lexical!r} is not a bm25 model of `models`; add "
                            f"`{lexical}: {{kind: bm25}}` to models, or set hybrid.lexical: null for no hybrid")
        return problems
