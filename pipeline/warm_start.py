"""Warm start: a run's jobs forked from a process that has imported torch and transformers once.

A job of the workflow is ``python -m pipeline STEP ...`` in a fresh interpreter, and a job that loads a model
spends about 6 s importing torch and transformers before its first line of work (2 cores, AVX2; transformers 5
pulls in ``torch._dynamo``, ``torch.distributed.tensor`` and ``scipy.optimize`` on its own: benchmarks/README.md,
issue 37). A run has tens of such jobs and the test suite hundreds, most of them seconds of work.

With warm start (config ``warm_start: true``, the default; the workflow passes it to its jobs as
``PIPELINE_WARM_START=1``) a job's ``python -m pipeline`` is a small client. The first job starts a *job
server* that imports the libraries every step needs (:data:`PRELOADED`, third-party only) and listens on a
Unix socket; each job sends it its arguments, working directory, environment and ``sys.path`` and hands over
its stdin, stdout and stderr; the server forks, and the child, in the job's directory, environment and
output files, runs ``pipeline.__main__.main`` as the fresh process would. The client waits for the child's
exit code and exits with it. What a job computes does not change (tests/test_warm_start.py: the same
run's metrics cold and warm are equal to the last digit).

How a forked child stays what a fresh process would be:

- **The environment a library reads when imported.** A server serves only jobs whose environment equals the
  one it imported in (the socket's name is a hash of it, of the interpreter and of the installed packages'
  folder): Snakemake sets ``OMP_NUM_THREADS`` and its kin to each job's ``threads``, which OpenMP and OpenBLAS
  read once, when loaded, so a run's 1-thread and 2-thread jobs have a server each.
- **Our own code is never preloaded.** The child drops every ``pipeline`` module the server imported (this
  one) and imports the step from the job's ``sys.path``: an edit between two jobs is seen as it would be cold.
- **A killed job leaves nothing running.** The child runs in its own process group and kills it when the
  client's end of the socket closes (the client was killed, even with SIGKILL, as Snakemake's process
  group is when a run is killed hard); SIGTERM, SIGINT and SIGHUP sent to the client are passed on.
- **Nothing outlives the run.** A server belongs to the Snakemake process that started its first job (the
  client's grandparent: Snakemake runs a job's shell, the shell runs the client) and exits within a second of
  it, or after :data:`IDLE_SECONDS` without a job.

Where it stays cold (the client runs the step itself, as before): ``warm_start: false``; not Linux; the
ranks of data-parallel training (torchrun starts them, each its own environment); a SLURM job (``SLURM_JOB_ID``: a node's processes end with their allocation, so nothing would be reused); a machine
with an NVIDIA device (``/dev/nvidiactl``: CUDA cannot be initialised in a child forked from a process that
touched it, and a GPU job's start-up is small beside its work); and wherever the server cannot be started
(its log: ``<tmp>/pipeline-warm-<uid>/<key>.log``).

One thing a forked job does not give: Snakemake's ``benchmark:`` files measure the job's process tree, which
is now the client; their seconds are the job's, their memory and CPU columns the client's. Runs that
measure memory (benchmarks/memory_scaling.py) set ``warm_start: false``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from pathlib import Path

#: the environment variable the workflow sets (config ``warm_start``) for its jobs
ENVVAR = "PIPELINE_WARM_START"
#: the module whose ``main(argv)`` a forked job runs: what ``python -m pipeline`` runs
ENTRY = "pipeline.__main__"
#: what the server imports before it serves: the third-party libraries a model job imports (never our code)
PRELOADED = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "tqdm.auto", "torch", "transformers",
    "transformers.modeling_utils", "transformers.models.bert.modeling_bert", "tokenizers", "safetensors.torch",
    "faiss", "scipy.stats",
)
#: a server with no job for this long exits (it also exits when the Snakemake process it serves does)
IDLE_SECONDS = 600
#: how long a client waits for a server it started to listen (it listens before it imports)
START_SECONDS = 60
#: the longest name a Unix socket may have (Linux: 108 bytes with the final NUL)
MAX_ADDRESS_BYTES = 100
#: the shells a job's command may run in, between Snakemake and the client
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish"})
#: shell bookkeeping that differs between two jobs of one run and that no library reads
UNKEYED_VARIABLES = frozenset({"_", "PWD", "OLDPWD", "SHLVL"})
_LENGTH = struct.Struct("!I")
_NUMBER = struct.Struct("!q")

log = logging.getLogger(__name__)


def wanted(environ=os.environ) -> bool:
    """Whether this job should be forked from a job server (see the module's docstring for where not)."""
    return (environ.get(ENVVAR) == "1" and sys.platform == "linux" and "SLURM_JOB_ID" not in environ
            and "TORCHELASTIC_RUN_ID" not in environ  # a rank of `train: {processes: N}`: torchrun starts it
            and not os.path.exists("/dev/nvidiactl"))


def server_key(environ=os.environ, owner: list | None = None) -> str:
    """What a server must share with a job to serve it: the interpreter, the installed packages (their folder's
    mtime changes on every install), the environment, and the Snakemake process that runs the job (``owner``,
    :func:`owner_process`)."""
    purelib = sysconfig.get_paths()["purelib"]
    keyed = {name: value for name, value in environ.items() if name not in UNKEYED_VARIABLES}
    installed = _stat(purelib)
    identity = {"python": sys.executable, "packages": [purelib, installed and installed.st_mtime_ns],
                "environment": keyed, "owner": owner}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _process_stat(pid: int) -> tuple[str, list[str]] | None:
    """A process's name and the fields of ``/proc/<pid>/stat`` after it (the name may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot; with its pid, it names one process even if pids wrap)."""
    stat = _process_stat(pid)
    return stat[1][19] if stat else None


def owner_process() -> list | None:
    """The process a server lives no longer than, as ``[pid, start]``: the job's nearest ancestor that is not
    a shell (Snakemake, which runs a job's command in ``bash -c``; a shell may exec the client or not)."""
    pid = os.getppid()
    for _ in range(16):
        stat = _process_stat(pid)
        if stat is None or stat[0] not in SHELLS:
            break
        pid = int(stat[1][1])
    start = _process_start(pid) if pid > 1 else None
    return None if start is None else [pid, start]


def server_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"pipeline-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------------------------------- client
def run_in_server(argv: list[str]) -> int | None:
    """Run ``python -m pipeline`` with ``argv`` in a child of a job server; its exit code, or None where no
    server could serve the job (the caller then runs it itself)."""
    owner = owner_process()
    key = server_key(owner=owner)
    folder = server_folder()
    address = str(folder / f"{key}.sock")
    if len(address.encode()) > MAX_ADDRESS_BYTES or (folder / f"{key}.failed").exists():
        return None  # a socket's name this long cannot be bound; or this run's server could not start
    connection = _connect(address) or _start_server(address, folder / f"{key}", owner)
    if connection is None:
        return None
    umask = os.umask(0)
    os.umask(umask)
    with connection:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "environment": dict(os.environ),
                              "path": sys.path, "sys_argv": sys.argv, "umask": umask}).encode()
        try:
            socket.send_fds(connection, [_LENGTH.pack(len(request)) + request], [0, 1, 2])
            child = _NUMBER.unpack(_receive_exactly(connection, _NUMBER.size))[0]
        except (OSError, EOFError):
            return None  # the server went away before it forked: nothing ran; run cold
        forward = lambda signum, frame: _signal_group(child, signum)  # noqa: E731
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        try:
            return _NUMBER.unpack(_receive_exactly(connection, _NUMBER.size))[0]
        except (OSError, EOFError):
            print(f"warm start: the job's process {child} ended without an exit code (killed?)", file=sys.stderr)
            return 1


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _connect(address: str) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
    except OSError:
        connection.close()
        return None
    return connection


