"""Exported bi-encoders at search time: ONNX Runtime and OpenVINO run the graphs :mod:`pipeline.export`
writes, with the tokenizer, pooling and batching of the PyTorch model (:func:`pipeline.models.encode_batched`).

:func:`load_encoder` is the one entry for search-time encoding (encode, index, evaluate, score, hybrid): the
PyTorch :class:`~pipeline.models.BiEncoder` or, when the spec names a backend, its exported graph.
:func:`export_checked` is the workflow's export step: the export, each graph run against the PyTorch model.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data import passage_texts, read_rows
from .export import BACKEND_PACKAGES, FORMATS, export_model, export_onnx, graph_size
from .models import BiEncoder, ModelSpec, encode_batched, resolve_source, sentence_embeddings
from .precision import computing_in


def load_encoder(spec: ModelSpec, device: torch.device | str = "cpu") -> "BiEncoder | ExportedBiEncoder":
    """The bi-encoder ``spec`` names; an exported graph (``spec.backend`` onnx or openvino) encodes
    through its runtime and does not train."""
    return BiEncoder.load(spec, device) if spec.backend == "torch" else ExportedBiEncoder.load(spec, device)


class ExportedBiEncoder:
    """A bi-encoder exported to ONNX (run by ONNX Runtime) or OpenVINO: the same tokenizer, pooling,
    normalisation and batching as :class:`BiEncoder` (:func:`encode_batched`), for search only. The graph
    maps the tokenizer's inputs to ``last_hidden_state``, the layout ``optimum`` and sentence-transformers'
    ``backend="onnx"`` load (:mod:`pipeline.export` writes it)."""

    def __init__(self, run, input_names: list[str], tokenizer, spec: ModelSpec, dim: int, path: Path | None,
                 size: dict[str, Any] | None = None, device: torch.device | str = "cpu"):
        self.run, self.input_names, self.tokenizer, self.spec, self.dim, self.path = \
            run, input_names, tokenizer, spec, dim, path
        self.device = torch.device(device)  # where the runtime runs: it sets the batch size by default
        self._size = size  # a graph without a file (exported in memory for one job) knows its model's size

    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device | str = "cpu") -> "ExportedBiEncoder":
        # transformers (slow to import): only where a Hugging Face tokenizer is loaded
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(resolve_source(spec.source))
        if not spec.file_name:
            raise ValueError(f"model {spec.name!r}: the {spec.backend} backend needs file_name (the graph "
                             f"inside {folder})")
        path = folder / spec.file_name
        if not path.is_file():
            raise FileNotFoundError(f"model {spec.name!r}: {path} does not exist (export it first: "
                                    f"pipeline/export.py)")
        run, input_names = load_runtime(spec.backend, path, torch.device(device), torch.get_num_threads())
        return cls(run, input_names, AutoTokenizer.from_pretrained(folder), spec,
                   AutoConfig.from_pretrained(folder).hidden_size, path, device=device)

    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int | None = None,
               show_progress: bool = False, desc: str = "encode") -> np.ndarray:
        return encode_batched(self, texts, is_query, batch_size, show_progress, desc)

    def embed_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": np.zeros_like(input_ids)}
        hidden = torch.from_numpy(np.asarray(self.run({k: feeds[k] for k in self.input_names}), dtype=np.float32))
        return sentence_embeddings(hidden, torch.from_numpy(attention_mask), self.spec).numpy()

    def size(self) -> dict[str, Any]:
        """The graph's weights (initializers) and its files' size on disk (MB)."""
        return self._size if self._size is not None else graph_size(self.path)


def onnx_encoder(encoder, device="cpu"):
    """``encoder`` (a PyTorch :class:`~pipeline.models.BiEncoder`) as an ONNX fp32 graph run by ONNX Runtime:
    exported into a temporary folder, which the session no longer needs once it holds the graph."""
    with tempfile.TemporaryDirectory(prefix="onnx-") as folder:
        path = Path(folder) / FORMATS["onnx"][1]
        export_onnx(encoder, path)
        run, input_names = load_runtime("onnx", path, torch.device(device), torch.get_num_threads())
    spec = replace(encoder.spec, backend="onnx", file_name=None)
    return ExportedBiEncoder(run, input_names, encoder.tokenizer, spec, encoder.dim, None,
                             size={"params": encoder.size()["params"], "size_mb": None}, device=device)


def load_runtime(backend: str, path: Path, device, threads: int) -> tuple[Callable[[dict], Any], list[str]]:
    """A function from input arrays to ``last_hidden_state`` running the graph at ``path``, and the
    graph's input names. ONNX Runtime uses CUDA when the device is CUDA and its GPU build is installed."""
    packages, install = BACKEND_PACKAGES[backend]
    if importlib.util.find_spec(packages[0]) is None:
        raise ImportError(f"the {backend} backend needs the {packages[0]} package: {install}")
    if backend == "onnx":
        # onnxruntime or openvino (optional): only the runtime of the format asked for
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if getattr(device, "type", str(device)) == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(path), options, providers=providers)
        return (lambda feeds: session.run(["last_hidden_state"], feeds)[0]), [i.name for i in session.get_inputs()]
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    return (lambda feeds: compiled(feeds)[compiled.output(0)]), [i.any_name for i in compiled.inputs]


#: the corpus's first passages each graph encodes in the export job, against the PyTorch model in float32
CHECK_PASSAGES = 64


def export_checked(model: dict[str, Any], out_dir: str, formats: list[str], threads: int | None = None,
                   corpus_path: str | None = None, include_title: bool = True) -> dict[str, Any]:
    """The workflow's export step: :func:`pipeline.export.export_model`, each graph checked against the
    PyTorch model on the corpus's first :data:`CHECK_PASSAGES` passages (``export.json``'s ``check``)."""
    if corpus_path is None:
        return export_model(model, out_dir, formats, threads)
    texts = passage_texts(read_rows(corpus_path, 0, CHECK_PASSAGES), include_title)

    def check(encoder, folder: Path, fmts: list[str]) -> dict[str, Any]:
        return check_against_pytorch(encoder, folder, fmts, texts)

    return export_model(model, out_dir, formats, threads, check=check)


def check_against_pytorch(encoder, folder: Path, formats: list[str], texts: list[str]) -> dict[str, Any]:
    """Each graph in ``folder`` against ``encoder`` (PyTorch, computing in float32 whatever the run's
    precision: the function the graphs were exported from) on the passages ``texts``: the lowest cosine
    and the largest absolute difference of their embeddings. What a graph that computes the model's
    function gives (ONNX fp32: cosine 1 to within 1e-6) and what quantization costs (int8: ~0.99)."""
    with computing_in("fp32"):
        reference = encoder.encode(texts, is_query=False)
    check: dict[str, Any] = {"passages": len(texts), "against": "pytorch fp32"}
    for fmt in formats:
        backend, file_name = FORMATS[fmt]
        graph = ExportedBiEncoder.load(replace(encoder.spec, source=str(folder), backend=backend,
                                               file_name=file_name, layers=None), "cpu")
        embeddings = graph.encode(texts, is_query=False)
        cosines = (embeddings * reference).sum(1) / (np.linalg.norm(embeddings, axis=1)
                                                      * np.linalg.norm(reference, axis=1))
        check[fmt] = {"min_cosine": float(cosines.min()),
                      "max_abs_diff": float(np.abs(embeddings - reference).max())}
    return check
