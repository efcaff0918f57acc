import json
import math

import pandas as pd
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


def test_the_summary_says_each_fusions_weights_and_whether_they_were_chosen(tmp_path):
    rows = [{"model": "teacher", "name": "fusion", "iteration": None, "ndcg@10": 0.8, "fusion_weights": {"a": 0.75, "b": 0.25},
             "fusion_weights_chosen": True},
            {"model": "baseline", "name": "even", "iteration": None, "ndcg@10": 0.7, "fusion_weights": {"a": 0.5, "b": 0.5},
             "fusion_weights_chosen": False},
            {"model": "student", "name": "s1", "iteration": 1, "ndcg@10": 0.6}]
    paths = []
    for row in rows:
        paths.append(str(tmp_path / f"{row['name']}.json"))
        (tmp_path / f"{row['name']}.json").write_text(json.dumps(row))
    summarize(paths, str(tmp_path / "s.md"), str(tmp_path / "s.json"), "exp")
    table = (tmp_path / "s.md").read_text()
    assert "Fusion fusion: weights a 0.75, b 0.25 (chosen on the judged training queries)" in table
    assert "Fusion even: weights a 0.5, b 0.5 (configured)" in table
    assert "Fusion s1" not in table


def metric_file(tmp_path, name, split, ndcg, iteration, phase=None, role="student"):
    path = tmp_path / f"{split}-{name}.json"
    path.write_text(json.dumps({"model": role, "name": name, "iteration": iteration, "phase": phase, "split": split,
                                "ndcg@10": ndcg, "mrr@10": ndcg, "recall@100": ndcg, "encode_docs_per_s": 10.0,
                                "params": 1000}))
    return str(path)


def test_the_best_dev_student_is_final_and_ties_go_to_the_later_one(tmp_path):
    from pipeline.evaluation import select_final_student

    (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 20, "no_dev_reason": None}))
    table = [("student-it0", 0.05, 0, None), ("student-it1-warmup", 0.50, 1, "warmup"), ("student-it1", 0.48, 1, None),
             ("student-it2", 0.50, 2, None)]
    paths = [metric_file(tmp_path, n, "dev", v, it, ph) for n, v, it, ph in table]
    choice = select_final_student(paths, str(tmp_path / "splits.json"), str(tmp_path / "final.json"),
                                  sources={"student-it2": "s/it2"})
    assert choice["selected"] == "student-it2" and choice["source"] == "s/it2", "a tie goes to the later student"
    assert choice["dev"]["student-it1"] == 0.48 and "20 dev queries" in choice["reason"]
    paths[1] = metric_file(tmp_path, "student-it1-warmup", "dev", 0.6, 1, "warmup")
    assert select_final_student(paths, str(tmp_path / "splits.json"), str(tmp_path / "f.json"))["selected"] == \
        "student-it1-warmup", "labels that hurt on dev leave the warmed-up student final"


def dev_run(tmp_path, name, iteration, ranks):
    """A student's dev folder: a run putting query i's one relevant passage d<i> at ``ranks[i]`` (nDCG@10: 1 at
    rank 1, 1/log2(4) = 0.5 at rank 3), and its metrics.json."""
    folder = tmp_path / "dev" / name
    folder.mkdir(parents=True)
    lines = []
    for i, rank in enumerate(ranks):
        ranked = [f"x{i}-{k}" for k in range(rank - 1)] + [f"d{i}"]
        lines += [f"q{i} Q0 {doc} {r} {10.0 - r} {name}" for r, doc in enumerate(ranked, start=1)]
    (folder / "run.trec").write_text("\n".join(lines) + "\n")
    ndcg = sum(1.0 if rank == 1 else 0.5 for rank in ranks) / len(ranks)
    (folder / "metrics.json").write_text(json.dumps({"model": "student", "name": name, "iteration": iteration,
                                                     "split": "dev", "ndcg@10": ndcg}))
    return str(folder / "metrics.json")


