"""The plan of a run, without Snakemake: iteration configs, model lookups, job inputs, config checks."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pipeline.config import SCHEMA_PATH, ConfigError, allowed_values, complete, method_sections, section_defaults
from pipeline.methods import METHODS
from pipeline.plan import DATA_DIR_TOKEN, ROOT_TOKEN, Plan, deep_merge, expand_tokens


def config(**overrides):
    base = {
        "experiment": "x",
        "iterations": 2,
        "models": {
            "teacher": {"kind": "bi-encoder", "source": "t"},
            "other": {"kind": "bi-encoder", "source": "o"},
            "bm25": {"kind": "bm25"},
            "ce": {"kind": "cross-encoder", "source": "c"},
            "fused": {"kind": "fusion", "members": {"teacher": 0.7, "bm25": 0.3}},
        },
        "teacher": "teacher",
        "warmup": {"epochs": 1},
        "encode": {"shards": 2},
    }
    base.update(overrides)
    return complete(base)


def test_deep_merge_merges_dicts_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}, "the base is not changed"


def test_iteration_config_merges_and_validates_overrides():
    plan = Plan(config(overrides={"2": {"train": {"epochs": 3}, "teacher": "other"}}))
    assert plan.iteration(1)["train"]["epochs"] == 1 and plan.iteration(1)["teacher"] == "teacher"
    assert plan.iteration(2)["train"]["epochs"] == 3 and plan.iteration(2)["teacher"] == "other"
    assert plan.iteration(2)["train"]["lr"] == section_defaults("train")["lr"]
    bad = Plan(config(overrides={"2": {"train": {"epohcs": 3}}}))
    assert bad.iteration(1)["train"]["epochs"] == 1
    with pytest.raises(ConfigError, match=r"overrides\.2\.train: Additional properties.*'epohcs'"):
        bad.check()


def test_models_students_and_their_needs():
    plan = Plan(config())
    student = plan.model("student-it3")
    assert student["source"] == "results/x/students/it3" and student["layers"] is None
    assert plan.kind("student-it1") == "bi-encoder" and plan.kind("nope") is None
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        plan.model("nope")
    assert plan.bi_encoders_of("fused") == ["teacher"] and plan.bi_encoders_of("ce") == []
    assert set(plan.models_of("fused")) == {"fused", "teacher", "bm25"}
    assert plan.shards("teacher") == [f"results/x/embeddings/teacher/shard-{k}-of-2.parquet" for k in range(2)]
    assert plan.embedding_shards(["fused", "bm25"]) == {"teacher": plan.shards("teacher")}
    assert plan.role_of("student-it2") == ("student", 2, None) and plan.role_of("teacher") == ("teacher", None, None)
    assert plan.role_of("student-it1-warmup") == ("student", 1, "warmup")
    assert plan.model("student-it1-warmup")["source"] == "results/x/students/it1/warmup"
    assert plan.model_inputs("student-it1-warmup") == ["results/x/students/it1"]


def test_miners_per_iteration():
    plan = Plan(config(iterations=3, mine={"miner": "other"}, overrides={"3": {"mine": {"miner": "student"}}}))
    assert [plan.miner_of(it) for it in (1, 2, 3)] == ["bm25", "other", "student-it2"]


def test_train_inputs_and_args_come_from_the_methods():
    plan = Plan(config(overrides={"2": {"train": {"kd_in_batch": True}}}))
    assert plan.teachers_of(1) == ["teacher"]
    one = plan.train_inputs(1)
    assert one["student"] == "results/x/students/it0" and one["candidates"] == "results/x/it1/candidates.parquet"
    assert one["qrels_train"] == "results/x/data/training-qrels.parquet", "training never reads the dev queries"
    assert one["scores"] == ["results/x/it1/scores/teacher.parquet"]
    assert one["embeddings"] == plan.shards("teacher"), "iteration 1 warms up on the teacher's corpus embeddings"
    assert plan.train_inputs(2)["embeddings"] == plan.shards("teacher"), "iteration 2 scores in-batch pairs"
    no_warmup_two = Plan(config())
    assert no_warmup_two.train_inputs(2)["embeddings"] == []

    inputs = SimpleNamespace(**one)
    args = json.loads(plan.train_args(1, inputs, ["out"]))
    # paths name the experiment's folder by a token (the same params in every experiment: --cache)
    assert args["score_paths"] == {"teacher": "{root}/it1/scores/teacher.parquet"}
    args = expand_tokens(args, plan.root, None)
    assert args["methods"] == ["standard"] and args["seed"] == plan.config["seed"] + 1
    assert set(args["config"]) == {"train", "teacher", "warmup"}, "only the sections the methods read"
    assert args["score_paths"] == {"teacher": "results/x/it1/scores/teacher.parquet"}
    assert set(args["models"]) == {"teacher"} and args["embedding_shards"] == {"teacher": plan.shards("teacher")}


def test_prepared_splits_include_a_named_dev_split():
    assert Plan(config()).prepared_splits == ["test", "train"]
    assert Plan(config(splits={"dev": {"split": "dev"}})).prepared_splits == ["dev", "test", "train"]


def test_evaluated_models():
    plan = Plan(config(overrides={"2": {"teacher": "other"}}))
    assert plan.evaluated_models() == ["other", "teacher", "student-it0", "student-it1-warmup", "student-it1",
                                       "student-it2", "student-it2.onnx-int8"], \
        "iteration 1 keeps its warmed-up student; the last student's quantized export is evaluated"
    assert plan.students() == plan.evaluated_models()[2:-1]
    assert Plan(config(train={"epochs": 0})).students() == ["student-it0", "student-it1", "student-it2"], \
        "a warm-up-only iteration's student is its warmed-up student"
    assert plan.metrics("student-it1", "dev") == "results/x/eval/dev/student-it1/metrics.json"
    assert plan.eval_inputs("student-it1")["qrels_dev"] == "results/x/data/dev-qrels.parquet"
    assert plan.eval_inputs("bm25")["qrels_test"] == plan.data["qrels_test"] and "index" not in plan.eval_inputs("bm25")
    assert Plan(config(evaluate={"teacher": False})).evaluated_models()[0] == "student-it0"


def with_finetune(name="teacher", **settings):
    base = config()
    models = copy.deepcopy(base["models"])
    models[name] = dict(models[name], finetune=settings)
    return config(models=models)


def test_a_finetuned_model_is_the_workflows_own_folder_wherever_it_serves():
    plan = Plan(with_finetune(epochs=2))
    tuned = plan.model("teacher")
    assert tuned["source"] == "results/x/models/teacher" and "finetune" not in tuned and tuned["layers"] is None
    assert plan.model_inputs("teacher") == ["results/x/models/teacher"] and plan.model_inputs("other") == []
    assert plan.scorer_inputs("fused") == ["results/x/models/teacher"], "a fusion member's folder too"
    assert plan.models_of("fused")["teacher"]["source"] == "results/x/models/teacher"
    assert plan.eval_inputs("teacher")["models"] == ["results/x/models/teacher"]
    assert plan.train_inputs(1)["models"] == ["results/x/models/teacher"], "the warm-up loads the tuned teacher"
    settings = plan.finetune_settings("teacher")
    assert settings["epochs"] == 2 and settings["miner"] == "bm25" and settings["lr"] == 2.0e-5, "schema defaults"
    assert plan.finetune_miner_inputs("teacher") == []
    assert Plan(with_finetune(miner="other")).finetune_miner_inputs("teacher") == ["results/x/index/other"]
    args = json.loads(plan.finetune_args("teacher", SimpleNamespace(
        candidates="c.parquet", qrels_train="q.parquet", queries="qs.parquet", corpus="co.parquet"), ["out"]))
    assert args["model"] == {"kind": "bi-encoder", "source": "t", "name": "teacher", **{
        k: v for k, v in args["model"].items() if k not in ("kind", "source", "name")}}, "starts from the source"
    assert args["settings"] == settings and args["out_dir"] == "out" and args["qrels_path"] == "q.parquet"


@pytest.mark.parametrize("change, message", [
    ({"name": "fused"}, "models.fused.finetune: only bi-encoders and cross-encoders are trained; 'fused' is a fusion"),
    ({"miner": "ce"}, "models.teacher.finetune.miner: 'ce' is a cross-encoder; miners are bm25 or bi-encoders"),
    ({"miner": "ghost"}, "models.teacher.finetune.miner: unknown model 'ghost'"),
    ({"miner": "teacher"}, "models.teacher.finetune.miner: 'teacher' is fine-tuned itself"),
    ({"window": [3, 3]}, "models.teacher.finetune.window [3, 3) is empty"),
    ({"lr": -1}, "models.teacher.finetune.lr"),
])
def test_finetune_checks_name_the_problem(change, message):
    change = dict(change)
    with pytest.raises(ConfigError) as err:
        Plan(with_finetune(change.pop("name", "teacher"), **change)).check()
    assert message in str(err.value)


def test_finetune_needs_judged_training_queries(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(ConfigError, match=r"fine-tuning needs judged training queries, and .*qrels/train.tsv"):
        Plan(dict(with_finetune(), data_dir=str(tmp_path), labels={**with_finetune()["labels"], "source": "qrels"})).check()


@pytest.mark.parametrize("change, message", [
    ({"teacher": "nope"}, "iteration 1: teacher: unknown model 'nope'"),
    ({"mine": {"first_miner": "ce"}}, "'ce' is a cross-encoder; miners are bm25 or bi-encoders"),
    ({"mine": {"miner": "nope"}}, "iteration 2: mine: unknown miner 'nope'"),
    ({"mine": {"window": [5, 5]}}, "mine.window [5, 5) is empty"),
    ({"teacher": "bm25"}, "warmup needs a bi-encoder teacher"),
    ({"warmup": {"epochs": 0}, "teacher": "ce", "train": {"kd_in_batch": True}},
     "kd_in_batch needs bi-encoder teachers; 'ce' is not one"),
    ({"warmup": {"epochs": 0}, "teacher": "ce", "train": {"w_embedding_mse": 1.0}},
     "train.w_embedding_mse needs a bi-encoder warm-up teacher; set warmup.teacher (got 'ce')"),
    ({"models": {"f": {"kind": "fusion", "members": {"ghost": 1.0}}, "t": {"kind": "bi-encoder", "source": "s"}},
      "teacher": "t"}, "models.f.members: unknown model 'ghost'"),
    ({"models": {"t": {"kind": "bi-encoder"}}, "teacher": "t"}, "models.t: a bi-encoder needs a source"),
    ({"splits": {"dev": {"split": "test"}}}, "splits.dev.split: 'test' is the test split"),
    ({"hybrid": {"lexical": "teacher"}}, "hybrid.lexical: 'teacher' is not a bm25 model of `models`"),
    ({"models": {"t": {"kind": "bi-encoder", "source": "s"}}, "teacher": "t"},
     "add `bm25: {kind: bm25}` to models, or set hybrid.lexical: null for no hybrid"),
    ({"models": {"hybrid": {"kind": "bm25"}, "bm25": {"kind": "bm25"}, "teacher": {"kind": "bi-encoder", "source": "t"}}},
     "models.hybrid: the name is the summary's row"),
])
def test_config_checks_name_the_problem(change, message):
    plan = Plan(config(**change))
    with pytest.raises(ConfigError) as err:
        plan.check()
    assert message in str(err.value)


def test_the_hybrid_fuses_the_final_student_with_bm25_unless_asked_not_to():
    plan = Plan(config())
    assert plan.hybrid and plan.hybrid_metrics("dev") == ["results/x/eval/dev/hybrid/metrics.json"]
    inputs = plan.hybrid_inputs()
    assert inputs["students"] == ["results/x/students/it0", "results/x/students/it1", "results/x/students/it2"]
    assert "results/x/embeddings/student-it1-warmup/shard-1-of-2.parquet" in inputs["shards"]
    off = Plan(config(hybrid={"lexical": None}))
    assert not off.hybrid and off.hybrid_metrics() == []
    off.check()


def test_the_hybrid_weight_without_a_dev_split_is_chosen_with_the_teacher_standing_in_for_the_student():
    """With judged training queries the student has trained on, the last iteration's teacher, which has not,
    scores in its place: the hybrid job reads its corpus embeddings and the prepared train split. Without
    judged queries, or with BM25 as the teacher, nothing stands in (the even weight)."""
    plan = Plan(config(labels={"source": "qrels+teacher"}, overrides={"2": {"teacher": "other"}}))
    assert plan.hybrid_stand_in() == "other"
    inputs = plan.hybrid_inputs()
    assert "results/x/embeddings/other/shard-0-of-2.parquet" in inputs["shards"]
    assert inputs["stand_in"] == ["results/x/data/qrels-train.parquet"]
    settings = plan.hybrid_stand_in_settings()
    assert settings["name"] == "other" and settings["min_queries"] == plan.config["splits"]["dev"]["min_queries"]
    assert Plan(config(labels={"source": "teacher"})).hybrid_stand_in() is None
    assert Plan(config(labels={"source": "teacher"})).hybrid_inputs()["stand_in"] == []
    assert Plan(config(teacher="bm25", warmup={"epochs": 0})).hybrid_stand_in() is None
    models = config()["models"]
    models["teacher"] = {**models["teacher"], "finetune": {}}
    finetuned = Plan(config(labels={"source": "qrels+teacher"}, models=models, teacher="fused"))
    assert finetuned.hybrid_stand_in() is None, "a fusion whose member was fine-tuned on those queries"


def test_the_default_config_passes_its_checks():
    Plan(config()).check()
    assert Plan(config()).method_rules() == [], "the standard method adds no stage to the DAG"


def test_each_method_section_schema_belongs_to_a_registered_method():
    sections = method_sections()
    assert set(sections) <= set(METHODS), "a schemas/methods/ file without its method"
    assert {name for name, cls in METHODS.items() if name in cls.sections} <= set(sections), \
        "a method reads its own section, which has no schema"
    assert set(sections) == {"adam", "lead", "mta4dpr", "onmkd", "prod"}


def test_unknown_methods_and_sections_fail_at_parse_time():
    with pytest.raises(ConfigError, match=r"methods: unknown method 'toy'; methods are \[.*'standard'"):
        Plan(complete(dict(config(), methods=["toy"]))).check()
    with pytest.raises(ConfigError, match="config: Additional properties are not allowed \\('trian' was unexpected"):
        Plan(dict(config(), trian={"lr": 1.0})).check()


def test_snakemake_validate_and_complete_fill_the_same_defaults(tmp_path):
    from snakemake.utils import validate

    raw = {"models": {"t": {"kind": "bi-encoder", "source": "s"}}, "teacher": "t", "train": {"lr": 1e-3},
           "overrides": {"2": {"train": {"epochs": 2}}}}
    by_snakemake = copy.deepcopy(raw)
    validate(by_snakemake, str(SCHEMA_PATH))
    for section, path in method_sections().items():  # as the Snakefile does
        validate(by_snakemake.setdefault(section, {}), str(path))
    assert complete(raw) == by_snakemake
    assert by_snakemake["train"]["w_nll"] == 1.0 and by_snakemake["methods"] == ["standard"]
    assert by_snakemake["adam"]["mixup"]["count"] == 2, "a method's section, from schemas/methods/"


def test_exported_models_are_their_model_run_by_another_backend():
    plan = Plan(config())
    assert plan.exported_models() == ["student-it2.onnx-int8"], "export.evaluate: auto, the quantized format"
    assert plan.export_dirs() == ["results/x/export/student-it2"], "both formats exported, and checked"
    int8 = plan.model("student-it2.onnx-int8")
    assert int8 == dict(plan.model("student-it2"), source="results/x/export/student-it2", backend="onnx",
                        file_name="onnx/model_qint8.onnx", name="student-it2.onnx-int8")
    assert plan.kind("student-it2.onnx") == "bi-encoder" and plan.role_of("student-it2.onnx") == ("student", 2, None)
    assert plan.model_inputs("student-it2.onnx") == ["results/x/export/student-it2"]
    assert plan.model_inputs("student-it1") == ["results/x/students/it1"], "what the export job reads"
    assert plan.eval_inputs("student-it2.onnx")["index"] == "results/x/index/student-it2.onnx"
    assert plan.model("teacher.onnx")["source"] == "results/x/export/teacher", "a teacher exports too"
    assert Plan(config(export={"formats": []})).exported_models() == []
    assert Plan(config(export={"formats": []})).export_dirs() == []
    assert Plan(config(iterations=1, export={"formats": ["onnx"]})).exported_models() == []
    assert Plan(config(iterations=1, export={"formats": ["onnx"], "evaluate": ["onnx"]})).exported_models() == \
        ["student-it1.onnx"]
    assert Plan(config(export={"formats": ["onnx-int8", "onnx"], "evaluate": ["onnx", "onnx-int8"]})).exported_models() \
        == ["student-it2.onnx-int8", "student-it2.onnx"], "in the order of export.formats"


def test_evaluating_a_format_that_is_not_exported_is_refused():
    problems = Plan(config(export={"formats": ["onnx"], "evaluate": ["onnx-int8"]})).problems()
    assert problems == ["export.evaluate: 'onnx-int8' is not exported (export.formats: ['onnx'])"]
    with pytest.raises(ConfigError, match=r"export\.evaluate"):
        config(export={"evaluate": "all"})


def test_an_unknown_export_format_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"export\.formats\.0: 'tflite' is not one of \['onnx', 'onnx-int8', 'openvino'\]"):
        config(export={"formats": ["tflite"]})


def test_a_format_whose_runtime_is_missing_is_refused_with_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    problems = Plan(config(export={"formats": ["onnx", "openvino"]})).problems()
    assert problems == ["export.formats: 'openvino' needs openvino, not installed here (`pip install openvino`)"]


def test_training_on_the_test_split_is_refused_with_a_sentence():
    problems = Plan(config(splits={"train": "test", "test": "test"})).problems()
    assert any(p.startswith("splits: train and test are both 'test'; the student would be trained on the "
                            "judgments it is evaluated with") for p in problems)


def test_data_parallel_training_is_launched_by_torchrun_with_its_processes():
    """``train.processes`` (per iteration through overrides): torchrun starts that many processes of the
    train step; one process is the step itself."""
    plan = Plan(config(iterations=2, overrides={"2": {"train": {"processes": 2}}}))
    assert plan.train_launcher(1) == "-m pipeline train"
    assert plan.train_launcher(2) == "-m torch.distributed.run --standalone --nproc-per-node 2 -m pipeline train"
    assert [plan.train_processes(it) for it in (1, 2)] == [1, 2]
    assert json.loads(plan.train_settings(2))["config"]["train"]["processes"] == 2


def test_job_arguments_name_the_experiment_and_data_folders_by_tokens_the_command_line_gives_back(tmp_path):
    """Params equal across experiments on the same data (what lets --cache serve one experiment's teacher
    work to the next); the step gets the real paths back, and a token without its folder is refused."""
    one = Plan(complete({**config(), "experiment": "one", "data_dir": "/data/scifact"}))
    two = Plan(complete({**config(), "experiment": "two", "data_dir": "/data/scifact"}))
    paths = {"corpus": f"{one.root}/data/corpus.parquet", "raw": ["/data/scifact/corpus.jsonl", "/data/scifactual"],
             "elsewhere": "results/onex/y", "n": 3}
    tokenised = json.loads(one.to_json(**paths))
    assert tokenised == {"corpus": f"{ROOT_TOKEN}/data/corpus.parquet", "n": 3, "elsewhere": "results/onex/y",
                         "raw": [f"{DATA_DIR_TOKEN}/corpus.jsonl", "/data/scifactual"]}
    assert two.to_json(**{**paths, "corpus": f"{two.root}/data/corpus.parquet"}) == one.to_json(**paths)
    assert expand_tokens(tokenised, one.root, "/data/scifact") == paths
    with pytest.raises(ConfigError, match=r"name \{root\} but its command line gives no --root"):
        expand_tokens(tokenised, None, "/data/scifact")
    from pipeline.__main__ import main

    assert main(["split", json.dumps({"qrels_path": "{root}/x.parquet"})]) == 2


def test_the_all_methods_preset_composes_and_what_cannot_compose_is_refused_saying_why():
    """configs/all-methods.yaml (OnMKD + ADAM + MTA4DPR over the default config) passes the checks; two
    recipes, or two methods that each choose an iteration's training candidates, are refused at parse time."""
    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "config.yaml").read_text())
    presets = {name: yaml.safe_load((root / f"configs/{name}.yaml").read_text())
               for name in ("all-methods", "prod", "lead")}
    all_methods = deep_merge(base, presets["all-methods"])
    plan = Plan(complete(all_methods))
    plan.check()
    assert plan.iteration(1)["methods"] == ["onmkd", "adam", "mta4dpr"] and plan.peers(1)
    assert plan.scored_candidates(1).endswith("it1/dark-candidates.parquet")
    assert plan.training_candidates(1).endswith("it1/mta4dpr/candidates.parquet")
    with pytest.raises(ConfigError, match=r"methods \['onmkd', 'lead'\] each train the student's distillation \(a recipe\); list one"):
        Plan(complete(deep_merge(all_methods, {"methods": ["onmkd", "lead"], "lead": presets["lead"]["lead"]}))).check()
    prod_and_mta4dpr = deep_merge(all_methods, {
        "methods": ["prod", "mta4dpr"], "iterations": 4, "prod": presets["prod"]["prod"],
        "mta4dpr": {"assistants": ["bm25", "fusion-even"]}})
    with pytest.raises(ConfigError, match="iteration 3: prod and mta4dpr each choose the candidates the iteration "
                                          "trains on; they do not compose"):
        Plan(complete(prod_and_mta4dpr)).check()


