"""A fusion teacher's weights chosen on the judged training queries (pipeline/fusion_weights.py): the grid,
the choice against a hand computation, the scorers reading it, the plan's rule and checks."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.data import read_table
from pipeline.evaluation import one_standard_error_choice
from pipeline.fusion_weights import choose_fusion_weights, choose_weights, weight_grid
from pipeline.models import ModelSpec
from pipeline.plan import Plan
from pipeline.scorers import fuse_scores, fusion_weights, score_candidates
from pipeline.splits import choose_queries, judged_queries
from test_plan import config


def test_the_grid_is_every_weighting_on_the_simplex_with_each_member_alone():
    assert weight_grid(["a", "b"], 0.25) == [{"a": k / 4, "b": 1 - k / 4} for k in range(5)]
    three = weight_grid(["a", "b", "c"], 0.5)
    assert len(three) == 6 and all(sum(w.values()) == pytest.approx(1) for w in three)
    assert {"a": 1.0, "b": 0.0, "c": 0.0} in three and {"a": 0.5, "b": 0.0, "c": 0.5} in three
    with pytest.raises(ValueError, match="whole number of steps"):
        weight_grid(["a", "b"], 0.3)


def test_the_best_weighting_wins_and_a_tie_goes_to_the_nearest_configured():
    """Two queries, each with its relevant passage x first for member `good` and last for member `bad`
    (scores 3, 2, 1 against 1, 2, 3). z-scored, both members are ±(1, 0, −1), so any weighting with more
    on `good` ranks x first (nDCG@10 = 1) and any with more on `bad` ranks it third (1 / log2(4) = 0.5)."""
    rows = [(q, d, g, b) for q in ("q1", "q2") for d, g, b in (("x", 3.0, 1.0), ("y", 2.0, 2.0), ("z", 1.0, 3.0))]
    pairs = pd.DataFrame(rows, columns=["query_id", "doc_id", "good", "bad"])
    qrels = {"q1": {"x": 1}, "q2": {"x": 1}}
    chosen, figures = choose_weights(pairs, qrels, {"good": 0.5, "bad": 0.5}, 0.25, "zscore")
    by_weight = {f["members"]["good"]: f["ndcg@10"] for f in figures}
    assert by_weight[1.0] == by_weight[0.75] == pytest.approx(1.0)
    assert by_weight[0.25] == by_weight[0.0] == pytest.approx(0.5)
    assert chosen == {"good": 0.75, "bad": 0.25}, "of the two best, the one nearer the configured 0.5/0.5"
    assert choose_weights(pairs, qrels, {"good": 1.0, "bad": 0.0}, 0.25, "zscore")[0] == {"good": 1.0, "bad": 0.0}
    assert choose_weights(pairs, qrels, {"good": 3.0, "bad": 1.0}, 0.25, "zscore")[0] == {"good": 0.75, "bad": 0.25}, \
        "configured weights are compared once normalised to sum 1"


def test_the_one_standard_error_rule_keeps_the_nearest_weighting_a_noisy_difference_cannot_tell_from_the_best():
    """Rows are weightings, columns queries. A (mean 0.85) is best. D (0.80) differs from it by
    (0.4, 0, -0.4, 0.2): mean 0.05, sd sqrt(0.35 / 3) = 0.3416, standard error 0.1708, so it is within one.
    C is A less 0.1 on every query: mean difference 0.1, standard error 0, so it is not, though nearest."""
    per_query = np.array([[1.0, 1.0, 0.6, 0.8],   # A
                          [0.6, 1.0, 1.0, 0.6],   # D
                          [0.9, 0.9, 0.5, 0.7]])  # C
    rule = one_standard_error_choice(per_query, distance=np.array([1.0, 0.5, 0.0]))
    assert (rule.chosen, rule.best) == (1, 0), "D kept, measured against A"
    assert rule.within.tolist() == [True, True, False], "A itself and D are within one standard error; C is not"
    np.testing.assert_allclose(rule.errors, [0.0, np.sqrt(0.35 / 3) / 2, 0.0], atol=1e-12)
    assert one_standard_error_choice(per_query, distance=np.array([0.0, 0.5, 1.0])).chosen == 0, "the best, when nearest"
    assert one_standard_error_choice(per_query[:, :1], distance=np.array([1.0, 0.5, 0.0])).chosen == 0, \
        "one query: no standard error, the best"


def test_a_fusion_scores_with_its_chosen_weights(tmp_path):
    spec = ModelSpec("mix", kind="fusion", members={"a": 0.5, "b": 0.5})
    assert fusion_weights(spec) == {"a": 0.5, "b": 0.5}
    (tmp_path / "mix.json").write_text(json.dumps({"members": {"a": 1.0, "b": 0.0}}))
    assert fusion_weights(ModelSpec("mix", kind="fusion", members={"a": 0.5, "b": 0.5},
                                    weights_path=str(tmp_path / "mix.json"))) == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match=r"mix.json: weights for \['a', 'b'\], but fusion 'mix' has members \['a', 'c'\]"):
        fusion_weights(ModelSpec("mix", kind="fusion", members={"a": 0.5, "c": 0.5}, weights_path=str(tmp_path / "mix.json")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_beir):
    from fixtures import prepare_with_candidates

    return prepare_with_candidates(tiny_beir, tmp_path_factory.mktemp("fusion-weights"))


def test_the_choice_on_the_fixture_reads_only_the_sampled_judged_training_queries(prepared, tiny_bert, tmp_path):
    """The step on the fixture (tiny model and BM25): it measures the weightings on the judged training
    queries the run may read (the seeded sample of train_queries, as the dev split's), never a test query;
    the chosen weights are the grid's best; the scores it gives then are the fusion with those weights.
    Fewer judged queries than min_queries keep the configured weights."""
    from pipeline.embeddings import encode_corpus_shard

    data_dir = prepared["corpus"].rsplit("/", 1)[0]
    bi = {"name": "bi", "kind": "bi-encoder", "source": str(tiny_bert)}
    models = {"bi": bi, "bm25": {"name": "bm25", "kind": "bm25"}}
    fusion = {"name": "mix", "kind": "fusion", "members": {"bi": 0.5, "bm25": 0.5}}
    shard = tmp_path / "bi.parquet"
    encode_corpus_shard(prepared["corpus"], bi, str(shard))
    common = dict(model=fusion, models=models, queries_path=prepared["queries"], corpus_path=prepared["corpus"],
                  qrels_path=prepared["qrels-train"], test_qrels_path=f"{data_dir}/qrels-test.parquet", seed=3,
                  embedding_shards={"bi": [str(shard)]}, rerank_depth=20, device="cpu")
    result = choose_fusion_weights(out_path=str(tmp_path / "mix.json"), train_queries=12, **common)
    test_ids = set(judged_queries(read_table(f"{data_dir}/qrels-test.parquet")))
    sample, _, _ = choose_queries(judged_queries(read_table(prepared["qrels-train"])), test_ids, 3, 12, 0.0, 0, 0)
    assert result["query_ids"] == sample and len(sample) == 12 and not set(sample) & test_ids
    kept = next(f for f in result["grid"] if f["members"] == result["members"])
    assert len(result["grid"]) == 5 and kept["within_one_standard_error"]
    nearer = [f for f in result["grid"] if f["within_one_standard_error"]
              and abs(f["members"]["bi"] - 0.5) < abs(kept["members"]["bi"] - 0.5)]
    assert nearer == [], "no weighting within one standard error of the best is nearer the configured 0.5/0.5"
    assert json.loads((tmp_path / "mix.json").read_text())["members"] == result["members"]

    candidates = f"{data_dir}/../candidates.parquet"  # fixtures.prepare_with_candidates: BM25's
    scored = score_candidates(candidates, prepared["qrels-train"], prepared["queries"], prepared["corpus"], str(tmp_path / "s.parquet"),
                              scorer={**fusion, "weights_path": str(tmp_path / "mix.json")}, models=models,
                              embedding_shards={"bi": [str(shard)]}, device="cpu")
    members = {name: score_candidates(candidates, prepared["qrels-train"], prepared["queries"],
                                      prepared["corpus"], str(tmp_path / f"s-{name}.parquet"), scorer=models[name],
                                      models=models, embedding_shards={"bi": [str(shard)]}, device="cpu")
               for name in models}
    expected = fuse_scores(members, result["members"]).merge(scored, on=["query_id", "doc_id"])
    np.testing.assert_allclose(expected.score_x, expected.score_y, rtol=1e-5)

    from pipeline.evaluation import evaluate_model

    row = evaluate_model({**fusion, "weights_path": str(tmp_path / "mix.json")}, "teacher", None, prepared["queries"],
                         f"{data_dir}/qrels-test.parquet", prepared["corpus"], str(tmp_path / "eval"), depth=20,
                         embedding_shards={"bi": [str(shard)]}, models=models, device="cpu", rerank_depth=20)
    assert row["fusion_weights"] == result["members"] and row["fusion_weights_chosen"], "its row says what it ranked with"

    few = choose_fusion_weights(out_path=str(tmp_path / "few.json"), train_queries=3, min_queries=5, **common)
    assert few["members"] == {"bi": 0.5, "bm25": 0.5} and few["grid"] == [] and "fewer than" in few["reason"]


def chosen(**labels):
    models = config()["models"]
    models["fused"] = {**models["fused"], "choose_weights": {"step": 0.25, "min_queries": 5}}
    return Plan(config(models=models, teacher="fused", labels=labels, warmup={"epochs": 1, "teacher": "teacher"}))


def test_the_plan_chooses_the_weights_only_with_judged_training_queries():
    plan = chosen(source="qrels+teacher")
    path = "results/x/fusion-weights/fused.json"
    assert plan.model("fused")["weights_path"] == path and "choose_weights" not in plan.model("fused")
    assert path in plan.scorer_inputs("fused") and path in plan.labelling_inputs()["models"]
    inputs = plan.weight_choice_inputs("fused")
    assert inputs["qrels"] == "results/x/data/qrels-train.parquet" and path not in inputs["models"], "no cycle"
    assert "weights_path" not in plan.weight_choice_settings("fused")["model"]
    label_free = chosen(source="teacher")
    assert "weights_path" not in label_free.model("fused") and label_free.scorer_inputs("fused") == []
    assert label_free.problems() == [] and plan.problems() == []


@pytest.mark.parametrize("change, problem", [
    ({"teacher": {"kind": "bi-encoder", "source": "t", "choose_weights": {}}},
     "models.teacher.choose_weights: only a fusion's weights are chosen; 'teacher' is a bi-encoder"),
    ({"fused": {"kind": "fusion", "members": {"teacher": 1, "bm25": 1}, "choose_weights": {"step": 0.3}}},
     "models.fused.choose_weights.step: 0.3 does not divide 1 (0.5, 0.25, 0.1)"),
])
def test_weight_choice_config_problems_are_sentences(change, problem):
    models = {**config()["models"], **change}
    assert problem in Plan(config(models=models)).problems()
