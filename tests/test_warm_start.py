"""Warm start (pipeline/warm_start.py): a job forked from a job server writes what a fresh process writes,
exits with its code into its own log, dies with its client, and no server outlives the process it serves."""

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import warm_start

ROOT = Path(__file__).resolve().parents[1]
FORKED = re.compile(r"warm start: job process (\d+), forked from job server (\d+) \((\S+)\)")
pytestmark = pytest.mark.skipif(not warm_start.wanted({warm_start.ENVVAR: "1"}),
                                reason="warm start is off here (not Linux, or an NVIDIA device)")


def job_environment(warm: bool) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "SLURM_JOB_ID"}
    return {**environment, "PYTHONPATH": str(ROOT), warm_start.ENVVAR: "1" if warm else "0"}


def job_command(step: str, kwargs: dict, log: Path) -> str:
    """A job's command as a workflow rule writes it."""
    return f"{shlex.quote(sys.executable)} -m pipeline {step} {shlex.quote(json.dumps(kwargs))} > {shlex.quote(str(log))} 2>&1"


# The owner: a process that runs jobs one after another in `bash -c`, as Snakemake does, and prints their codes.
OWNER = ("import subprocess, sys\n"
         "print([subprocess.run(['bash', '-c', command]).returncode for command in sys.argv[1:]], flush=True)\n")


def run_jobs(commands: list[str], warm: bool, cwd: Path) -> list[int]:
    result = subprocess.run([sys.executable, "-c", OWNER, *commands], env=job_environment(warm), cwd=cwd,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_jobs_forked_from_one_server_write_what_fresh_processes_write_and_the_server_ends_with_its_owner(
        tmp_path, tiny_beir, tiny_bert):
    outputs = {}
    for warm in (False, True):
        out = tmp_path / ("warm" if warm else "cold")
        out.mkdir()
        model = {"name": "tiny", "kind": "bi-encoder", "source": str(tiny_bert), "max_passage_length": 32}
        codes = run_jobs([
            job_command("prepare", {"data_dir": str(tiny_beir), "out_dir": str(out / "data"), "splits": ["test"]},
                        out / "prepare.log"),
            job_command("encode", {"corpus_path": str(out / "data/corpus.parquet"), "model": model,
                                   "out_path": str(out / "embeddings.parquet"), "threads": 1}, out / "encode.log"),
            job_command("prepare", {"data_dir": str(tmp_path / "missing"), "out_dir": str(out / "none"),
                                    "splits": ["test"]}, out / "missing.log"),
        ], warm, cwd=out)
        assert codes == [0, 0, 2]  # the step's own exit code: 2 for bad input, as cold
        logs = {name: (out / f"{name}.log").read_text() for name in ("prepare", "encode", "missing")}
        assert "error:" in logs["missing"] and "missing" in logs["missing"]
        forked = [FORKED.search(text) for text in logs.values()]
        if warm:
            # one server (the owner's, for this environment) served the three jobs, each in its own process
            assert all(forked), logs
            assert len({match.group(2) for match in forked}) == 1
            assert len({match.group(1) for match in forked}) == 3
            server, address = int(forked[0].group(2)), forked[0].group(3)
            # its owner has ended: so has the server, and its socket, lock and log are gone
            assert wait_until(lambda: gone(server)), "the job server outlived the process it served"
            assert not Path(address).exists() and not Path(address.replace(".sock", ".lock")).exists()
        else:
            assert not any(forked)
        outputs[warm] = out
    for name in ("data/corpus.parquet", "data/queries.parquet", "embeddings.parquet"):
        assert pq.read_table(outputs[True] / name).equals(pq.read_table(outputs[False] / name)), name


def test_a_job_dies_with_its_client_killed_hard(tmp_path):
    """SIGKILL of the owner's process group (as the kill-and-resume test kills Snakemake): the forked job, which
    is in the server's session and not in that group, ends too."""
    with socket.socket() as silent:  # a server that takes the connection and never answers: the job waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/data.zip"
        log = tmp_path / "job.log"
        command = job_command("download", {"out_dir": str(tmp_path / "data"), "url": url, "sha256": "0" * 64,
                                           "required": ["corpus.jsonl"], "timeout_s": 300}, log)
        owner = subprocess.Popen([sys.executable, "-c", OWNER, command], env=job_environment(True), cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_until(lambda: log.is_file() and FORKED.search(log.read_text()), 120), "no job was forked"
            job = int(FORKED.search(log.read_text()).group(1))
            time.sleep(1.0)
            assert not gone(job), log.read_text()  # still waiting for its answer
            os.killpg(owner.pid, signal.SIGKILL)
            assert wait_until(lambda: gone(job)), "the forked job outlived its killed client"
            assert not (tmp_path / "data").exists()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()


def test_where_warm_start_is_off_and_what_a_server_is_keyed_by():
    assert not warm_start.wanted({})
    assert not warm_start.wanted({warm_start.ENVVAR: "0"})
    assert not warm_start.wanted({warm_start.ENVVAR: "1", "SLURM_JOB_ID": "7"})
    assert not warm_start.wanted({warm_start.ENVVAR: "1", "TORCHELASTIC_RUN_ID": "none"})
    base = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "2", "PWD": "/a"}
    key = warm_start.server_key(base)
    assert warm_start.server_key({**base, "PWD": "/b", "SHLVL": "3"}) == key  # shell bookkeeping
    assert warm_start.server_key({**base, "OMP_NUM_THREADS": "1"}) != key  # read when OpenMP loads
    assert warm_start.server_key({**base, "HF_HUB_OFFLINE": "1"}) != key  # read when huggingface_hub loads
    assert warm_start.server_key(base, owner=[12345, "678"]) != key  # another Snakemake run


def test_a_job_runs_cold_where_no_server_can_listen(tmp_path, monkeypatch):
    """A temporary folder whose path is too long for a Unix socket's name (a cluster's scratch, say): the client
    says no at once, starting nothing, and the job runs in its own interpreter."""
    long_folder = tmp_path / ("x" * 120)
    long_folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(long_folder))
    assert warm_start.run_in_server(["prepare", "{}"]) is None
    assert not list(long_folder.glob("pipeline-warm-*/*"))
