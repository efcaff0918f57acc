"""The Snakemake workflow end to end on a tiny fixture: artifacts, the DAG, kill and resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.data import read_provenance
from pipeline.evaluation import METRICS
from pipeline.precision import native_bf16

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def write_config(workdir: Path, beir: Path, model: Path, **overrides) -> Path:
    config = {
        "experiment": "tiny",
        "data_dir": str(beir),
        "iterations": 2,
        "models": {
            "tiny-teacher": {"kind": "bi-encoder", "source": str(model), "max_passage_length": 48,
                             "max_query_length": 16},
            "bm25": {"kind": "bm25"},
        },
        "teacher": "tiny-teacher",
        "student": {"kind": "bi-encoder", "source": str(model), "layers": 1, "max_passage_length": 48,
                    "max_query_length": 16},
        "encode": {"shards": 2},
        "mine": {"depth": 20, "window": [0, 10]},
        "warmup": {"epochs": 1, "batch_size": 16},
        "train": {"epochs": 1, "batch_size": 8, "group_size": 4, "checkpoint_every": 2, "max_passage_length": 32},
        "hybrid": {"lexical": None},  # one job fewer per run (CI time); the two-iteration run has it
        # the fixture's judged training queries alone: with labels.source: auto its few judged queries would
        # have the teacher label the rest (test_front_door.py's make-run test runs that, as a user would)
        "labels": {"source": "qrels"},
    }
    for key, value in overrides.items():
        config[key] = value
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def write_preset_config(workdir: Path, beir: Path, model: Path, preset_name: str, **overrides) -> Path:
    """``configs/<preset_name>.yaml`` on the fixture, one iteration: the fixture model stands in for
    MiniLM-L6 (and inside the preset's fusion), one encoding shard and thread (fewer jobs: CI time), short
    training, no export (the default run's test exports); ``overrides`` replace whole top-level sections
    after that."""
    preset = yaml.safe_load((ROOT / f"configs/{preset_name}.yaml").read_text())
    tiny_teacher = {"kind": "bi-encoder", "source": str(model), "max_passage_length": 48, "max_query_length": 16}
    sections = {key: value for key, value in preset.items() if key not in ("experiment", "models", "warmup", "train")}
    config = {**sections, "iterations": 1, "encode": {"shards": 1}, "threads": 1, "export": {"formats": []},
              "models": {"minilm-l6": tiny_teacher, "bm25": {"kind": "bm25"}, **preset.get("models", {})},
              "warmup": {"epochs": 1, "batch_size": 16, **preset.get("warmup", {})},
              "train": {"epochs": 2, "batch_size": 8, "checkpoint_every": 2, "max_passage_length": 32,
                        **preset.get("train", {})}}
    return write_config(workdir, beir, model, **{**config, **overrides})


def snakemake(workdir: Path, *args, check=True, **kwargs):
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                            **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("iterations", [1, 3])
def test_dry_run_unrolls_n_iterations(tmp_path, tiny_beir, tiny_bert, iterations):
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, iterations=iterations)
    counts = job_counts(snakemake(workdir, "--cores", "2", "-n").stdout)
    assert counts["train"] == counts["mine"] == counts["score"] == iterations
    # on test and dev in one job each: every student (the warmed-up one of iteration 1 too), the untrained
    # one, the teacher, and the last student's int8 export (export.evaluate: auto; the fp32 graph is
    # checked in the export job, not evaluated)
    assert counts["evaluate"] == iterations + 3 + 1
    assert counts["encode"] == 2 * (iterations + 3 + 1)  # two shards per model encoded
    assert counts["prepare"] == 1 and counts["init_student"] == 1 and counts["export"] == 1


def test_bad_config_fails_before_any_job(tmp_path, tiny_beir, tiny_bert):
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, iterations=0)
    result = snakemake(workdir, "--cores", "2", "-n", check=False)
    assert result.returncode != 0
    assert "iterations" in result.stdout + result.stderr
    workdir = write_config(tmp_path / "wd2", tiny_beir, tiny_bert, teacher="nope")
    result = snakemake(workdir, "--cores", "2", "-n", check=False)
    assert result.returncode != 0 and "unknown model 'nope'" in result.stdout + result.stderr
    workdir = write_config(tmp_path / "wd3", tiny_beir, tiny_bert, teacher="bm25")
    result = snakemake(workdir, "--cores", "2", "-n", check=False)
    assert result.returncode != 0 and "warmup needs a bi-encoder teacher" in result.stdout + result.stderr
    workdir = write_config(tmp_path / "wd4", tiny_beir, tiny_bert, teacher="bm25", warmup={"epochs": 0},
                           train={"kd_in_batch": True})
    result = snakemake(workdir, "--cores", "2", "-n", check=False)
    assert result.returncode != 0 and "kd_in_batch needs bi-encoder teachers" in result.stdout + result.stderr
    assert not (workdir / "results").exists()
    # once "Duplicate output file pattern" from inside Snakemake
    workdir = write_config(tmp_path / "wd5", tiny_beir, tiny_bert, splits={"train": "test", "test": "test"})
    result = snakemake(workdir, "--cores", "2", "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "splits: train and test are both 'test'" in output and "Duplicate" not in output


def test_bad_input_stops_at_prepare_with_file_and_line(tmp_path, tiny_beir, tiny_bert):
    import shutil

    beir = tmp_path / "beir"
    shutil.copytree(tiny_beir, beir)
    lines = (beir / "queries.jsonl").read_text().splitlines()
    lines[4] = '{"_id": "q4"}'
    (beir / "queries.jsonl").write_text("\n".join(lines) + "\n")
    workdir = write_config(tmp_path / "wd", beir, tiny_bert)
    result = snakemake(workdir, "--cores", "2", check=False)
    assert result.returncode != 0
    log = (workdir / "results/tiny/logs/prepare.log").read_text()
    assert "queries.jsonl, line 5, field 'text': missing" in log
    assert not list((workdir / "results/tiny").glob("embeddings/*/*.parquet")), "no heavy work after bad input"


def test_two_iterations_end_to_end(tmp_path, tiny_beir, tiny_bert):
    # float32: the exports are checked against PyTorch's arithmetic (the other runs take precision: auto)
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, hybrid={"lexical": "bm25"}, precision="fp32")
    result = snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    assert "| student | 2 | student-it2" in result.stdout, "the run ends by printing the summary"

    # every artifact has its schema and provenance
    for name in ("corpus", "queries", "qrels-train", "qrels-test"):
        assert pq.read_schema(out / "data" / f"{name}.parquet")
    for model in ("tiny-teacher", "student-it0", "student-it1", "student-it2"):
        for k in range(2):
            schema = pq.read_schema(out / "embeddings" / model / f"shard-{k}-of-2.parquet")
            assert schema.names == ["doc_id", "embedding"]
            assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[32]"
        assert (out / "index" / model / "manifest.json").is_file()
    for it in (1, 2):
        assert pq.read_schema(out / f"it{it}/candidates.parquet").names == ["query_id", "doc_id", "rank", "score", "miner"]
        assert pq.read_schema(out / f"it{it}/scores/tiny-teacher.parquet").names == ["query_id", "doc_id", "scorer", "score"]
        assert read_provenance(out / f"it{it}/scores/tiny-teacher.parquet")["scale"] == "cosine"
    # iteration 1 mined with BM25; iteration 2 with, and from, iteration 1's student
    assert read_provenance(out / "it1/candidates.parquet")["miner"]["kind"] == "bm25"
    miner2 = read_provenance(out / "it2/candidates.parquet")["miner"]
    assert miner2["name"] == "student-it1" and miner2["source"].endswith("students/it1")
    training2 = json.loads((out / "students/it2/training.json").read_text())
    assert training2["initialised_from"].endswith("students/it1")
    training1 = json.loads((out / "students/it1/training.json").read_text())
    assert training1["history"][0]["phase"] == "warmup"
    assert all(h["phase"] == "distill" for h in training2["history"])

    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["model"], r["iteration"], r["phase"]) for r in summary["rows"]}
    assert rows == {("teacher", None, None), ("student", 0, None), ("student", 1, "warmup"), ("student", 1, None),
                    ("student", 2, None), ("hybrid", None, None)}
    # the dev split: held out of training, every student evaluated on it, the best one final
    splits = json.loads((out / "data/splits.json").read_text())
    assert splits["dev_queries"] == 13 and splits["training_queries"] == 51
    mined = set(pq.read_table(out / "it1/candidates.parquet").column("query_id").to_pylist())
    assert mined and not mined & set(splits["dev_query_ids"]), "no dev query is trained on"
    final = json.loads((out / "final.json").read_text())
    assert final["students"] == ["student-it0", "student-it1-warmup", "student-it1", "student-it2"], "the run's order"
    # the one-standard-error rule: the earliest trained student within one standard error of the best
    best, errors = max(final["dev"].values()), final["standard_error_to_best"]
    within = [name for name in ["student-it1-warmup", "student-it1", "student-it2", "student-it0"]
              if best - final["dev"][name] <= errors[name] + 1e-9]
    assert final["select"] == "one-standard-error" and final["selected"] == within[0]
    assert summary["final"]["selected"] == final["selected"]
    teacher_dev = json.loads((out / "eval/dev/tiny-teacher/metrics.json").read_text())["ndcg@10"]
    assert [r["dev"] for r in summary["rows"] if r["model"] == "teacher"] == [teacher_dev], "the teacher's dev figure too"
    assert (out / "students/it1/warmup/model.safetensors").is_file(), "the warmed-up student is kept"
    for row in summary["rows"]:
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["encode_docs_per_s"] > 0 and row["params"] > 0
        assert row["size_mb"] > 0
    # the last student exported for serving in both formats, each checked against PyTorch in the export
    # job; the quantized one (export.evaluate: auto) evaluated like any model, after the student
    names = [row["name"] for row in summary["rows"]]
    assert names[-3:] == ["student-it2", "student-it2.onnx-int8", "hybrid"]
    pytorch, int8 = summary["rows"][-3:-1]
    assert int8["backend"] == "onnx" and pytorch["backend"] == "torch"
    assert int8["size_mb"] < pytorch["size_mb"] / 2
    exported = json.loads((out / "export/student-it2/export.json").read_text())
    assert set(exported["formats"]) == {"onnx", "onnx-int8"}
    assert exported["check"]["onnx"]["min_cosine"] > 0.99999, "ONNX fp32 computes what PyTorch does"
    assert (out / "export/student-it2/onnx/model_qint8.onnx").is_file()
    assert summary["exports"][0]["check"] == exported["check"]
    text = (out / "summary.md").read_text()
    assert "| student-it2.onnx-int8 |" in text and "(evaluated: row student-it2.onnx-int8)" in text
    assert re.search(r"Export student-it2 \(`.*export/student-it2`\): onnx [\d.]+ MB, lowest cosine to PyTorch "
                     r"fp32 [\d.]+ over \d+ passages \(not evaluated: export.evaluate\); onnx-int8 ", text)
    # the final student fused with BM25: its weight chosen on dev, a row at the student's encode speed, and
    # the export folder serves the same scores (the student encoding the candidates itself)
    hybrid = summary["rows"][-1]
    student = next(r for r in summary["rows"] if r["name"] == final["selected"])
    assert hybrid["student"] == final["selected"] and hybrid["encode_docs_per_s"] == student["encode_docs_per_s"]
    served = json.loads((out / "export/hybrid/hybrid.json").read_text())
    assert served["student"]["weight"] == hybrid["student_weight"] and "dev" in hybrid["weight_reason"]
    dev_by_weight = served["dev_ndcg@10_by_weight"]
    assert len(dev_by_weight) == 11 and dev_by_weight[f"{hybrid['student_weight']:g}"] == max(dev_by_weight.values())
    from pipeline.data import load_queries, read_table
    from pipeline.evaluation import read_trec_run
    from pipeline.hybrid import HybridRetriever

    written = read_trec_run(out / "eval/test/hybrid/run.trec")
    queries = load_queries(out / "data/queries.parquet")
    reloaded = HybridRetriever(out / "export/hybrid", read_table(out / "data/corpus.parquet")).search(
        {q: queries[q] for q in written})
    assert set(reloaded) == set(written)
    for q in written:
        assert set(reloaded[q]) == set(written[q])
        assert max(abs(reloaded[q][d] - written[q][d]) for d in written[q]) < 1e-3, q
    run_lines = (out / "eval/test/student-it2/run.trec").read_text().splitlines()
    assert len(run_lines[0].split()) == 6
    for name in ("train/it1.log", "encode/student-it2-0-of-2.log"):
        assert (out / "logs" / name).is_file()
    assert (out / "benchmarks/train/it1.tsv").is_file()

    # nothing changed: nothing to do
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    assert training1["precision"] == read_provenance(out / "embeddings/tiny-teacher/shard-0-of-2.parquet")["precision"] \
        == "fp32"
    # another precision computes other numbers: every model job reruns, the data preparation does not
    changed = job_counts(snakemake(workdir, "--cores", "2", "-n", "--config", "precision=auto").stdout)
    ran = job_counts(snakemake(workdir, "--cores", "2", "-n", "--forceall").stdout)
    assert changed["encode"] == ran["encode"] and changed["evaluate"] == ran["evaluate"] and changed["train"] == 2
    assert "prepare" not in changed and "split_training_queries" not in changed


def test_finetuned_teachers_are_made_once_and_serve_everywhere(tmp_path, tiny_beir, tiny_bert):
    """A fine-tuned bi-encoder and a cross-encoder trained from the same weights, fused into the teacher."""
    finetune = {"epochs": 2, "batch_size": 8, "lr": 1.0e-3, "max_passage_length": 32, "checkpoint_every": 2,
                "depth": 20, "window": [0, 10]}
    teacher = {"kind": "bi-encoder", "source": str(tiny_bert), "max_passage_length": 48, "max_query_length": 16,
               "finetune": finetune}
    cross = {"kind": "cross-encoder", "source": str(tiny_bert), "max_passage_length": 48, "max_query_length": 16,
             "finetune": finetune}
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, iterations=1, teacher="fused", encode={"shards": 1},
                           export={"formats": []},
                           models={"tiny-teacher": teacher, "tiny-ce": cross, "bm25": {"kind": "bm25"},
                                   "fused": {"kind": "fusion", "members": {"tiny-teacher": 0.5, "tiny-ce": 0.5}}},
                           warmup={"epochs": 1, "batch_size": 16, "teacher": "tiny-teacher"},
                           train={"epochs": 1, "batch_size": 8, "group_size": 4, "checkpoint_every": 2,
                                  "max_passage_length": 32, "teacher_scale": "calibrated"})
    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    for name in ("tiny-teacher", "tiny-ce"):
        training = json.loads((out / "models" / name / "training.json").read_text())
        assert training["finetuned_from"]["source"] == str(tiny_bert) and training["examples"] > 0
        assert training["finetuned_from"]["kind"] == ("cross-encoder" if name == "tiny-ce" else "bi-encoder")
        mined = pq.read_table(out / f"finetune/{name}/candidates.parquet").column("query_id").to_pylist()
        assert not set(mined) & set(json.loads((out / "data/splits.json").read_text())["dev_query_ids"])
    source = read_provenance(out / "embeddings/tiny-teacher/shard-0-of-1.parquet")["model"]["source"]
    assert source.endswith("results/tiny/models/tiny-teacher")
    scored = read_provenance(out / "it1/scores/fused.parquet")
    assert scored["scale"] == "fusion-zscore" and scored["pairs_per_s"] > 0
    trained = json.loads((out / "students/it1/training.json").read_text())
    assert trained["teacher_scales"]["fused"] > 0, "the calibrated scale is fitted and recorded"
    summary = json.loads((out / "summary.json").read_text())
    fused = [r for r in summary["rows"] if r["model"] == "teacher"]
    assert [r["name"] for r in fused] == ["fused"] and fused[0]["rerank_pairs_per_s"] > 0
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_prod_preset_end_to_end_lists_its_stages_and_rounds(tmp_path, tiny_beir, tiny_bert):
    """configs/prod.yaml on the fixture, shortened to one round and with PROD's LwF (the preset leaves it
    out): its teachers are the tiny model and its fusion with BM25; the dry run says what each iteration
    is, the round trains on its confusing queries."""
    preset = yaml.safe_load((ROOT / "configs/prod.yaml").read_text())
    tiny_teacher = {"kind": "bi-encoder", "source": str(tiny_bert), "max_passage_length": 48, "max_query_length": 16}
    rounds = dict(preset["prod"]["rounds"], count=1, max_rank=5, negatives=3)
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, methods=preset["methods"], iterations=3,
                           models={"minilm-l6": tiny_teacher, "bm25": {"kind": "bm25"}, **preset["models"]},
                           teacher=preset["teacher"], prod=dict(preset["prod"], rounds=rounds, w_lwf=1.0),
                           encode={"shards": 1}, warmup={"epochs": 0}, threads=1)  # fewer jobs, two at a time: CI time
    dry = snakemake(workdir, "--cores", "2", "-n")
    for line in ("iteration 1: PROD stage 1 of 2: teacher minilm-l6", "iteration 2: PROD stage 2 of 2: teacher fusion",
                 "iteration 3: PROD round 1 of 1: teacher fusion on confusing queries"):
        assert line in dry.stderr
    counts = job_counts(dry.stdout)
    assert counts["train"] == 3 and counts["prod_confusing"] == 1
    # the round scores the student's list with the previous student and the fusion
    assert counts["score"] == 4
    assert counts["choose_fusion_weights"] == 1, "the preset's fusion weights are chosen on the judged training queries"

    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    weights = json.loads((out / "fusion-weights/fusion.json").read_text())
    assert weights["queries"] > 0 and len(weights["grid"]) == 11 and sum(weights["members"].values()) == pytest.approx(1)
    assert f"fusion fusion: weights {weights['members']}" in (out / "logs/score/it2-fusion.log").read_text(), \
        "the teacher scores with the chosen weights"
    report = json.loads((out / "it3/confusing.json").read_text())
    assert report["queries"] == 51 and report["student"] == "student-it2" and report["teacher"] == "fusion"
    trained = json.loads((out / "students/it3/training.json").read_text())
    assert report["selected"] > 0, "the fixture has confusing queries"
    assert trained["examples"] == report["selected"] and trained["config"]["train"]["group_size"] == 4
    assert trained["selection"] == "prod-confusing" and trained["config"]["train"]["lr"] == 2.0e-5
    stage2 = json.loads((out / "students/it2/training.json").read_text())
    assert stage2["config"]["train"]["w_lwf"] == 1.0 and "lwf" in stage2["history"][-1]
    # precision: auto, resolved by the job on this machine's CPU
    assert stage2["precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    assert stage2["teachers"] == ["fusion"] and stage2["teacher_scales"]["fusion"] > 0
    summary = (out / "summary.md").read_text()
    assert "- it3: PROD round 1 of 1: teacher fusion on confusing queries of the student; " in summary
    assert f"{report['selected']} of 51 training queries confusing" in summary
    teachers = [r["name"] for r in json.loads((out / "summary.json").read_text())["rows"] if r["model"] == "teacher"]
    assert teachers == ["fusion", "minilm-l6"]
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # a changed setting reruns what it affects, and only that: stage 2 on, not stage 1
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["prod"]["w_lwf"] = 0.5
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    changed = snakemake(workdir, "--cores", "2", "-n")
    assert job_counts(changed.stdout)["train"] == 2 and "students/it1\n" not in changed.stdout
    assert "results/tiny/students/it2" in changed.stdout


def test_adam_preset_end_to_end_keeps_dark_examples_out_of_indexes_and_runs(tmp_path, tiny_beir, tiny_bert):
    """configs/adam.yaml on the fixture (one iteration): dark examples are made, scored by the fusion
    (BM25 with the corpus statistics), trained on with self-paced selection, and never indexed or ranked."""
    workdir = write_preset_config(tmp_path / "wd", tiny_beir, tiny_bert, "adam",
                                  warmup={"epochs": 0})  # fewer jobs: CI time (the warm-up is tested elsewhere)
    counts = job_counts(snakemake(workdir, "--cores", "2", "-n").stdout)
    assert counts["adam_dark"] == 1 and counts["score"] == 1
    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    candidates = pq.read_table(out / "it1/dark-candidates.parquet").to_pandas()
    dark = candidates[candidates["text"].notna()]
    assert len(dark) == 2 * candidates["query_id"].nunique() and dark["doc_id"].str.startswith("adam-dark:").all()
    assert {json.loads(r)["kind"] for r in dark["recipe"]} == {"mixup", "mask"}
    scores = pq.read_table(out / "it1/scores/fusion.parquet").to_pandas()
    assert set(dark["doc_id"]) <= set(scores["doc_id"]), "the teacher scores every dark example"
    trained = json.loads((out / "students/it1/training.json").read_text())
    report = trained["reports"]["adam"]
    assert report["list_length"] == 6 and report["entropy_with_dark"] > 0
    kept = [h["kept_fraction"] for h in trained["history"] if h["phase"] == "distill"]
    assert kept[0] < kept[-1] == 1.0, "the self-paced share grows to the whole batch"
    dark_ids = set(dark["doc_id"])
    for path in (out / "embeddings").rglob("*.parquet"):
        assert not dark_ids & set(pq.read_table(path).column("doc_id").to_pylist()), path
    for path in (out / "eval").rglob("run.trec"):
        assert "adam-dark:" not in path.read_text(), path
    mined = pq.read_table(out / "it1/candidates.parquet").column("doc_id").to_pylist()
    assert not dark_ids & set(mined)
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_onmkd_preset_end_to_end_trains_warms_up_and_evaluates_both_peers(tmp_path, tiny_beir, tiny_bert):
    """configs/onmkd.yaml on the fixture (one iteration, 2-layer peers of the 3-layer fixture model): both
    peers warm up and train together, both are saved, evaluated on dev and test, load in
    sentence-transformers, and the final student is the better of them on dev."""
    from sentence_transformers import SentenceTransformer

    student = {"kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48,
               "max_query_length": 16}
    preset = yaml.safe_load((ROOT / "configs/onmkd.yaml").read_text())
    workdir = write_preset_config(tmp_path / "wd", tiny_beir, tiny_bert, "onmkd", student=student,
                                  onmkd={**preset["onmkd"], "peer": {"layers": [0, 2]}})
    dry = snakemake(workdir, "--cores", "2", "-n")
    assert job_counts(dry.stdout)["train"] == 1
    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    trained = json.loads((out / "students/it1/training.json").read_text())
    assert trained["phases"] == ["warmup", "distill"]
    first = {h["phase"]: h for h in reversed(trained["history"])}
    assert {"embedding_mse", "peer:embedding_mse"} <= set(first["warmup"]), "both peers warm up"
    assert {"nll", "peer:nll", "mutual_kl", "peer:mutual_kl", "kl:fusion", "peer:kl:fusion",
            "crosswise:1", "crosswise:last"} <= set(first["distill"])
    assert json.loads((out / "students/it0/peer/training.json").read_text())["initialised_from"]["layers"] == [0, 2]
    summary = json.loads((out / "summary.json").read_text())
    names = {row["name"] for row in summary["rows"]}
    assert {"student-it1", "student-it1-peer"} <= names
    dev = {name: json.loads((out / f"eval/dev/{name}/metrics.json").read_text())["ndcg@10"]
           for name in ("student-it1", "student-it1-peer", "student-it1-warmup", "student-it0")}
    final = json.loads((out / "final.json").read_text())
    assert set(final["dev"]) == set(dev), "the peer is a candidate for final student"
    # the one-standard-error rule over them, in the order the run made them, the untrained student last
    best, errors = max(dev.values()), final["standard_error_to_best"]
    order = ["student-it1-warmup", "student-it1", "student-it1-peer", "student-it0"]
    assert final["selected"] == next(n for n in order if best - dev[n] <= errors[n] + 1e-9) == summary["final"]["selected"]
    peers = json.loads((out / "it1/peers.json").read_text())
    assert peers["better"] == max(("student-it1", "student-it1-peer"), key=dev.get)
    assert peers["summary"] in (out / "summary.md").read_text()
    for folder in ("students/it1", "students/it1/peer"):
        SentenceTransformer(str(out / folder), device="cpu").encode(["a query"])
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_lead_preset_end_to_end_distils_the_online_teachers_layers(tmp_path, tiny_beir, tiny_bert):
    """configs/lead.yaml on the fixture (one iteration; the 3-layer fixture model as MiniLM-L6, inside the
    fusion that gives the final KL and online for the layer terms): the student warms up, trains on the
    drawn layer pairs, and the final student is chosen on dev."""
    student = {"kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48,
               "max_query_length": 16}
    workdir = write_preset_config(tmp_path / "wd", tiny_beir, tiny_bert, "lead", student=student,
                                  evaluate={"teacher": False})  # students only: CI time
    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    trained = json.loads((out / "students/it1/training.json").read_text())
    assert trained["phases"] == ["warmup", "distill"]
    assert trained["reports"]["lead"] | {"teacher_scale": None} == {
        "teacher": "minilm-l6", "teacher_depth": 3, "student_depth": 2, "teacher_scale": None, "candidates": "batch"}
    distill = [h for h in trained["history"] if h["phase"] == "distill"]
    assert {"nll", "kl:fusion", "layer_kl", "lead_weight:t1", "lead_weight:t3"} <= set(distill[0])
    assert all(sum(h[f"lead_weight:t{layer}"] for layer in (1, 2, 3)) == pytest.approx(1.0) for h in distill)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["selected"] in {"student-it1", "student-it1-warmup", "student-it0"}
    assert "LEAD: 2 layer pairs of minilm-l6 (online)" in (out / "summary.md").read_text()
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


# one iteration, no warm-up, no export, many checkpoints: the kill test's run, and the cache test's first
ONE_ITERATION = dict(iterations=1, encode={"shards": 1}, warmup={"epochs": 0}, export={"formats": []},
                     evaluate={"baselines": ["bm25"]},
                     train={"epochs": 10, "batch_size": 4, "group_size": 4, "checkpoint_every": 2})


# Built once per test session, also under `make test`'s pytest-xdist workers: the first worker to ask builds
# it under a file lock in the folder all workers' temporary folders share, the other finds it done
# (pytest-xdist's recipe for a session fixture made once). Its users could not be kept on one worker
# instead: xdist 3.8 ignores their xdist_group mark under pytest 9.2 (pytest-xdist#1386), and each worker
# built the run (CI: 117 s and 106 s of setup).
@pytest.fixture(scope="session")
def one_iteration_run(tmp_path_factory, tiny_beir, tiny_bert):
    """One uninterrupted run of :data:`ONE_ITERATION` under `--cache` (its cache beside it), shared (CI time):
    the reference of the kill test, the first experiment of the cache test. (Under xdist the run may be on
    the other worker's copies of the fixture data and model: the same bytes, made by the same seeded code.)"""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") \
        else tmp_path_factory.getbasetemp()
    folder = shared / "one-iteration"
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(folder / "cache")}
    with FileLock(str(shared / "one-iteration.lock")):
        if not (folder / "run.log").exists():
            workdir = write_config(folder / "wd", tiny_beir, tiny_bert, **ONE_ITERATION)
            result = snakemake(workdir, "--cores", "2", "--cache", env=env)
            (folder / "run.log").write_text(result.stderr)  # written last: the run is complete
    return SimpleNamespace(workdir=folder / "wd", env=env, log=(folder / "run.log").read_text())


def test_a_run_killed_hard_in_each_stage_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path, tiny_beir, tiny_bert,
                                                                                       one_iteration_run):
    """One run killed hard (SIGKILL of Snakemake's process group) while the teacher's encode job runs,
    resumed with --rerun-incomplete and killed again while mining, while scoring, and while training
    (after a checkpoint), each attempt asking for the stage's output so that the stage is what runs, then
    resumed to the end: no killed job leaves its output, the train job resumes from its checkpoint, and
    every model's metrics equal those of an uninterrupted run. (One run killed four times, not four runs:
    CI time.)"""
    reference = one_iteration_run.workdir  # the same config, uninterrupted
    workdir = write_config(tmp_path / "killed", tiny_beir, tiny_bert, **ONE_ITERATION)
    results = workdir / "results/tiny"

    def started(log: str):  # the stage's job has begun in this attempt: its log was opened since
        return lambda since: (path := results / log).exists() and path.stat().st_mtime >= since

    stages = [  # (stage, its output (the attempt's target), the sign that its job runs)
        ("encode", "embeddings/tiny-teacher/shard-0-of-1.parquet", started("logs/encode/tiny-teacher-0-of-1.log")),
        ("mine", "it1/candidates.parquet", started("logs/mine/it1.log")),
        ("score", "it1/scores/tiny-teacher.parquet", started("logs/score/it1-tiny-teacher.log")),
        ("train", "students/it1", lambda since: (results / "scratch/train-it1/checkpoint.pt").exists()),
    ]
    for stage, output, running in stages:
        since = time.time() - 1  # file times are coarser than time.time()
        process = subprocess.Popen([*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", "--rerun-incomplete",
                                    f"results/tiny/{output}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 300
        while not running(since) and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert running(since), f"the run reached {stage}"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert not (results / output).exists(), f"the job killed in {stage} left {output}"
        snakemake(workdir, "--unlock", "--cores", "1")
    snakemake(workdir, "--cores", "2", "--rerun-incomplete")
    assert "resuming from" in (results / "logs/train/it1.log").read_text()
    history = json.loads((results / "students/it1/training.json").read_text())["history"]
    assert history[-1]["phase"] == "distill" and history[-1]["epoch"] == 9, "the resumed job trained to the end"
    metrics = sorted((reference / "results/tiny/eval").rglob("metrics.json"))
    assert len(metrics) >= 4  # teacher, students it0 and it1, test and dev
    for path in metrics:
        resumed = json.loads((results / path.relative_to(reference / "results/tiny")).read_text())
        expected = json.loads(path.read_text())
        assert {k: resumed[k] for k in METRICS} == {k: expected[k] for k in METRICS}, path
    assert "Nothing to be done" in snakemake(workdir, "--cores", "2", "-n").stdout


def test_lint_finds_nothing(tmp_path, tiny_beir, tiny_bert):
    """`snakemake --lint` finds nothing to say of the standard workflow, nor of the method rules (ADAM's,
    MTA4DPR's and OnMKD's in the all-methods preset, PROD's in its own)."""
    two_layers = {"kind": "bi-encoder", "source": str(tiny_bert), "layers": 2}  # OnMKD's peers need a middle layer
    onmkd = {**yaml.safe_load((ROOT / "configs/all-methods.yaml").read_text())["onmkd"], "peer": {"layers": [0, 2]}}
    for preset, overrides in [(None, {}), ("all-methods", {"student": two_layers, "onmkd": onmkd}),
                              ("prod", {"iterations": 4})]:
        workdir = (write_preset_config(tmp_path / preset, tiny_beir, tiny_bert, preset, **overrides) if preset
                   else write_config(tmp_path / "standard", tiny_beir, tiny_bert))
        result = snakemake(workdir, "--lint", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "Congratulations, your workflow is in a good condition!" in output, \
            f"{preset}: {output[-3000:]}"


def test_mta4dpr_preset_end_to_end_selects_assistants_and_lets_the_student_join_the_pool(tmp_path, tiny_beir, tiny_bert):
    """configs/mta4dpr.yaml on the fixture, two iterations (the fixture model as MiniLM-L6, inside both
    fusions): iteration 1 trains on the RRF-reranked negatives with one assistant chosen per batch; after it
    the pool rule compares the student with the worst assistant on dev; iteration 2 scores the student-made
    pool, weighs the hard queries, and a second run has nothing to do."""
    preset = yaml.safe_load((ROOT / "configs/mta4dpr.yaml").read_text())
    workdir = write_preset_config(tmp_path / "wd", tiny_beir, tiny_bert, "mta4dpr", iterations=2,
                                  warmup={"epochs": 0}, evaluate={"teacher": False},  # CI time
                                  mta4dpr={**preset["mta4dpr"], "assistants": ["bm25", "minilm-l6"]},
                                  mine={"depth": 20, "window": [0, 10]})
    counts = job_counts(snakemake(workdir, "--cores", "2", "-n").stdout)
    assert counts["mta4dpr_select"] == 2
    # iteration 1: teacher + 2 assistants; iteration 2: + student-it1 (a possible member and the hard queries)
    assert counts["score"] == 3 + 4
    snakemake(workdir, "--cores", "2")
    out = workdir / "results" / "tiny"
    first = json.loads((out / "it1/mta4dpr/pool.json").read_text())
    assert first["pool"] == ["bm25", "minilm-l6"] and first["hard_queries"] == []
    second = json.loads((out / "it2/mta4dpr/pool.json").read_text())
    decision = second["decision"]
    dev = {name: json.loads((out / f"eval/dev/{name}/metrics.json").read_text())["ndcg@10"]
           for name in ["bm25", "minilm-l6", "student-it1"]}
    worst = min(first["pool"], key=dev.get)
    assert decision["worst"] == worst and decision["student_dev"] == dev["student-it1"]
    expected = [("student-it1" if name == worst else name) for name in first["pool"]] \
        if dev["student-it1"] > dev[worst] else first["pool"]
    assert second["pool"] == expected
    candidates = pq.read_table(out / "it2/mta4dpr/candidates.parquet").to_pandas()
    assert candidates.groupby("query_id").size().max() <= 10
    assert read_provenance(out / "it2/mta4dpr/candidates.parquet")["mta4dpr"]["pool"] == second["pool"]
    for it, pool in ((1, first["pool"]), (2, second["pool"])):
        trained = json.loads((out / f"students/it{it}/training.json").read_text())
        distill = [h for h in trained["history"] if h["phase"] == "distill"]
        assert {"nll", "kl:fusion", "assistant_kl"} <= set(distill[0])
        chosen = [sum(h[f"mta4dpr_selected:{name}"] for name in pool) for h in distill]
        assert chosen == pytest.approx([1.0] * len(distill)), "one assistant of the pool per batch"
    summary = (out / "summary.md").read_text()
    assert "MTA4DPR" in summary and "pool" in summary
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_label_free_preset_on_a_test_only_collection_reads_no_judgment(tmp_path, tiny_beir, tiny_bert):
    """configs/label-free.yaml on a copy of the fixture with qrels/test.tsv only (no training judgments):
    the teacher labels the unjudged queries and pseudo-queries, the run ends with its summary, and no
    pseudo-query is evaluated. The same run with the test judgments shuffled trains a bit-identical
    student: only the metrics would change (asked for the student only; CI time)."""
    from safetensors.numpy import load_file

    from pipeline.evaluation import compute_metrics, read_trec_run

    def test_only_copy(folder: Path, shuffle: bool) -> Path:
        (folder / "qrels").mkdir(parents=True)
        for name in ("corpus.jsonl", "queries.jsonl"):
            (folder / name).write_bytes((tiny_beir / name).read_bytes())
        header, *rows = (tiny_beir / "qrels/test.tsv").read_text().splitlines()
        pairs = [row.split("\t") for row in rows]
        if shuffle:  # every judgment moves to another query's passage
            docs = [d for _, d, _ in pairs]
            pairs = [(q, docs[(i + 1) % len(docs)], s) for i, (q, _, s) in enumerate(pairs)]
        (folder / "qrels/test.tsv").write_text("\n".join([header, *("\t".join(p) for p in pairs)]) + "\n")
        return folder

    labels = {"source": "teacher", "pseudo_queries": {"count": 40}}
    runs = {}
    for name, shuffle in (("judged", False), ("shuffled", True)):
        beir = test_only_copy(tmp_path / f"beir-{name}", shuffle)
        runs[name] = write_preset_config(tmp_path / name, beir, tiny_bert, "label-free", labels=labels)
    snakemake(runs["judged"], "--cores", "2")
    out = runs["judged"] / "results/tiny"
    assert not (out / "data/qrels-train.parquet").exists(), "no training split is read"
    assert not (out / "fusion-weights").exists(), "no judged query to choose the fusion's weights on: they stay"
    report = json.loads((out / "data/labels.json").read_text())
    assert report["teacher"] == "fusion" and report["pseudo_queries"] == 40, "the preset's teacher labels"
    assert report["labelled_queries"] == 64 + 40, "the 64 queries the test split does not judge, and the pseudo-queries"
    splits = json.loads((out / "data/splits.json").read_text())
    assert splits["labels"] == "teacher" and splits["dev_queries"] == 13
    assert "texts ['corpus', 'train_queries', 'titles', 'sentences']" in (out / "logs/train/it1.log").read_text(), \
        "warmup.texts: auto adds the corpus sentences where the teacher labels the training queries"
    assert not any(q.startswith("pseudo:") for q in splits["dev_query_ids"])
    summary = json.loads((out / "summary.json").read_text())
    assert {r["name"] for r in summary["rows"]} == {"fusion", "student-it0", "student-it1-warmup", "student-it1"}
    for path in (out / "eval").rglob("run.trec"):
        assert "pseudo:" not in path.read_text(), path
    again = snakemake(runs["judged"], "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr

    snakemake(runs["shuffled"], "--cores", "2", "results/tiny/students/it1")
    shuffled = runs["shuffled"] / "results/tiny"
    first, second = (load_file(o / "students/it1/model.safetensors") for o in (out, shuffled))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first), \
        "the student does not depend on the test judgments"
    assert pq.read_table(out / "data/qrels-teacher.parquet").equals(pq.read_table(shuffled / "data/qrels-teacher.parquet"))
    test_run = read_trec_run(out / "eval/test/student-it1/run.trec")
    qrels = {name: {} for name in ("judged", "shuffled")}
    for name in qrels:
        for line in (tmp_path / f"beir-{name}/qrels/test.tsv").read_text().splitlines()[1:]:
            q, d, s = line.split("\t")
            qrels[name].setdefault(q, {})[d] = int(s)
    assert compute_metrics(qrels["judged"], test_run) != compute_metrics(qrels["shuffled"], test_run), \
        "the same student's metrics change with the judgments"


def test_a_second_experiment_reuses_the_teachers_work_and_compares_with_the_first_in_one_report(one_iteration_run):
    """Two experiments on the same data under `--cache`, the second with another learning rate: its
    teacher work (corpus encoding, index, evaluation, BM25's candidates, the teacher's scores) comes from
    the cache and does not run, its student's work runs; `--report` holds the table and the figures;
    `python -m pipeline.compare` puts the two side by side and refuses a run on other data."""
    workdir, env = one_iteration_run.workdir, one_iteration_run.env  # the first experiment: results/tiny
    assert "Moving output file results/tiny/embeddings/tiny-teacher/shard-0-of-1.parquet to cache" in one_iteration_run.log
    (workdir / "second.yaml").write_text(yaml.safe_dump({"experiment": "second", "train": {"lr": 3.0e-4}}))
    second = snakemake(workdir, "--cores", "2", "--cache", "--configfile", str(workdir / "second.yaml"), env=env).stderr
    reused = ["embeddings/tiny-teacher/shard-0-of-1.parquet", "index/tiny-teacher/manifest.json",
              "eval/test/tiny-teacher/metrics.json",
              "eval/test/bm25/metrics.json", "it1/candidates.parquet", "it1/scores/tiny-teacher.parquet"]
    for path in reused:
        assert f"Symlinking output file results/second/{path} from cache" in second, path
        made = f"Moving output file results/second/{path.removesuffix('/manifest.json')}"
        assert made not in second, f"{path}: made again"
    assert not (workdir / "results/second/logs/encode/tiny-teacher-0-of-1.log").read_text(), "the encode job did not run"
    # what depends on the learning rate was made anew
    assert "Moving output file results/second/embeddings/student-it1/shard-0-of-1.parquet to cache" in second
    first_dir, second_dir = workdir / "results/tiny", workdir / "results/second"
    assert json.loads((second_dir / "students/it1/training.json").read_text())["config"]["train"]["lr"] == 3.0e-4
    assert (json.loads((second_dir / "eval/test/tiny-teacher/metrics.json").read_text())["ndcg@10"]
            == json.loads((first_dir / "eval/test/tiny-teacher/metrics.json").read_text())["ndcg@10"])

    # the report: its categories, the table and the three figures (their texts), the runtime of the rules
    snakemake(workdir, "--cores", "1", "--report", "report.html", env=env)
    page = (workdir / "report.html").read_text()
    for name in ("summary.html", "ndcg-per-iteration.svg", "quality-speed.svg", "training-curves.svg",
                 '"Quality"', '"Training"', '"Summary"', "Runtimes of jobs"):
        assert name in page, name
    assert re.search(r'"rule": "train", "runtime": [0-9.]+', page), "Snakemake's runtime per rule"
    ndcg = (first_dir / "report/ndcg-per-iteration.svg").read_text()
    assert all(text in ndcg for text in ("student (test)", "teacher: tiny-teacher", "baseline: bm25", "nDCG@10"))
    quality_speed = (first_dir / "report/quality-speed.svg").read_text()
    assert "corpus encoding speed (passages/s, log scale)" in quality_speed and "student-it1 (" in quality_speed
    curves = (first_dir / "report/training-curves.svg").read_text()
    assert all(text in curves for text in ("it1: distill", "nll", "kl:tiny-teacher", "optimiser step"))
    table = (first_dir / "report/summary.html").read_text()
    assert "<td>baseline</td>" in table and "<td>tiny-teacher</td>" in table

    compare = [sys.executable, "-m", "pipeline.compare"]
    run = dict(cwd=workdir, capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)})
    result = subprocess.run([*compare, "results/tiny", "results/second", "--out", "comparison"], **run)
    assert result.returncode == 0, result.stderr
    compared = json.loads((workdir / "comparison/comparison.json").read_text())
    assert [e["experiment"] for e in compared["experiments"]] == ["tiny", "second"]
    summary = json.loads((second_dir / "summary.json").read_text())
    final = next(r for r in summary["rows"] if r["name"] == summary["final"]["selected"])
    assert compared["experiments"][1]["ndcg@10"] == final["ndcg@10"]
    assert "| second |" in (workdir / "comparison/comparison.md").read_text()
    assert "second: " in (workdir / "comparison/quality-speed.svg").read_text()
    # the second's final student tested query by query against the first's: scipy's p-values on the
    # per-query nDCG@10 of their TREC runs, paired by query (one system compared: Holm changes nothing)
    from scipy import stats

    from pipeline.data import load_qrels
    from pipeline.evaluation import per_query_metrics, read_trec_run

    qrels = load_qrels(first_dir / "data/qrels-test.parquet")
    ndcg = [per_query_metrics(qrels, read_trec_run(d / "eval/test" / e["final"] / "run.trec"))["ndcg@10"]
            for d, e in zip((first_dir, second_dir), compared["experiments"])]
    queries = sorted(ndcg[0])
    first_q, second_q = [ndcg[0][q] for q in queries], [ndcg[1][q] for q in queries]
    tests = compared["experiments"][1]["significance"]
    assert compared["experiments"][0]["significance"] is None and tests["baseline"] == "tiny"
    assert np.mean(second_q) == pytest.approx(compared["experiments"][1]["ndcg@10"], abs=1e-4)
    assert tests["mean_difference"] == pytest.approx(np.mean(second_q) - np.mean(first_q))
    if first_q != second_q:
        assert tests["p_t"] == pytest.approx(stats.ttest_rel(second_q, first_q).pvalue) == tests["p_t_holm"]
        assert tests["p_wilcoxon"] == pytest.approx(stats.wilcoxon(second_q, first_q).pvalue)
    assert tests["improved"] == sum(b > a for a, b in zip(first_q, second_q))
    against = subprocess.run([*compare, "results/tiny", "results/second", "--out", "comparison3", "--baseline",
                              "second", "--randomisation"], **run)
    assert against.returncode == 0, against.stderr
    swapped = json.loads((workdir / "comparison3/comparison.json").read_text())["experiments"]
    assert swapped[1]["significance"] is None and swapped[0]["significance"]["p_t"] == pytest.approx(tests["p_t"])
    assert "p_randomisation_holm" in swapped[0]["significance"]
    unknown = subprocess.run([*compare, "results/tiny", "--out", "comparison4", "--baseline", "nope"], **run)
    assert unknown.returncode == 2 and "--baseline: no such experiment among tiny" in unknown.stderr
    # a run whose test judgments differ (one dropped) is not compared
    import shutil

    other = workdir / "results/other"
    shutil.copytree(second_dir, other, symlinks=True)
    qrels = pq.read_table(other / "data/qrels-test.parquet")
    pq.write_table(qrels.slice(1), other / "data/qrels-test.parquet")
    result = subprocess.run([*compare, "results/tiny", "results/other", "--out", "comparison2"], **run)
    assert result.returncode == 2 and "results/other/data: run on other data than results/tiny" in result.stderr
    assert "test judgments (31 vs 32)" in result.stderr and not (workdir / "comparison2").exists()


def test_all_methods_preset_end_to_end_trains_onmkd_peers_on_adam_dark_examples_with_mta4dpr_assistants(tmp_path, tiny_beir, tiny_bert):
    """configs/all-methods.yaml on the fixture (one iteration, no warm-up: CI time; 2-layer peers): the dark
    examples ADAM makes survive MTA4DPR's selection of the training candidates, and one training holds
    every method's terms, for both peers."""
    student = {"kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48,
               "max_query_length": 16}
    preset = yaml.safe_load((ROOT / "configs/all-methods.yaml").read_text())
    workdir = write_preset_config(tmp_path / "wd", tiny_beir, tiny_bert, "all-methods", student=student,
                                  onmkd={**preset["onmkd"], "peer": {"layers": [0, 2]}},
                                  warmup={"epochs": 0, "teacher": "minilm-l6"})
    counts = job_counts(snakemake(workdir, "--cores", "2", "-n").stdout)
    assert counts["adam_dark"] == counts["mta4dpr_select"] == counts["onmkd_peers"] == counts["train"] == 1
    snakemake(workdir, "--cores", "2")
    out = workdir / "results/tiny"
    selected = pq.read_table(out / "it1/mta4dpr/candidates.parquet").to_pandas()
    dark = selected["doc_id"].str.startswith("adam-dark:")
    assert dark.sum() == 2 * selected["query_id"].nunique(), "every query keeps its 2 dark examples"
    trained = json.loads((out / "students/it1/training.json").read_text())
    assert trained["methods"] == ["onmkd", "adam", "mta4dpr"]
    last = trained["history"][-1]
    for term in ("nll", "kl:fusion", "mutual_kl", "assistant_kl"):  # each peer's
        assert term in last and f"peer:{term}" in last, term
    assert "crosswise:last" in last and "kept_fraction" in last  # between the peers; ADAM's self-paced share
    summary = json.loads((out / "summary.json").read_text())
    assert {"student-it1", "student-it1-peer"} <= {r["name"] for r in summary["rows"]}


def test_seeds_dry_run_makes_what_a_seed_does_not_change_once(tmp_path, tiny_beir, tiny_bert):
    """`seeds: [13, 7]`, two iterations: the data, the teacher's work, the untrained student and iteration
    1's candidates and scores are jobs of the first seed's run only; the second seed trains, mines
    (iteration 2: its own student mines), scores and evaluates its own students."""
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, seeds=[13, 7], encode={"shards": 1})
    output = snakemake(workdir, "--cores", "2", "-n").stdout
    counts = job_counts(output)
    assert counts["prepare"] == counts["split_training_queries"] == counts["init_student"] == 1
    assert counts["mine"] == counts["score"] == counts["train"] == 2
    assert counts["seed_7_mine"] == counts["seed_7_score"] == 1 and counts["seed_7_train"] == 2
    assert counts["seeds"] == 1 and counts["summary"] == counts["seed_7_summary"] == 1
    assert not any(name.startswith("seed_7_") and name.split("seed_7_")[1] in
                   ("prepare", "split_training_queries", "init_student") for name in counts)
    outputs = re.findall(r"output: (.+)", output)
    seed_outputs = [path for line in outputs for path in line.split(", ") if "results/tiny/seed-7/" in path]
    assert seed_outputs and not [p for p in seed_outputs if re.search(r"/(data|it1|embeddings/tiny-teacher|"
                                                                      r"embeddings/student-it0|index/tiny-teacher)/", p)]
    # the teacher and the untrained student evaluated once; each seed its own warm-up, it1, it2, int8 export
    assert counts["evaluate"] == 2 + 4 and counts["seed_7_evaluate"] == 4


