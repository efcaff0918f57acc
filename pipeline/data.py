"""Data schemas and I/O: BEIR files in, validated Parquet artifacts out.

Every artifact the workflow writes goes through :func:`write_table`, which records provenance in the
Parquet file metadata and writes atomically (temporary file + rename), so a killed job never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

PROVENANCE_KEY = b"pipeline.provenance"
ROW_GROUP_ROWS = 65536

CORPUS_SCHEMA = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES_SCHEMA = pa.schema([("query_id", pa.string()), ("text", pa.string())])
QRELS_SCHEMA = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int32())])
CANDIDATES_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("miner", pa.string()),
    ]
)
SCORES_SCHEMA = pa.schema(
    [("query_id", pa.string()), ("doc_id", pa.string()), ("scorer", pa.string()), ("score", pa.float32())]
)


class InputError(ValueError):
    """Bad user input, reported with the file, line and field at fault."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = str(path), line, field


# --------------------------------------------------------------------------------------------------
# Atomic artifacts
# --------------------------------------------------------------------------------------------------


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp make private (0600/0700) entries; an artifact gets the permissions of any new file
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_table(data: pd.DataFrame | pa.Table, path: str | os.PathLike, provenance: dict[str, Any],
                schema: pa.Schema | None = None) -> None:
    """Write ``data`` as Parquet with ``provenance`` (JSON) in the file metadata, atomically."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, schema=schema, preserve_index=False)
    if schema is not None and isinstance(data, pa.Table):
        table = table.cast(schema)
    metadata = dict(table.schema.metadata or {})
    metadata.pop(b"pandas", None)
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        # row groups of 64k rows: a reader of a slice (an encode shard) or of some ids (a scorer) decodes
        # those row groups, not the whole table
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=columns).to_pandas()


def count_rows(path: str | os.PathLike) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def read_rows(path: str | os.PathLike, start: int, stop: int, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows ``[start, stop)`` of a Parquet table, read a batch at a time: memory holds the rows kept and
    one row group, not the table (an encode shard of a corpus of millions)."""
    parquet = pq.ParquetFile(path)
    kept, offset = [], 0
    for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS, columns=columns):
        end = offset + batch.num_rows
        if end > start and offset < stop:
            kept.append(batch.slice(max(0, start - offset), min(stop, end) - max(start, offset)))
        offset = end
        if offset >= stop:
            break
    schema = parquet.schema_arrow if columns is None else pa.schema([parquet.schema_arrow.field(c) for c in columns])
    return pa.Table.from_batches(kept, schema=schema).to_pandas()


def read_rows_of(path: str | os.PathLike, doc_ids, column: str = "doc_id") -> pa.Table:
    """The rows of a Parquet table whose ``column`` is one of ``doc_ids``, filtered row group by row group
    (memory: the rows kept and one row group)."""
    parquet = pq.ParquetFile(path)
    wanted = pa.array(sorted(set(doc_ids)), type=parquet.schema_arrow.field(column).type)
    parts = [batch.filter(pc.is_in(batch.column(column), value_set=wanted))
             for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS)]
    return pa.Table.from_batches(parts, schema=parquet.schema_arrow)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# BEIR input
# --------------------------------------------------------------------------------------------------


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, decoded line by line so that a byte that is not UTF-8 is
    reported with its line; a byte-order mark at the start (many editors write one) is dropped."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                yield line_no, raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise InputError(path, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of "
                                       "the line); save the file as UTF-8", line_no) from None


