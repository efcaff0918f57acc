import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import write_beir, write_tiny_bert  # noqa: E402


@pytest.fixture(autouse=True)
def float32_models(monkeypatch):
    """In-process tests assert float32 arithmetic (against sentence-transformers, ONNX, hand computations),
    so they run in float32 whatever the CPU; the bf16 path has its own tests (test_precision.py), and the
    workflow's jobs compute in the config's precision (auto)."""
    from pipeline import precision

    monkeypatch.setattr(precision, "_precision", "fp32")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", layers=3)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-ce", layers=2, cross_encoder=True)


@pytest.fixture(scope="session")
def tiny_beir(tmp_path_factory):
    return write_beir(tmp_path_factory.mktemp("data") / "beir")


# The end-to-end modules first: under pytest-xdist (make test) the long tests are shared out from the start
# and the short unit tests come last, so that one worker is not left alone with a long test at the end.
SLOW_MODULES = ("test_workflow.py", "test_slurm.py", "test_front_door.py", "test_new_method.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in SLOW_MODULES)  # stable: the order within stays
