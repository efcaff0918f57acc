"""The workflow submitted to a real SLURM cluster through profiles/slurm-local.

Runs where a SLURM controller answers (`scripts/local-slurm.sh start` sets up a single-node one on
Debian; `.ci/run` does so in CI); skipped elsewhere, with the reason.
"""

import json
import re
import shutil
import subprocess

import pytest

from test_workflow import ROOT, snakemake, write_config


def slurm_up() -> bool:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return result.returncode == 0 and any(s in result.stdout for s in ("idle", "mixed", "allocated"))


@pytest.mark.skipif(not slurm_up(), reason="no SLURM cluster answers (scripts/local-slurm.sh start sets one up)")
def test_workflow_runs_as_slurm_jobs_with_the_profile(tmp_path, tiny_beir, tiny_bert):
    # one export format (fewer jobs: CI time), enough to see the export rule submitted too
    # no teacher evaluation and no export: each job costs a submission here (CI time); both rules are
    # ordinary jobs, run on SLURM like the others
    workdir = write_config(tmp_path / "wd", tiny_beir, tiny_bert, iterations=1, encode={"shards": 1},
                           warmup={"epochs": 0}, export={"formats": []}, evaluate={"teacher": False})
    result = snakemake(workdir, "--profile", str(ROOT / "profiles/slurm-local"))
    log = result.stdout + result.stderr
    submitted = set(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", log))
    assert {"prepare", "split_training_queries", "init_student", "encode", "index", "mine", "score", "train",
            "evaluate", "select_student", "summary"} <= submitted, log[-3000:]
    summary = json.loads((workdir / "results/tiny/summary.json").read_text())
    assert {(r["model"], r["iteration"]) for r in summary["rows"]} == {("student", 0), ("student", 1)}
    again = snakemake(workdir, "--profile", str(ROOT / "profiles/slurm-local"), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
