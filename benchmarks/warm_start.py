"""Warm start against fresh processes: a job's start-up, and a whole run (issue 37).

    .venv/bin/python benchmarks/warm_start.py --out benchmarks/results/warm-start.json   # about 15 minutes

Cold (``warm_start: false``: each job a fresh interpreter) and warm (each job forked from a job server,
pipeline/warm_start.py) in turn, A B A B, ``--rounds`` times, on this machine, each figure a median:

- **job start-up**: ``--jobs`` model jobs in a row as a Snakemake run calls them: each
  ``python -m pipeline encode`` of the test fixture's tiny BERT (3 layers, 32 dimensions) over the fixture's
  passages, in ``bash -c``, from one owning process. The job's work is tens of milliseconds, so its wall
  time is its start-up. Warm, the first job of each round starts the server (it imports what a cold job
  imports, then forks); the others are forked. The figure is each job's wall seconds, the first apart.
- **a whole run**: the fixture's two-iteration workflow (tests/test_workflow.py's config: 37 jobs), from an
  empty folder to the summary, ``snakemake --cores 2``, wall seconds; and whether the two runs' metrics
  files are equal (timings aside).
- with ``--collection DIR`` (a BEIR folder), also **the default config on that collection**, cold then warm
  (``--collection-rounds`` pairs), ``--cores all``: wall seconds, each rule's job seconds (Snakemake's log,
  benchmarks/job_times.py) and whether every metrics file is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from fixtures import write_beir, write_tiny_bert  # noqa: E402
from job_times import job_times  # noqa: E402
from test_workflow import write_config  # noqa: E402

# runs K commands one after another in `bash -c`, as Snakemake runs jobs, and prints each one's wall seconds
OWNER = ("import subprocess, sys, time, json\n"
         "walls = []\n"
         "for command in sys.argv[1:]:\n"
         "    began = time.perf_counter()\n"
         "    subprocess.run(['bash', '-c', command], check=True)\n"
         "    walls.append(time.perf_counter() - began)\n"
         "print(json.dumps(walls))\n")


def environment(warm: bool) -> dict[str, str]:
    variables = {name: value for name, value in os.environ.items() if name != "SLURM_JOB_ID"}
    return {**variables, "PYTHONPATH": str(ROOT), "PIPELINE_WARM_START": "1" if warm else "0",
            "OMP_NUM_THREADS": "1"}


def job_walls(work: Path, beir: Path, model: Path, jobs: int, warm: bool) -> list[float]:
    out = work / ("warm" if warm else "cold")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pipeline", "prepare",
                    json.dumps({"data_dir": str(beir), "out_dir": str(out / "data"), "splits": ["test"]})],
                   env=environment(False), check=True, capture_output=True)
    spec = {"name": "tiny", "kind": "bi-encoder", "source": str(model), "max_passage_length": 32}
    commands = [f"{shlex.quote(sys.executable)} -m pipeline encode "
                + shlex.quote(json.dumps({"corpus_path": str(out / "data/corpus.parquet"), "model": spec,
                                          "out_path": str(out / f"embeddings-{k}.parquet")}))
                + f" --threads 1 > {shlex.quote(str(out / f'encode-{k}.log'))} 2>&1" for k in range(jobs)]
    result = subprocess.run([sys.executable, "-c", OWNER, *commands], env=environment(warm), cwd=out,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def strip_timings(value):
    """A metrics file without what differs between two runs of the same computation (seconds, speeds)."""
    if isinstance(value, dict):
        return {key: strip_timings(item) for key, item in value.items()
                if not (key.endswith("_s") or "per_s" in key or "seconds" in key)}
    if isinstance(value, list):
        return [strip_timings(item) for item in value]
    return value


def whole_run(work: Path, beir: Path, model: Path, warm: bool) -> tuple[float, dict]:
    workdir = write_config(work / ("run-warm" if warm else "run-cold"), beir, model, warm_start=warm)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                    str(workdir), "--cores", "2"], check=True, capture_output=True)
    wall = time.perf_counter() - began
    metrics = {str(path.relative_to(workdir)): strip_timings(json.loads(path.read_text()))
               for path in sorted((workdir / "results").rglob("metrics.json"))}
    return wall, metrics


def collection_run(work: Path, data: Path, warm: bool) -> dict:
    """The default config on a BEIR folder, from an empty folder: wall, per-rule job seconds, metrics."""
    workdir = work / ("warm" if warm else "cold")
    workdir.mkdir(parents=True)
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                             "--configfile", str(ROOT / "config.yaml"), "--directory", str(workdir), "--cores", "all",
                             "--config", f"data_dir={data}", "experiment=warm-start", f"warm_start={warm}"],
                            capture_output=True, text=True)
    wall = time.perf_counter() - began
    if result.returncode:
        raise SystemExit(f"the run failed:\n{result.stderr[-3000:]}")
    per_rule: dict[str, list[float]] = {}
    for job in job_times(result.stderr):
        per_rule.setdefault(job["rule"], []).append(job["seconds"])
    metrics = {str(path.relative_to(workdir)): strip_timings(json.loads(path.read_text()))
               for path in sorted((workdir / "results").rglob("metrics.json"))}
    summary = json.loads((workdir / "results/warm-start/summary.json").read_text())
    return {"wall_s": round(wall, 1), "jobs": sum(len(v) for v in per_rule.values()),
            "rule_seconds": {rule: round(sum(v), 1) for rule, v in sorted(per_rule.items())},
            "rule_jobs": {rule: len(v) for rule, v in sorted(per_rule.items())},
            "final": summary.get("final"), "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8, help="model jobs in a row per round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/warm-start.json")
    parser.add_argument("--collection", type=Path, help="a BEIR folder: the default config on it, cold and warm")
    parser.add_argument("--collection-rounds", type=int, default=1)
    parser.add_argument("--skip-fixture", action="store_true", help="only the collection's runs")
    args = parser.parse_args()
    collection = []
    if args.collection:
        with tempfile.TemporaryDirectory(dir=ROOT / "results") as tmp:
            for round_ in range(args.collection_rounds):
                pair = {name: collection_run(Path(tmp) / str(round_), args.collection.resolve(), name == "warm")
                        for name in ("cold", "warm")}
                equal = pair["cold"]["metrics"] == pair["warm"]["metrics"] and bool(pair["cold"]["metrics"])
                collection.append({"metrics_equal": equal, "ratio_warm_over_cold":
                                   round(pair["warm"]["wall_s"] / pair["cold"]["wall_s"], 3),
                                   **{name: {k: v for k, v in run.items() if k != "metrics"}
                                      for name, run in pair.items()}})
                print(json.dumps(collection[-1]), flush=True)
    if args.skip_fixture:
        args.out.write_text(json.dumps({"collection": str(args.collection), "commit": commit(),
                                        "machine": machine(), "collection_runs": collection}, indent=1) + "\n")
        return
    walls = {"cold": [], "warm": []}
    first_warm, runs, equal = [], {"cold": [], "warm": []}, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        beir, model = write_beir(work / "beir"), write_tiny_bert(work / "bert")
        for round_ in range(args.rounds):
            for warm in (False, True):
                name = "warm" if warm else "cold"
                job = job_walls(work / f"jobs-{round_}", beir, model, args.jobs, warm)
                walls[name] += job[1:] if warm else job
                if warm:
                    first_warm.append(job[0])
                wall, metrics = whole_run(work / f"run-{round_}", beir, model, warm)
                runs[name].append(wall)
                if warm:
                    equal.append(metrics == cold_metrics and bool(metrics))
                else:
                    cold_metrics = metrics
                print(f"round {round_ + 1} {name}: jobs {[round(w, 2) for w in job]}, run {wall:.1f} s", flush=True)
    median = {name: statistics.median(values) for name, values in walls.items()}
    result = {
        "what": "wall seconds, medians over rounds run A B A B on this machine: one tiny model job (python -m "
                "pipeline encode of the test fixture's model, tens of ms of work) as the k-th of a row of jobs, and "
                "the fixture's two-iteration workflow end to end (37 jobs, --cores 2); cold: warm_start false",
        "machine": machine(), "commit": commit(),
        "rounds": args.rounds, "jobs_per_round": args.jobs,
        "job_wall_s": {"cold": round(median["cold"], 3), "warm": round(median["warm"], 3),
                       "warm_first_job_starting_the_server": round(statistics.median(first_warm), 3),
                       "cold_all": [round(w, 3) for w in walls["cold"]],
                       "warm_all": [round(w, 3) for w in walls["warm"]]},
        "run_wall_s": {"cold": round(statistics.median(runs["cold"]), 1),
                       "warm": round(statistics.median(runs["warm"]), 1),
                       "ratio_warm_over_cold": round(statistics.median(runs["warm"]) / statistics.median(runs["cold"]), 3),
                       "cold_all": [round(w, 1) for w in runs["cold"]], "warm_all": [round(w, 1) for w in runs["warm"]]},
        "metrics_equal_cold_and_warm": all(equal),
        "collection": str(args.collection) if args.collection else None, "collection_runs": collection,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("job_wall_s", "run_wall_s", "metrics_equal_cold_and_warm")},
                     indent=1))


if __name__ == "__main__":
    main()
