"""Config ``precision``: which dtype the models' matrix products run in, per device, and what a job records."""

import json

import numpy as np
import pytest
import torch

from pipeline import PRECISION_ENVVAR, PRECISIONS, precision
from pipeline.config import schema
from pipeline.__main__ import main
from pipeline.data import prepare_dataset, read_provenance, read_table
from pipeline.losses import StudentScores
from pipeline.models import BiEncoder, ModelSpec

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_only_where_the_device_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    precision.set_precision("auto")
    assert precision.autocast_dtype(CPU) == (torch.bfloat16 if native else None)
    # a GPU without bf16 keeps fp16 autocast, as training on it always did
    assert precision.autocast_dtype(CUDA) == (torch.bfloat16 if native else torch.float16)
    assert precision.autocast_dtype(MPS) is None
    assert precision.precision_used(CPU) == ("bf16" if native else "fp32")


def test_fp32_is_float32_everywhere_and_bf16_is_asked_for_explicitly(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    precision.set_precision("fp32")
    assert precision.autocast_dtype(CPU) is None and precision.autocast_dtype(CUDA) is None
    assert isinstance(precision.autocast(CPU), type(precision.autocast(CUDA)))  # both no-ops
    precision.set_precision("bf16")
    assert precision.autocast_dtype(CPU) == torch.bfloat16, "emulated on a CPU without it, but as asked"
    with pytest.raises(ValueError, match="does not compute bf16"):
        precision.autocast_dtype(CUDA)
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.set_precision("fp16")
    assert schema()["properties"]["precision"]["enum"] == list(PRECISIONS), "the config's values are the code's"


def test_bf16_embeddings_and_loss_stay_close_to_float32(tiny_bert):
    """The same batch through the same weights: bf16 autocast changes the products' rounding only."""
    model = BiEncoder.load(ModelSpec("t", source=str(tiny_bert)))
    queries = ["heart disease and blood pressure", "brain cells"]
    passages = [f"passage {i} about the heart, the brain and the lungs of patients " * (i + 1) for i in range(4)]
    out = {}
    for name in ("fp32", "bf16"):
        precision.set_precision(name)
        model.zero_grad()
        scores = StudentScores(model.embed(queries, is_query=True), model.embed(passages, is_query=False), 20.0)
        loss = torch.nn.functional.cross_entropy(scores.group_scores, torch.zeros(2, dtype=torch.long))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (scores.query_embeddings.detach(), float(loss.detach()), grads)
    (q32, loss32, g32), (q16, loss16, g16) = out["fp32"], out["bf16"]
    assert q16.dtype == torch.float32 and g16.dtype == torch.float32, "embeddings and gradients stay float32"
    assert not torch.equal(q16, q32), "the products did run in bf16"
    assert torch.nn.functional.cosine_similarity(q16, q32).min() > 0.999
    assert loss16 == pytest.approx(loss32, rel=0.02, abs=0.02)
    assert torch.isfinite(g16).all() and torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.95


def test_the_step_flag_sets_the_precision_and_the_encode_job_records_it(tiny_beir, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.delenv(PRECISION_ENVVAR, raising=False)  # main sets it; restored after the test
    prepare_dataset(str(tiny_beir), str(tmp_path / "data"), ["train", "test"])
    model = {"name": "t", "kind": "bi-encoder", "source": str(tiny_bert)}
    embeddings = {}
    for name in ("fp32", "bf16"):
        out = tmp_path / f"{name}.parquet"
        args = {"corpus_path": str(tmp_path / "data/corpus.parquet"), "model": model, "out_path": str(out),
                "device": "cpu"}
        assert main(["encode", json.dumps(args), "--precision", name]) == 0
        assert read_provenance(out)["precision"] == name
        embeddings[name] = np.stack(read_table(out)["embedding"].to_numpy())
    cosine = (embeddings["fp32"] * embeddings["bf16"]).sum(1)  # L2-normalised rows
    assert not np.array_equal(embeddings["fp32"], embeddings["bf16"]) and cosine.min() > 0.999
