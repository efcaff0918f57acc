"""PyTorch fp32 against its exports (ONNX fp32, ONNX int8) on the same SciFact passages, threads, batch size
and max length: encode speed and how far each export's embeddings are from PyTorch's.

The model is exported by the workflow's own step (pipeline/export.py) and every variant encodes through
the workflow's encoder (the same tokenisation, length-sorted batches and pooling; only the backend
differs). Timed in interleaved rounds (PyTorch, ONNX fp32, ONNX int8, PyTorch, ...) so that machine noise
hits all; prints medians and ratios, and writes benchmarks/results/export_speed.json.

    .venv/bin/python benchmarks/export_speed.py [--source packaged:all-MiniLM-L6-v2 --layers 2] [--docs 512]
    # the default student's shape (MiniLM-L6's first 2 layers); --source a trained student's folder (then
    # --layers 0) for its own cosines
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.encode_speed import load_texts  # noqa: E402
from pipeline.export import FORMATS, export_model, versions  # noqa: E402
from pipeline.models import BiEncoder, ModelSpec  # noqa: E402
from pipeline.runtime import load_encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--source", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--layers", type=int, default=2, help="keep the first N layers (0: all)")
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--formats", nargs="+", default=["onnx", "onnx-int8"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts = load_texts(Path(args.data), args.docs)
    model = {"name": "model", "kind": "bi-encoder", "source": args.source, "layers": args.layers or None,
             "max_passage_length": args.max_length}
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        files = export_model(model, f"{folder}/export", args.formats)
        export_seconds = time.perf_counter() - began
        encoders = {"pytorch-fp32": BiEncoder.load(ModelSpec.from_config("model", model))}
        for fmt in args.formats:
            backend, file_name = FORMATS[fmt]
            spec = dict(model, source=f"{folder}/export", layers=None, backend=backend, file_name=file_name)
            encoders[fmt] = load_encoder(ModelSpec.from_config(fmt, spec))

        def encode(name):
            return encoders[name].encode(texts, is_query=False, batch_size=args.batch_size)

        reference = encode("pytorch-fp32")
        agreement = {}
        for fmt in args.formats:
            embeddings = encode(fmt)
            cosine = (embeddings * reference).sum(1)
            agreement[fmt] = {"lowest_cosine": float(cosine.min()), "median_cosine": float(np.median(cosine)),
                              "max_abs_difference": float(np.abs(embeddings - reference).max())}
        timings = {name: [] for name in encoders}
        for _ in range(args.rounds):
            for name in encoders:
                start = time.perf_counter()
                encode(name)
                timings[name].append(time.perf_counter() - start)
        sizes = {name: encoder.size() for name, encoder in encoders.items()}
    median = {name: statistics.median(values) for name, values in timings.items()}
    result = {
        "model": model, "docs": len(texts), "batch_size": args.batch_size, "max_length": args.max_length,
        "threads": args.threads, "rounds": args.rounds, "export_seconds": round(export_seconds, 2),
        "seconds": timings, "median_s": median,
        "docs_per_s": {name: len(texts) / value for name, value in median.items()},
        "speedup_over_pytorch_fp32": {name: median["pytorch-fp32"] / value for name, value in median.items()},
        "agreement_with_pytorch_fp32": agreement, "size": sizes,
        "files": {fmt: f["file_name"] for fmt, f in files.items()},
        "versions": versions(args.formats),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("docs_per_s", "speedup_over_pytorch_fp32",
                                              "agreement_with_pytorch_fp32")}, indent=2))


if __name__ == "__main__":
    main()
