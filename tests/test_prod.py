"""PROD (pipeline/methods/prod.py): its stage and round schedule, its config checks, the confusing-query
selection on crafted cases. Its loss terms are the standard recipe's (tests/test_methods.py checks the
LwF term against a hand computation); the workflow end to end is in tests/test_workflow.py."""

import pandas as pd
import pytest

from pipeline.config import ConfigError, complete
from pipeline.methods import get_method
from pipeline.methods.prod import Prod, confusing_queries, prod_iterations, select_confusing
from pipeline.plan import Plan


def prod_plan(iterations=4, **prod):
    config = {
        "experiment": "x", "iterations": iterations, "methods": ["prod"], "teacher": "weak",
        "models": {"weak": {"kind": "bi-encoder", "source": "w"}, "bm25": {"kind": "bm25"},
                   "strong": {"kind": "fusion", "members": {"weak": 0.7, "bm25": 0.3}}},
        "prod": {"stages": [{"teacher": "weak"}, {"teacher": "strong", "train": {"teacher_scale": "calibrated"}}],
                 "rounds": {"count": 2}, **prod},
    }
    return Plan(complete(config))


def test_stages_then_rounds_set_each_iterations_teacher_and_recipe():
    plan = prod_plan()
    assert isinstance(get_method("prod"), Prod) and Prod.rules == "rules/methods/prod.smk"
    assert plan.problems() == []
    assert [plan.iteration(it)["teacher"] for it in plan.iterations] == ["weak", "strong", "strong", "strong"]
    # LwF from the second stage on (PROD's 1.0), not in the first stage
    assert [plan.iteration(it)["train"]["w_lwf"] for it in (1, 2)] == [0.0, 1.0]
    assert plan.iteration(2)["train"]["teacher_scale"] == "calibrated", "a stage's own train settings"
    # the rounds mine the student's top non-positives, train on all 15 of them at the lower rate
    for it in (3, 4):
        c = plan.iteration(it)
        assert plan.miner_of(it) == f"student-it{it - 1}" and c["mine"]["window"] == [0, 15]
        assert c["train"]["group_size"] == 16 and c["train"]["lr"] == 2.0e-5 and c["train"]["epochs"] == 2
        assert plan.training_candidates(it) == f"results/x/it{it}/confusing.parquet"
        assert plan.reports(it) == [f"results/x/it{it}/confusing.json"]
    assert plan.training_candidates(2) == "results/x/it2/candidates.parquet" and plan.reports(2) == []
    assert plan.describe(1) == "PROD stage 1 of 2: teacher weak on mined candidates"
    assert plan.describe(4) == "PROD round 2 of 2: teacher strong on confusing queries of the student"
    assert plan.evaluated_models()[:2] == ["strong", "weak"], "every stage's teacher is a baseline"


def test_user_overrides_go_over_the_schedule_and_a_stage_may_span_iterations():
    plan = prod_plan(iterations=3, stages=[{"teacher": "weak", "iterations": 2}, {"teacher": "strong"}],
                     rounds={"count": 0})
    assert plan.problems() == []
    assert [plan.iteration(it)["teacher"] for it in plan.iterations] == ["weak", "weak", "strong"]
    assert [e["number"] for e in prod_iterations(plan.config)] == [1, 1, 2]
    plan = Plan(complete({**plan.config, "overrides": {"3": {"train": {"w_lwf": 0.0, "lr": 1.0e-5}}}}))
    assert plan.iteration(3)["train"]["w_lwf"] == 0.0 and plan.iteration(3)["train"]["lr"] == 1.0e-5


@pytest.mark.parametrize("change, message", [
    ({"iterations": 2}, "2 stage(s) of [1, 1] iteration(s) and 2 round(s) make 4 iterations; set iterations: 4"),
    ({"prod": {"stages": [{"teacher": "nope"}], "rounds": {"count": 0}}, "iterations": 1},
     "prod.stages[0].teacher: unknown model 'nope'"),
    ({"prod": {"stages": [{"teacher": "weak"}], "rounds": {"count": 1, "teacher": "nope"}}},
     "prod.rounds.teacher: unknown model 'nope'"),
    ({"prod": {}, "iterations": 1}, "prod.stages: list at least one stage teacher"),
    ({"methods": ["standard"], "overrides": {"1": {"methods": ["prod"]}}, "iterations": 1},
     "prod: list prod in the base config's methods"),
])
def test_config_checks_name_the_problem(change, message):
    plan = prod_plan()
    config = {**plan.config, **change}
    problems = Plan(complete(config)).problems()
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("prod, message", [
    ({"stages": []}, "prod.stages: [] should be non-empty"),
    ({"rounds": {"max_rank": 1}}, "prod.rounds.max_rank: 1 is less than the minimum of 2"),
])
def test_schema_rejects_an_empty_stage_list_and_a_max_rank_below_2(prod, message):
    config = prod_plan().config
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        complete({**config, "prod": {**config["prod"], **prod}})