def test_seeds_added_to_a_finished_run_train_only_the_new_seed_and_summarise_both(tmp_path, one_iteration_run):
    """The finished one-iteration run (seed 13) asked again with `seeds: [13, 7]`: nothing of seed 13's run
    runs again, seed 7 trains and evaluates its own student (other weights, other figures) on the shared
    teacher work; seeds.json's mean and sd are those of the two seeds' summaries; compare reads the folder
    as one experiment at two seeds."""
    import shutil
    import statistics

    workdir = tmp_path / "wd"
    shutil.copytree(one_iteration_run.workdir, workdir, symlinks=True)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump(dict(config, seeds=[13, 7])))
    log = snakemake(workdir, "--cores", "2", "--cache", env=one_iteration_run.env).stderr
    ran = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))
    assert ran and all(rule.startswith("seed_7_") or rule in ("seeds", "all") for rule in ran), ran
    assert {"seed_7_train", "seed_7_evaluate", "seed_7_summary", "seeds"} <= ran
    first, second = workdir / "results/tiny", workdir / "results/tiny/seed-7"
    assert not (second / "data").exists() and not (second / "eval/test/tiny-teacher").exists()
    weights = [(d / "students/it1/model.safetensors").read_bytes() for d in (first, second)]
    assert weights[0] != weights[1], "the seeds train different students"
    training = json.loads((second / "students/it1/training.json").read_text())
    assert training["experiment"] == "tiny/seed-7" and training["seed"] == 7 + 1  # seed + iteration
    summaries = {seed: json.loads((d / "summary.json").read_text()) for seed, d in ((13, first), (7, second))}
    assert summaries[7]["seed"] == 7 and summaries[13]["seed"] == 13
    seeds = json.loads((first / "seeds.json").read_text())
    assert seeds["seeds"] == [13, 7] and seeds["shared_from_seed"] == 13
    rows = {row["name"]: row for row in seeds["rows"]}
    finals = {seed: next(r for r in s["rows"] if r["name"] == s["final"]["selected"])["ndcg@10"]
              for seed, s in summaries.items()}
    assert rows["final"]["ndcg@10"]["per_seed"] == {"13": finals[13], "7": finals[7]}
    assert rows["final"]["ndcg@10"]["mean"] == pytest.approx(statistics.fmean(finals.values()))
    assert rows["final"]["ndcg@10"]["sd"] == pytest.approx(statistics.stdev(finals.values()))
    assert rows["tiny-teacher"]["ndcg@10"]["sd"] == 0.0
    assert "| final | final |" in (first / "seeds.md").read_text()
    run = dict(cwd=workdir, capture_output=True, text=True, env={**one_iteration_run.env, "PYTHONPATH": str(ROOT)})
    result = subprocess.run([sys.executable, "-m", "pipeline.compare", "results/tiny", "--out", "cmp"], **run)
    assert result.returncode == 0, result.stderr
    compared = json.loads((workdir / "cmp/comparison.json").read_text())["experiments"]
    assert len(compared) == 1 and compared[0]["seeds"] == 2
    assert compared[0]["per_seed"] == {"13": finals[13], "7": finals[7]}
    snakemake(workdir, "--cores", "1", "--report", "report.html", env=one_iteration_run.env)
    page = (workdir / "report.html").read_text()
    assert "seeds.md" in page and '"rule": "seed_7_train"' in page


