"""BM25 through ``bm25s``: first-stage retrieval (iteration-1 miner, reranking pools) and a pair scorer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .data import passage_texts


class BM25:
    """bm25s with English stop words and the Snowball stemmer (as in BEIR's BM25 baselines)."""

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], k1: float = 0.9, b: float = 0.4,
                 method: str = "lucene", stopwords: str = "en", stemmer: str | None = "english"):
        # bm25s and PyStemmer: only where BM25 runs
        import bm25s

        self.doc_ids = list(doc_ids)
        self._position = {d: i for i, d in enumerate(self.doc_ids)}
        self._stopwords = stopwords
        self._stemmer = None
        if stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(stemmer)
        self.retriever = bm25s.BM25(k1=k1, b=b, method=method)
        tokenized = self._tokenize(texts)
        self.retriever.index(tokenized, show_progress=False)
        self.settings = {"k1": k1, "b": b, "method": method, "stopwords": stopwords, "stemmer": stemmer}
        # the corpus statistics a passage outside the corpus (a synthetic training passage) is scored with
        self._vocab = tokenized.vocab
        self._document_frequency = np.zeros(len(tokenized.vocab), dtype=np.int64)
        for ids in tokenized.ids:
            self._document_frequency[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        self._average_length = float(np.mean([len(ids) for ids in tokenized.ids])) if tokenized.ids else 1.0

    @classmethod
    def from_corpus(cls, corpus: pd.DataFrame, include_title: bool = True, **settings) -> "BM25":
        return cls(corpus["doc_id"].tolist(), passage_texts(corpus, include_title), **settings)

    def _tokenize(self, texts: Sequence[str], return_ids: bool = True):
        # bm25s: only where BM25 runs
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self._stopwords, stemmer=self._stemmer, show_progress=False,
                              return_ids=return_ids)

    def search(self, queries: Sequence[str], k: int, threads: int | None = None) -> tuple[list[list[str]], list[list[float]]]:
        k = min(k, len(self.doc_ids))
        docs, scores = self.retriever.retrieve(self._tokenize(queries), k=k, show_progress=False,
                                               n_threads=0 if not threads or threads <= 1 else threads)
        ranked_ids, ranked_scores = [], []
        for row_docs, row_scores in zip(docs, scores):
            # bm25s fills rows with score-0 documents when fewer than k match: they are not retrieved.
            keep = row_scores > 0
            ranked_ids.append([self.doc_ids[i] for i in row_docs[keep]])
            ranked_scores.append(row_scores[keep].astype(float).tolist())
        return ranked_ids, ranked_scores

    def score_pairs(self, queries: dict[str, str], pairs: pd.DataFrame,
                    synthetic: Sequence[str | None] | None = None) -> np.ndarray:
        """BM25 score of every (query_id, doc_id) row of ``pairs``; a row with a ``synthetic`` text (a
        passage made for training, not in the corpus) is scored as if it were added to the corpus alone,
        with the corpus's document frequencies and average length (:meth:`score_text`)."""
        out = np.zeros(len(pairs), dtype=np.float32)
        synthetic = [None] * len(pairs) if synthetic is None else list(synthetic)
        doc_ids = pairs["doc_id"].to_numpy()
        for query_id, rows in pairs.groupby("query_id", sort=False).indices.items():
            query_tokens = self._tokenize([queries[query_id]], return_ids=False)[0]
            in_corpus = [r for r in rows if synthetic[r] is None]
            if in_corpus:
                all_scores = self.retriever.get_scores(query_tokens)
                out[in_corpus] = all_scores[[self._position[d] for d in doc_ids[in_corpus]]]
            for r in rows:
                if synthetic[r] is not None:
                    out[r] = self.score_text(query_tokens, synthetic[r])
        return out

    def score_text(self, query_tokens: Sequence[str], text: str) -> float:
        r"""Lucene's BM25 of a passage outside the corpus, with the corpus's statistics:

        .. math:: \sum_{t \in q} \ln\Big(1 + \frac{N - df_t + 0.5}{df_t + 0.5}\Big)
                  \frac{tf_{t,d}}{tf_{t,d} + k_1 (1 - b + b\,|d| / avgdl)}

        (``bm25s``' ``lucene`` method; equal to its score for a passage of the corpus)."""
        if self.settings["method"] != "lucene":
            raise ValueError(f"BM25 scores synthetic passages with the lucene method only (got {self.settings['method']!r})")
        tokens = self._tokenize([text], return_ids=False)[0]
        length = len(tokens)
        counts: dict[str, int] = {}
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
        k1, b, n = self.settings["k1"], self.settings["b"], len(self.doc_ids)
        score = 0.0
        for token in set(query_tokens):  # bm25s counts each query term once
            tf = counts.get(token, 0)
            if not tf:
                continue
            df = self._document_frequency[self._vocab[token]] if token in self._vocab else 0
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * length / self._average_length))
        return float(score)

