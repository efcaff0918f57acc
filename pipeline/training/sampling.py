"""Training examples and their batches. Every batch order is a pure function of (seed, epoch), so a
resumed job skips exactly the steps it had done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd


@dataclass
class Example:
    query_id: str
    positives: list[str]
    negatives: list[str]
    #: passages made for this query (a ``text`` in the candidates: ADAM's dark examples), in every group
    synthetic: list[str] = field(default_factory=list)


def synthetic_rows(candidates: pd.DataFrame) -> pd.Series:
    """Which candidates are passages made for their query (a ``text`` of their own), not mined ones."""
    if "text" not in candidates.columns:
        return pd.Series(False, index=candidates.index)
    return candidates["text"].notna()


def build_examples(candidates: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> list[Example]:
    """One example per query that has a judged positive and at least one mined negative; candidates with
    a ``text`` of their own are the query's synthetic passages, not negatives."""
    examples = []
    frame = candidates.assign(_synthetic=synthetic_rows(candidates).to_numpy())
    for query_id, group in frame.sort_values(["query_id", "rank", "doc_id"]).groupby("query_id", sort=True):
        positives = sorted(d for d, rel in qrels.get(query_id, {}).items() if rel > 0)
        negatives = group.loc[~group["_synthetic"], "doc_id"].tolist()
        if positives and negatives:
            examples.append(Example(query_id, positives, negatives, group.loc[group["_synthetic"], "doc_id"].tolist()))
    return examples


def sample_groups(examples: Sequence[Example], group_size: int, batch_size: int, seed: int) -> list[list[tuple[str, list[str]]]]:
    """One epoch of batches: each entry is (query_id, [positive, synthetic..., negatives...]) of
    ``group_size`` passages: the query's synthetic passages all, the rest sampled negatives; deterministic
    in seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    rows = []
    for i in order:
        ex = examples[i]
        positive = ex.positives[rng.integers(len(ex.positives))]
        k = group_size - 1 - len(ex.synthetic)
        if k < 1:
            raise ValueError(f"query {ex.query_id!r}: group_size {group_size} leaves no room for a negative beside "
                             f"the positive and {len(ex.synthetic)} synthetic passages")
        picks = rng.choice(len(ex.negatives), size=k, replace=len(ex.negatives) < k)
        rows.append((ex.query_id, [positive] + ex.synthetic + [ex.negatives[j] for j in picks]))
    return [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]


def group_batches(examples: Sequence[Example], group_size: int, batch_size: int,
                  seed: int) -> Callable[[int], list[list[tuple[str, list[str]]]]]:
    """A phase's ``batches``: epoch -> :func:`sample_groups` with a seed of its own per epoch."""
    return lambda epoch: sample_groups(examples, group_size, batch_size, seed + 15485863 * epoch)


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length items (less padding), in a shuffled order of batches."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = sorted(order[start:start + batch_size * bucket], key=lambda i: lengths[i])
        batches.extend(chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
