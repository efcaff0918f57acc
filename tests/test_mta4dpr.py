"""MTA4DPR (pipeline/methods/mta4dpr.py): the selection measures, the fused assistant and the loss against
hand computations; the pool's replacement on crafted dev figures; RRF negatives and hard queries; the
plan's static DAG and its parse-time errors. End to end: tests/test_workflow.py."""

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from pipeline.config import complete
from pipeline.data import QRELS_SCHEMA, read_provenance, read_table, write_table
from pipeline.losses import Batch, CompositeLoss, StudentScores, kl_divergence
from pipeline.methods import get_method
from pipeline.methods.mta4dpr import (AssistantKL, Mta4dpr, assistant_distances, fused_log_distribution, next_pool,
                                      select_inputs, select_training_data)
from pipeline.methods.standard import recipe_terms
from pipeline.plan import Plan
from pipeline.ranking import footrule, positive_ranks, rank_biased_overlap, ranks, rrf_negatives

LN = math.log
TEACHER = torch.tensor([[LN(4), LN(2), LN(1), LN(1)]])  # softmax: [0.5, 0.25, 0.125, 0.125]


def batch_of(**scores) -> Batch:
    return Batch(query_ids=["q"], query_texts=["q"], passage_texts=["a", "b", "c", "d"], group_size=4,
                 teacher_scores={name: torch.as_tensor(value, dtype=torch.float32) for name, value in scores.items()})


def student_scores(values) -> StudentScores:
    """Group scores ``values`` for one query of four candidates (1-d embeddings, scale 1)."""
    return StudentScores(torch.ones(1, 1), torch.tensor(values, dtype=torch.float32).view(4, 1), 1.0)


def test_footrule_and_ranks_against_a_hand_computation():
    teacher, assistant = torch.tensor([[4.0, 3, 2, 1]]), torch.tensor([[1.0, 4, 3, 2]])
    assert ranks(assistant).tolist() == [[4, 1, 2, 3]]
    assert ranks(torch.tensor([[1.0, 1, 0, 1]])).tolist() == [[1, 2, 4, 3]], "equal scores keep group order"
    # |1-4| + |2-1| + |3-2| + |4-3|
    assert footrule(teacher, assistant).tolist() == [6.0]
    assert footrule(teacher, teacher).tolist() == [0.0]


def test_rank_biased_overlap_against_a_hand_computation():
    teacher, assistant = torch.tensor([[4.0, 3, 2, 1]]), torch.tensor([[1.0, 4, 3, 2]])
    # orders [0,1,2,3] and [1,2,3,0]: overlaps X_1..X_4 = 0, 1, 2, 4; p = 0.5
    # X_4/4 p^4 + (1-p)/p (0/1 p + 1/2 p^2 + 2/3 p^3 + 4/4 p^4) = 0.0625 + 0.125 + 0.08333 + 0.0625
    assert rank_biased_overlap(teacher, assistant, 0.5).item() == pytest.approx(1 / 3)
    assert rank_biased_overlap(teacher, teacher, 0.9).item() == pytest.approx(1.0), "equal rankings: 1"
    reversed_ = torch.tensor([[1.0, 2, 3, 4]])  # overlaps 0, 0, 2, 4
    assert rank_biased_overlap(teacher, reversed_, 0.5).item() == pytest.approx(0.0625 + (2 / 3 * 0.125 + 0.0625))


def test_kl_distance_against_a_hand_computation_and_the_selection_of_the_closest():
    uniform, copy = torch.zeros(1, 4), TEACHER.clone()
    distances = assistant_distances(TEACHER, {"uniform": uniform, "copy": copy}, "kl", temperature=1.0)
    # 0.5 ln(0.5/0.25) + 0.25 ln 1 + 2 * 0.125 ln(0.125/0.25) = 0.25 ln 2
    assert distances["uniform"] == pytest.approx(0.25 * LN(2), abs=1e-6)
    assert distances["copy"] == pytest.approx(0.0, abs=1e-6)
    reversed_ = torch.tensor([[0.0, 1, 2, 3]])
    for measure in ("kl", "footrule", "rbo"):
        term = AssistantKL("teacher", ["reversed", "copy", "uniform"], measure, temperature=1.0)
        chosen, _ = term.select(batch_of(teacher=TEACHER, reversed=reversed_, uniform=uniform, copy=copy))
        assert chosen == "copy", measure
    # the footrule cannot tell a uniform assistant (ranks in group order) from the teacher here: the first wins
    term = AssistantKL("teacher", ["uniform", "copy"], "footrule", temperature=1.0)
    assert term.select(batch_of(teacher=TEACHER, uniform=uniform, copy=copy))[0] == "uniform"


