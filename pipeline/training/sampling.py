"""Training examples and their batches. Every batch order is a pure function of (seed, epoch), so a
resumed job skips exactly the steps it had done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd


@dataclass
class Example:
    query_id: str
    positives: list[str]
    negatives: list[str]


def build_examples(candidates: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> list[Example]:
    """One example per query that has a judged positive and at least one mined negative."""
    examples = []
    for query_id, group in candidates.sort_values(["query_id", "rank"]).groupby("query_id", sort=True):
        positives = sorted(d for d, rel in qrels.get(query_id, {}).items() if rel > 0)
        negatives = group["doc_id"].tolist()
        if positives and negatives:
            examples.append(Example(query_id, positives, negatives))
    return examples


def sample_groups(examples: Sequence[Example], group_size: int, batch_size: int, seed: int) -> list[list[tuple[str, list[str]]]]:
    """One epoch of batches: each entry is (query_id, [positive, negatives...]); deterministic in seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    rows = []
    for i in order:
        ex = examples[i]
        positive = ex.positives[rng.integers(len(ex.positives))]
        k = group_size - 1
        picks = rng.choice(len(ex.negatives), size=k, replace=len(ex.negatives) < k)
        rows.append((ex.query_id, [positive] + [ex.negatives[j] for j in picks]))
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
