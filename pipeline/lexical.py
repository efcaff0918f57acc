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
        import bm25s

        self.doc_ids = list(doc_ids)
        self._position = {d: i for i, d in enumerate(self.doc_ids)}
        self._stopwords = stopwords
        self._stemmer = None
        if stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(stemmer)
        self.retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self.retriever.index(self._tokenize(texts), show_progress=False)
        self.settings = {"k1": k1, "b": b, "method": method, "stopwords": stopwords, "stemmer": stemmer}

    @classmethod
    def from_corpus(cls, corpus: pd.DataFrame, include_title: bool = True, **settings) -> "BM25":
        return cls(corpus["doc_id"].tolist(), passage_texts(corpus, include_title), **settings)

    def _tokenize(self, texts: Sequence[str], return_ids: bool = True):
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

    def score_pairs(self, queries: dict[str, str], pairs: pd.DataFrame) -> np.ndarray:
        """BM25 score of every (query_id, doc_id) row of ``pairs``."""
        out = np.zeros(len(pairs), dtype=np.float32)
        for query_id, rows in pairs.groupby("query_id", sort=False).indices.items():
            all_scores = self.retriever.get_scores(self._tokenize([queries[query_id]], return_ids=False)[0])
            positions = [self._position[d] for d in pairs["doc_id"].to_numpy()[rows]]
            out[rows] = all_scores[positions]
        return out

