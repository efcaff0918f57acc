"""Where the default run's time goes, against what this machine can do (issue 37).

    .venv/bin/python benchmarks/stage_speed.py --data ../shared/data/scifact   # -> results/stage-speed.json

In one process (start-up: fresh ones), on the same machine in the same run, at the job's thread count:

- **limit**: plain ``torch.matmul`` of the model's own shapes (a batch's tokens x 384 times 384 x 1536,
  1536 x 384 and 384 x 384), in float32 and in bf16: the matmul throughput this machine reaches, its FLOP/s;
- **teacher encode** and **student encode**: all-MiniLM-L6-v2 (6 layers) and the 2-layer student encode the
  same passages as the encode job does (``BiEncoder.encode``, passages up to 256 tokens);
- **warm-up step** and **train step**: the default config's warm-up and distillation phases (config.yaml:
  warm-up batch 32, passages cut to 128 tokens; distillation batch 16 x group 4, 128 tokens) run by the
  workflow's own ``train_student`` on a slice of the data (BM25 candidates scored by BM25: the step's cost
  does not depend on the teacher), the loop's own seconds over its steps;
- **job start-up**: a fresh ``python`` that imports ``pipeline.__main__`` and the module of a step, per step
  (the time a job spends before its first line of work), beside a bare interpreter's start and the
  libraries every model job imports (torch, transformers). (An evaluate job is its start-up, the student's
  query encoding and a search: the corpus it ranks is the encode job's.)

The stages run under each config ``precision`` of ``--precisions`` (default fp32, then auto: bf16 autocast
on a CPU with AVX512-BF16 or AMX), each against the limit of the dtype it computes in.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the same inputs in a separate pass
(matmuls and attention, forward and backward; elementwise work is not counted), so a stage's ``of_limit`` is
the share of the machine's matmul throughput its arithmetic runs at. The train step's time is broken down by
``cProfile`` over the same steps (tokenisation, forward, backward, optimiser, batch building, loss, the rest);
the profiler's own cost inflates Python-heavy parts a little, so the shares are read as shares.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the train step's time by where it goes: category -> (file suffix, function name) of the cProfile entries
#: whose cumulative time it is (nested categories are subtracted from their parents below)
PROFILE_PARTS = {
    "batch building (teacher score lookups, tensors)": ("pipeline/training/distill.py", "build"),
    "tokenisation": ("transformers/tokenization_utils_base.py", "__call__"),
    "forward (the 2 layers, pooling)": ("pipeline/models.py", "forward"),
    "loss": ("pipeline/losses.py", "__call__"),
    "backward": ("torch/_tensor.py", "backward"),
    "gradient clipping": ("torch/nn/utils/clip_grad.py", "clip_grad_norm_"),
    "optimiser (AdamW)": ("torch/optim/adam.py", "step"),  # AdamW is Adam with decoupled weight decay
    "zero_grad": ("torch/optim/optimizer.py", "zero_grad"),
}


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_limit(tokens: int, hidden: int, intermediate: int, rounds: int, dtype) -> dict:
    import torch

    shapes = {"tokens x hidden @ hidden x intermediate": (tokens, hidden, intermediate),
              "tokens x intermediate @ intermediate x hidden": (tokens, intermediate, hidden),
              "tokens x hidden @ hidden x hidden": (tokens, hidden, hidden)}
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)  # the first call allocates and picks the kernel
        seconds = median_seconds(lambda: torch.matmul(a, b), rounds)
        out[name] = {"shape": [m, k, n], "seconds": seconds, "gflop_per_s": 2 * m * k * n / seconds / 1e9}
    return {"shapes": out, "gflop_per_s": max(s["gflop_per_s"] for s in out.values())}


def startup(rounds: int) -> dict:
    """Seconds from a fresh interpreter's start to a step's function being importable, per step, and to a
    model job's libraries being imported (torch, transformers' BERT, :mod:`pipeline.models`), which the
    steps that load a model import inside their function."""
    from pipeline.__main__ import STEPS, method_steps

    modules = sorted({target.split(":")[0] for target in {**STEPS, **method_steps()}.values()})
    code = "import importlib, pipeline.__main__; importlib.import_module({!r})"
    models = "import pipeline.__main__, pipeline.models; from transformers import BertModel"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def wall(args: list[str]) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, env=env, cwd=ROOT)
        return time.perf_counter() - began

    bare = statistics.median(wall(["-c", "pass"]) for _ in range(rounds))
    per_module = {m: statistics.median(wall(["-c", code.format(m)]) for _ in range(rounds)) for m in modules}
    return {"bare_interpreter_s": bare, "per_step_module_s": per_module,
            "median_step_module_s": statistics.median(per_module.values()),
            "model_libraries_s": statistics.median(wall(["-c", models]) for _ in range(rounds))}


def prepare(data_dir: str, work: Path, queries: int, passages: int, threads: int) -> dict:
    """SciFact prepared, cut to the first ``queries`` training queries and ``passages`` passages (their
    judged ones among them), with BM25 candidates and BM25 scores, the untrained student."""
    import numpy as np

    from pipeline.data import CORPUS_SCHEMA, QRELS_SCHEMA, prepare_dataset, read_provenance, read_table, write_table
    from pipeline.index import mine_negatives
    from pipeline.scorers import score_candidates
    from pipeline.training import init_student

    prepare_dataset(data_dir, str(work / "data"), ["train", "test"])
    qrels = read_table(work / "data/qrels-train.parquet")
    keep_queries = sorted(qrels.query_id.unique())[:queries]
    qrels = qrels[qrels.query_id.isin(keep_queries)]
    corpus = read_table(work / "data/corpus.parquet")
    judged = set(qrels.doc_id)
    others = [d for d in corpus.doc_id if d not in judged]
    rng = np.random.default_rng(13)
    keep_docs = judged | set(rng.choice(others, size=max(0, passages - len(judged)), replace=False))
    write_table(corpus[corpus.doc_id.isin(keep_docs)].reset_index(drop=True), work / "corpus.parquet",
                read_provenance(work / "data/corpus.parquet"), CORPUS_SCHEMA)
    write_table(qrels.reset_index(drop=True), work / "qrels.parquet",
                read_provenance(work / "data/qrels-train.parquet"), QRELS_SCHEMA)
    paths = {"corpus": str(work / "corpus.parquet"), "qrels": str(work / "qrels.parquet"),
             "queries": str(work / "data/queries.parquet"), "candidates": str(work / "candidates.parquet"),
             "scores": str(work / "scores.parquet"), "student": str(work / "student0")}
    bm25 = {"name": "bm25", "kind": "bm25"}
    mine_negatives(paths["queries"], paths["qrels"], paths["candidates"], bm25, depth=100, window=(0, 50),
                   corpus_path=paths["corpus"])
    score_candidates(paths["candidates"], paths["qrels"], paths["queries"], paths["corpus"], paths["scores"], bm25,
                     device="cpu", threads=threads)
    init_student({"name": "student-it0", "kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 2},
                 paths["student"])
    return paths


def default_config() -> dict:
    """The shipped config.yaml, completed from the schema, as iteration 1 reads it."""
    import yaml

    from pipeline.config import complete
    from pipeline.methods.standard import resolve_warmup_texts

    config = complete(yaml.safe_load((ROOT / "config.yaml").read_text()))
    config["warmup"]["texts"] = resolve_warmup_texts(config["warmup"]["texts"], "qrels")
    return config


def train_run(paths: dict, work: Path, config: dict, teacher: dict, teacher_shard: str, phase: str, threads: int,
              wrap=contextlib.nullcontext) -> dict:
    """``train_student`` with only ``phase`` ("warmup" or "distill") having epochs; returns the loop's
    seconds and steps."""
    from pipeline.training import train_student

    train = dict(config["train"], epochs=1 if phase == "distill" else 0, checkpoint_every=1000)
    warmup = dict(config["warmup"], epochs=1 if phase == "warmup" else 0, teacher=teacher["name"])
    out = work / f"student-{phase}-{time.monotonic_ns()}"
    with wrap():
        summary = train_student(paths["student"], str(out), paths["candidates"], {"bm25": paths["scores"]},
                                paths["qrels"], paths["queries"], paths["corpus"],
                                config={"teacher": "bm25", "train": train, "warmup": warmup},
                                models={teacher["name"]: teacher}, embedding_shards={teacher["name"]: [teacher_shard]},
                                device="cpu", threads=threads, seed=13)
    steps = summary["history"][-1]["step"]
    return {"steps": steps, "seconds": summary["seconds"], "seconds_per_step": summary["seconds"] / steps}


def profile_shares(stats: pstats.Stats, total_key: tuple[str, str]) -> dict:
    """The train loop's cumulative time by :data:`PROFILE_PARTS`, each less the parts nested in it, and
    the rest of the loop (Python, the schedules, the progress bar)."""
    cumulative: dict[str, float] = {name: 0.0 for name in PROFILE_PARTS}
    total = 0.0
    for (file, _, function), (_, _, _, ct, _) in stats.stats.items():
        for name, (suffix, fn) in PROFILE_PARTS.items():
            if file.endswith(suffix) and function == fn:
                cumulative[name] += ct
        if file.endswith(total_key[0]) and function == total_key[1]:
            total += ct
    own = dict(cumulative)
    # nesting: tokenisation and forward run inside the student's embed, which runs beside build; the
    # batch builder itself holds no forward (the default run has no frozen scorers)
    own["rest (Python, schedules, logging)"] = total - sum(cumulative.values())
    return {"loop_s": total, "parts_s": own, "shares": {k: v / total for k, v in own.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/scifact"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (a job's: min(8, cores))")
    parser.add_argument("--passages", type=int, default=400, help="passages encoded and warmed up on")
    parser.add_argument("--queries", type=int, default=96, help="training queries: 6 distillation steps at batch 16")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the matmuls and the start-ups")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=["fp32", "auto", "bf16"],
                        help="config precision values to run the stages under, in turn")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/stage-speed.json"))
    args = parser.parse_args()

    import torch

    from pipeline.data import passage_texts, read_table
    from pipeline.embeddings import encode_corpus_shard
    from pipeline.models import BiEncoder, ModelSpec, set_threads
    from pipeline.precision import precision_used, set_precision

    set_threads(args.threads)
    config = default_config()
    teacher = {"name": config["teacher"], **config["models"][config["teacher"]]}
    student_spec = {"name": "student", **config["student"]}
    report: dict = {"threads": args.threads, "torch": torch.__version__,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "processor": platform.processor()},
                    "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()}
    began = time.perf_counter()
    # a distillation batch's tokens: 16 queries x 4 passages x 128 tokens
    report["limit"] = {name: matmul_limit(16 * 4 * 128, 384, 1536, max(5, args.rounds * 3), dtype)
                       for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print("limit", json.dumps({k: v["gflop_per_s"] for k, v in report["limit"].items()}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = prepare(args.data, work, args.queries, args.passages, args.threads)
        texts = passage_texts(read_table(paths["corpus"]), True)
        # the warm-up reads the teacher's corpus embeddings, as the encode job writes them
        shard = str(work / "teacher-embeddings.parquet")
        encode_corpus_shard(paths["corpus"], teacher, shard, device="cpu", threads=args.threads)
        report["stages"] = {}
        for name in args.precisions:
            set_precision(name)
            used = precision_used(torch.device("cpu"))
            limit = report["limit"]["bf16" if used == "bf16" else "fp32"]["gflop_per_s"]
            stages = report["stages"][name] = {"computes_in": used}
            for stage, spec in {"teacher encode": teacher, "student encode": student_spec}.items():
                model = BiEncoder.load(ModelSpec.from_config(spec["name"], spec), "cpu")
                encode = lambda: model.encode(texts, is_query=False)  # noqa: E731
                flops = count_flops(encode)
                seconds = median_seconds(encode, 1)
                stages[stage] = {"passages": len(texts), "seconds": seconds, "passages_per_s": len(texts) / seconds,
                                 "gflop": flops / 1e9, "gflop_per_s": flops / seconds / 1e9,
                                 "of_limit": flops / seconds / 1e9 / limit}
                print(name, stage, stages[stage], flush=True)
            for phase, stage in (("warmup", "warm-up step"), ("distill", "train step")):
                timed = train_run(paths, work, config, teacher, shard, phase, args.threads)
                flops = count_flops(lambda: train_run(paths, work, config, teacher, shard, phase, args.threads))
                per_step = flops / timed["steps"]
                stages[stage] = {**timed, "gflop_per_step": per_step / 1e9,
                                 "gflop_per_s": per_step / timed["seconds_per_step"] / 1e9,
                                 "of_limit": per_step / timed["seconds_per_step"] / 1e9 / limit}
                print(name, stage, stages[stage], flush=True)
                if phase == "distill":
                    profiler = cProfile.Profile()

                    @contextlib.contextmanager
                    def profiled():
                        profiler.enable()
                        try:
                            yield
                        finally:
                            profiler.disable()

                    train_run(paths, work, config, teacher, shard, phase, args.threads, wrap=profiled)
                    stages[stage]["profile"] = profile_shares(pstats.Stats(profiler),
                                                              ("pipeline/training/loop.py", "run_phases"))
                    print(json.dumps(stages[stage]["profile"]["shares"], indent=1), flush=True)
    report["startup"] = startup(args.rounds)
    print("startup", json.dumps(report["startup"], indent=1), flush=True)
    report["seconds"] = time.perf_counter() - began
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