def test_the_selected_assistants_kl_is_the_term_and_is_logged():
    student = [0.0, 0.0, 0.0, 0.0]
    term = AssistantKL("teacher", ["uniform", "copy"], "kl", temperature=1.0)
    loss = term(student_scores(student), batch_of(teacher=TEACHER, uniform=torch.zeros(1, 4), copy=TEACHER))
    assert loss.item() == pytest.approx(0.25 * LN(2), abs=1e-6), "KL(copy of the teacher || uniform student)"
    assert term.last_parts["mta4dpr_selected:copy"] == 1.0 and term.last_parts["mta4dpr_selected:uniform"] == 0.0
    assert term.last_parts["mta4dpr_distance:uniform"] == pytest.approx(0.25 * LN(2), abs=1e-6)


def test_the_fused_assistant_is_the_mean_of_the_distributions():
    a1, a2 = TEACHER, torch.zeros(1, 4)
    fused = fused_log_distribution([a1, a2], temperature=1.0).exp()
    assert fused.tolist()[0] == pytest.approx([0.375, 0.25, 0.1875, 0.1875])
    term = AssistantKL("teacher", ["a1", "a2"], "fused", temperature=1.0)
    loss = term(student_scores([0.0] * 4), batch_of(teacher=TEACHER, a1=a1, a2=a2))
    expected = sum(f * LN(f / 0.25) for f in [0.375, 0.25, 0.1875, 0.1875])
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    every = AssistantKL("teacher", ["a1", "a2"], "all", temperature=2.0)(
        student_scores([1.0, 0, 0, 0]), batch_of(teacher=TEACHER, a1=a1, a2=a2))
    s = torch.tensor([[1.0, 0, 0, 0]])
    assert every.item() == pytest.approx(((kl_divergence(a1, s, 2.0) + kl_divergence(a2, s, 2.0)) / 2).item())


def test_with_gamma_zero_the_loss_is_the_plain_one_and_with_gamma_it_adds_the_assistants_kl():
    settings = complete({"teacher": "teacher", "models": {}})["train"]
    batch = batch_of(teacher=TEACHER, a=torch.zeros(1, 4))
    out = student_scores([0.3, 0.1, -0.2, 0.0])
    plain, _ = CompositeLoss(recipe_terms(settings, ["teacher"]))(out, batch)
    term = AssistantKL("teacher", ["a"], "kl", temperature=1.0)
    zero, _ = CompositeLoss({**recipe_terms(settings, ["teacher"]), "assistant_kl": (0.0, term)})(out, batch)
    assert zero.item() == plain.item()
    half, parts = CompositeLoss({**recipe_terms(settings, ["teacher"]), "assistant_kl": (0.5, term)})(out, batch)
    own = kl_divergence(torch.zeros(1, 4), out.group_scores).item()
    assert half.item() == pytest.approx(plain.item() + 0.5 * own, rel=1e-6)
    assert parts["mta4dpr_selected:a"] == 1.0, "what the term decided is logged with the parts"


def test_the_student_replaces_the_worst_assistant_only_when_better_on_dev():
    pool = ["bm25", "minilm", "fusion-even"]
    dev = {"bm25": 0.60, "minilm": 0.55, "fusion-even": 0.70}
    assert next_pool(pool, {**dev, "student-it1": 0.58}, "student-it1")[0] == ["bm25", "student-it1", "fusion-even"]
    kept, decision = next_pool(pool, {**dev, "student-it1": 0.55}, "student-it1")
    assert kept == pool and decision["replaced"] is None and decision["worst"] == "minilm", "equal is not better"
    tied = {"bm25": 0.5, "minilm": 0.5, "fusion-even": 0.7, "student-it1": 0.6}
    assert next_pool(pool, tied, "student-it1")[0] == ["student-it1", "minilm", "fusion-even"], "first of the worst"
    kept, decision = next_pool(pool, {**dev, "student-it1": None}, "student-it1")
    assert kept == pool and "no dev" in decision["reason"]