def _read_jsonl(path: Path, id_field: str, required: tuple[str, ...], optional: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise InputError(path, "file not found")
    records, seen = [], {}
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(path, f"malformed JSON ({err.msg} at column {err.colno})", line_no) from None
        if not isinstance(obj, dict):
            raise InputError(path, "expected a JSON object", line_no)
        for field in (id_field, *required):
            if field not in obj:
                raise InputError(path, "missing", line_no, field)
            if not isinstance(obj[field], (str, int)) or isinstance(obj[field], bool):
                raise InputError(path, f"expected a string, got {type(obj[field]).__name__}", line_no, field)
        record_id = str(obj[id_field])
        if not record_id.strip():
            raise InputError(path, "empty id", line_no, id_field)
        if record_id in seen:
            raise InputError(path, f"duplicate id {record_id!r} (first on line {seen[record_id]})", line_no, id_field)
        seen[record_id] = line_no
        record = {"id": record_id, "line": line_no}
        for field in (*required, *optional):
            value = obj.get(field, "")
            if value is None:
                value = ""
            if not isinstance(value, (str, int)):
                raise InputError(path, f"expected a string, got {type(value).__name__}", line_no, field)
            record[field] = str(value)
        records.append(record)
    if not records:
        raise InputError(path, "no records")
    return records


def qrels_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of a BEIR qrels TSV's rows: blank lines and the header
    (``query-id corpus-id score``) skipped."""
    reader = csv.reader((line for _, line in text_lines(path)), delimiter="\t")
    for line_no, fields in enumerate(reader, start=1):
        if not fields or not "".join(fields).strip():
            continue
        if line_no == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        yield line_no, fields


def count_judged_queries(path: Path) -> int:
    """How many queries a BEIR qrels TSV judges (relevance > 0), read without checking ids (the prepare
    step checks them); a row that does not parse counts as judged."""
    def relevant(fields: list[str]) -> bool:
        try:
            return float(fields[2]) > 0
        except (IndexError, ValueError):
            return True

    return len({fields[0].strip() for _, fields in qrels_lines(path) if relevant(fields)})


def read_qrels(path: Path, query_ids: set[str], doc_ids: set[str]) -> pd.DataFrame:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``), checking every id."""
    if not path.is_file():
        raise InputError(path, "file not found")
    rows = []
    for line_no, fields in qrels_lines(path):
        if len(fields) < 3:
            raise InputError(path, f"expected 3 tab-separated columns, got {len(fields)}", line_no)
        query_id, doc_id, score = (f.strip() for f in fields[:3])
        if query_id not in query_ids:
            raise InputError(path, f"unknown query id {query_id!r}", line_no, "query-id")
        if doc_id not in doc_ids:
            raise InputError(path, f"unknown document id {doc_id!r}", line_no, "corpus-id")
        try:
            relevance = int(float(score))
        except ValueError:
            raise InputError(path, f"score {score!r} is not a number", line_no, "score") from None
        rows.append((query_id, doc_id, relevance))
    frame = pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"])
    frame = frame.drop_duplicates(["query_id", "doc_id"], keep="last")
    if not (frame["relevance"] > 0).any():
        raise InputError(path, "the split has no judged (relevance > 0) queries")
    return frame


def prepare_dataset(data_dir: str, out_dir: str, splits: list[str], include_title: bool = True,
                    drop_empty_texts: bool = False) -> dict[str, Any]:
    """Validate a BEIR folder and write ``corpus``, ``queries`` and ``qrels-<split>`` Parquet files.

    Returns a report (counts, empty texts) that is also written as ``report.json``.
    """
    data_dir_path, out = Path(data_dir), Path(out_dir)
    corpus = _read_jsonl(data_dir_path / "corpus.jsonl", "_id", ("text",), ("title",))
    queries = _read_jsonl(data_dir_path / "queries.jsonl", "_id", ("text",), ())
    empty_docs = [r for r in corpus if not (r["text"].strip() or (include_title and r["title"].strip()))]
    empty_queries = [r for r in queries if not r["text"].strip()]
    for kind, empties in (("documents", empty_docs), ("queries", empty_queries)):
        if empties:
            log.warning("%d %s have an empty text (first: id %r, line %d); %s", len(empties), kind,
                        empties[0]["id"], empties[0]["line"], "dropped" if drop_empty_texts else "kept")
    if drop_empty_texts:
        empty_doc_ids = {r["id"] for r in empty_docs}
        empty_query_ids = {r["id"] for r in empty_queries}
        corpus = [r for r in corpus if r["id"] not in empty_doc_ids]
        queries = [r for r in queries if r["id"] not in empty_query_ids]
    doc_ids = {r["id"] for r in corpus}
    query_ids = {r["id"] for r in queries}
    qrels = {}
    for split in splits:
        path = data_dir_path / "qrels" / f"{split}.tsv"
        if drop_empty_texts:
            frame = read_qrels(path, query_ids | {r["id"] for r in empty_queries}, doc_ids | {r["id"] for r in empty_docs})
            frame = frame[frame.query_id.isin(query_ids) & frame.doc_id.isin(doc_ids)]
        else:
            frame = read_qrels(path, query_ids, doc_ids)
        qrels[split] = frame

    provenance = {"source": str(data_dir_path.resolve()), "include_title": include_title,
                  "drop_empty_texts": drop_empty_texts}
    out.mkdir(parents=True, exist_ok=True)
    write_table(pd.DataFrame({"doc_id": [r["id"] for r in corpus], "title": [r["title"] for r in corpus],
                              "text": [r["text"] for r in corpus]}),
                out / "corpus.parquet", provenance, CORPUS_SCHEMA)
    write_table(pd.DataFrame({"query_id": [r["id"] for r in queries], "text": [r["text"] for r in queries]}),
                out / "queries.parquet", provenance, QUERIES_SCHEMA)
    for split, frame in qrels.items():
        write_table(frame, out / f"qrels-{split}.parquet", {**provenance, "split": split}, QRELS_SCHEMA)
    report = {
        "documents": len(corpus), "queries": len(queries),
        "empty_documents": len(empty_docs), "empty_queries": len(empty_queries),
        "splits": {s: {"judged_queries": int(f[f.relevance > 0].query_id.nunique()), "pairs": len(f)}
                   for s, f in qrels.items()},
        **provenance,
    }
    write_json(report, out / "report.json")
    return report


def passage_texts(corpus: pd.DataFrame, include_title: bool = True) -> list[str]:
    """The text a model sees for each document: ``title + " " + text`` as in BEIR/sentence-transformers."""
    if not include_title:
        return corpus["text"].tolist()
    return [f"{t} {x}".strip() if t else x for t, x in zip(corpus["title"], corpus["text"])]


def load_queries(path: str | os.PathLike) -> dict[str, str]:
    frame = read_table(path)
    return dict(zip(frame.query_id, frame.text))


def load_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for query_id, doc_id, relevance in read_table(path).itertuples(index=False):
        qrels.setdefault(query_id, {})[doc_id] = int(relevance)
    return qrels


# --------------------------------------------------------------------------------------------------
# The data of `data_dir: null`: a BEIR zip, downloaded
# --------------------------------------------------------------------------------------------------


def download_beir(out_dir: str, url: str, sha256: str, required: list[str], timeout_s: float = 20.0) -> Path:
    """Download the BEIR-layout zip at ``url`` into ``out_dir``: its bytes must have the ``sha256`` given
    (checked before anything is extracted), its one top folder's files land in ``out_dir`` (atomically:
    all or nothing), and each of the ``required`` files (relative to ``out_dir``) must be among them."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out.parent) as buffer:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    buffer.write(chunk)
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, refused connections
            reason = getattr(err, "reason", None) or err
            raise InputError(url, f"could not download it ({reason}); without network, run on a local BEIR "
                             "folder: `make run DATA=/path/to/beir` (or `--config data_dir=/path/to/beir`)") from None
        if digest.hexdigest() != sha256:
            raise InputError(url, f"the downloaded file's sha256 is {digest.hexdigest()}, not the expected {sha256} "
                             "(config download.sha256); nothing was extracted")
        buffer.seek(0)
        try:
            archive = zipfile.ZipFile(buffer)
        except zipfile.BadZipFile as err:
            raise InputError(url, f"not a zip file ({err})") from None
        with archive, atomic_path(out, directory=True) as tmp:
            for member in archive.infolist():
                parts = Path(member.filename).parts
                if member.is_dir() or len(parts) < 2 or ".." in parts or Path(member.filename).is_absolute():
                    continue  # the top folder itself, and nothing that would land outside it
                target = tmp.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            missing = [name for name in required if not (tmp / name).is_file()]
            if missing:
                raise InputError(url, f"the zip has no {', '.join(missing)} under its top folder (a BEIR folder "
                                 "holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv)")
    log.info("downloaded %s (sha256 %s) into %s", url, sha256, out)
    return out


def shard_bounds(n_items: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Contiguous, near-equal slices: shard ``k`` of ``n`` covers ``[start, stop)``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    base, extra = divmod(n_items, num_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)
