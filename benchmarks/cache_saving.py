"""What `--cache` saved a second experiment: the jobs it took from the cache, and what they cost the first.

    python benchmarks/cache_saving.py /work/bench-A.log /work/bench-B.log \
        benchmarks/results/scifact-cache-first.json benchmarks/results/scifact-cache-second.json \
        --out benchmarks/results/cache-saving.json

The two logs are Snakemake's output of the two runs (`benchmarks/scifact.sh` with
`BENCH_SNAKEMAKE_ARGS=--cache`, the second with `benchmarks/cache-second-experiment.yaml`); the JSONs
are what `scifact.sh` wrote for each. A job's seconds are from its start to its "Finished jobid" line in
the first run's log (jobs ran two at a time on 2 cores, so they overlap and do not add up to wall time).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_seconds(log: str) -> dict[str, dict]:
    """``{output: {"rule", "seconds"}}`` of every job a Snakemake log started and finished."""
    started, finished, outputs, rules = {}, {}, {}, {}
    stamp, lines = None, log.splitlines()
    for k, line in enumerate(lines):
        if match := STAMP.match(line.strip()):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(local)?rule (\w+):$", line.strip()):
            block = lines[k + 1:k + 12]
            output = next((b.split("output: ", 1)[1] for b in block if b.strip().startswith("output: ")), None)
            jobid = next((b.split("jobid: ", 1)[1].strip() for b in block if b.strip().startswith("jobid: ")), None)
            if output and jobid:
                started[jobid], outputs[jobid], rules[jobid] = stamp, output, m.group(2)
        elif m := re.match(r"^Finished jobid: (\d+)", line.strip()):
            finished[m.group(1)] = stamp
    return {outputs[j]: {"rule": rules[j], "seconds": (finished[j] - started[j]).total_seconds()}
            for j in started if j in finished}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first_log", type=Path)
    parser.add_argument("second_log", type=Path)
    parser.add_argument("first_json", type=Path)
    parser.add_argument("second_json", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    first, second = args.first_log.read_text(), args.second_log.read_text()
    fetched = sorted(set(re.findall(r"Symlinking output file (\S+) from cache", second))
                     - set(re.findall(r"Moving output file (\S+) to cache", second)))
    # a cached directory is fetched entry by entry: name the job by its output (results/<exp>/index/<model>)
    second_experiment = re.search(r"results/([^/]+)/", fetched[0]).group(1) if fetched else None
    first_jobs = job_seconds(first)
    first_experiment = re.search(r"results/([^/]+)/", next(iter(first_jobs))).group(1)
    reused = {}
    for output, job in first_jobs.items():
        paths = [p.strip() for p in output.split(",")]
        as_second = [p.replace(f"results/{first_experiment}/", f"results/{second_experiment}/", 1) for p in paths]
        if all(any(f == p or f.startswith(p + "/") for f in fetched) for p in as_second):
            reused[output] = job
    walls = [json.loads(p.read_text())["wall_s"] for p in (args.first_json, args.second_json)]
    result = {
        "first_experiment": first_experiment, "second_experiment": second_experiment,
        "first_wall_s": walls[0], "second_wall_s": walls[1],
        "jobs_taken_from_cache": len(reused),
        "their_seconds_in_the_first_run": round(sum(j["seconds"] for j in reused.values()), 1),
        "by_rule": {rule: round(sum(j["seconds"] for j in reused.values() if j["rule"] == rule), 1)
                    for rule in sorted({j["rule"] for j in reused.values()})},
        "jobs": {output: job for output, job in sorted(reused.items())},
        "note": "job seconds overlap (two jobs at a time on 2 cores); walls include training, which differs "
                "between the experiments (another learning rate)",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "jobs"}, indent=2))


if __name__ == "__main__":
    main()