def test_rrf_negatives_and_hard_queries_against_hand_computations():
    candidates = pd.DataFrame({"query_id": ["q1"] * 3 + ["q2"] * 2, "doc_id": ["d1", "d2", "d3", "d1", "d4"],
                               "rank": [0, 1, 2, 0, 1], "score": [0.0] * 5, "miner": ["bm25"] * 5})
    a = pd.DataFrame({"query_id": ["q1"] * 4 + ["q2"] * 3, "doc_id": ["d1", "d2", "d3", "p1", "d1", "d4", "p2"],
                      "score": [3.0, 2.0, 1.0, 2.5, 1.0, 2.0, 0.0]})
    b = a.assign(score=[1.0, 3.0, 2.0, 0.0, 1.0, 2.0, 5.0])
    # q1 with k = 0: d1 1/1 + 1/3, d2 1/2 + 1/1, d3 1/3 + 1/2 -> d2, d1, d3
    fused = rrf_negatives(candidates, {"a": a, "b": b}, keep=2, k=0.0)
    assert fused[fused.query_id == "q1"][["doc_id", "rank"]].values.tolist() == [["d2", 0], ["d1", 1]]
    assert fused[fused.query_id == "q2"]["doc_id"].tolist() == ["d4", "d1"]
    assert rrf_negatives(candidates, {"a": a}, keep=None).equals(candidates)
    qrels = {"q1": {"p1": 1}, "q2": {"p2": 1}}
    # q1: a scores p1 2.5, below d1 (3.0) -> rank 2; q2: p2 0.0 below both -> rank 3
    assert positive_ranks(candidates, a, qrels) == {"q1": 2, "q2": 3}
    assert positive_ranks(candidates, b, qrels) == {"q1": 4, "q2": 1}


def test_the_select_step_writes_the_pool_hard_queries_and_negatives(tmp_path):
    candidates = pd.DataFrame({"query_id": ["q1"] * 3 + ["q2"] * 3, "doc_id": ["d1", "d2", "d3"] * 2,
                               "rank": [0, 1, 2] * 2, "score": [0.0] * 6, "miner": ["student-it1"] * 6})
    write_table(candidates, tmp_path / "candidates.parquet", {"iteration": 2})
    write_table(pd.DataFrame({"query_id": ["q1", "q2"], "doc_id": ["p1", "p2"], "relevance": [1, 1]}),
                tmp_path / "qrels.parquet", {}, QRELS_SCHEMA)
    docs = ["d1", "d2", "d3", "p1", "d1", "d2", "d3", "p2"]
    queries = ["q1"] * 4 + ["q2"] * 4
    paths = {}
    for name, scores in {"bm25": [3, 2, 1, 0, 3, 2, 1, 0], "minilm": [1, 2, 3, 0, 1, 2, 3, 0],
                         "student-it1": [1, 2, 3, 9, 1, 2, 3, 0]}.items():
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_table(pd.DataFrame({"query_id": queries, "doc_id": docs, "scorer": name, "score": scores}),
                    paths[name], {})
    (tmp_path / "pool.json").write_text(json.dumps({"assistants": ["bm25", "minilm"], "pool": ["bm25", "minilm"]}))
    dev = {}
    for name, value in {"bm25": 0.6, "minilm": 0.5, "student-it1": 0.55}.items():
        dev[name] = str(tmp_path / f"dev-{name}.json")
        (tmp_path / f"dev-{name}.json").write_text(json.dumps({"name": name, "ndcg@10": value}))
    settings = {"assistants": ["bm25", "minilm"], "hard_queries": {"top_k": 2, "weight": 3.0}, "negatives": {"keep": 2}}
    report = select_training_data(str(tmp_path / "candidates.parquet"), str(tmp_path / "qrels.parquet"), paths,
                                  str(tmp_path / "out.parquet"), str(tmp_path / "report.json"), settings, 2,
                                  previous_pool_path=str(tmp_path / "pool.json"), dev_metric_paths=dev,
                                  student="student-it1", student_scores_path=paths["student-it1"])
    assert report["pool"] == ["bm25", "student-it1"] and report["decision"]["replaced"] == "minilm"
    assert report["hard_queries"] == ["q2"], "q2's positive is below the student's top 2; q1's is first"
    choice = read_provenance(tmp_path / "out.parquet")["mta4dpr"]
    assert choice == {"pool": ["bm25", "student-it1"], "hard_queries": ["q2"], "hard_weight": 3.0}
    out = read_table(tmp_path / "out.parquet")
    # bm25 ranks d1, d2, d3; the student d3, d2, d1: RRF (k 60) ties d1 and d3 above d2 -> the mined order
    assert out[out.query_id == "q1"]["doc_id"].tolist() == ["d1", "d3"]
    with pytest.raises(ValueError, match="no scores of pool members"):
        select_training_data(str(tmp_path / "candidates.parquet"), str(tmp_path / "qrels.parquet"),
                             {"bm25": paths["bm25"]}, str(tmp_path / "x.parquet"), str(tmp_path / "x.json"),
                             settings, 1)


