"""Tune one iteration's distillation settings on the artifacts of a `make bench` run: train each variant
from the same starting student on the same candidates and teacher scores, encode the corpus with it,
evaluate on the run's dev split (held out of training; `--split test` only to report, never to choose).

    .venv/bin/python benchmarks/tune_iteration.py results/bench-scifact \
        'base={}' 'nll1={"w_nll": 1.0}' --iteration 1 --out benchmarks/results/tune-iteration1.jsonl

A variant is `name=<JSON of train settings>` merged over config.yaml's `train` section (and the
iteration's `overrides`). `--training-queries N` trains on a seeded sample of N of the run's training
queries (a user with few labels) while the dev split stays the run's; `--warmup JSON` changes the warm-up
(which then runs here, cached per setting in `--work`). `--configfile` merges a preset over the config
(e.g. configs/strong-teacher.yaml: another teacher), `--scores` names that teacher's scores of the
iteration's candidates when the run did not make them (`python -m pipeline score`). Iteration 1 starts from the warmed-up student (config.yaml's `warmup`, run once
with distillation off and cached in `--work`), later iterations from the run's previous student; each
variant runs distillation only, so variants differ in nothing else. One JSON line per variant:
settings, train seconds, nDCG@10, MRR@10, R@100.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.embeddings import encode_corpus_shard  # noqa: E402
from pipeline.evaluation import evaluate_model  # noqa: E402
from pipeline.index import build_shard_indexes  # noqa: E402
from pipeline.models import load_student_spec  # noqa: E402
from pipeline.plan import deep_merge  # noqa: E402
from pipeline.training import train_student  # noqa: E402


def evaluate(student_dir: Path, data: Path, work: Path, qrels: str) -> dict[str, float]:
    """The workflow's own encode -> index -> evaluate steps, on the given qrels."""
    model = dict(load_student_spec(str(student_dir)).to_dict(), name=student_dir.name)
    shard = str(work / "embeddings" / f"{student_dir.name}.parquet")
    encode_corpus_shard(str(data / "corpus.parquet"), model, shard, device="cpu", threads=2)
    build_shard_indexes([shard], str(work / "index" / student_dir.name), threads=2)
    result = evaluate_model(model, "student", None, str(data / "queries.parquet"), qrels,
                            str(data / "corpus.parquet"), str(work / "eval" / student_dir.name),
                            index_dir=str(work / "index" / student_dir.name), device="cpu", threads=2)
    return {k: result[k] for k in ("ndcg@10", "mrr@10", "recall@100")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="results folder of a make bench run (results/bench-scifact)")
    parser.add_argument("variants", nargs="+", help="name=<JSON train settings>")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--configfile", type=Path, action="append", default=[],
                        help="a preset deep-merged over --config, as snakemake --configfile does")
    parser.add_argument("--scores", type=Path, default=None,
                        help="the teacher's scores of the candidates (default: the run's it<K>/scores/<teacher>)")
    parser.add_argument("--iteration", type=int, default=1)
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--training-queries", type=int, default=None,
                        help="a seeded sample of this many of the run's training queries (default all)")
    parser.add_argument("--warmup", default=None, help="JSON merged over config.yaml's warmup (runs it here)")
    parser.add_argument("--work", type=Path, default=None, help="default /tmp/tune-iteration<K>")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/tune-iteration<K>.jsonl")
    args = parser.parse_args()
    it = args.iteration
    args.work = args.work or Path(f"/tmp/tune-iteration{it}")
    args.out = args.out or ROOT / f"benchmarks/results/tune-iteration{it}.jsonl"

    config = yaml.safe_load(args.config.read_text())
    for preset in args.configfile:
        config = deep_merge(config, yaml.safe_load(preset.read_text()))
    teacher_name = config["teacher"]
    teacher = dict(config["models"][teacher_name], name=teacher_name)
    shards = sorted(str(p) for p in (args.run / "embeddings" / teacher_name).glob("shard-*.parquet"))
    data = args.run / "data"
    qrels = str(data / ("dev-qrels.parquet" if args.split == "dev" else "qrels-test.parquet"))
    training_qrels = data / "training-qrels.parquet"  # runs with a dev split train on the rest only
    if not training_qrels.exists():
        training_qrels = data / "qrels-train.parquet"
    if args.training_queries:
        import pandas as pd

        from pipeline.splits import choose_queries, judged_queries

        qrels_frame = pd.read_parquet(training_qrels)
        sample, _, _ = choose_queries(judged_queries(qrels_frame), set(), config.get("seed", 13),
                                      args.training_queries, 0.0, 1, 0)
        args.work.mkdir(parents=True, exist_ok=True)
        training_qrels = args.work / f"training-qrels-{args.training_queries}.parquet"
        qrels_frame[qrels_frame["query_id"].isin(sample)].to_parquet(training_qrels)
    warmup = {**config["warmup"], **json.loads(args.warmup or "{}")}
    base = {**config["train"], **config.get("overrides", {}).get(str(it), {}).get("train", {})}

    def train(name: str, student: Path, settings: dict, warm: dict) -> float:
        began = time.perf_counter()
        train_student(str(student), str(args.work / name), str(args.run / f"it{it}/candidates.parquet"),
                      {teacher_name: str(args.scores or args.run / f"it{it}/scores/{teacher_name}.parquet")},
                      str(training_qrels),
                      str(data / "queries.parquet"), str(data / "corpus.parquet"),
                      config={"teacher": teacher_name, "train": settings, "warmup": warm}, iteration=it,
                      models={teacher_name: teacher}, embedding_shards={teacher_name: shards},
                      scratch_dir=str(args.work / "scratch" / name), device="cpu", threads=2,
                      seed=config.get("seed", 13) + it)
        return time.perf_counter() - began

    start = args.run / f"students/it{it - 1}"
    own_warmup = args.warmup is not None or args.training_queries  # the run's warm-up read other texts
    if (args.run / f"students/it{it}/warmup").is_dir() and not own_warmup:  # the run kept its warmed-up student
        start = args.run / f"students/it{it}/warmup"
    elif it in warmup.get("iterations", [1]) and warmup.get("epochs", 0) > 0:
        warm = "warm-" + hashlib.sha256(json.dumps([warmup, args.training_queries], sort_keys=True)
                                        .encode()).hexdigest()[:8]
        if not (args.work / warm).exists():
            seconds = train(warm, start, dict(base, epochs=0), warmup)
            row = {"variant": "warm-up only", "warmup": warmup, "training_queries": args.training_queries,
                   "train_s": round(seconds), "run": str(args.run), "split": args.split,
                   **{k: round(v, 4) for k, v in evaluate(args.work / warm, data, args.work, qrels).items()}}
            print(json.dumps(row), flush=True)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
        start = args.work / warm
    for spec in args.variants:
        name, _, overrides = spec.partition("=")
        settings = {**base, **json.loads(overrides or "{}")}
        seconds = train(name, start, settings, dict(warmup, epochs=0))
        row = {"variant": name, "overrides": json.loads(overrides or "{}"), "train_s": round(seconds),
               "training_queries": args.training_queries, "warmup": json.loads(args.warmup or "null"),
               "teacher": teacher_name, "presets": [str(p) for p in args.configfile],
               "run": str(args.run), "split": args.split,
               **{k: round(v, 4) for k, v in evaluate(args.work / name, data, args.work, qrels).items()}}
        print(json.dumps(row), flush=True)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
