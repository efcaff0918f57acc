"""Training queries and the dev split: seeded, disjoint, never a test query, and a logged fallback."""

import json

import pandas as pd
import pytest

from pipeline.data import QRELS_SCHEMA, read_provenance, read_table, write_table
from pipeline.splits import choose_queries, split_training_queries

JUDGED = [f"q{i:03d}" for i in range(200)]


def test_choice_is_seeded_disjoint_and_skips_test_queries():
    test_ids = {"q005", "q010", "q150"}
    training, dev, reason = choose_queries(JUDGED, test_ids, seed=3, train_queries=None, fraction=0.2,
                                           min_queries=5, max_queries=100)
    assert reason is None and len(dev) == 40 and len(training) == 160
    assert not set(training) & set(dev) and set(training) | set(dev) == set(JUDGED)
    assert not set(dev) & test_ids, "a test query never enters the dev split"
    assert (training, dev) == choose_queries(JUDGED, test_ids, 3, None, 0.2, 5, 100)[:2], "deterministic"
    assert dev != choose_queries(JUDGED, test_ids, 4, None, 0.2, 5, 100)[1], "the seed matters"
    assert len(choose_queries(JUDGED, set(), 3, None, 0.2, 5, 30)[1]) == 30, "max_queries caps the dev split"


def test_a_sample_of_training_queries_then_its_dev_split():
    training, dev, reason = choose_queries(JUDGED, set(), seed=1, train_queries=30, fraction=0.2, min_queries=5,
                                           max_queries=100)
    assert reason is None and len(training) + len(dev) == 30 and len(dev) == 6
    again = choose_queries(JUDGED, set(), seed=1, train_queries=30, fraction=0.2, min_queries=5, max_queries=100)
    assert (training, dev) == again[:2]
    wider, _, _ = choose_queries(JUDGED, set(), seed=1, train_queries=None, fraction=0.2, min_queries=5,
                                 max_queries=100)
    assert set(training) <= set(JUDGED) and len(wider) == 160


def test_too_few_queries_for_a_dev_split_fall_back_with_a_reason():
    training, dev, reason = choose_queries(JUDGED[:20], set(), seed=1, train_queries=None, fraction=0.2,
                                           min_queries=5, max_queries=100)
    assert dev == [] and training == JUDGED[:20]
    assert "20 judged training queries" in reason and "fewer than splits.dev.min_queries=5" in reason
    assert reason.endswith("no dev split"), "which student is final is select_final_student's (splits.dev.fallback)"


def qrels_file(path, query_ids, **provenance):
    frame = pd.DataFrame({"query_id": query_ids, "doc_id": [f"d{q}" for q in query_ids], "relevance": 1})
    write_table(frame, path, {"split": path.stem, **provenance}, QRELS_SCHEMA)
    return str(path)


def test_the_reason_for_no_dev_split_says_whose_labels_the_training_queries_have(tmp_path):
    test = qrels_file(tmp_path / "qrels-test.parquet", JUDGED[150:])

    def reason(name, **provenance):
        train = qrels_file(tmp_path / f"{name}.parquet", JUDGED[:15], **provenance)
        return split_training_queries(train, test, str(tmp_path / f"{name}-training.parquet"),
                                      str(tmp_path / f"{name}-dev.parquet"), str(tmp_path / f"{name}.json"), seed=2,
                                      dev={"fraction": 0.2})

    label_free = reason("teacher", labels="teacher")  # as pipeline/labels.py records the teacher's labels
    assert label_free["labels"] == "teacher"
    assert label_free["no_dev_reason"].startswith("15 teacher-labelled training queries: ")
    judged = reason("judged")
    assert judged["labels"] == "qrels" and judged["no_dev_reason"].startswith("15 judged training queries: ")


def test_split_step_writes_training_dev_and_report(tmp_path):
    train = qrels_file(tmp_path / "qrels-train.parquet", JUDGED[:50])
    test = qrels_file(tmp_path / "qrels-test.parquet", JUDGED[150:])
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("training", "dev")}
    report = split_training_queries(train, test, out["training"], out["dev"], str(tmp_path / "splits.json"), seed=2,
                                    dev={"fraction": 0.2})
    training, dev = read_table(out["training"]), read_table(out["dev"])
    assert len(dev) == 10 and len(training) == 40 and not set(dev.query_id) & set(training.query_id)
    assert report["dev_query_ids"] == sorted(dev.query_id)
    assert json.loads((tmp_path / "splits.json").read_text())["dev_queries"] == 10
    assert read_provenance(out["dev"])["role"] == "dev" and read_provenance(out["training"])["seed"] == 2

    few = split_training_queries(train, test, out["training"], out["dev"], str(tmp_path / "splits.json"), seed=2,
                                 train_queries=10)
    assert few["dev_queries"] == 0 and few["training_queries"] == 10 and "no dev split" in few["no_dev_reason"]
    assert len(read_table(out["dev"])) == 0, "an empty dev split is still a valid qrels file"


