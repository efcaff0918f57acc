"""Does an export folder load in sentence-transformers' ONNX backend, and encode as the workflow does?

sentence-transformers' ``backend="onnx"`` needs ``optimum-onnx``, which pins ``transformers<4.58``: not the
workflow's environment (transformers 5). So this runs in a second virtual environment, on embeddings the
workflow's encoder wrote beforehand::

    .venv/bin/python benchmarks/export_loads_in_sentence_transformers.py write EXPORT_DIR   # the workflow's side
    python3 -m venv /tmp/st-onnx && /tmp/st-onnx/bin/pip install "sentence-transformers<6" \\
        "optimum-onnx[onnxruntime]==0.1.0" "torch==2.13.0+cpu"
    /tmp/st-onnx/bin/python benchmarks/export_loads_in_sentence_transformers.py check EXPORT_DIR

``check`` writes benchmarks/results/export_sentence_transformers.json: per graph, the class that loaded it
and the largest difference to the workflow's embeddings of the same format (int8 quantizes activations per
batch, so batches made differently differ a little) and the lowest cosine to PyTorch fp32.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FILES = {"onnx": "onnx/model.onnx", "onnx-int8": "onnx/model_qint8.onnx"}
DOCS = 64
SAVED = Path(tempfile.gettempdir()) / "export-loads-in-sentence-transformers"  # what `write` leaves for `check`


def texts() -> list[str]:
    with open(ROOT.parent / "shared/data/scifact/corpus.jsonl") as handle:
        return [json.loads(line)["text"] for line, _ in zip(handle, range(DOCS))]


def write(folder: str) -> None:
    sys.path.insert(0, str(ROOT))
    from pipeline.models import BiEncoder, ModelSpec
    from pipeline.runtime import load_encoder

    out = SAVED
    out.mkdir(exist_ok=True)
    np.save(out / "pytorch.npy", BiEncoder.load(ModelSpec("s", source=folder)).encode(texts(), is_query=False))
    for fmt, file_name in FILES.items():
        spec = ModelSpec("s", source=folder, backend="onnx", file_name=file_name)
        np.save(out / f"{fmt}.npy", load_encoder(spec).encode(texts(), is_query=False))


def check(folder: str) -> None:
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer

    saved = SAVED
    pytorch = np.load(saved / "pytorch.npy")
    result = {"export": folder, "docs": DOCS, "versions": {"sentence_transformers": sentence_transformers.__version__,
                                                            "transformers": transformers.__version__}}
    for fmt, file_name in FILES.items():
        model = SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": file_name}, device="cpu")
        embeddings = model.encode(texts(), batch_size=32)
        result[fmt] = {"file_name": file_name, "loaded_as": type(model[0].auto_model).__name__,
                       "max_abs_difference_to_workflow": float(np.abs(embeddings - np.load(saved / f"{fmt}.npy")).max()),
                       "lowest_cosine_to_pytorch_fp32": float((embeddings * pytorch).sum(1).min())}
    (ROOT / "benchmarks/results/export_sentence_transformers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
