import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.data import InputError, download_beir, prepare_dataset, read_provenance, read_table
from fixtures import served_beir_zip, unused_local_url, write_beir

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture
def beir(tmp_path):
    return write_beir(tmp_path / "beir", docs_per_topic=5, queries_per_topic=3)


def test_prepare_writes_parquet_with_provenance(beir, tmp_path):
    report = prepare_dataset(str(beir), str(tmp_path / "out"), ["train", "test"])
    corpus = read_table(tmp_path / "out" / "corpus.parquet")
    assert list(corpus.columns) == ["doc_id", "title", "text"]
    assert len(corpus) == report["documents"] == 40
    qrels = read_table(tmp_path / "out" / "qrels-test.parquet")
    assert list(qrels.columns) == ["query_id", "doc_id", "relevance"]
    assert report["splits"]["test"]["judged_queries"] == qrels.query_id.nunique() > 0
    assert read_provenance(tmp_path / "out" / "queries.parquet")["source"] == str(beir.resolve())


def expect_error(beir, tmp_path, line, field, fragment):
    with pytest.raises(InputError) as err:
        prepare_dataset(str(beir), str(tmp_path / "out"), ["train", "test"])
    assert err.value.line == line
    assert err.value.field == field
    assert fragment in str(err.value)
    assert not (tmp_path / "out" / "corpus.parquet").exists(), "no artifact after a validation error"
    return str(err.value)


def test_malformed_json_names_file_and_line(beir, tmp_path):
    lines = (beir / "corpus.jsonl").read_text().splitlines()
    lines[6] = '{"_id": "broken", "text": '
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    message = expect_error(beir, tmp_path, 7, None, "malformed JSON")
    assert "corpus.jsonl, line 7" in message


def test_missing_text_field(beir, tmp_path):
    rows = [json.loads(x) for x in (beir / "queries.jsonl").read_text().splitlines()]
    del rows[2]["text"]
    write_jsonl(beir / "queries.jsonl", rows)
    message = expect_error(beir, tmp_path, 3, "text", "missing")
    assert "queries.jsonl" in message


def test_missing_id_field(beir, tmp_path):
    rows = [json.loads(x) for x in (beir / "corpus.jsonl").read_text().splitlines()]
    del rows[0]["_id"]
    write_jsonl(beir / "corpus.jsonl", rows)
    expect_error(beir, tmp_path, 1, "_id", "missing")


def test_duplicate_id(beir, tmp_path):
    rows = [json.loads(x) for x in (beir / "corpus.jsonl").read_text().splitlines()]
    rows[4]["_id"] = rows[1]["_id"]
    write_jsonl(beir / "corpus.jsonl", rows)
    expect_error(beir, tmp_path, 5, "_id", "first on line 2")


def test_unknown_ids_in_qrels(beir, tmp_path):
    path = beir / "qrels" / "train.tsv"
    path.write_text(path.read_text() + "q0\tnope\t1\n")
    line = len(path.read_text().splitlines())
    expect_error(beir, tmp_path, line, "corpus-id", "unknown document id 'nope'")
    path.write_text(path.read_text().replace("q0\tnope", "zz\td0"))
    expect_error(beir, tmp_path, line, "query-id", "unknown query id 'zz'")


def test_split_without_judged_queries(beir, tmp_path):
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t0\n")
    with pytest.raises(InputError, match="no judged"):
        prepare_dataset(str(beir), str(tmp_path / "out"), ["train", "test"])


def test_empty_texts_are_counted_and_kept_or_dropped(beir, tmp_path):
    rows = [json.loads(x) for x in (beir / "corpus.jsonl").read_text().splitlines()]
    rows[3]["text"], rows[3]["title"] = "", ""
    write_jsonl(beir / "corpus.jsonl", rows)
    kept = prepare_dataset(str(beir), str(tmp_path / "kept"), ["train", "test"])
    assert kept["empty_documents"] == 1 and kept["documents"] == 40
    dropped = prepare_dataset(str(beir), str(tmp_path / "dropped"), ["train", "test"], drop_empty_texts=True)
    assert dropped["empty_documents"] == 1 and dropped["documents"] == 39
    corpus = read_table(tmp_path / "dropped" / "corpus.parquet")
    assert rows[3]["_id"] not in set(corpus.doc_id)
    qrels = read_table(tmp_path / "dropped" / "qrels-train.parquet")
    assert rows[3]["_id"] not in set(qrels.doc_id)


REQUIRED = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]


@pytest.fixture
def served_zip(beir, tmp_path):
    """The fixture's BEIR folder as a BEIR zip, served over HTTP on the loopback interface."""
    with served_beir_zip(beir, tmp_path / "site") as download:
        yield SimpleNamespace(**download)


def test_download_fetches_checks_and_unpacks_a_beir_zip(served_zip, beir, tmp_path):
    out = download_beir(str(tmp_path / "cache/tiny"), served_zip.url, served_zip.sha256, REQUIRED)
    for name in REQUIRED:
        assert (out / name).read_bytes() == (beir / name).read_bytes(), name
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"], "no temporary file or folder is left"