def test_a_named_dev_split_must_not_share_test_queries(tmp_path):
    train = qrels_file(tmp_path / "qrels-train.parquet", JUDGED[:50])
    test = qrels_file(tmp_path / "qrels-test.parquet", JUDGED[150:])
    named = qrels_file(tmp_path / "qrels-dev.parquet", JUDGED[40:60])
    report = split_training_queries(train, test, str(tmp_path / "t.parquet"), str(tmp_path / "d.parquet"),
                                    str(tmp_path / "s.json"), seed=1, dev_qrels_path=named)
    assert report["dev_queries"] == 20 and report["training_queries"] == 40, "named dev queries leave training"
    clash = qrels_file(tmp_path / "qrels-clash.parquet", JUDGED[140:160])
    with pytest.raises(ValueError, match="shares 10 queries with the test split"):
        split_training_queries(train, test, str(tmp_path / "t.parquet"), str(tmp_path / "d.parquet"),
                               str(tmp_path / "s.json"), seed=1, dev_qrels_path=clash)


def test_teacher_labels_join_training_but_never_dev_or_judged_or_test(tmp_path):
    """labels.source: qrels+teacher: judged training queries keep their judgments and give the dev split;
    the teacher's labels add the queries nobody judged."""
    train = qrels_file(tmp_path / "qrels-train.parquet", JUDGED[:50])
    test = qrels_file(tmp_path / "qrels-test.parquet", JUDGED[150:])
    pseudo = [f"pseudo:span:d{i}" for i in range(30)]
    # the teacher labelled every query but the test ones, judged training queries among them, with its own passages
    teacher = pd.DataFrame({"query_id": JUDGED[:150] + pseudo, "doc_id": "teacher-pick", "relevance": 1})
    write_table(teacher, tmp_path / "qrels-teacher.parquet", {"labels": "teacher", "teacher": {"name": "t"}},
                QRELS_SCHEMA)
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("training", "dev")}
    report = split_training_queries(train, test, out["training"], out["dev"], str(tmp_path / "splits.json"), seed=2,
                                    dev={"fraction": 0.2}, teacher_qrels_path=str(tmp_path / "qrels-teacher.parquet"))
    training, dev = read_table(out["training"]), read_table(out["dev"])
    judged_training = set(training.query_id) & set(JUDGED[:50])
    assert len(dev) == 10 and set(dev.doc_id) == {f"d{q}" for q in dev.query_id}, "dev keeps the judgments"
    assert len(judged_training) == 40 and not judged_training & set(dev.query_id)
    assert set(training[training.query_id.isin(judged_training)].doc_id) == {f"d{q}" for q in judged_training}, \
        "a judged training query keeps its judgment, not the teacher's pick"
    by_teacher = training[training.doc_id == "teacher-pick"]
    assert set(by_teacher.query_id) == set(JUDGED[50:150]) | set(pseudo), "unjudged queries and pseudo-queries"
    assert report["teacher_labelled_queries"] == 130 and report["training_queries"] == 40
    assert read_provenance(out["training"])["teacher_labels"] == {"name": "t"}


def test_graded_teacher_labels_replace_the_dev_queries_labels_only(tmp_path):
    train = qrels_file(tmp_path / "qrels-train.parquet", JUDGED[:50])
    test = qrels_file(tmp_path / "qrels-test.parquet", JUDGED[150:])
    graded = pd.DataFrame({"query_id": [q for q in JUDGED[:50] for _ in range(3)],
                           "doc_id": [f"top{r}" for _ in JUDGED[:50] for r in range(3)],
                           "relevance": [3, 2, 1] * 50})
    write_table(graded, tmp_path / "graded.parquet", {"labels": "teacher graded"}, QRELS_SCHEMA)
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("training", "dev")}
    report = split_training_queries(train, test, out["training"], out["dev"], str(tmp_path / "splits.json"), seed=2,
                                    dev={"fraction": 0.2}, graded_dev_path=str(tmp_path / "graded.parquet"))
    training, dev = read_table(out["training"]), read_table(out["dev"])
    assert sorted(set(dev.query_id)) == report["dev_query_ids"] and len(dev) == 30
    assert sorted(dev.relevance.unique()) == [1, 2, 3] and not training.doc_id.str.startswith("top").any()
    assert report["dev_labels"] == "the teacher's graded top passages"