def test_hard_queries_weigh_more_in_training():
    run = SimpleNamespace(candidates_provenance={"mta4dpr": {"pool": ["a"], "hard_queries": ["q2"], "hard_weight": 2.0}})
    weigh = Mta4dpr().instance_weights(run, "distill")
    assert weigh(SimpleNamespace(query_ids=["q1", "q2"]), 0).tolist() == [1.0, 2.0]
    assert Mta4dpr().instance_weights(run, "warmup") is None
    with pytest.raises(ValueError, match="carry no pool"):
        Mta4dpr().instance_weights(SimpleNamespace(candidates_provenance={}), "distill")


def mta4dpr_plan(**changes):
    config = {"experiment": "x", "iterations": 3, "methods": ["standard", "mta4dpr"], "teacher": "fusion",
              "models": {"minilm": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2"}, "bm25": {"kind": "bm25"},
                         "fusion": {"kind": "fusion", "members": {"minilm": 0.7, "bm25": 0.3}}},
              "mta4dpr": {"assistants": ["bm25", "minilm"]}, **changes}
    return Plan(complete(config))


def test_the_plan_scores_every_possible_member_and_keeps_the_dag_static():
    plan = mta4dpr_plan()
    assert plan.problems() == []
    assert isinstance(get_method("mta4dpr"), Mta4dpr)
    assert plan.teachers_of(1) == ["fusion", "bm25", "minilm"]
    assert plan.teachers_of(2) == ["fusion", "bm25", "minilm", "student-it1"]
    assert plan.teachers_of(3) == ["fusion", "bm25", "minilm", "student-it2", "student-it1"]
    assert plan.training_candidates(2) == "results/x/it2/mta4dpr/candidates.parquet"
    assert plan.reports(2) == ["results/x/it2/mta4dpr/pool.json"]
    first, second = select_inputs(plan, 1), select_inputs(plan, 2)
    assert "previous_pool" not in first and "dev" not in first and "student_scores" not in first
    assert second["previous_pool"] == "results/x/it1/mta4dpr/pool.json"
    assert second["dev"] == [f"results/x/eval/dev/{n}/metrics.json" for n in ("bm25", "minilm", "student-it1")]
    assert second["student_scores"] == "results/x/it2/scores/student-it1.parquet"
    assert "student-it1 in place of the worst" in plan.describe(2)
    fixed = mta4dpr_plan(mta4dpr={"assistants": ["bm25", "minilm"], "replace_worst": False,
                                  "hard_queries": {"weight": 1.0}})
    assert fixed.teachers_of(3) == ["fusion", "bm25", "minilm"] and "dev" not in select_inputs(fixed, 2)
    assert "student_scores" not in select_inputs(fixed, 2)
    renewed = mta4dpr_plan(overrides={"2": {"mta4dpr": {"assistants": ["bm25"]}}})
    assert renewed.teachers_of(2) == ["fusion", "bm25"] and "previous_pool" not in select_inputs(renewed, 2)


def test_mta4dpr_composes_with_adam_and_lead():
    assert mta4dpr_plan(methods=["lead", "mta4dpr"], lead={"teacher": "minilm"}).problems() == []
    plan = mta4dpr_plan(methods=["standard", "mta4dpr", "adam"], train={"group_size": 6})
    assert plan.problems() == []
    assert select_inputs(plan, 1)["candidates"] == "results/x/it1/dark-candidates.parquet"
    assert plan.training_candidates(1) == "results/x/it1/mta4dpr/candidates.parquet"


@pytest.mark.parametrize("changes, message", [
    ({"mta4dpr": {}}, "mta4dpr.assistants: list at least one assistant"),
    ({"mta4dpr": {"assistants": ["bm25", "nope"]}}, "mta4dpr.assistants[1]: 'nope' is not a configured model"),
    ({"mta4dpr": {"assistants": ["fusion"]}}, "mta4dpr.assistants[0]: 'fusion' is the teacher"),
    ({"methods": ["mta4dpr"]}, "methods ['mta4dpr']: none trains the student's distillation"),
])
def test_config_checks_name_the_problem(changes, message):
    problems = mta4dpr_plan(**changes).problems()
    assert any(message in problem for problem in problems), problems


@pytest.mark.parametrize("changes, field", [
    ({"mta4dpr": {"assistants": ["bm25"], "selection": "spearman"}}, "mta4dpr.selection"),
    ({"mta4dpr": {"assistants": ["bm25"], "rbo_persistence": 1.0}}, "mta4dpr.rbo_persistence"),
    ({"mta4dpr": {"assistants": ["bm25"], "negatives": {"keep": 0}}}, "mta4dpr.negatives.keep"),
])
def test_bad_values_fail_schema_validation(changes, field):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        mta4dpr_plan(**changes)
