"""Exports for serving (pipeline/export.py): ONNX fp32 and int8 graphs, loaded back through the encoder's
backend option, against the PyTorch model they came from."""

import json

import numpy as np
import pytest

from pipeline import export, runtime
from pipeline.models import BiEncoder, ModelSpec
from pipeline.runtime import ExportedBiEncoder, load_encoder

TEXTS = ["cardio12x heart artery blood pressure", "brain neuron cortex synapse memory cognition dopamine",
         "a", "tumor cancer metastasis chemotherapy oncogene malignant carcinoma biopsy " * 3]


def exported_spec(model: dict, folder, fmt: str) -> ModelSpec:
    backend, file_name = export.FORMATS[fmt]
    return ModelSpec.from_config(f"x.{fmt}", dict(model, source=str(folder), layers=None, backend=backend,
                                                  file_name=file_name))


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    """The fixture BERT cut to 2 of its 3 layers (as a student is), exported in both ONNX formats."""
    model = {"name": "student", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 2,
             "max_passage_length": 48, "max_query_length": 16}
    out = tmp_path_factory.mktemp("export") / "student"
    files = export.export_model(model, str(out), ["onnx", "onnx-int8"])
    return model, out, files


def test_both_formats_are_written_in_the_layout_sentence_transformers_loads(exported):
    import onnx

    model, out, files = exported
    assert files["onnx"]["file_name"] == "onnx/model.onnx" and files["onnx-int8"]["file_name"] == "onnx/model_qint8.onnx"
    graph = onnx.load(str(out / "onnx/model.onnx")).graph
    # optimum's ORTModelForFeatureExtraction (sentence-transformers' backend="onnx") feeds these, reads that
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]
    assert files["onnx-int8"]["size_mb"] < files["onnx"]["size_mb"] / 2, "int8 weights: a quarter of fp32's"
    described = json.loads((out / "export.json").read_text())
    assert set(described["formats"]) == {"onnx", "onnx-int8"} and "onnxruntime" in described["versions"]
    # the folder is also the PyTorch model, as the workflow encodes with it (2 layers, not the source's 3)
    from sentence_transformers import SentenceTransformer

    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    pytorch = BiEncoder.load(ModelSpec.from_config("student", model)).encode(TEXTS, is_query=False)
    st = SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    assert np.abs(st - pytorch).max() < 1e-5


def test_onnx_fp32_equals_pytorch_and_int8_stays_close(exported):
    model, out, _ = exported
    pytorch = BiEncoder.load(ModelSpec.from_config("student", model))
    for is_query in (False, True):
        reference = pytorch.encode(TEXTS, is_query=is_query)
        fp32 = load_encoder(exported_spec(model, out, "onnx"))
        assert isinstance(fp32, ExportedBiEncoder)
        got = fp32.encode(TEXTS, is_query=is_query, batch_size=2)  # padded batches of different widths
        assert got.shape == reference.shape and got.dtype == np.float32
        assert (got * reference).sum(1).min() >= 0.9999 and np.abs(got - reference).max() < 1e-4
        int8 = load_encoder(exported_spec(model, out, "onnx-int8")).encode(TEXTS, is_query=is_query)
        cosine = (int8 * reference).sum(1)
        assert cosine.min() > 0.8 and not np.allclose(int8, reference, atol=1e-4), "quantized: close, not equal"
    size = load_encoder(exported_spec(model, out, "onnx-int8")).size()
    assert size["size_mb"] < pytorch.size()["size_mb"] and size["params"] >= pytorch.size()["params"]


def test_a_failed_export_leaves_no_half_written_folder(tiny_bert, tmp_path, monkeypatch):
    def killed(fp32, int8):
        assert fp32.is_file(), "the fp32 graph was written (into the temporary folder)"
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "quantize_int8", killed)
    model = {"name": "m", "kind": "bi-encoder", "source": str(tiny_bert)}
    with pytest.raises(KeyboardInterrupt):
        export.export_model(model, str(tmp_path / "out"), ["onnx", "onnx-int8"])
    assert list(tmp_path.iterdir()) == [], "neither the folder nor its temporary sibling is left"


