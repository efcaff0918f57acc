"""pipeline.hybrid on hand-made scores: the fused scores by hand, the weight chosen on dev judgments, and on
a few judged queries by the one-standard-error rule."""

import math

import pandas as pd
import pytest

from pipeline.hybrid import choose_weight, choose_weight_one_standard_error, fused_run

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


def test_on_a_few_judged_queries_the_even_weight_stays_unless_the_best_is_clearly_better():
    """Four queries: q1, q1b (copies of q1) and q2 want d1, the student's first; q3 (a copy of q1) wants d2,
    BM25's first. At weight 1 the student ranks d1 first everywhere and d2 second in q3 (nDCG@10
    1/log2(3) = 0.6309); at 0.5 the fusion ranks q1's d2 first (z-scores (1, 0, -1) and (-1, 1, 0): d2
    0.5, d1 0) and q2's d1 first (student (1, 0, -1), BM25 (-0.688, -0.459, 1.147): d1 0.156)."""
    def renamed(query, name):
        return PAIRS[PAIRS.query_id == query].assign(query_id=name)

    pairs = pd.concat([PAIRS, renamed("q1", "q1b"), renamed("q1", "q3")], ignore_index=True)
    low = 1 / math.log2(3)
    # q1, q1b, q2 want d1: weight 1 gets (1, 1, 1), 0.5 gets (low, low, 1): differences (0.369, 0.369, 0),
    # mean 0.246 above their standard error 0.123, so weight 1 is kept
    clear = {"q1": {"d1": 1}, "q1b": {"d1": 1}, "q2": {"d1": 1}}
    weight, figures = choose_weight_one_standard_error(pairs[pairs.query_id != "q3"], clear, [0.5, 1.0], "zscore")
    assert weight == 1.0 and figures["1"] == pytest.approx(1.0) and figures["0.5"] == pytest.approx((2 * low + 1) / 3)
    # with q3 (wants d2): weight 1 (1, 1, 1, low), 0.5 (low, low, 1, 1); differences (0.369, 0.369, 0, -0.369):
    # mean 0.092, standard error sqrt(0.3745 / 3) / 2 = 0.177, so the even weight stays though 1 is higher
    noisy = {**clear, "q3": {"d2": 1}}
    weight, figures = choose_weight_one_standard_error(pairs, noisy, [0.5, 1.0], "zscore")
    assert figures["1"] == pytest.approx((3 + low) / 4) and figures["0.5"] == pytest.approx((2 * low + 2) / 4)
    assert figures["1"] > figures["0.5"] and weight == 0.5


def test_the_stand_in_measures_the_grid_on_the_sampled_judged_training_queries_only(tmp_path_factory, tiny_beir, tiny_bert):
    """On the fixture, a tiny bi-encoder standing in for the student: the weight comes from the grid, measured
    on the seeded sample of judged training queries (as the dev split's: the helper the fusion teachers'
    choice shares, whose test checks that no test query enters), and the
    figure of the weight it keeps is within one standard error of the best; with fewer judged queries
    than min_queries nothing is chosen."""
    from fixtures import prepare_with_candidates

    from pipeline.data import load_queries, read_table
    from pipeline.embeddings import encode_corpus_shard
    from pipeline.hybrid import stand_in_weight
    from pipeline.lexical import BM25

    prepared = prepare_with_candidates(tiny_beir, tmp_path_factory.mktemp("stand-in"))
    data_dir = prepared["corpus"].rsplit("/", 1)[0]
    bi = {"name": "bi", "kind": "bi-encoder", "source": str(tiny_bert)}
    shard = tmp_path_factory.mktemp("stand-in-shards") / "bi.parquet"
    encode_corpus_shard(prepared["corpus"], bi, str(shard))
    stand_in = {"name": "bi", "models": {"bi": bi}, "embedding_shards": {"bi": [str(shard)]},
                "qrels_path": prepared["qrels-train"], "seed": 3, "train_queries": 12, "min_queries": 5}
    bm25 = BM25.from_corpus(read_table(prepared["corpus"]), include_title=True)
    common = dict(bm25=bm25, queries=load_queries(prepared["queries"]), corpus_path=prepared["corpus"],
                  test_qrels_path=f"{data_dir}/qrels-test.parquet", grid=[0.0, 0.5, 1.0], normalization="zscore",
                  include_title=True, device="cpu", depth=20)
    weight, figures, reason = stand_in_weight(stand_in, **common)
    assert weight in (0.0, 0.5, 1.0) and set(figures) == {"0", "0.5", "1"}
    assert "12 judged training queries" in reason and "bi" in reason
    assert weight == 0.5 or figures[f"{weight:g}"] == max(figures.values()), \
        "a weight other than the even one is kept only when it is the best"
    few, _, why = stand_in_weight({**stand_in, "train_queries": 3}, **common)
    assert few is None and "3 judged training queries, fewer than 5" in why