def test_the_one_standard_error_rule_keeps_the_earliest_student_the_dev_queries_cannot_tell_apart(tmp_path):
    from pipeline.data import QRELS_SCHEMA, write_table
    from pipeline.evaluation import select_final_student

    (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 4, "no_dev_reason": None}))
    qrels = tmp_path / "dev-qrels.parquet"
    write_table(pd.DataFrame({"query_id": [f"q{i}" for i in range(4)], "doc_id": [f"d{i}" for i in range(4)],
                              "relevance": [1] * 4}), qrels, {}, QRELS_SCHEMA)
    # warm-up 1, .5, .5, 1 (mean .75); it2 1, 1, 1, .5 (mean .875, the best). it2 - warm-up per query:
    # 0, .5, .5, -.5: mean .125, sd sqrt((.125^2 + 2 * .375^2 + .625^2) / 3) = .4787, standard error
    # .4787 / 2 = .2394 >= .125: within one standard error, so the earlier student, the warm-up, stays
    paths = [dev_run(tmp_path, "student-it0", 0, [3, 3, 3, 3]), dev_run(tmp_path, "student-it1-warmup", 1, [1, 3, 3, 1]),
             dev_run(tmp_path, "student-it2", 2, [1, 1, 1, 3])]
    choose = lambda select: select_final_student(paths, str(tmp_path / "splits.json"), str(tmp_path / "final.json"),
                                                 select=select, dev_qrels_path=str(qrels))
    choice = choose("one-standard-error")
    assert choice["selected"] == "student-it1-warmup" and choice["select"] == "one-standard-error"
    assert choice["standard_error_to_best"]["student-it1-warmup"] == pytest.approx(0.2394, abs=1e-4)
    saved = json.loads((tmp_path / "final.json").read_text())
    assert saved["students"] == ["student-it0", "student-it1-warmup", "student-it2"], "the run's order, kept"
    assert "(student-it2)" in choice["reason"]
    assert choose("best")["selected"] == "student-it2", "the best dev figure alone"
    # a gain on every dev query: differences .5, .5, .5, .5 have no spread (standard error 0), so it2 is final
    paths[1] = dev_run(tmp_path / "consistent", "student-it1-warmup", 1, [3, 3, 3, 3])
    paths[2] = dev_run(tmp_path / "consistent", "student-it2", 2, [1, 1, 1, 1])
    assert choose("one-standard-error")["selected"] == "student-it2"
    # the untrained student comes after every trained one: tied with it2 for best, it2 is final
    paths[0] = dev_run(tmp_path / "consistent", "student-it0", 0, [1, 1, 1, 1])
    tied = choose("one-standard-error")
    assert tied["selected"] == "student-it2"
    assert "(student-it2)" in tied["reason"], "the reason names the best the rule measured against, not the first of a tie"


def test_without_a_dev_split_the_last_student_is_final(tmp_path):
    from pipeline.evaluation import select_final_student

    (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 0, "no_dev_reason": "too few queries"}))
    paths = [metric_file(tmp_path, n, "dev", None, it) for n, it in (("student-it0", 0), ("student-it1", 1))]
    choice = select_final_student(paths, str(tmp_path / "splits.json"), str(tmp_path / "final.json"))
    assert choice["selected"] == "student-it1" and choice["reason"] == "too few queries; the last student is final"


