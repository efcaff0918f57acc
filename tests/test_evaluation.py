import json
import math

import pytest

from pipeline.evaluation import compute_metrics, read_trec_run, summarize, write_trec_run


def test_metrics_by_hand_and_missing_queries_count_zero():
    qrels = {"q1": {"d1": 1, "d9": 0}, "q2": {"d2": 1}}
    run = {"q1": {"d3": 2.0, "d1": 1.0}}  # q1's positive at rank 2; q2 retrieved nothing
    metrics = compute_metrics(qrels, run)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3)) / 2)
    assert metrics["mrr@10"] == pytest.approx(0.5 / 2)
    assert metrics["recall@100"] == pytest.approx(0.5)


def test_trec_run_round_trip_is_ranked(tmp_path):
    run = {"q1": {"a": 0.5, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0}}
    write_trec_run(run, tmp_path / "run.trec", tag="m")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 2.000000 m"
    assert [line.split()[2] for line in lines[:3]] == ["b", "c", "a"]
    assert read_trec_run(tmp_path / "run.trec") == run


def test_summary_orders_teacher_then_iterations(tmp_path):
    paths = []
    for name, role, it, ndcg in [("s2", "student", 2, 0.5), ("t", "teacher", None, 0.6), ("s0", "student", 0, 0.1)]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"model": role, "name": name, "iteration": it, "ndcg@10": ndcg, "mrr@10": ndcg,
                                    "recall@100": ndcg, "encode_docs_per_s": 10.0, "params": 2_000_000}))
        paths.append(str(path))
    rows = summarize(paths, str(tmp_path / "s.md"), str(tmp_path / "s.json"), "exp")
    assert [r["name"] for r in rows] == ["t", "s0", "s2"]
    table = (tmp_path / "s.md").read_text()
    assert "| teacher | - | t | 0.6000 |" in table and "2.0M" in table
    assert json.loads((tmp_path / "s.json").read_text())["experiment"] == "exp"