def test_the_warmup_adds_the_corpus_sentences_where_the_teacher_labels_training_queries(tmp_path):
    """warmup.texts: auto (the default) follows labels.source, which auto chooses from the number of judged
    training queries: the corpus passages' sentences join the warm-up's texts where the teacher labels
    training queries (few judged queries, or none), not where the judged ones are many; a list given stays;
    the train job reads the resolved list."""
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    judged_texts = ["corpus", "train_queries", "titles"]
    few = Plan(config(data_dir=str(tmp_path)))
    assert few.config["labels"]["source"] == "qrels+teacher"
    assert [few.iteration(it)["warmup"]["texts"] for it in (1, 2)] == [judged_texts + ["sentences"]] * 2
    args = json.loads(few.train_args(1, SimpleNamespace(**few.train_inputs(1)), ["out"]))
    assert args["config"]["warmup"]["texts"] == judged_texts + ["sentences"]
    many = Plan(config(data_dir=str(tmp_path), labels={"few_judged_queries": 3}))
    assert many.config["labels"]["source"] == "qrels" and many.iteration(1)["warmup"]["texts"] == judged_texts
    assert Plan(config(labels={"source": "teacher"})).iteration(1)["warmup"]["texts"] == judged_texts + ["sentences"]
    given = Plan(config(data_dir=str(tmp_path), warmup={"epochs": 1, "texts": ["corpus", "titles"]}))
    assert given.iteration(1)["warmup"]["texts"] == ["corpus", "titles"]
    with pytest.raises(ConfigError, match="warmup.texts"):
        Plan(config(warmup={"epochs": 1, "texts": "some"}))


