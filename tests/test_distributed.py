"""Data-parallel training (``train.processes``): the shares, the gathered loss and its gradient, and the train
step under torchrun against one process."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fixtures import prepare_with_candidates, write_tiny_bert
from pipeline.scorers import score_candidates
from pipeline.training import init_student, train_student

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gradients_across_processes(rank: int, size: int, port: int, out: str) -> None:
    """A linear encoder, queries and passages embedded per process and gathered, an in-batch softmax loss
    over the whole batch: the averaged gradient, from every process."""
    import torch.distributed as dist

    from pipeline import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, 4)
    queries, passages = torch.randn(5, 6), torch.randn(10, 6)  # 5 queries over 3 processes: shares 2, 2, 1
    q = distributed.gather(encoder(queries[distributed.share(5)]), 5)
    p = distributed.gather(encoder(passages[distributed.share(10)]), 10)
    two = distributed.gather(encoder(queries[distributed.share(2)]), 2)  # fewer rows than processes: all encode all
    loss = torch.nn.functional.cross_entropy(q @ p.T, torch.arange(5) * 2) + two.pow(2).mean()
    loss.backward()
    distributed.average_gradients(encoder.parameters())
    torch.save({"loss": loss.detach(), "grad": [g.grad for g in encoder.parameters()],
                "share": (distributed.share(5).start, distributed.share(5).stop)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_the_gathered_loss_and_averaged_gradient_are_those_of_one_process(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_gradients_across_processes, args=(3, port, str(tmp_path)), nprocs=3)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, 4)
    queries, passages = torch.randn(5, 6), torch.randn(10, 6)
    loss = torch.nn.functional.cross_entropy(encoder(queries) @ encoder(passages).T, torch.arange(5) * 2) \
        + encoder(queries[:2]).pow(2).mean()
    loss.backward()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(3)]
    assert [r["share"] for r in results] == [(0, 2), (2, 4), (4, 5)]
    for result in results:
        assert torch.allclose(result["loss"], loss.detach(), atol=1e-6)
        for got, want in zip(result["grad"], [p.grad for p in encoder.parameters()]):
            assert torch.allclose(got, want, atol=1e-6)


@pytest.fixture(scope="module")
def setup(tiny_beir, tmp_path_factory):
    """The fixture's data, BM25 candidates, teacher scores, and 1-layer students without and with dropout."""
    root = tmp_path_factory.mktemp("distributed")
    data = prepare_with_candidates(tiny_beir, root)
    teacher = {"name": "teacher", "kind": "bm25"}
    score_candidates(str(root / "candidates.parquet"), data["qrels-train"], data["queries"], data["corpus"],
                     str(root / "scores.parquet"), teacher, device="cpu")
    for name, dropout in (("exact", 0.0), ("dropout", 0.1)):
        bert = write_tiny_bert(root / f"bert-{name}", dropout=dropout)
        init_student({"name": "student-it0", "kind": "bi-encoder", "source": str(bert), "layers": 1},
                     str(root / f"student-{name}"))
    return root, data


def train_args(setup, student: str, out, processes: int, scratch=None, **settings) -> dict:
    root, data = setup
    settings = {"epochs": 2, "batch_size": 6, "group_size": 4, "lr": 1e-3, "checkpoint_every": 3,
                "processes": processes, **settings}
    return dict(student_dir=str(root / f"student-{student}"), out_dir=str(out),
                candidates_path=str(root / "candidates.parquet"), score_paths={"teacher": str(root / "scores.parquet")},
                qrels_path=data["qrels-train"], queries_path=data["queries"], corpus_path=data["corpus"],
                config={"teacher": "teacher", "train": settings}, device="cpu", seed=3,
                scratch_dir=str(scratch) if scratch else None)


def torchrun(args: dict, processes: int = 2, **popen) -> subprocess.Popen:
    """The train step as the workflow's train rule starts it with ``train.processes`` of 2 (in float32, as the
    in-process runs it is compared with: tests/conftest.py)."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", str(processes), "-m", "pipeline", "train", json.dumps(args),
                             "--threads", "2", "--precision", "fp32"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_two_processes_train_the_student_one_process_trains(setup, tmp_path):
    """Without dropout (the one random draw that differs per process), 2 processes under torchrun and 1
    process give the same losses and weights up to float summation order; rank 0 alone writes."""
    one = train_student(**train_args(setup, "exact", tmp_path / "one", 1))
    process = torchrun(train_args(setup, "exact", tmp_path / "two", 2))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    two = json.loads((tmp_path / "two" / "training.json").read_text())
    assert two["config"]["train"]["processes"] == 2
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], abs=1e-5)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    assert any(not torch.equal(a[k], weights(setup[0] / "student-exact")[k]) for k in a), "it trained"
    assert output.count("Writing model shards: 100%") == 1, "rank 0 alone saves"


def test_a_killed_two_process_job_resumes_to_the_same_student(setup, tmp_path):
    """Killed hard (the launcher's process group; its processes die with it) after a checkpoint, resumed:
    the student equals an uninterrupted 2-process run's to the bit, dropout included (each process's
    random state is in the checkpoint)."""
    settings = {"epochs": 8, "checkpoint_every": 2}
    reference = torchrun(train_args(setup, "dropout", tmp_path / "reference", 2, tmp_path / "scratch-ref", **settings))
    output, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, output[-3000:]

    args = train_args(setup, "dropout", tmp_path / "resumed", 2, tmp_path / "scratch", **settings)
    killed = torchrun(args, start_new_session=True)
    checkpoint = tmp_path / "scratch" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate()
    time.sleep(1.0)  # a process that outlived its launcher would write the student by now
    assert checkpoint.exists(), "training wrote a checkpoint before the kill"
    assert not (tmp_path / "resumed").exists(), "killed before the end, and no process outlived the launcher"

    resumed = torchrun(args)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert "resuming from" in output
    a, b = weights(tmp_path / "reference"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_process_count_other_than_the_configured_one_is_refused(setup, tmp_path):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="train.processes is 2 but 1 process"):
        train_student(**train_args(setup, "exact", tmp_path / "out", 2))
