"""pipeline.hybrid on hand-made scores: the fused scores by hand, the weight chosen on dev judgments."""

import math

import pandas as pd
import pytest

from pipeline.hybrid import choose_weight, fused_run

# two queries, three candidates each: the student puts d1 first, BM25 d2 (q1) and d3 (q2)
PAIRS = pd.DataFrame({"query_id": ["q1"] * 3 + ["q2"] * 3, "doc_id": ["d1", "d2", "d3"] * 2,
                      "student": [0.9, 0.5, 0.1, 0.8, 0.6, 0.4], "lexical": [1.0, 7.0, 4.0, 2.0, 3.0, 10.0]})


def zscores(values):
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))  # pandas' std: n - 1
    return [(v - mean) / sd for v in values]


def test_fused_scores_are_the_weighted_sum_of_per_query_zscores():
    run = fused_run(PAIRS, 0.3, "zscore")
    for query, rows in PAIRS.groupby("query_id"):
        expected = [0.3 * s + 0.7 * b for s, b in zip(zscores(list(rows.student)), zscores(list(rows.lexical)))]
        assert [run[query][d] for d in rows.doc_id] == pytest.approx(expected, abs=1e-6)
    only_student = fused_run(PAIRS, 1.0, "zscore")
    assert max(only_student["q1"], key=only_student["q1"].get) == "d1"
    only_lexical = fused_run(PAIRS, 0.0, "zscore")
    assert max(only_lexical["q2"], key=only_lexical["q2"].get) == "d3"


def test_the_weight_is_chosen_on_the_dev_judgments_and_ties_go_to_the_nearest_even_weight():
    # q1 wants d2 (BM25's first), q2 wants d1 (the student's first): pure weights get one query right each,
    # in-between weights can get both
    qrels = {"q1": {"d2": 1}, "q2": {"d1": 1}}
    weight, figures = choose_weight(PAIRS, qrels, [0.0, 0.5, 1.0], "zscore")
    assert set(figures) == {"0", "0.5", "1"}
    assert figures["0.5"] > figures["0"] and figures["0.5"] > figures["1"] and weight == 0.5
    # both queries want the student's first passage: every weight that ranks d1 first in both ties
    weight, figures = choose_weight(PAIRS, {"q1": {"d1": 1}, "q2": {"d1": 1}}, [0.3, 0.8, 0.9, 1.0], "zscore")
    best = max(figures.values())
    tied = [w for w in (0.3, 0.8, 0.9, 1.0) if figures[f"{w:g}"] == best]
    assert weight == min(tied, key=lambda w: abs(w - 0.5))