def test_seeds_share_what_the_seed_does_not_change_and_keep_each_students_own():
    plan = Plan(config(seeds=[7, 21, 5], mine={"miner": "student"}, hybrid={"lexical": "bm25"}))
    assert plan.config["seed"] == 7, "the first seed is the experiment's own"
    assert plan.seed_roots() == {7: "results/x", 21: "results/x/seed-21", 5: "results/x/seed-5"}
    configs = plan.seed_configs()
    assert [c["seed"] for c in configs] == [21, 5] and all(c["seeds"] is None for c in configs)
    seed = Plan(configs[0])
    assert not seed.problems(), seed.problems()
    assert (seed.root, seed.shared_root, seed.experiment_name) == ("results/x/seed-21", "results/x", "x/seed-21")
    shared, own = "results/x/", "results/x/seed-21/"
    # the data, the teacher, the untrained student, iteration 1's BM25 candidates and their teacher scores
    for path in [*seed.data.values(), plan.metrics("teacher"), *seed.shards("teacher"), seed.index_dir("teacher"),
                 seed.model("student-it0")["source"], seed.mined_candidates(1), seed.scores_path(1, "teacher"),
                 seed.train_inputs(1)["student"], *seed.train_inputs(1)["scores"]]:
        assert path.startswith(shared) and not path.startswith(own), path
    assert seed.metrics("teacher") == plan.metrics("teacher")
    # the trained students and what they enter into: iteration 2's candidates (the student mines), their
    # scores, the final choice, the hybrid, the export
    for path in [seed.model("student-it1")["source"], seed.model("student-it1-warmup")["source"],
                 seed.metrics("student-it2", "dev"), *seed.shards("student-it1"), seed.mined_candidates(2),
                 seed.scores_path(2, "teacher"), seed.train_inputs(2)["student"], seed.hybrid_inputs()["final"],
                 seed.metrics("hybrid"), seed.export_dir("student-it2"), seed.metrics("student-it2.onnx-int8")]:
        assert path.startswith(own), path
    # one token for every seed's folders (one shell prefix): a seed's own paths are {root}/seed-21/...
    args = json.loads(seed.train_args(2, SimpleNamespace(**seed.train_inputs(2)), ["results/x/seed-21/students/it2"]))
    assert args["student_dir"] == f"{ROOT_TOKEN}/seed-21/students/it1" and args["out_dir"].startswith(ROOT_TOKEN + "/seed-21/")
    assert args["seed"] == 21 + 2 and args["provenance"]["experiment"] == "x/seed-21"
    assert expand_tokens(args, "results/x", None)["student_dir"] == "results/x/seed-21/students/it1"
    # without seeds, nothing moves
    one = Plan(config())
    assert one.shared_root == one.root == "results/x" and one.seed_configs() == [] and one.seed_roots() == {13: "results/x"}
    assert one.scores_path(2, "teacher") == "results/x/it2/scores/teacher.parquet"
    # a config does not set seed_of beside seeds
    with pytest.raises(ConfigError, match="seed_of: set by the workflow"):
        Plan(dict(configs[0], seeds=[1, 2])).check()
    with pytest.raises(ConfigError, match="non-unique|unique"):
        complete(dict(config(), seeds=[3, 3]))