def test_without_a_dev_split_the_fallback_keeps_the_warm_up_where_no_judged_query_trained(tmp_path):
    from pipeline.evaluation import select_final_student

    table = [("student-it0", 0, None), ("student-it1-warmup", 1, "warmup"), ("student-it1", 1, None),
             ("student-it2", 2, None)]
    paths = [metric_file(tmp_path, n, "dev", None, it, ph) for n, it, ph in table]

    def choose(labels, fallback, rows=paths):
        (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 0, "no_dev_reason": "3 dev queries",
                                                          "labels": labels}))
        return select_final_student(rows, str(tmp_path / "splits.json"), str(tmp_path / "final.json"),
                                    fallback=fallback)

    label_free = choose("teacher", "auto")
    assert label_free["selected"] == "student-it1-warmup" and label_free["fallback"] == "auto"
    assert label_free["reason"] == ("3 dev queries; the warmed-up student is final (splits.dev.fallback: auto; "
                                    "no judged query trained the students)")
    assert choose("qrels", "auto")["selected"] == "student-it2", "judged training queries: the last student"
    assert choose("teacher", "last")["selected"] == "student-it2"
    assert choose("qrels", "warmup")["selected"] == "student-it1-warmup"
    no_warmup = choose("teacher", "auto", rows=[paths[0], paths[2], paths[3]])
    assert no_warmup["selected"] == "student-it2" and "no warmed-up student" in no_warmup["reason"]
    with pytest.raises(ValueError, match="splits.dev.fallback: 'first' is not one of auto, last, warmup"):
        choose("teacher", "first")


def test_the_summary_says_when_the_export_is_not_the_final_student_and_how_to_export_that_one(tmp_path):
    from pipeline.evaluation import select_final_student

    (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 20, "no_dev_reason": None}))
    names = [("student-it1-warmup", 1, "warmup", 0.6), ("student-it1", 1, None, 0.5)]
    test = [metric_file(tmp_path, n, "test", 0.4, it, ph) for n, it, ph, _ in names]
    dev = [metric_file(tmp_path, n, "dev", v, it, ph) for n, it, ph, v in names]
    select_final_student(dev, str(tmp_path / "splits.json"), str(tmp_path / "final.json"), select="best")

    def export_line(exported):
        folder = tmp_path / "results" / "x" / "export" / exported
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "export.json").write_text(json.dumps({"model": {"name": exported},
                                                        "formats": {"onnx": {"size_mb": 90.0}}}))
        summarize(test, str(tmp_path / "s.md"), str(tmp_path / "s.json"), "x", dev, str(tmp_path / "final.json"),
                  export_paths=[str(folder / "export.json")])
        return next(line for line in (tmp_path / "s.md").read_text().splitlines() if line.startswith("Export "))

    last = export_line("student-it1")
    assert "This is the last student, not the final one (student-it1-warmup)" in last
    assert f"`snakemake --cores all {tmp_path / 'results' / 'x' / 'export' / 'student-it1-warmup'}`" in last
    assert "not the final one" not in export_line("student-it1-warmup")


def test_summary_marks_the_final_student_and_shows_dev_figures(tmp_path):
    from pipeline.evaluation import select_final_student

    (tmp_path / "splits.json").write_text(json.dumps({"dev_queries": 20, "no_dev_reason": None}))
    names = [("student-it1-warmup", 1, "warmup", 0.6), ("student-it1", 1, None, 0.5)]
    test = [metric_file(tmp_path, n, "test", 0.4, it, ph) for n, it, ph, _ in names]
    dev = [metric_file(tmp_path, n, "dev", v, it, ph) for n, it, ph, v in names]
    select_final_student(dev, str(tmp_path / "splits.json"), str(tmp_path / "final.json"))
    rows = summarize(test, str(tmp_path / "s.md"), str(tmp_path / "s.json"), "exp", dev, str(tmp_path / "final.json"))
    assert [r["name"] for r in rows] == ["student-it1-warmup", "student-it1"], "a phase's snapshot comes first"
    assert rows[0]["final"] and rows[0]["dev"] == 0.6 and not rows[1]["final"]
    table = (tmp_path / "s.md").read_text()
    assert "student-it1-warmup (final)" in table and "Final student: **student-it1-warmup**" in table
    assert json.loads((tmp_path / "s.json").read_text())["final"]["selected"] == "student-it1-warmup"