def test_seeds_with_splits_per_seed_split_mine_and_evaluate_at_each_seed(tmp_path, tiny_beir, tiny_bert):
    """`splits.per_seed`: the second seed's run draws its own training sample and dev split, so it mines
    iteration 1 itself, scores those candidates and evaluates every model (the teacher and the untrained
    student on its dev split too); the data, the teacher's encodings and the untrained student stay shared."""
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, seeds=[13, 7], encode={"shards": 1},
                           splits={"per_seed": True})
    output = snakemake(workdir, "--cores", "2", "-n").stdout
    counts = job_counts(output)
    assert counts["prepare"] == counts["init_student"] == 1 and "seed_7_prepare" not in counts
    assert counts["split_training_queries"] == counts["seed_7_split_training_queries"] == 1
    assert counts["mine"] == counts["seed_7_mine"] == counts["score"] == counts["seed_7_score"] == 2
    assert counts["evaluate"] == counts["seed_7_evaluate"] == 2 + 4
    assert "seed_7_encode" in counts and counts["encode"] > counts["seed_7_encode"], "the teacher encodes once"
    outputs = [p for line in re.findall(r"output: (.+)", output) for p in line.split(", ")]
    assert "results/tiny/seed-7/data/dev-qrels.parquet" in outputs and "results/tiny/seed-7/it1/candidates.parquet" in outputs
    assert not [p for p in outputs if re.search(r"seed-7/(embeddings|index)/(tiny-teacher|student-it0)/", p)]