def _start_server(address: str, stem: Path, owner: list | None) -> socket.socket | None:
    """Start the server for this key, unless a job beside this one did (the lock), and connect to it; where it
    cannot start, say so once (``<key>.failed``: the run's other jobs go cold at once)."""
    server_log = stem.with_suffix(".log")
    with open(stem.with_suffix(".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        connection = _connect(address)
        if connection is not None:
            return connection
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)  # a server that died without cleaning up
        with open(server_log, "a") as log_file:
            server = subprocess.Popen(
                [sys.executable, "-m", "pipeline.warm_start", address, json.dumps(owner)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and server.poll() is None:
            connection = _connect(address)
            if connection is not None:
                return connection
            time.sleep(0.02)
        if server.poll() is None:
            server.kill()
        stem.with_suffix(".failed").touch()
        print(f"warm start: no job server ({server_log}); this run's jobs run cold", file=sys.stderr)
        return None


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise EOFError("the other end closed the connection")
        data += chunk
    return data


# ---------------------------------------------------------------------------------------------------- server
def serve(address: str, owner: list | None) -> None:
    """Import :data:`PRELOADED`, listen on ``address``, fork a child per job; exit when ``owner`` has ended
    or after :data:`IDLE_SECONDS` without a job."""
    # listening first: the jobs that arrive while it imports wait in the socket's queue, not for a lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    listener.settimeout(1.0)
    started = time.monotonic()
    for module in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    print(f"{time.strftime('%F %T')} server {os.getpid()} for {address}, owner {owner}: imports in "
          f"{time.monotonic() - started:.1f} s, {threading.active_count()} thread(s)", flush=True)
    identity = os.stat(address).st_ino
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped by the kernel
    last_job = time.monotonic()
    owner_ended = False
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                owner_ended = bool(owner) and _process_start(owner[0]) != owner[1]
                if owner_ended or time.monotonic() - last_job > IDLE_SECONDS or _inode(address) != identity:
                    break
                continue
            last_job = time.monotonic()
            connection.settimeout(10.0)  # a client sends its request at once; one that does not is dropped
            try:
                message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
                size = _LENGTH.unpack(message[:_LENGTH.size])[0]
                payload = message[_LENGTH.size:]
                payload += _receive_exactly(connection, size - len(payload))
                request = json.loads(payload)
            except (OSError, EOFError, ValueError, struct.error):
                connection.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                _run_job(connection, request, fds, address)  # never returns
            connection.close()
            for fd in fds:
                os.close(fd)
    finally:
        if _inode(address) == identity:
            stem = address[:-len(".sock")]
            # no job can ask for this server's key once its owner has ended: its lock and log go too
            for path in (address, *((f"{stem}.lock", f"{stem}.log", f"{stem}.failed") if owner_ended else ())):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _inode(address: str) -> int | None:
    stat = _stat(address)
    return stat and stat.st_ino


def _run_job(connection: socket.socket, request: dict, fds: list[int], address: str) -> None:
    """In the forked child: become the job (its files, folder, environment, path) and run its step."""
    code = 1
    finished = threading.Event()
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        connection.settimeout(None)
        os.setpgid(0, 0)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["environment"])
        sys.path[:] = request["path"]
        sys.argv[:] = request["sys_argv"]
        for name in [name for name in sys.modules if name == "pipeline" or name.startswith("pipeline.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        connection.sendall(_NUMBER.pack(os.getpid()))
        print(f"warm start: job process {os.getpid()}, forked from job server {os.getppid()} ({address})",
              file=sys.stderr, flush=True)

        def die_with_client():
            with contextlib.suppress(OSError):
                connection.recv(1)  # the client sends nothing more: this returns when it is gone
            if not finished.is_set():
                os.killpg(0, signal.SIGKILL)

        threading.Thread(target=die_with_client, daemon=True).start()
        # by name, as `python -m pipeline` finds it, from the job's sys.path (the server imports no code of
        # ours that a job would run: pipeline.__main__ calls this module, not the other way round)
        code = importlib.import_module(ENTRY).main(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the job's traceback, as a fresh process prints it
        traceback.print_exc()
        code = 1
    finally:
        finished.set()
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            connection.sendall(_NUMBER.pack(code or 0))
        os._exit(code or 0)


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]))
