"""The CUDA path of every model step, checked on a machine with a GPU (CI has none).

Two halves, so that the GPU machine needs only torch, transformers, pandas, pyarrow and jsonschema:

    python scripts/cuda_check.py prepare .gpu     # on the CPU: fixture, BM25 candidates, teacher
                                                  # embeddings and scores, ADAM's dark candidates, students
    python scripts/cuda_check.py run .gpu OUT.json  # each step with device=cuda

Run both on the GPU machine (embeddings record their model's path, so a prepared folder does not move).

``run`` encodes and scores on CUDA (bf16 autocast) and compares with the CPU's numbers, trains the
standard recipe (warm-up, LwF), ADAM, OnMKD, LEAD (bi-encoder and joint cross-encoder online teachers) and
MTA4DPR (KL and RBO selection between BM25 and cross-encoder assistants), fine-tunes a bi-encoder and a
cross-encoder, kills and resumes a CUDA training job, evaluates a student on CUDA against the CPU (FAISS,
ir-measures: carry their wheels) and exports it to ONNX (fp32, int8) whose encodings it compares with
PyTorch's on CUDA; it writes what it measured and exits non-zero on a failed check.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def prepare(folder: Path) -> None:
    from fixtures import prepare_with_candidates, write_beir, write_tiny_bert
    from pipeline.embeddings import encode_corpus_shard
    from pipeline.methods.adam import add_dark_examples
    from pipeline.scorers import score_candidates
    from pipeline.training import init_student

    folder.mkdir(parents=True, exist_ok=True)
    beir = write_beir(folder / "beir")
    bert = write_tiny_bert(folder / "tiny-bert", layers=3)
    write_tiny_bert(folder / "tiny-ce", layers=2, cross_encoder=True)
    data = prepare_with_candidates(beir, folder)
    teacher = {"name": "teacher", "kind": "bi-encoder", "source": str(bert)}
    encode_corpus_shard(data["corpus"], teacher, str(folder / "teacher-emb.parquet"), device="cpu")
    add_dark_examples(str(folder / "candidates.parquet"), data["qrels-train"], data["corpus"],
                      str(folder / "dark-candidates.parquet"), {"mixup": {"count": 1}, "mask": {"count": 1}}, seed=3)
    for name in ("candidates", "dark-candidates"):
        score_candidates(str(folder / f"{name}.parquet"), data["qrels-train"], data["queries"], data["corpus"],
                         str(folder / f"{name}-scores.parquet"), teacher,
                         embedding_shards={"teacher": [str(folder / "teacher-emb.parquet")]}, device="cpu")
    # MTA4DPR: BM25 and an (untrained) cross-encoder as assistants, the pool's RRF negatives
    from pipeline.methods.mta4dpr import select_training_data

    assistants = {"bm25": {"name": "bm25", "kind": "bm25"},
                  "ce": {"name": "ce", "kind": "cross-encoder", "source": str(folder / "tiny-ce")}}
    for name, scorer in assistants.items():
        score_candidates(str(folder / "candidates.parquet"), data["qrels-train"], data["queries"], data["corpus"],
                         str(folder / f"candidates-{name}.parquet"), scorer, device="cpu")
    select_training_data(str(folder / "candidates.parquet"), data["qrels-train"],
                         {name: str(folder / f"candidates-{name}.parquet") for name in assistants},
                         str(folder / "mta4dpr-candidates.parquet"), str(folder / "mta4dpr.json"),
                         {"assistants": list(assistants), "negatives": {"keep": 5}}, iteration=1)
    student = {"name": "student-it0", "kind": "bi-encoder", "source": str(bert), "layers": 2}
    init_student(student, str(folder / "student0"), peers={"peer": dict(student, layers=[0, 2], name="peer")})


def min_cosine(a, b) -> float:
    """The lowest cosine between matching rows of two embedding matrices."""
    import numpy as np

    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def run(folder: Path, out_path: Path) -> int:
    import numpy as np
    import torch

    from pipeline.embeddings import encode_corpus_shard, read_embeddings
    from pipeline.scorers import score_candidates
    from pipeline.training import train_student
    from pipeline.training.finetune import finetune_model

    import os

    device = os.environ.get("CUDA_CHECK_DEVICE", "cuda")  # "cpu": try the script itself without a GPU
    assert device == "cpu" or torch.cuda.is_available(), "no CUDA device"
    data = {k: str(folder / "data" / f"{k}.parquet") for k in ("corpus", "queries", "qrels-train")}
    teacher = {"name": "teacher", "kind": "bi-encoder", "source": str(folder / "tiny-bert")}
    shards = {"teacher": [str(folder / "teacher-emb.parquet")]}
    report: dict = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "cpu",
                    "torch": torch.__version__, "bf16": device != "cpu" and torch.cuda.is_bf16_supported(),
                    "checks": {}}
    failed = []

    def check(name, fn):
        began = time.perf_counter()
        try:
            result = fn()
            report["checks"][name] = {"ok": True, "seconds": round(time.perf_counter() - began, 2), **(result or {})}
        except Exception as err:  # report every check, then fail
            failed.append(name)
            report["checks"][name] = {"ok": False, "error": repr(err), "trace": traceback.format_exc()[-3000:]}
        print(name, json.dumps(report["checks"][name])[:600], flush=True)

    def encode():
        encode_corpus_shard(data["corpus"], teacher, str(folder / "cuda-emb.parquet"), device=device)
        _, cpu = read_embeddings(shards["teacher"])
        _, gpu = read_embeddings([str(folder / "cuda-emb.parquet")])
        cosine = min_cosine(cpu, gpu)
        assert cosine > 0.99, f"CUDA (bf16) and CPU embeddings differ: min cosine {cosine}"
        return {"min_cosine_to_cpu": cosine}

    def score():
        import pandas as pd

        frame = score_candidates(str(folder / "candidates.parquet"), data["qrels-train"], data["queries"],
                                 data["corpus"], str(folder / "cuda-scores.parquet"), teacher,
                                 embedding_shards=shards, device=device)
        cpu = pd.read_parquet(folder / "candidates-scores.parquet")
        merged = cpu.merge(frame, on=["query_id", "doc_id"], suffixes=("_cpu", "_gpu"))
        gap = float((merged["score_cpu"] - merged["score_gpu"]).abs().max())
        assert len(merged) == len(cpu) and gap < 0.05, f"scores differ by {gap}"
        return {"max_abs_gap_to_cpu": gap}

    def train(name, methods, config, candidates="candidates", scratch=None, scores=None, **kwargs):
        scores = {"teacher": str(folder / f"{candidates}-scores.parquet"), **(scores or {})}
        summary = train_student(str(folder / "student0"), str(folder / name), str(folder / f"{candidates}.parquet"),
                                scores, data["qrels-train"],
                                data["queries"], data["corpus"], config=config, methods=methods,
                                embedding_shards=shards, device=device, seed=3,
                                scratch_dir=str(folder / (scratch or f"scratch-{name}")),
                                **{"models": {"teacher": teacher}, **kwargs})
        losses = [h["loss"] for h in summary["history"] if h["phase"] == "distill"]
        assert summary["device"].startswith(device) and all(np.isfinite(losses)), summary["history"][-1]
        assert losses[-1] < losses[0], f"distillation did not learn: {losses[0]} -> {losses[-1]}"
        return {"first_loss": losses[0], "last_loss": losses[-1], "train_s": round(summary["seconds"], 2),
                "phases": summary["phases"]}

    base = {"teacher": "teacher", "train": {"epochs": 3, "batch_size": 8, "group_size": 4, "lr": 1e-3,
                                            "checkpoint_every": 4, "max_passage_length": 32}}
    warm = {"epochs": 1, "batch_size": 16, "teacher": "teacher"}
    check("encode", encode)
    check("score", score)
    check("train_standard_warmup_lwf", lambda: train("standard", ["standard"], {
        **base, "warmup": warm, "train": {**base["train"], "w_lwf": 1.0}}))
    check("train_adam", lambda: train("adam", ["standard", "adam"], {
        **base, "warmup": {"epochs": 0}, "train": {**base["train"], "group_size": 5},
        "adam": {"mixup": {"count": 1}, "mask": {"count": 1}}}, candidates="dark-candidates"))
    check("train_onmkd", lambda: train("onmkd", ["onmkd"], {
        **base, "warmup": warm, "onmkd": {"crosswise_layers": [1], "w_crosswise": 0.5}}))
    check("train_lead", lambda: train("lead", ["lead"], {
        **base, "warmup": {"epochs": 0}, "lead": {"resample_every": 2}}))
    check("train_lead_joint_cross_encoder", lambda: train("lead-ce", ["lead"], {
        **base, "warmup": {"epochs": 0}, "lead": {"teacher": "ce", "joint": True}},
        models={"teacher": teacher, "ce": {"name": "ce", "kind": "cross-encoder", "source": str(folder / "tiny-ce")}}))

    def train_mta4dpr(selection):
        result = train(f"mta4dpr-{selection}", ["standard", "mta4dpr"], {
            **base, "warmup": {"epochs": 0}, "mta4dpr": {"assistants": ["bm25", "ce"], "selection": selection}},
            candidates="mta4dpr-candidates",
            scores={"teacher": str(folder / "candidates-scores.parquet"),
                    **{name: str(folder / f"candidates-{name}.parquet") for name in ("bm25", "ce")}})
        history = json.loads((folder / f"mta4dpr-{selection}" / "training.json").read_text())["history"]
        shares = {name: float(np.mean([h[f"mta4dpr_selected:{name}"] for h in history])) for name in ("bm25", "ce")}
        assert abs(sum(shares.values()) - 1.0) < 1e-6, f"one assistant per batch: {shares}"
        return {**result, "selected_share": shares}

    check("train_mta4dpr_kl", lambda: train_mta4dpr("kl"))
    check("train_mta4dpr_rbo", lambda: train_mta4dpr("rbo"))

    def resume():
        import pipeline.training.distill as distill
        from test_training import Interrupt, interrupted_after

        config = {**base, "warmup": {"epochs": 0}}
        reference = train("reference", ["standard"], config)
        original = distill.distill_phase
        distill.distill_phase = interrupted_after(original, 6)
        try:
            train("resumed", ["standard"], config, scratch="scratch-resumed")
            raise AssertionError("the interrupted job was not interrupted")
        except Interrupt:
            pass
        finally:
            distill.distill_phase = original
        resumed = train("resumed", ["standard"], config, scratch="scratch-resumed")
        # bit-identical on the CPU; CUDA's backward kernels (atomic adds) are not deterministic, so there
        # the resumed run must only land where the uninterrupted one did
        gap = abs(resumed["last_loss"] - reference["last_loss"])
        assert gap <= (0 if device == "cpu" else 1e-2 * abs(reference["last_loss"])), (resumed, reference)
        return {"last_loss": resumed["last_loss"], "reference_last_loss": reference["last_loss"]}

    check("kill_and_resume", resume)

    def finetune(kind, source):
        model = {"name": kind, "kind": kind, "source": str(folder / source)}
        summary = finetune_model(model, str(folder / f"tuned-{kind}"), str(folder / "candidates.parquet"),
                                 data["qrels-train"], data["queries"], data["corpus"],
                                 settings={"epochs": 2, "batch_size": 8, "group_size": 4, "lr": 1e-3, "checkpoint_every": 2},
                                 scratch_dir=str(folder / f"scratch-{kind}"), device=device, seed=3)
        losses = [h["loss"] for h in summary["history"]]
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
        return {"first_loss": losses[0], "last_loss": losses[-1]}

    def evaluate():
        from pipeline.evaluation import evaluate_model

        student = {"name": "standard", "kind": "bi-encoder", "source": str(folder / "standard")}
        from pipeline.index import build_shard_indexes

        metrics = {}
        for d in ("cpu", device):  # each device encodes the corpus, indexes it and ranks the test queries
            shard = str(folder / f"eval-emb-{d}.parquet")
            encode_corpus_shard(data["corpus"], student, shard, device=d)
            build_shard_indexes([shard], str(folder / f"eval-index-{d}"))
            metrics[d] = evaluate_model(student, "student", 1, data["queries"], str(folder / "data" / "qrels-test.parquet"),
                                        data["corpus"], str(folder / f"eval-{d}"), index_dir=str(folder / f"eval-index-{d}"),
                                        embedding_shards={"standard": [shard]}, device=d)
        gap = abs(metrics["cpu"]["ndcg@10"] - metrics[device]["ndcg@10"])
        assert gap < 0.02, f"nDCG@10 on {device} and on the CPU differ by {gap}"
        return {f"ndcg@10_{d}": m["ndcg@10"] for d, m in metrics.items()}

    def export_and_encode():
        from pipeline.embeddings import read_embeddings
        from pipeline.export import FORMATS, export_model

        student = {"name": "standard", "kind": "bi-encoder", "source": str(folder / "standard")}
        export_model(student, str(folder / "exported"), ["onnx", "onnx-int8"])
        encode_corpus_shard(data["corpus"], student, str(folder / "emb-torch.parquet"), device=device)
        _, reference = read_embeddings([str(folder / "emb-torch.parquet")])
        cosines = {}
        for fmt in ("onnx", "onnx-int8"):
            backend, file_name = FORMATS[fmt]
            out = folder / f"emb-{fmt}.parquet"
            encode_corpus_shard(data["corpus"], dict(student, source=str(folder / "exported"), backend=backend,
                                                     file_name=file_name), str(out), device=device)
            cosines[fmt] = min_cosine(reference, read_embeddings([str(out)])[1])
        assert cosines["onnx"] > 0.99 and cosines["onnx-int8"] > 0.9, cosines
        import onnxruntime

        return {"min_cosine_to_torch": cosines, "onnxruntime_providers": onnxruntime.get_available_providers()}

    check("evaluate", evaluate)
    check("export_and_encode", export_and_encode)
    check("finetune_bi_encoder", lambda: finetune("bi-encoder", "tiny-bert"))
    check("finetune_cross_encoder", lambda: finetune("cross-encoder", "tiny-ce"))
    report["failed"] = failed
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        sys.exit(run(Path(sys.argv[2]), Path(sys.argv[3])))