def test_seeds_with_splits_per_seed_end_to_end_hold_out_other_dev_queries(tmp_path, tiny_beir, tiny_bert):
    """One iteration without warm-up, export or hybrid (CI time) at seeds 13 and 7 with `splits.per_seed`:
    each seed's dev split is drawn with its seed, the teacher's dev figure is measured on each, the seeds'
    table says how the seeds were split, and compare reads the second seed's run (its data/ holds only its
    split) against the shared test judgments."""

    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, seeds=[13, 7], encode={"shards": 1}, iterations=1,
                           warmup={"epochs": 0}, export={"formats": []}, splits={"per_seed": True})
    snakemake(workdir, "--cores", "2")
    first, second = workdir / "results/tiny", workdir / "results/tiny/seed-7"
    dev = [set(pq.read_table(d / "data/dev-qrels.parquet").column("query_id").to_pylist()) for d in (first, second)]
    assert dev[0] and dev[1] and dev[0] != dev[1], "each seed holds out its own dev queries"
    assert json.loads((second / "data/splits.json").read_text())["seed"] == 7
    assert not (second / "data/corpus.parquet").exists() and not (second / "embeddings/tiny-teacher").exists()
    teacher_dev = [json.loads((d / "eval/dev/tiny-teacher/metrics.json").read_text()) for d in (first, second)]
    assert [m["queries"] for m in teacher_dev] == [len(dev[0]), len(dev[1])]
    seeds = json.loads((first / "seeds.json").read_text())
    assert seeds["splits_per_seed"] is True
    assert "each seed drew its own training sample and dev split" in (first / "seeds.md").read_text()
    run = dict(cwd=workdir, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = subprocess.run([sys.executable, "-m", "pipeline.compare", "results/tiny", "--out", "cmp"], **run)
    assert result.returncode == 0, result.stderr
    assert json.loads((workdir / "cmp/comparison.json").read_text())["experiments"][0]["seeds"] == 2
