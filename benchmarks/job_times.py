"""Where a whole run's wall time goes, per rule and per job, read from Snakemake's own log.

    python benchmarks/job_times.py --out benchmarks/results/scifact-job-times.json \
        old=.snakemake/log/A.snakemake.log:benchmarks/results/A.json new=...:...

Each NAME=LOG[:RUN_JSON] is one run: LOG the Snakemake log (or its captured output; the lines it prints
when a job starts and finishes, to the second), RUN_JSON the file `benchmarks/scifact.sh` wrote for the
run (its wall time and final student, copied beside the jobs). The cached rules (encode, index,
evaluate) have no `benchmark:` file, so the log is the one record of every job's time. On 2 cores a
model job takes both (`threads`, capped at `--cores`), so jobs run about one at a time and the per-rule
sums add up to about the wall time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def job_times(log_text: str) -> list[dict]:
    """Every finished job of a Snakemake log: its rule, wildcards and seconds from start to finish."""
    now, started, wildcards, jobs, last = None, {}, {}, [], None
    for line in log_text.splitlines():
        if stamp := STAMP.match(line):
            now = datetime.datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y")
        elif jobid := JOBID.match(line):
            last = jobid.group(1)
            started[last] = now
        elif (found := WILDCARDS.match(line)) and last is not None:
            wildcards[last] = found.group(1)
        elif finished := FINISHED.match(line):
            job = finished.group(1)
            jobs.append({"rule": finished.group(2), "wildcards": wildcards.get(job, ""),
                         "seconds": (now - started[job]).total_seconds()})
    return jobs


def by_rule(jobs: list[dict]) -> dict[str, dict]:
    rules: dict[str, dict] = {}
    for job in jobs:
        entry = rules.setdefault(job["rule"], {"jobs": 0, "seconds": 0.0})
        entry["jobs"] += 1
        entry["seconds"] += job["seconds"]
    return dict(sorted(rules.items(), key=lambda item: -item[1]["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=SNAKEMAKE_LOG[:RUN_JSON]")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = {}
    for spec in args.runs:
        name, _, paths = spec.partition("=")
        log_path, _, run_json = paths.partition(":")
        jobs = job_times(Path(log_path).read_text())
        entry = {"log": log_path, "jobs": len(jobs), "by_rule": by_rule(jobs), "each": jobs}
        if run_json:
            run = json.loads(Path(run_json).read_text())
            entry.update(run_file=run_json, wall_s=run["wall_s"], machine=run.get("machine"),
                         final_student=run["final_student"], final_ndcg10=run["final_student_ndcg@10"],
                         rows={row["name"]: row["ndcg@10"] for row in run["rows"]})
        result[name] = entry
        print(f"{name}: {entry.get('wall_s', '?')} s wall, {len(jobs)} jobs: "
              + ", ".join(f"{rule} {v['seconds']:.0f} s ({v['jobs']})" for rule, v in entry["by_rule"].items()))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
