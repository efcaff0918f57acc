"""Data-parallel training over several processes started by ``torchrun`` (``train.processes``).

Every process builds the same full batch (the batch order is a pure function of the seed) and encodes
its contiguous share of the batch's texts; :func:`gather` joins the shares, so every process computes the
loss of the whole batch, in-batch negatives across all shares included, exactly as one process would.
Each process's own share keeps its gradient, scaled by the number of processes, so that averaging the
gradients over processes (:func:`average_gradients`, one ``all_reduce`` per trained model) gives the
gradient of the one-process loss. Only rank 0 writes checkpoints and the saved student.

Why no ``DistributedDataParallel`` wrapper: it expects one forward per backward through its own
``forward``, while a training step encodes through :meth:`pipeline.models.BiEncoder.embed` several times
(queries, passages, a peer's or a teacher's layers), and a step whose loss is not finite skips its
backward. The wrapper's job here is the gradient all-reduce alone, which :func:`average_gradients` does
with the same collective. (Tevatron and sentence-transformers gather embeddings across devices the same
way for in-batch negatives.)

Backends: NCCL on CUDA (one GPU per process, ``LOCAL_RANK``), gloo on CPU. Outside ``torchrun`` (no
``WORLD_SIZE`` above 1) every function here is the identity of one process.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from typing import Any

import torch
import torch.distributed as dist

from .data import shard_bounds  # the corpus's shards and a batch's shares split alike


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_size() -> int:
    """The number of processes ``torchrun`` started this one among (1 outside it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` set up, when there is one; returns this process's device
    (``cuda:LOCAL_RANK`` on GPUs). A no-op for one process."""
    if launched_size() <= 1 or dist.is_initialized():
        return device
    _die_with_the_launcher()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _die_with_the_launcher() -> None:
    # torchrun starts each process in a session of its own: were torchrun killed hard (kill -9 of the
    # job's process group), its processes would train on and write the student beside a resumed job
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the launcher died before the line above
            os._exit(1)


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(n: int) -> slice:
    """This process's contiguous share of ``n`` items (near-equal, the first ones one longer; all of them
    for one process, or for fewer items than processes: then every process encodes them all, see
    :func:`gather`)."""
    size = world_size()
    if size == 1 or n < size:
        return slice(0, n)
    return slice(*shard_bounds(n, rank(), size))


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def gather(local: torch.Tensor, n: int) -> torch.Tensor:
    """The ``[n, ...]`` rows of every process's :func:`share`, in order. The other processes' rows carry
    no gradient; this process's rows carry theirs times the number of processes, so that the mean of the
    processes' parameter gradients is the gradient of the whole batch's loss. Identity for one process or
    when every process encoded all ``n`` rows."""
    size = world_size()
    if size == 1 or n < size:
        return local
    padded = local.new_zeros((math.ceil(n / size), *local.shape[1:]))  # all_gather wants equal shapes
    padded[: len(local)] = local.detach()
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    parts = [part[: len(range(*shard_bounds(n, r, size)))] for r, part in enumerate(parts)]
    parts[rank()] = _ScaleGradient.apply(local, float(size)) if local.requires_grad else local
    return torch.cat(parts)


def average_gradients(parameters) -> None:
    """Average the gradients of ``parameters`` over the processes: one all-reduce of their concatenation.
    Every process runs the same steps on the same batches, so the same parameters have gradients."""
    size = world_size()
    if size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, by rank (``[obj]`` for one process)."""
    size = world_size()
    if size == 1:
        return [obj]
    objects: list[Any] = [None] * size
    dist.all_gather_object(objects, obj)
    return objects
