"""Corpus embeddings: sharded encoding to Parquet (``doc_id``, fixed-size float32 list) and reading back."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .data import count_rows, passage_texts, read_provenance, read_rows, read_rows_of, shard_bounds, write_table

log = logging.getLogger(__name__)


def embeddings_table(ids: Sequence[str], embeddings: np.ndarray) -> pa.Table:
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    values = pa.array(embeddings.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1])
    return pa.table({"doc_id": pa.array(list(ids), type=pa.string()), "embedding": column})


def read_embeddings(paths: str | os.PathLike | Sequence[str | os.PathLike],
                    doc_ids: Collection[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Ids and a (n, dim) float32 matrix from one or several embedding shards, in shard order; only the
    rows of ``doc_ids`` when given (a scorer's candidates: memory follows them, not the corpus)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    ids: list[str] = []
    blocks = []
    for path in paths:
        table = pq.read_table(path) if doc_ids is None else read_rows_of(path, doc_ids)
        column = table.column("embedding").combine_chunks()
        dim = column.type.list_size
        blocks.append(column.values.to_numpy(zero_copy_only=False).reshape(-1, dim))
        ids.extend(table.column("doc_id").to_pylist())
    return ids, np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)


def encode_corpus_shard(corpus_path: str, model: dict[str, Any], out_path: str, shard: int = 0,
                        num_shards: int = 1, include_title: bool = True, device: str = "auto",
                        threads: int | None = None, batch_size: int | None = None,
                        backend: str = "torch") -> dict[str, Any]:
    """Encode shard ``shard`` of ``num_shards`` of the corpus with a bi-encoder and write it as Parquet.
    ``backend="onnx"``: a PyTorch model is exported to ONNX fp32 first and encodes through ONNX Runtime
    (a model exported already, ``student-it2.onnx``, runs its own backend either way)."""
    # torch: only to encode; the index and the scorers read embeddings without it
    from .models import BiEncoder, ModelSpec, resolve_device, set_threads
    from .precision import precision_used
    from .runtime import load_encoder, onnx_encoder

    set_threads(threads)
    spec = ModelSpec.from_config(model["name"], model)
    if spec.kind != "bi-encoder":
        raise ValueError(f"model {spec.name!r} is a {spec.kind}; only bi-encoders encode a corpus")
    start, stop = shard_bounds(count_rows(corpus_path), shard, num_shards)
    corpus = read_rows(corpus_path, start, stop)  # this shard's rows only: memory follows the shard
    texts = passage_texts(corpus, include_title)
    device_ = resolve_device(device)
    exported_s = None
    if backend == "onnx" and spec.backend == "torch":
        began = time.perf_counter()
        encoder = onnx_encoder(BiEncoder.load(spec, "cpu"), device_)
        exported_s = round(time.perf_counter() - began, 2)
    else:
        encoder = load_encoder(spec, device_)
    began = time.perf_counter()
    embeddings = encoder.encode(texts, is_query=False, batch_size=batch_size, show_progress=True,
                                desc=f"encode {spec.name} shard {shard}")
    seconds = time.perf_counter() - began
    provenance = {
        "model": spec.to_dict(), "shard": shard, "num_shards": num_shards, "rows": [start, stop],
        "include_title": include_title, "device": str(device_), "threads": threads,
        # an exported graph (ONNX, OpenVINO) runs as it was exported; PyTorch as this process's precision says
        "precision": precision_used(device_) if encoder.spec.backend == "torch" else None,
        "backend": encoder.spec.backend, "export_s": exported_s,
        "dim": int(embeddings.shape[1]), "seconds": seconds,
        "docs_per_s": len(texts) / seconds if seconds > 0 else None,
        **encoder.size(),  # params, size_mb
    }
    write_table(embeddings_table(corpus["doc_id"].tolist(), embeddings), out_path, provenance)
    log.info("encoded %d documents in %.1f s (%.1f docs/s)", len(texts), seconds, provenance["docs_per_s"] or 0)
    return provenance


def encoding_stats(shard_paths: Sequence[str]) -> dict[str, Any]:
    """Throughput over all shards (documents / summed encode seconds) and the model's size (parameters;
    MB on disk, absent from shards encoded before it was recorded)."""
    provenances = [read_provenance(p) for p in shard_paths]
    docs = sum(p["rows"][1] - p["rows"][0] for p in provenances)
    seconds = sum(p["seconds"] for p in provenances)
    return {"encode_docs_per_s": docs / seconds if seconds else None, "params": provenances[0]["params"],
            "size_mb": provenances[0].get("size_mb"), "encode_seconds": seconds}


def shard_paths(folder: str | os.PathLike, num_shards: int) -> list[str]:
    return [str(Path(folder) / f"shard-{k}-of-{num_shards}.parquet") for k in range(num_shards)]