def test_download_with_another_checksum_is_refused_naming_the_file_and_extracts_nothing(served_zip, tmp_path):
    wrong = "0" * 64
    with pytest.raises(InputError) as error:
        download_beir(str(tmp_path / "cache/tiny"), served_zip.url, wrong, REQUIRED)
    message = str(error.value)
    assert message.startswith(served_zip.url) and served_zip.sha256 in message and wrong in message
    assert "download.sha256" in message, "it says which setting holds the expected checksum"
    assert list((tmp_path / "cache").iterdir()) == [], "nothing extracted, no temporary file left"


def test_download_of_a_zip_without_a_required_file_names_it(served_zip, tmp_path):
    with pytest.raises(InputError, match="no qrels/dev.tsv under its top folder"):
        download_beir(str(tmp_path / "cache/tiny"), served_zip.url, served_zip.sha256, [*REQUIRED, "qrels/dev.tsv"])
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_from_an_unreachable_server_fails_at_once_with_the_url_and_the_way_out(tmp_path):
    url = unused_local_url()
    started = time.monotonic()
    with pytest.raises(InputError) as error:
        download_beir(str(tmp_path / "cache/scifact"), url, "0" * 64, REQUIRED, timeout_s=5)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert message.startswith(url) and "make run DATA=/path/to/beir" in message and "\n" not in message
    assert not (tmp_path / "cache/scifact").exists()


def test_the_default_download_is_beirs_scifact_named_after_its_zip():
    import yaml

    from pipeline.config import complete_section
    from pipeline.plan import download_name

    assert yaml.safe_load(open(ROOT / "config.yaml"))["data_dir"] is None, "the shipped config downloads"
    download = complete_section("download", {})
    assert download["url"].endswith("/BEIR/datasets/scifact.zip") and len(download["sha256"]) == 64
    assert download_name(download["url"]) == "scifact"
    assert download_name("http://127.0.0.1:8000/beir/tiny.zip?x=1") == "tiny"


def test_a_byte_order_mark_is_accepted(beir, tmp_path):
    """Many editors start UTF-8 files with a byte-order mark; it is not malformed JSON or a bad header."""
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (beir / name).write_bytes(b"\xef\xbb\xbf" + (beir / name).read_bytes())
    report = prepare_dataset(str(beir), str(tmp_path / "out"), ["train", "test"])
    assert report["documents"] == 40
    assert read_table(tmp_path / "out" / "corpus.parquet").doc_id.iloc[0] == "d0", "the mark is not in the first id"


def test_bytes_that_are_not_utf8_name_file_and_line(beir, tmp_path):
    lines = (beir / "corpus.jsonl").read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"study", b"st\xe9dy", 1) if b"study" in lines[4] else lines[4][:-2] + b'\xe9"}'
    (beir / "corpus.jsonl").write_bytes(b"\n".join(lines))
    message = expect_error(beir, tmp_path, 5, None, "not valid UTF-8 (byte 0xe9")
    assert "corpus.jsonl" in message and "save the file as UTF-8" in message
    (beir / "corpus.jsonl").write_bytes(b"\n".join(lines[:4] + lines[5:]))
    qrels = (beir / "qrels/test.tsv").read_bytes().split(b"\n")
    qrels[2] = qrels[2] + b"\xff"
    (beir / "qrels/test.tsv").write_bytes(b"\n".join(qrels))
    assert "test.tsv" in expect_error(beir, tmp_path, 3, None, "not valid UTF-8 (byte 0xff")


def test_slices_and_id_subsets_of_a_table_are_read_row_group_by_row_group(tmp_path, monkeypatch):
    """An encode shard reads its rows, a scorer its candidates' rows, across row-group boundaries, as the
    whole table would give them."""
    import pipeline.data as data
    from pipeline.embeddings import embeddings_table, read_embeddings

    monkeypatch.setattr(data, "ROW_GROUP_ROWS", 4)
    frame = pd.DataFrame({"doc_id": [f"d{i}" for i in range(11)], "text": [f"text {i}" for i in range(11)]})
    data.write_table(frame, tmp_path / "corpus.parquet", {})
    assert pq.ParquetFile(tmp_path / "corpus.parquet").metadata.num_row_groups == 3
    assert data.count_rows(tmp_path / "corpus.parquet") == 11
    for start, stop in [(0, 11), (3, 9), (4, 8), (10, 11), (5, 5)]:
        pd.testing.assert_frame_equal(data.read_rows(tmp_path / "corpus.parquet", start, stop),
                                      frame.iloc[start:stop].reset_index(drop=True))
    assert data.read_rows_of(tmp_path / "corpus.parquet", {"d9", "d1", "d5", "nope"}).column("doc_id").to_pylist() \
        == ["d1", "d5", "d9"]
    vectors = np.arange(22, dtype=np.float32).reshape(11, 2)
    data.write_table(embeddings_table(frame["doc_id"].tolist(), vectors), tmp_path / "emb.parquet", {})
    ids, kept = read_embeddings([str(tmp_path / "emb.parquet")], doc_ids=["d7", "d2"])
    assert ids == ["d2", "d7"] and np.array_equal(kept, vectors[[2, 7]])