def test_with_splits_per_seed_each_seed_splits_and_evaluates_itself_and_shares_the_teachers_encodings():
    plan = Plan(config(seeds=[7, 21], splits={"per_seed": True}))
    first = plan
    seed = Plan(plan.seed_configs()[0])
    assert not seed.problems(), seed.problems()
    own, shared = "results/x/seed-21/", "results/x/"
    # the seed's own split, and what reads it: iteration 1's BM25 candidates and their teacher scores, every
    # model's figures (one job evaluates test and dev), the teacher's included
    assert seed.data["qrels_train"] == own + "data/training-qrels.parquet"
    assert seed.data["qrels_dev"] == own + "data/dev-qrels.parquet"
    assert seed.data["splits_report"] == own + "data/splits.json", "the final student's reason counts its own dev queries"
    for path in [seed.mined_candidates(1), seed.scores_path(1, "teacher"), *seed.train_inputs(1)["scores"],
                 seed.metrics("teacher", "dev"), seed.metrics("student-it0", "dev"), seed.metrics("bm25")]:
        assert path.startswith(own), path
    # shared: the data, the test judgments, the teacher's and the untrained student's encodings and indexes
    for path in [seed.data["corpus"], seed.data["qrels_test"], *seed.shards("teacher"), seed.index_dir("teacher"),
                 seed.index_dir("student-it0"), seed.model("student-it0")["source"]]:
        assert path.startswith(shared) and not path.startswith(own), path
    assert seed.split_seed == 21 and Plan(Plan(config(seeds=[7, 21])).seed_configs()[0]).split_seed == 7, \
        "a seed's run samples the judged training queries (the hybrid's stand-in) as its split was drawn"
    # the first seed's run is the experiment's, as without per_seed
    assert first.data["qrels_dev"] == "results/x/data/dev-qrels.parquet" and first.mined_candidates(1).startswith(shared)
    assert Plan(Plan(config(seeds=[7, 21])).seed_configs()[0]).data["splits_report"] == shared + "data/splits.json", \
        "without per_seed a further seed reads the first seed's split"
    assert not Plan(config(seeds=[7, 21])).seed_configs()[0]["splits"]["per_seed"]
    # a fine-tuned model is made once for every seed: refused beside per_seed
    models = config()["models"]
    models["teacher"] = {**models["teacher"], "finetune": {}}
    with pytest.raises(ConfigError, match=r"splits.per_seed: models.teacher.finetune trains on the training queries"):
        Plan(config(seeds=[7, 21], splits={"per_seed": True}, models=models)).check()


def test_a_step_reads_the_allowed_values_of_a_key_from_the_schema():
    assert allowed_values("splits.dev.fallback") == ("auto", "last", "warmup")
    assert allowed_values("splits.dev.select") == ("one-standard-error", "best")
    with pytest.raises(KeyError, match="no key 'splits.dev.fallbak'"):
        allowed_values("splits.dev.fallbak")
    with pytest.raises(KeyError, match="'splits.dev' has no enum"):
        allowed_values("splits.dev")