def test_bad_exports_are_refused_before_any_work(tiny_bert, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown formats \['tflite'\]; known: \['onnx', 'onnx-int8', 'openvino'\]"):
        export.export_model({"name": "m", "kind": "bi-encoder", "source": str(tiny_bert)}, str(tmp_path / "o"), ["tflite"])
    with pytest.raises(ValueError, match="only bi-encoders are exported"):
        export.export_model({"name": "b", "kind": "bm25"}, str(tmp_path / "o"), ["onnx"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ImportError, match=r"'openvino' needs openvino.*pip install openvino"):
        export.export_model({"name": "m", "kind": "bi-encoder", "source": str(tiny_bert)}, str(tmp_path / "o"),
                            ["onnx", "openvino"])
    with pytest.raises(FileNotFoundError, match="export it first"):
        load_encoder(exported_spec({"name": "m", "kind": "bi-encoder"}, tmp_path, "onnx"))
    assert not (tmp_path / "o").exists()


def test_the_export_job_checks_each_graph_against_pytorch_in_float32(tiny_bert, tiny_beir, tmp_path, monkeypatch):
    """export.json's ``check``: each format's lowest cosine and largest difference to the PyTorch model in
    float32 on the corpus's first passages, whatever precision the process runs in (here bf16 where the
    CPU has it), as computed independently from the exported graphs."""
    from pipeline import precision
    from pipeline.data import passage_texts, read_rows
    from tests.fixtures import prepare_with_candidates

    corpus = prepare_with_candidates(tiny_beir, tmp_path)["corpus"]
    model = {"name": "student", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48}
    monkeypatch.setattr(precision, "_precision", "bf16")
    runtime.export_checked(model, str(tmp_path / "out"), ["onnx", "onnx-int8"], corpus_path=corpus)
    assert precision._precision == "bf16", "the check leaves the process's precision as it found it"
    check = json.loads((tmp_path / "out/export.json").read_text())["check"]
    texts = passage_texts(read_rows(corpus, 0, runtime.CHECK_PASSAGES))
    assert check["passages"] == len(texts) > 2 and check["against"] == "pytorch fp32"
    monkeypatch.setattr(precision, "_precision", "fp32")
    reference = BiEncoder.load(ModelSpec.from_config("student", model)).encode(texts, is_query=False)
    for fmt in ("onnx", "onnx-int8"):
        got = load_encoder(exported_spec(model, tmp_path / "out", fmt)).encode(texts, is_query=False)
        cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        assert check[fmt]["min_cosine"] == pytest.approx(cosine.min(), abs=1e-6)
        assert check[fmt]["max_abs_diff"] == pytest.approx(np.abs(got - reference).max(), abs=1e-6)
    assert check["onnx"]["min_cosine"] > 0.99999 and check["onnx"]["max_abs_diff"] < 1e-4
    assert check["onnx-int8"]["max_abs_diff"] > check["onnx"]["max_abs_diff"], "quantized: close, not equal"


def test_the_corpus_encodes_through_onnx_as_through_pytorch(tiny_bert, tiny_beir, tmp_path):
    """``encode.backend: onnx``: the encode job exports the model in memory and writes the same embeddings."""
    from pipeline.data import read_provenance
    from pipeline.embeddings import encode_corpus_shard, read_embeddings
    from tests.fixtures import prepare_with_candidates

    corpus = prepare_with_candidates(tiny_beir, tmp_path)["corpus"]
    model = {"name": "m", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48}
    for backend in ("torch", "onnx"):
        encode_corpus_shard(corpus, model, str(tmp_path / f"{backend}.parquet"), shard=1, num_shards=2,
                            backend=backend)
    ids, pytorch = read_embeddings(tmp_path / "torch.parquet")
    onnx_ids, onnx = read_embeddings(tmp_path / "onnx.parquet")
    assert onnx_ids == ids and np.abs(onnx - pytorch).max() < 1e-5
    provenance = read_provenance(tmp_path / "onnx.parquet")
    assert provenance["backend"] == "onnx" and provenance["export_s"] > 0
    assert provenance["params"] == read_provenance(tmp_path / "torch.parquet")["params"]
    assert read_provenance(tmp_path / "torch.parquet")["backend"] == "torch"


def test_openvino_exports_and_encodes_as_pytorch_where_installed(tiny_bert, tmp_path):
    """OpenVINO is optional (not in requirements.txt: CI skips this); where `pip install openvino` was run,
    the format exports and encodes like the others."""
    pytest.importorskip("openvino")
    model = {"name": "m", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 2, "max_passage_length": 48}
    files = export.export_model(model, str(tmp_path / "out"), ["openvino"])
    assert files["openvino"]["file_name"] == "openvino/openvino_model.xml"
    assert not (tmp_path / "out/onnx/model.onnx").exists(), "the intermediate fp32 graph is not kept unasked"
    reference = BiEncoder.load(ModelSpec.from_config("m", model)).encode(TEXTS, is_query=False)
    got = load_encoder(exported_spec(model, tmp_path / "out", "openvino")).encode(TEXTS, is_query=False)
    assert np.abs(got - reference).max() < 1e-4