# --------------------------------------------------------------------------------------------------
# the confusing queries of a data-progressive round
# --------------------------------------------------------------------------------------------------

def crafted():
    """Three queries, each with positive p and negatives n0..n4 ranked by the student in that order.

    a: the student ranks p 3rd (after n0, n1), the teacher ranks p first      -> confusing
    b: the student ranks p 1st                                                -> not (already right)
    c: the student ranks p 3rd, the teacher ranks n0 first and p 2nd          -> not (the teacher disagrees)
    """
    qrels = {q: {"p": 1} for q in "abc"}
    candidates = pd.DataFrame([(q, f"n{r}", r, 0.0, "student") for q in "abc" for r in range(5)],
                              columns=["query_id", "doc_id", "rank", "score", "miner"])
    negatives = {f"n{r}": 10.0 - r for r in range(5)}  # n0 10, n1 9, n2 8, ...
    student_p = {"a": 8.5, "b": 11.0, "c": 8.5}
    teacher = {"a": {"p": 5.0, "n0": 4.0, "n1": 3.0}, "b": {"p": 5.0}, "c": {"n0": 6.0, "p": 5.0}}
    rows_s, rows_t = [], []
    for q in "abc":
        for d in ["p", *negatives]:
            rows_s.append((q, d, "student-it1", student_p[q] if d == "p" else negatives[d]))
            rows_t.append((q, d, "teacher", teacher[q].get(d, 0.0)))
    columns = ["query_id", "doc_id", "scorer", "score"]
    return candidates, pd.DataFrame(rows_s, columns=columns), pd.DataFrame(rows_t, columns=columns), qrels


def test_a_query_is_confusing_when_the_student_ranks_the_positive_low_and_the_teacher_first():
    candidates, student, teacher, qrels = crafted()
    selected, per_query = confusing_queries(candidates, student, teacher, qrels, max_rank=15, negatives=3)
    assert per_query.set_index("query_id")["student_rank"].to_dict() == {"a": 3, "b": 1, "c": 3}
    assert per_query.set_index("query_id")["confusing"].to_dict() == {"a": True, "b": False, "c": False}
    # its negatives are the student's highest-ranked non-positives, in rank order
    assert selected["query_id"].tolist() == ["a"] * 3 and selected["doc_id"].tolist() == ["n0", "n1", "n2"]
    # the student's rank 3 lies beyond max_rank 2: not confusing
    _, narrow = confusing_queries(candidates, student, teacher, qrels, max_rank=2, negatives=3)
    assert not narrow["confusing"].any()


def test_the_teacher_judges_only_the_students_top_list():
    """The teacher ranks n3 (student rank 5) above p; with max_rank 3 n3 is not in the list it reranks."""
    candidates, student, teacher, qrels = crafted()
    teacher.loc[(teacher.query_id == "a") & (teacher.doc_id == "n3"), "score"] = 9.0
    assert not confusing_queries(candidates, student, teacher, qrels, 15, 3)[1].set_index("query_id").loc["a", "confusing"]
    assert confusing_queries(candidates, student, teacher, qrels, 3, 3)[1].set_index("query_id").loc["a", "confusing"]


def test_selection_step_writes_candidates_and_a_report(tmp_path):
    from pipeline.data import CANDIDATES_SCHEMA, read_provenance, read_table, write_table

    candidates, student, teacher, qrels = crafted()
    paths = {name: str(tmp_path / f"{name}.parquet") for name in ("candidates", "student", "teacher")}
    write_table(candidates, paths["candidates"], {"window": [0, 5]}, CANDIDATES_SCHEMA)
    write_table(student, paths["student"], {})
    write_table(teacher, paths["teacher"], {})
    qrels_path = tmp_path / "qrels.parquet"
    write_table(pd.DataFrame([(q, "p", 1) for q in "abc"], columns=["query_id", "doc_id", "relevance"]),
                qrels_path, {})
    out = tmp_path / "confusing.parquet"
    report = select_confusing(paths["candidates"], paths["student"], paths["teacher"], str(qrels_path), str(out),
                              str(tmp_path / "confusing.json"), max_rank=5, negatives=4, provenance={"iteration": 3})
    assert report["selected"] == 1 and report["selected_query_ids"] == ["a"] and report["queries"] == 3
    assert report["student_ranks_positive_first"] == 1 and report["teacher_disagrees"] == 1
    assert "1 of 3 training queries confusing" in report["summary"]
    assert read_table(out)["doc_id"].tolist() == ["n0", "n1", "n2", "n3"]
    assert read_provenance(out)["selection"] == "prod-confusing"
    with pytest.raises(ValueError, match=r"mined window \[0, 5\] must start at 0 and hold the student's top 14"):
        select_confusing(paths["candidates"], paths["student"], paths["teacher"], str(qrels_path), str(out),
                         str(tmp_path / "confusing.json"), max_rank=15, negatives=4)
