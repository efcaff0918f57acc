"""What the models' matrix products compute in: config ``precision``, resolved per process and device.

``auto`` runs them in bf16 under ``torch.autocast`` where the device computes bf16 natively: CUDA GPUs with
bf16 (as before), and CPUs with AVX512-BF16 or AMX, where a 2-core Zen 4 multiplies bf16 matrices at about 5x
its float32 throughput (``benchmarks/stage_speed.py``); fp16 on CUDA GPUs without bf16; float32 elsewhere.
Autocast keeps the weights, layer norms, softmaxes, pooling and losses in float32 and accumulates the
products in float32, so a bf16 embedding keeps a cosine above 0.9999 to its float32 twin (MiniLM-L6 on
SciFact passages). ``fp32`` computes everything in float32, exactly as before this setting existed.

A process-wide setting, as torch's threads are: ``python -m pipeline STEP --precision P`` sets it through
the environment (:data:`pipeline.PRECISION_ENVVAR`), read when this module is first imported, so that a step
that loads no model never imports torch for it; :func:`set_precision` sets it in-process.
"""

from __future__ import annotations

import contextlib
import os

import torch

from . import PRECISION_ENVVAR, PRECISIONS

#: this process's precision: ``--precision`` through the environment, or :func:`set_precision`
_precision = os.environ.get(PRECISION_ENVVAR, "auto")
if _precision not in PRECISIONS:
    raise ValueError(f"{PRECISION_ENVVAR} must be one of {PRECISIONS}, got {_precision!r}")


def set_precision(precision: str) -> None:
    """This process's ``precision``, which :func:`autocast` reads wherever a model runs; a process-wide
    setting, as torch's threads (:func:`pipeline.models.set_threads`) and its float32 matmul precision are."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    _precision = precision


@contextlib.contextmanager
def computing_in(precision: str):
    """This process's precision set to ``precision`` for the block, and back after it."""
    global _precision
    previous = _precision
    set_precision(precision)
    try:
        yield
    finally:
        _precision = previous


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: CUDA GPUs that support bf16, CPUs with
    AVX512-BF16 or AMX (a 2-core Zen 4: 5x its float32 matmul throughput, benchmarks/README.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch's own CPU feature probes (private; absent from a build that lacks them: no native bf16)
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype :func:`autocast` runs ``device``'s matrix products in under this process's precision, or
    None for float32: ``auto`` takes bf16 where the device computes it natively, fp16 on a CUDA GPU without
    bf16 (as mixed-precision training does), float32 elsewhere."""
    if _precision == "fp32" or device.type not in ("cuda", "cpu"):
        return None
    if native_bf16(device):
        return torch.bfloat16
    if device.type == "cuda":
        if _precision == "bf16":
            raise ValueError("precision: bf16, but this GPU does not compute bf16; use auto (fp16) or fp32")
        return torch.float16
    return torch.bfloat16 if _precision == "bf16" else None


def precision_used(device: torch.device) -> str:
    """What this process computes in on ``device``, for provenance: ``fp32``, ``bf16`` or ``fp16``."""
    dtype = autocast_dtype(device)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device):
    """Autocast to :func:`autocast_dtype` on ``device`` (matrix products in bf16/fp16, accumulating in
    float32; norms, softmaxes and reductions in float32), or a no-op for float32."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
