"""Training labels without judgments: the teacher's top-ranked passages, for real queries or for
pseudo-queries made from the corpus.

With ``labels.source: teacher`` the run reads no relevance judgment except in evaluation:

- **queries**: those of ``queries.jsonl`` the test split does not judge (``labels.queries: unjudged``;
  only the test split's query ids are read), all of them (``all``: the test queries' texts are trained
  on, transductively, never their judgments), or none;
- **pseudo-queries** (``labels.pseudo_queries.count``): a seeded sample of passages, one pseudo-query
  each, in turn a passage's title or a sentence span cut out of it (the inverse cloze task, Lee et al.,
  2019, "Latent Retrieval for Weakly Supervised Open Domain Question Answering"). Training data only:
  their ids start with :data:`PSEUDO_PREFIX`, and the dev split never takes one;
- **positives**: the labelling teacher ranks the top ``depth`` passages of each query (dense search for a
  bi-encoder, BM25, or BM25's top ``rerank_depth`` reranked by a cross-encoder or fusion, as evaluation
  ranks them); its top ``positives`` passages are labelled relevant, or with ``min_probability`` every
  passage whose probability under the teacher's softmax over its top ``depth`` is at least that,

  .. math::
      P(d \\mid q) = \\frac{e^{a\\,t_{qd}}}{\\sum_{d' \\in \\mathrm{top}_k(q)} e^{a\\,t_{qd'}}},

  with ``a`` the teacher's scale (``train.similarity_scale`` for cosine teachers, 1 otherwise), and the
  top-1 always. The source passage of a pseudo-query is not assumed relevant: the teacher decides.

The labels are written as a qrels table (relevance 1), so that everything downstream (the dev split,
mining, which removes the positives from the negatives' window, scoring, training) reads them as it
reads judged training qrels.

Config example::

    labels:
      source: teacher
      queries: unjudged
      positives: 1
      pseudo_queries: {count: 1000, kinds: [title, span]}
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import QRELS_SCHEMA, QUERIES_SCHEMA, InputError, load_queries, read_provenance, read_table, write_json, write_table

log = logging.getLogger(__name__)

#: the ``labels.source`` values under which the teacher labels training queries (few judged queries, or none)
TEACHER_LABEL_SOURCES = ("teacher", "qrels+teacher")
#: the ids of pseudo-queries start with this (``pseudo:title:d12``, ``pseudo:span:d40``)
PSEUDO_PREFIX = "pseudo:"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def is_pseudo(query_id: str) -> bool:
    return query_id.startswith(PSEUDO_PREFIX)


def long_sentences(text: str, min_words: int) -> list[list[str]]:
    """The words of each sentence of ``text`` that has at least ``min_words`` of them."""
    return [words for sentence in SENTENCE_END.split(text) if len(words := sentence.split()) >= min_words]


def pseudo_query(kind: str, title: str, text: str, span_words: Sequence[int], rng: np.random.Generator) -> str | None:
    """One pseudo-query of ``kind`` from a passage, or None when the passage has none to give (no
    title; no sentence of at least ``span_words[0]`` words)."""
    if kind == "title":
        return title.strip() or None
    low, high = span_words
    sentences = long_sentences(text, low)
    if not sentences:
        return None
    words = sentences[rng.integers(len(sentences))]
    start = int(rng.integers(len(words) - high + 1)) if len(words) > high else 0
    return " ".join(words[start:start + high])


def corpus_sentences(texts: Sequence[str], span_words: Sequence[int], count: int, seed: int) -> list[str]:
    """Every sentence of ``texts`` of at least ``span_words[0]`` words, cut to its first ``span_words[1]``,
    a seeded sample of ``count`` when there are more, in corpus order (the warm-up's ``sentences``)."""
    low, high = span_words
    sentences = [" ".join(words[:high]) for text in texts for words in long_sentences(text, low)]
    if len(sentences) <= count:
        return sentences
    keep = np.sort(np.random.default_rng(seed).choice(len(sentences), size=count, replace=False))
    return [sentences[i] for i in keep]


def make_pseudo_queries(corpus: pd.DataFrame, count: int, kinds: Sequence[str], span_words: Sequence[int],
                        seed: int) -> pd.DataFrame:
    """``count`` pseudo-queries (at most one per passage), kinds taken in turn over a seeded sample of
    passages; a passage without a title gives a span instead. Columns ``query_id, text, doc_id, kind``."""
    rng = np.random.default_rng([seed, 3])
    rows = []
    for position in rng.permutation(len(corpus)):
        if len(rows) == count:
            break
        doc = corpus.iloc[int(position)]
        wanted = kinds[len(rows) % len(kinds)]
        for kind in dict.fromkeys([wanted, "span"]):
            text = pseudo_query(kind, doc["title"] or "", doc["text"], span_words, rng)
            if text:
                rows.append((f"{PSEUDO_PREFIX}{kind}:{doc['doc_id']}", text, doc["doc_id"], kind))
                break
    return pd.DataFrame(rows, columns=["query_id", "text", "doc_id", "kind"])


def add_pseudo_queries(queries_path: str, corpus_path: str, out_path: str, count: int, seed: int,
                       kinds: Sequence[str] = ("title", "span"), span_words: Sequence[int] = (4, 24)) -> dict[str, Any]:
    """The queries table with ``count`` pseudo-queries appended (their source passage and kind in the
    provenance only: training does not assume the source is relevant)."""
    queries = read_table(queries_path)
    clashing = [q for q in queries["query_id"] if is_pseudo(q)]
    if clashing:
        raise InputError(queries_path, f"query id {clashing[0]!r} starts with {PSEUDO_PREFIX!r}, which marks "
                         "pseudo-queries; rename it in queries.jsonl", field="_id")
    pseudo = make_pseudo_queries(read_table(corpus_path), count, list(kinds), list(span_words), seed)
    if len(pseudo) < count:
        log.warning("asked for %d pseudo-queries; the corpus gave %d", count, len(pseudo))
    table = pd.concat([queries[["query_id", "text"]], pseudo[["query_id", "text"]]], ignore_index=True)
    counts = {k: int(v) for k, v in pseudo["kind"].value_counts().sort_index().items()}
    write_table(table, out_path, {**read_provenance(queries_path), "pseudo_queries": counts, "seed": seed,
                                  "kinds": list(kinds), "span_words": list(span_words)}, QUERIES_SCHEMA)
    log.info("%d queries and %d pseudo-queries %s", len(queries), len(pseudo), counts)
    return counts


def queries_to_label(query_ids: Sequence[str], which: str, test_query_ids: set[str]) -> list[str]:
    """The real queries (``unjudged``: not judged on the test split; ``all``; ``none``) and every pseudo-query."""
    real = [q for q in query_ids if not is_pseudo(q)]
    chosen = {"unjudged": [q for q in real if q not in test_query_ids], "all": real, "none": []}[which]
    return sorted(chosen + [q for q in query_ids if is_pseudo(q)])


def positives_from_run(run: dict[str, dict[str, float]], positives: int = 1, min_probability: float | None = None,
                       scale: float = 1.0) -> pd.DataFrame:
    """Relevance-1 qrels from a teacher's run: per query its top ``positives`` passages, or with
    ``min_probability`` those whose softmax probability (scores times ``scale``) reaches it, the top-1
    always. Ties break by passage id, as the TREC runs do."""
    rows = []
    for query_id in sorted(run):
        ranked = sorted(run[query_id].items(), key=lambda kv: (-kv[1], kv[0]))
        if not ranked:
            continue
        if min_probability is None:
            chosen = ranked[:positives]
        else:
            logits = scale * np.array([s for _, s in ranked], dtype=np.float64)
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            chosen = [pair for pair, p in zip(ranked, probabilities) if p >= min_probability] or ranked[:1]
        rows += [(query_id, doc_id, 1) for doc_id, _ in chosen]
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"])


def graded_from_run(run: dict[str, dict[str, float]], depth: int) -> pd.DataFrame:
    """Qrels of each query's top ``depth`` passages graded ``depth`` (its top passage) down to 1: the dev
    labels of ``labels.dev_depth``. Ties break by passage id, as the TREC runs do."""
    rows = [(query_id, doc_id, depth - rank) for query_id in sorted(run)
            for rank, (doc_id, _) in enumerate(sorted(run[query_id].items(), key=lambda kv: (-kv[1], kv[0]))[:depth])]
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"])


def label_with_teacher(model: dict[str, Any], queries_path: str, corpus_path: str, out_path: str, report_path: str,
                       queries: str = "unjudged", test_qrels_path: str | None = None, positives: int = 1,
                       min_probability: float | None = None, scale: str | float = "auto",
                       similarity_scale: float = 20.0, depth: int = 100, rerank_depth: int = 100,
                       index_dir: str | None = None, embedding_shards: dict[str, Sequence[str]] | None = None,
                       models: dict[str, dict] | None = None, include_title: bool = True, device: str = "auto",
                       threads: int | None = None, provenance: dict[str, Any] | None = None,
                       graded_path: str | None = None, dev_depth: int = 1) -> dict[str, Any]:
    """Label the training queries with the teacher ``model``'s top-ranked passages; writes a qrels table
    (what the dev split and training read instead of judged training qrels), the graded top ``dev_depth``
    of every query (``graded_path``: what the dev split reads with ``labels.dev_depth`` > 1) and a report."""
    # torch: only when a teacher labels; pseudo-queries and sentences are made without it
    from .evaluation import retrieve
    from .models import ModelSpec, resolve_device, set_threads
    from .scorers import SCALES
    from .training.teachers import teacher_scale

    set_threads(threads)
    spec = ModelSpec.from_config(model["name"], model)
    texts = load_queries(queries_path)
    test_ids = set()
    if queries == "unjudged":
        if test_qrels_path is None:
            raise ValueError("labels.queries: unjudged needs the test split's qrels (test_qrels_path)")
        test_ids = set(read_table(test_qrels_path, columns=["query_id"])["query_id"])
    query_ids = queries_to_label(list(texts), queries, test_ids)
    if not query_ids:
        raise InputError(queries_path, f"no query to label: labels.queries is {queries!r} ({len(texts)} queries, "
                         f"{len(test_ids)} judged on the test split) and no pseudo-queries; set labels.queries: all "
                         "(transductive) or labels.pseudo_queries.count")
    factor = teacher_scale({"scale": SCALES[spec.kind](spec)}, scale, similarity_scale)
    began = time.perf_counter()
    run = retrieve(spec, query_ids, texts, corpus_path, depth, index_dir, models or {}, embedding_shards or {},
                   include_title, resolve_device(device), rerank_depth)
    seconds = time.perf_counter() - began
    labels = positives_from_run(run, positives, min_probability, factor)
    per_query = labels.groupby("query_id").size()
    pseudo = np.array([is_pseudo(q) for q in labels["query_id"]], dtype=bool)
    report = {"teacher": spec.name, "queries": queries, "labelled_queries": int(labels["query_id"].nunique()),
              "pseudo_queries": int(labels.loc[pseudo, "query_id"].nunique()), "positives": int(len(labels)),
              "positives_per_query": round(float(per_query.mean()), 3) if len(per_query) else 0.0,
              "rule": f"top {positives}" if min_probability is None else f"probability >= {min_probability} at scale {factor:g}",
              "test_queries_excluded": len(test_ids & set(texts)), "depth": depth, "seconds": round(seconds, 2)}
    write_table(labels, out_path, {**(provenance or {}), "labels": "teacher", "teacher": spec.to_dict(), **report},
                QRELS_SCHEMA)
    if graded_path:
        write_table(graded_from_run(run, dev_depth), graded_path,
                    {**(provenance or {}), "labels": "teacher graded", "teacher": spec.to_dict(), "dev_depth": dev_depth},
                    QRELS_SCHEMA)
    write_json(report, report_path)
    log.info("labelled %d queries (%d pseudo) with %s: %d positives", report["labelled_queries"],
             report["pseudo_queries"], spec.name, report["positives"])
    return report
