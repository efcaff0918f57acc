"""Convert classic test collections to the BEIR layout the workflow reads, for the few-label benchmark
(benchmarks/collections.sh): MED (1,033 MEDLINE abstracts, 30 judged queries) and CACM (3,204 CACM
titles and abstracts, 52 of 64 queries judged), as distributed by the University of Glasgow's IR group.

The judged queries are split, seeded, into a labelled half (qrels/train.tsv: what a user with a few dozen
judgments has) and a test half (qrels/test.tsv); queries.jsonl holds every query, judged or not, so the
label-free preset trains on the texts of all but the test half. Every raw file is checked against its
SHA-256 before anything is written, whether it was downloaded or given with --raw.

    python benchmarks/collections_data.py med --out ../shared/data/med               # downloads
    python benchmarks/collections_data.py cacm --raw DIR --out ../shared/data/cacm   # DIR holds the raw files

Cranfield and CISI are left out on purpose: they are kept to check that results carry over.
"""

import argparse
import hashlib
import io
import json
import random
import re
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SPLIT_SEED = 13


@dataclass(frozen=True)
class Collection:
    url: str
    documents: str
    queries: str
    qrels: str
    sha256: dict[str, str]  # raw file name -> SHA-256 of its bytes
    title_field: str | None  # the SMART field that holds a document's title, if any
    text_fields: tuple[str, ...]


COLLECTIONS = {
    "med": Collection(
        url="http://ir.dcs.gla.ac.uk/resources/test_collections/medl/med.tar.gz",
        documents="MED.ALL", queries="MED.QRY", qrels="MED.REL",
        sha256={"MED.ALL": "fdcd99cf7fc6c45707c9b5bef7daac739f06c4063ebcad9b5cccf2f939fa4236",
                "MED.QRY": "41fbc9d7a0ac8620d53e09b3429d2695cecc63d4bf7e15e55bbcee0785a1798c",
                "MED.REL": "aef5ac922c08d5711ffd525985e03cda4272694e35f646deab90177f329ff575"},
        title_field=None, text_fields=("W",)),
    "cacm": Collection(
        url="http://ir.dcs.gla.ac.uk/resources/test_collections/cacm/cacm.tar.gz",
        documents="cacm.all", queries="query.text", qrels="qrels.text",
        sha256={"cacm.all": "10b28e355d4bd65916698da9bbc91e78f116de204b9b42bce0ce4e8b39babe42",
                "query.text": "07332cfcadad2570ce65146a701b4d93a91583c6f945fb32fad1a141b62dc0e4",
                "qrels.text": "a027893039f4faf40b90a64a27322e85e1b0cc66f9634bb754a93ac4f81a75ca"},
        title_field="T", text_fields=("W",)),
}


class ConversionError(Exception):
    pass


def parse_smart(text: str, path: str) -> dict[str, dict[str, str]]:
    """Records of a SMART-format file: `.I <id>` opens a record, `.<letter>` opens a field, other lines
    continue the open field. Returns {id: {field letter: text}}."""
    records: dict[str, dict[str, str]] = {}
    record: dict[str, list[str]] | None = None
    field = None
    for number, line in enumerate(text.splitlines(), start=1):
        marker = re.match(r"^\.([A-Z])(?:\s+(\S+))?\s*$", line)
        if marker and marker.group(1) == "I":
            doc_id = marker.group(2)
            if doc_id is None:
                raise ConversionError(f"{path}:{number}: `.I` without an id")
            if doc_id in records:
                raise ConversionError(f"{path}:{number}: id {doc_id} appears twice")
            record = {}
            records[doc_id] = record  # type: ignore[assignment]
            field = None
        elif marker:
            if record is None:
                raise ConversionError(f"{path}:{number}: field .{marker.group(1)} before any `.I` line")
            field = marker.group(1)
            record.setdefault(field, [])
        elif record is not None and field is not None:
            record[field].append(line.strip())
    return {i: {f: " ".join(w for w in lines if w) for f, lines in r.items()} for i, r in records.items()}


