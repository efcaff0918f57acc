"""Rankings of a query's candidates compared and fused: ranks, Spearman's footrule, rank-biased overlap,
the rank of the best judged positive, reciprocal rank fusion of candidate lists. Shared by the methods
(MTA4DPR selects assistants and fuses negatives with them); torch is imported where tensors are ranked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import torch


def ranks(scores: "torch.Tensor") -> "torch.Tensor":
    """``[B, G]``: each candidate's rank (1 = best) by descending score; equal scores keep group order."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    order = torch.sort(scores.float(), dim=-1, descending=True, stable=True).indices
    ranked = torch.empty_like(order)
    ranked.scatter_(-1, order, torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order))
    return ranked


def footrule(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """``[B]``: Spearman's footrule between the rankings of two score matrices, ``Σ_j |r^a_j - r^b_j|``."""
    return (ranks(a) - ranks(b)).abs().sum(-1).float()


def rank_biased_overlap(a: "torch.Tensor", b: "torch.Tensor", persistence: float) -> "torch.Tensor":
    """``[B]``: extrapolated rank-biased overlap (Webber et al., 2010, eq. 32) of the rankings of two
    score matrices over the same G candidates: 1 for equal rankings."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    p, g = persistence, a.shape[-1]
    top_a = torch.sort(a.float(), dim=-1, descending=True, stable=True).indices
    rank_b = ranks(b)
    depth = torch.arange(1, g + 1, device=a.device)
    # X_d = |top_d(a) ∩ top_d(b)|: a's d-th item is in b's top d' for every d' ≥ its rank in b
    in_b = torch.gather(rank_b, -1, top_a)  # [B, G]: b's rank of a's items, in a's order
    overlap = torch.stack([((in_b[:, :d] <= d).sum(-1)) for d in range(1, g + 1)], dim=-1).float()
    weights = p ** depth.float()
    return overlap[:, -1] / g * p ** g + (1 - p) / p * (overlap / depth * weights).sum(-1)


def positive_ranks(candidates: pd.DataFrame, scores: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> dict[str, int]:
    """Per query: the rank (1 = first) a scorer gives its best judged positive among the positives and the
    query's mined candidates; ties go against the positive."""
    lookup = dict(zip(zip(scores["query_id"], scores["doc_id"]), scores["score"]))
    out = {}
    for query_id, group in candidates.groupby("query_id", sort=True):
        positives = [d for d, rel in qrels.get(query_id, {}).items() if rel > 0]
        if not positives:
            continue
        missing = [d for d in positives + list(group["doc_id"]) if (query_id, d) not in lookup]
        if missing:
            raise KeyError(f"query {query_id!r}: no score for passage {missing[0]!r}")
        best = max(lookup[(query_id, d)] for d in positives)
        out[query_id] = 1 + sum(lookup[(query_id, d)] >= best for d in group["doc_id"] if d not in positives)
    return out


def rrf_negatives(candidates: pd.DataFrame, scores: dict[str, pd.DataFrame], keep: int | None,
                  k: float = 60.0) -> pd.DataFrame:
    """Each query's candidates reranked by reciprocal rank fusion of ``scores`` (every scorer ranks the
    query's candidates; ``Σ 1/(k + rank)``; equal fused scores keep the mined order), the best ``keep``
    kept and ``rank`` renumbered from 0; ``keep=None`` returns the candidates as they are."""
    if keep is None:
        return candidates.reset_index(drop=True)
    frame = candidates.sort_values(["query_id", "rank", "doc_id"]).reset_index(drop=True)
    fused = pd.Series(0.0, index=frame.index)
    for name, table in scores.items():
        lookup = dict(zip(zip(table["query_id"], table["doc_id"]), table["score"]))
        values = pd.Series([lookup.get(pair) for pair in zip(frame["query_id"], frame["doc_id"])], index=frame.index)
        if values.isna().any():
            q, d = frame.loc[values.isna().idxmax(), ["query_id", "doc_id"]]
            raise KeyError(f"scorer {name!r} has no score for query {q!r}, passage {d!r}")
        rank = values.groupby(frame["query_id"]).rank(ascending=False, method="first")
        fused += 1.0 / (k + rank)
    frame = frame.assign(_fused=fused, _mined=frame["rank"])
    frame = frame.sort_values(["query_id", "_fused", "_mined"], ascending=[True, False, True])
    frame = frame.groupby("query_id", sort=True).head(keep)
    frame["rank"] = frame.groupby("query_id").cumcount().astype("int32")
    return frame.drop(columns=["_fused", "_mined"]).reset_index(drop=True)
