"""Exports of a bi-encoder for serving: ONNX fp32, ONNX int8 (dynamic quantization), OpenVINO.

An export folder is the model's sentence-transformers folder (as the workflow encodes with it) plus the
graphs, in the layout sentence-transformers' ``backend="onnx"`` / ``"openvino"`` and
``optimum`` load::

    export/student-it2/
        model.safetensors, tokenizer.json, modules.json, 1_Pooling/ ...   the PyTorch student
        onnx/model.onnx                 ONNX fp32: input_ids, attention_mask, token_type_ids -> last_hidden_state
        onnx/model_qint8.onnx           the same graph, weights int8 per channel, activations uint8 per batch
        openvino/openvino_model.xml     (optional) the fp32 graph converted by OpenVINO
        export.json                     formats, files, sizes, versions, seconds

The fp32 graph comes from torch's TorchScript exporter (``dynamo=False``: a single-file graph with dynamic
batch and sequence axes) with eager attention (the SDPA path exports into slower masking code); int8 is
ONNX Runtime's ``quantize_dynamic`` of that graph (per-channel weights: lowest cosine to fp32 0.988 on
SciFact passages against 0.90 per tensor, benchmarks/README.md). The export job checks every graph
against the PyTorch model in float32 on the corpus's first passages
(:func:`pipeline.runtime.check_against_pytorch`, ``export.json``'s ``check``); the workflow evaluates the formats ``export.evaluate`` names (by default the
quantized ones, whose rankings may move) as their own models (``student-it2.onnx-int8``) through the same
encode, index and evaluate rules, with the backend an option of the encoder (:mod:`pipeline.runtime` runs
the graphs). ONNX fp32 computes what PyTorch does (the check: cosine 1 to within 1e-6), so evaluating it
over the corpus again would repeat the student's own figures (on SciFact: a 60-s encode of a 705-s run).

Imports nothing heavy at module level: the plan reads :data:`FORMATS` at parse time.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .data import atomic_path, write_json

log = logging.getLogger(__name__)

#: format -> (the encoder's backend, the graph's file inside the export folder)
FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "onnx/model.onnx"),
    "onnx-int8": ("onnx", "onnx/model_qint8.onnx"),
    "openvino": ("openvino", "openvino/openvino_model.xml"),
}
#: formats whose numbers differ from the model's beyond rounding: ``export.evaluate: auto`` evaluates these
QUANTIZED_FORMATS = ("onnx-int8",)
#: the Python packages each backend needs, and how to install them
BACKEND_PACKAGES = {"onnx": (("onnxruntime", "onnx"), "pip install onnxruntime onnx"),
                    "openvino": (("openvino",), "pip install openvino")}
ONNX_OPSET = 17


def missing_backends(formats) -> list[str]:
    """A sentence per format whose runtime is not installed (checked at parse time, before any job)."""
    problems = []
    for fmt in formats:
        packages, install = BACKEND_PACKAGES[FORMATS[fmt][0]]
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            problems.append(f"export.formats: {fmt!r} needs {' and '.join(missing)}, not installed here "
                            f"(`{install}`)")
    return problems


def export_onnx(encoder, path: Path) -> None:
    """The encoder's transformer as an ONNX graph: the tokenizer's inputs -> ``last_hidden_state``."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    backbone = encoder.backbone
    # (switches the encoder itself) eager attention: the SDPA path exports into masking code that runs
    # at 0.86x PyTorch instead of 1.13x (benchmarks/README.md)
    backbone.set_attn_implementation("eager")
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                   if n in encoder.tokenizer.model_input_names]

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, *inputs):
            return self.backbone(**dict(zip(input_names, inputs))).last_hidden_state

    example = encoder.tokenizer(["an example passage", "a query"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "sequence"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(LastHiddenState().eval(), tuple(example[n] for n in input_names), str(path),
                          dynamo=False, input_names=input_names, output_names=["last_hidden_state"],
                          dynamic_axes={n: axes for n in [*input_names, "last_hidden_state"]},
                          opset_version=ONNX_OPSET, do_constant_folding=True)


def quantize_int8(fp32: Path, int8: Path) -> None:
    """ONNX Runtime's dynamic quantization: int8 weights per output channel, activations quantized per
    batch at run time (no calibration data)."""
    # onnxruntime: only in the export step (the plan reads this module at parse time)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)


def convert_openvino(fp32: Path, xml: Path) -> None:
    try:
        # openvino: optional, only in the export step
        import openvino
    except ImportError:
        raise ImportError("export format 'openvino' needs the openvino package: pip install openvino") from None
    xml.parent.mkdir(parents=True, exist_ok=True)
    openvino.save_model(openvino.convert_model(str(fp32)), str(xml), compress_to_fp16=False)


def export_model(model: dict[str, Any], out_dir: str, formats: list[str], threads: int | None = None,
                 check: Callable[[Any, Path, list[str]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Export the bi-encoder ``model`` (settings as the plan gives them) into ``out_dir`` in ``formats``;
    the folder appears whole or not at all. ``check(encoder, folder, formats)``, run on the written folder
    before it is moved into place, gives ``export.json``'s ``check`` (the workflow's step,
    :func:`pipeline.runtime.export_checked`, runs the graphs against the PyTorch model)."""
    # torch: not at parse time (the Snakefile imports this module)
    from .models import BiEncoder, ModelSpec, set_threads

    set_threads(threads)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"export: unknown formats {unknown}; known: {sorted(FORMATS)}")
    missing = missing_backends(formats)
    if missing:
        raise ImportError("; ".join(missing))
    spec = ModelSpec.from_config(model["name"], model)
    if spec.kind != "bi-encoder":
        raise ValueError(f"export: {spec.name!r} is a {spec.kind}; only bi-encoders are exported")
    encoder = BiEncoder.load(spec, "cpu")
    began = time.perf_counter()
    files: dict[str, dict[str, Any]] = {}
    with atomic_path(out_dir, directory=True) as tmp:
        # the PyTorch model as the workflow encodes with it (truncation, pooling), loadable on its own
        encoder.save_pretrained(tmp, final_path=out_dir)
        fp32 = tmp / FORMATS["onnx"][1]
        export_onnx(encoder, fp32)
        if "onnx-int8" in formats:
            quantize_int8(fp32, tmp / FORMATS["onnx-int8"][1])
        if "openvino" in formats:
            convert_openvino(fp32, tmp / FORMATS["openvino"][1])
        if "onnx" not in formats:
            fp32.unlink()
        for fmt in formats:
            files[fmt] = {"backend": FORMATS[fmt][0], "file_name": FORMATS[fmt][1],
                          **graph_size(tmp / FORMATS[fmt][1])}
        write_json({"model": spec.to_dict(), "formats": files,
                    "check": check(encoder, tmp, formats) if check is not None and formats else None,
                    "seconds": round(time.perf_counter() - began, 2), "versions": versions(formats)},
                   tmp / "export.json")
    log.info("exported %s to %s: %s", spec.name, out_dir, {f: v["size_mb"] for f, v in files.items()})
    return files


def versions(formats) -> dict[str, str]:
    """The versions of the packages an export in ``formats`` went through."""
    names = {"torch", "onnx", "onnxruntime"} | ({"openvino"} if "openvino" in formats else set())
    found = {}
    for name in sorted(names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def graph_size(path: str | os.PathLike) -> dict[str, Any]:
    """Weights in a graph (its initializers' elements) and its files' size on disk in MB (an OpenVINO
    graph's weights live in the .bin beside its .xml)."""
    path = Path(path)
    files = [path] + [p for p in (path.with_suffix(".bin"), Path(f"{path}.data")) if p.is_file()]
    size_mb = round(sum(f.stat().st_size for f in files) / 1e6, 1)
    params = None
    if path.suffix == ".onnx":
        # onnx: only in the export step (the plan reads this module at parse time)
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        params = int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))
    return {"params": params, "size_mb": size_mb}


def export_description(folder: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(folder) / "export.json").read_text())