def parse_qrels(text: str, path: str) -> dict[str, set[str]]:
    """MED.REL is TREC-like (`qid 0 docid 1`), CACM's qrels.text `qid docid 0 0`: the query is the first
    column, the document the only other column that is not 0 (or the second of two)."""
    judged: dict[str, set[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) == 4 and columns[1] == "0":
            query, doc = columns[0], columns[2]
        elif len(columns) >= 2:
            query, doc = columns[0], columns[1]
        else:
            raise ConversionError(f"{path}:{number}: expected `query document ...`, got {line!r}")
        judged.setdefault(str(int(query)), set()).add(str(int(doc)))
    return judged


def read_raw(collection: Collection, raw: Path | None) -> dict[str, bytes]:
    names = (collection.documents, collection.queries, collection.qrels)
    if raw is None:
        print(f"downloading {collection.url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(collection.url, timeout=30) as response:
                archive = response.read()
        except OSError as error:
            raise ConversionError(f"{collection.url}: could not download it ({error}); fetch the files "
                                  f"elsewhere and pass their folder with --raw") from error
        files = {}
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if Path(member.name).name in names and member.isfile():
                    files[Path(member.name).name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    else:
        files = {name: (raw / name).read_bytes() for name in names if (raw / name).is_file()}
    for name in names:
        if name not in files:
            raise ConversionError(f"{raw or collection.url}: no file {name}")
        digest = hashlib.sha256(files[name]).hexdigest()
        if digest != collection.sha256[name]:
            raise ConversionError(f"{name}: SHA-256 {digest}, expected {collection.sha256[name]}: "
                                  f"not the file this benchmark was measured on")
    return files


def convert(name: str, raw: Path | None, out: Path, seed: int = SPLIT_SEED) -> dict:
    collection = COLLECTIONS[name]
    files = read_raw(collection, raw)
    text = {n: b.decode("latin-1") for n, b in files.items()}
    documents = parse_smart(text[collection.documents], collection.documents)
    queries = parse_smart(text[collection.queries], collection.queries)
    judged = parse_qrels(text[collection.qrels], collection.qrels)
    # query.text of CACM ends with an empty `.I 0` record: a query without text is no query
    queries = {i: fields for i, fields in queries.items() if fields.get("W", "").strip()}
    doc_ids = {str(int(i)) for i in documents}
    query_ids = {str(int(i)) for i in queries}
    for query, docs in judged.items():
        if query not in query_ids:
            raise ConversionError(f"{collection.qrels}: query {query} is not in {collection.queries}")
        unknown = docs - doc_ids
        if unknown:
            raise ConversionError(f"{collection.qrels}: query {query} judges documents {sorted(unknown)[:5]} "
                                  f"not in {collection.documents}")
    ordered = sorted(judged, key=int)
    random.Random(seed).shuffle(ordered)
    half = len(ordered) // 2
    split_of = {q: "train" for q in ordered[:half]} | {q: "test" for q in ordered[half:]}

    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with open(out / "corpus.jsonl", "w") as corpus:
        for doc_id, fields in sorted(documents.items(), key=lambda kv: int(kv[0])):
            body = " ".join(fields.get(f, "") for f in collection.text_fields).strip()
            title = fields.get(collection.title_field, "") if collection.title_field else ""
            corpus.write(json.dumps({"_id": str(int(doc_id)), "title": title, "text": body}) + "\n")
    with open(out / "queries.jsonl", "w") as out_queries:
        for query_id, fields in sorted(queries.items(), key=lambda kv: int(kv[0])):
            out_queries.write(json.dumps({"_id": str(int(query_id)), "text": fields.get("W", "")}) + "\n")
    for split in ("train", "test"):
        with open(out / "qrels" / f"{split}.tsv", "w") as qrels:
            qrels.write("query-id\tcorpus-id\tscore\n")
            for query in sorted((q for q in judged if split_of[q] == split), key=int):
                for doc in sorted(judged[query], key=int):
                    qrels.write(f"{query}\t{doc}\t1\n")
    summary = {"collection": name, "source": collection.url, "sha256": collection.sha256, "split_seed": seed,
               "documents": len(documents), "queries": len(queries), "judged_queries": len(judged),
               "train_queries": half, "test_queries": len(ordered) - half,
               "judgments": sum(len(d) for d in judged.values())}
    (out / "README.md").write_text(
        f"# {name.upper()} in the BEIR layout\n\nMade by benchmarks/collections_data.py from {collection.url} "
        f"(files checked by SHA-256); the judged queries split in halves with seed {seed}.\n\n```json\n"
        f"{json.dumps(summary, indent=2)}\n```\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", choices=sorted(COLLECTIONS))
    parser.add_argument("--out", type=Path, required=True, help="the BEIR folder to write")
    parser.add_argument("--raw", type=Path, help="a folder with the raw files (otherwise downloaded)")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="the split of judged queries")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(convert(args.collection, args.raw, args.out, args.seed), indent=2))
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
