"""Training labels without judgments (pipeline/labels.py): pseudo-queries, the teacher's positives, the
queries it labels, the dev split, and the plan's checks."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import InputError, prepare_dataset, read_provenance, read_table, write_table
from pipeline.labels import (PSEUDO_PREFIX, add_pseudo_queries, label_with_teacher, make_pseudo_queries,
                             positives_from_run, pseudo_query, queries_to_label)
from pipeline.plan import Plan
from pipeline.splits import choose_queries
from test_plan import config

CORPUS = pd.DataFrame({
    "doc_id": ["a", "b", "c"],
    "title": ["Statins and stroke", "", "Gut bacteria"],
    "text": ["Short one. Statins lower the risk of stroke in older patients with high cholesterol. Yes.",
             "Insulin resistance rises with age in this cohort of adults. Ok.",
             "Antibiotics change the gut microbiome for months after a single course of treatment."],
})


def test_a_span_is_one_sentence_within_the_word_bounds_and_a_title_is_the_title():
    rng = np.random.default_rng(0)
    assert pseudo_query("title", "Statins and stroke", "x", (4, 24), rng) == "Statins and stroke"
    assert pseudo_query("title", "  ", "x", (4, 24), rng) is None, "no title, no title query"
    span = pseudo_query("span", "", CORPUS.text[0], (4, 24), rng)
    assert span == "Statins lower the risk of stroke in older patients with high cholesterol.", \
        "the only sentence of at least 4 words, whole"
    cut = pseudo_query("span", "", CORPUS.text[0], (4, 5), rng).split()
    words = CORPUS.text[0].split()[2:14]
    assert len(cut) == 5 and " ".join(cut) in " ".join(words), "a longer sentence is cut to a window of 5 words"
    assert pseudo_query("span", "", "Too short. Also.", (4, 24), rng) is None


def test_pseudo_queries_take_the_kinds_in_turn_once_per_passage_seeded():
    pseudo = make_pseudo_queries(CORPUS, count=3, kinds=["title", "span"], span_words=[4, 24], seed=1)
    assert len(pseudo) == 3 and pseudo["doc_id"].is_unique
    assert all(q.startswith(f"{PSEUDO_PREFIX}{k}:{d}") for q, k, d in zip(pseudo.query_id, pseudo.kind, pseudo.doc_id))
    by_doc = dict(zip(pseudo.doc_id, zip(pseudo.kind, pseudo.text)))
    # b has no title: it gives a span whatever its turn
    assert by_doc["b"] == ("span", "Insulin resistance rises with age in this cohort of adults.")
    assert pseudo["kind"].tolist() == ["span" if d == "b" else ["title", "span"][i % 2] for i, d in enumerate(pseudo.doc_id)]
    assert pseudo.equals(make_pseudo_queries(CORPUS, 3, ["title", "span"], [4, 24], seed=1)), "deterministic"
    assert len(make_pseudo_queries(CORPUS, 10, ["span"], [4, 24], seed=1)) == 3, "at most one per passage"


def test_the_queries_a_teacher_labels():
    ids = ["q1", "q2", "q3", f"{PSEUDO_PREFIX}span:d1"]
    assert queries_to_label(ids, "unjudged", {"q2"}) == ["pseudo:span:d1", "q1", "q3"]
    assert queries_to_label(ids, "all", {"q2"}) == ["pseudo:span:d1", "q1", "q2", "q3"]
    assert queries_to_label(ids, "none", {"q2"}) == ["pseudo:span:d1"]


def test_positives_are_the_top_k_or_those_above_a_probability():
    run = {"q": {"d1": 2.0, "d2": 1.0, "d3": 0.0, "d0": 1.0}, "r": {"x": 0.5}}
    top2 = positives_from_run(run, positives=2)
    assert top2.values.tolist() == [["q", "d1", 1], ["q", "d0", 1], ["r", "x", 1]], "ties break by passage id"
    # softmax of [2, 1, 1, 0]: e^2 / (e^2 + 2e + 1) = 0.5344, e / (...) = 0.1966 each, 1 / (...) = 0.0723
    assert positives_from_run(run, min_probability=0.15).doc_id.tolist() == ["d1", "d0", "d2", "x"]
    assert positives_from_run(run, min_probability=0.2).doc_id.tolist() == ["d1", "x"]
    # at scale 2: e^4 / (e^4 + 2e^2 + 1) = 0.7758, e^2 / (...) = 0.1050: under 0.15
    assert positives_from_run(run, min_probability=0.15, scale=2.0).doc_id.tolist() == ["d1", "x"]
    assert positives_from_run(run, min_probability=0.1, scale=2.0).doc_id.tolist() == ["d1", "d0", "d2", "x"]
    assert positives_from_run(run, min_probability=0.99).doc_id.tolist() == ["d1", "x"], "the top-1 always"


def test_bm25_labels_the_fixture_queries_with_their_marker_passages(tmp_path, tiny_beir):
    """The fixture's queries share a rare marker word with their one relevant passage (and its title): a BM25
    teacher labels every unjudged query, and every title pseudo-query, with that passage; test queries are
    left out; the labels are a qrels table the split step reads."""
    data = tmp_path / "data"
    prepare_dataset(str(tiny_beir), str(data), ["test"])
    add_pseudo_queries(str(data / "queries.parquet"), str(data / "corpus.parquet"), str(data / "with-pseudo.parquet"),
                       count=20, seed=0, kinds=["title", "span"])
    report = label_with_teacher({"name": "bm25", "kind": "bm25"}, str(data / "with-pseudo.parquet"),
                                str(data / "corpus.parquet"), str(tmp_path / "labels.parquet"),
                                str(tmp_path / "labels.json"), queries="unjudged",
                                test_qrels_path=str(data / "qrels-test.parquet"), depth=20)
    labels = read_table(tmp_path / "labels.parquet")
    train = pd.read_csv(tiny_beir / "qrels/train.tsv", sep="\t", dtype=str)
    truth = dict(zip(train["query-id"], train["corpus-id"]))
    test_ids = set(pd.read_csv(tiny_beir / "qrels/test.tsv", sep="\t", dtype=str)["query-id"])
    positive = dict(zip(labels.query_id, labels.doc_id))
    assert labels.query_id.is_unique and (labels.relevance == 1).all()
    real = {q: d for q, d in positive.items() if not q.startswith(PSEUDO_PREFIX)}
    assert real == truth, "each unjudged query gets its marker passage; no test query is labelled"
    assert not set(positive) & test_ids
    titles = {q: d for q, d in positive.items() if q.startswith(f"{PSEUDO_PREFIX}title:")}
    assert len(titles) == 10 and all(q == f"{PSEUDO_PREFIX}title:{d}" for q, d in titles.items()), \
        "a title holds its passage's marker"
    assert report["labelled_queries"] == len(truth) + 20 and report["pseudo_queries"] == 20
    assert report["test_queries_excluded"] == len(test_ids)
    assert read_provenance(tmp_path / "labels.parquet")["labels"] == "teacher"
    assert json.loads((tmp_path / "labels.json").read_text())["rule"] == "top 1"


def test_nothing_to_label_is_a_sentence(tmp_path, tiny_beir):
    data = tmp_path / "data"
    prepare_dataset(str(tiny_beir), str(data), ["test"])
    with pytest.raises(InputError, match=r"queries.parquet: no query to label: labels.queries is 'none'"):
        label_with_teacher({"name": "bm25", "kind": "bm25"}, str(data / "queries.parquet"), str(data / "corpus.parquet"),
                           str(tmp_path / "l.parquet"), str(tmp_path / "l.json"), queries="none")
    assert not (tmp_path / "l.parquet").exists()


def test_a_query_id_that_looks_like_a_pseudo_query_is_refused(tmp_path):
    write_table(pd.DataFrame({"query_id": ["pseudo:x"], "text": ["t"]}), tmp_path / "q.parquet", {})
    write_table(CORPUS, tmp_path / "c.parquet", {})
    with pytest.raises(InputError, match=r"q.parquet, field '_id': query id 'pseudo:x' starts with 'pseudo:'"):
        add_pseudo_queries(str(tmp_path / "q.parquet"), str(tmp_path / "c.parquet"), str(tmp_path / "out.parquet"),
                           count=2, seed=0)
    assert not (tmp_path / "out.parquet").exists()


def test_a_pseudo_query_never_enters_the_dev_split():
    judged = [f"q{i:02d}" for i in range(20)] + [f"{PSEUDO_PREFIX}span:d{i}" for i in range(80)]
    training, dev, reason = choose_queries(judged, set(), seed=3, train_queries=None, fraction=0.2,
                                           min_queries=2, max_queries=100)
    assert reason is None and len(dev) == 4, "the fraction is of the real queries"
    assert not any(q.startswith(PSEUDO_PREFIX) for q in dev) and len(training) == 96
    _, dev, reason = choose_queries(judged[20:], set(), 3, None, 0.2, 2, 100)
    assert dev == [] and reason.startswith("0 judged training queries and 80 pseudo-queries (never dev queries): "
                                           "a dev fraction of 0.2 gives 0 dev queries")


def label_free(data_dir=None, **labels):
    return config(labels={"source": "teacher", **labels}, data_dir=data_dir)


def test_the_plan_of_a_label_free_run():
    plan = Plan(label_free(pseudo_queries={"count": 100}))
    assert plan.prepared_splits == ["test"], "no training judgments are read"
    assert plan.training_labels().endswith("data/qrels-teacher.parquet")
    assert plan.data["queries"].endswith("data/queries-and-pseudo.parquet")
    assert plan.prepared_queries.endswith("data/queries.parquet")
    assert plan.labeller == "teacher"
    inputs = plan.labelling_inputs()
    assert inputs["index"] == "results/x/index/teacher" and inputs["test"] == [plan.data["qrels_test"]]
    assert not any(key.startswith("qrels_") for key in inputs), "labelling comes before the dev split"
    assert len(inputs["shards"]) == 2
    assert "index" not in Plan(label_free(teacher="fused")).labelling_inputs(), "a fusion reranks BM25"
    assert Plan(label_free(queries="all")).labelling_inputs()["test"] == [], "`all` reads nothing of the test split"
    labelled = Plan(config()).data["queries"]
    assert labelled.endswith("data/queries.parquet") and Plan(config()).prepared_splits == ["test", "train"]
    assert plan.problems() == []
    # a collection judged on its test split only: train == test is no problem when nothing reads train
    assert Plan(label_free(pseudo_queries={"count": 10}) | {"splits": {**config()["splits"], "train": "test",
                                                                        "test": "test"}}).problems() == []


@pytest.mark.parametrize("change, problem", [
    ({"labels": {"source": "teacher", "teacher": "nope"}}, "labels.teacher: unknown model 'nope'"),
    ({"labels": {"source": "teacher", "queries": "none", "pseudo_queries": {"count": 0}}},
     "labels: queries: none and no pseudo-queries"),
    ({"labels": {"source": "teacher"}, "train": {"teacher_scale": "calibrated"}},
     "iteration 1: train.teacher_scale: calibrated fits a teacher's scale on judged positives"),
    ({"labels": {"source": "teacher", "teacher": "other"},
      "models": {"other": {"kind": "bi-encoder", "source": "o", "finetune": {}}, "teacher": {"kind": "bi-encoder", "source": "t"},
                 "bm25": {"kind": "bm25"}}},
     "labels.teacher: 'other' is fine-tuned on the training labels, which it would make itself"),
])
def test_label_free_config_problems_are_sentences(change, problem):
    assert any(p.startswith(problem) for p in Plan(config(**change)).problems()), Plan(config(**change)).problems()


def test_a_collection_without_training_judgments_is_pointed_to_teacher_labels(tmp_path, tiny_beir):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (beir / name).write_bytes((Path(tiny_beir) / name).read_bytes())
    problems = Plan(config(data_dir=str(beir), labels={"source": "qrels"})).problems()
    assert any(p.startswith(f"splits.train: {beir}/qrels/train.tsv does not exist; without training judgments let "
                            "the teacher label") for p in problems)
    assert Plan(label_free(data_dir=str(beir))).problems() == []
    auto = Plan(config(data_dir=str(beir)))
    assert auto.config["labels"]["source"] == "teacher" and auto.problems() == []
    assert auto.label_source_reason == f"{beir}/qrels/train.tsv does not exist: the teacher labels the training queries"


@pytest.mark.parametrize("judged, train_queries, source", [
    (250, None, "qrels"), (200, None, "qrels"), (199, None, "qrels+teacher"), (809, 30, "qrels+teacher"), (3, None, "qrels+teacher"),
])
def test_auto_labels_follow_the_number_of_judged_training_queries(tmp_path, judged, train_queries, source):
    (tmp_path / "qrels").mkdir()
    lines = [f"q{i}\td{j}\t1" for i in range(judged) for j in range(2)]  # two judgments a query: queries counted once
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    plan = Plan(config(data_dir=str(tmp_path), splits={**config()["splits"], "train_queries": train_queries}))
    assert plan.config["labels"]["source"] == source
    assert plan.label_source_reason.startswith(f"{min(judged, train_queries or judged)} judged training queries")
    downloaded = Plan(config())  # no data_dir: BEIR SciFact is downloaded, its 809 judged training queries
    assert downloaded.config["labels"]["source"] == "qrels"
    assert downloaded.label_source_reason == "a downloaded collection: its judged training queries"


def test_the_plan_of_a_run_with_few_judgments_and_teacher_labels():
    """labels.source: qrels+teacher reads the judged train split (the dev split comes from it) and labels
    the other queries with the teacher."""
    plan = Plan(config(labels={"source": "qrels+teacher", "pseudo_queries": {"count": 100}}))
    assert plan.judged_training and plan.teacher_labelled and plan.pseudo_queries
    assert plan.prepared_splits == ["test", "train"]
    assert plan.training_labels().endswith("data/qrels-train.parquet")
    assert plan.teacher_labels.endswith("data/qrels-teacher.parquet")
    assert plan.data["queries"].endswith("data/queries-and-pseudo.parquet")
    assert plan.problems() == []
    same = config(labels={"source": "qrels+teacher"}) | {"splits": {**config()["splits"], "train": "test",
                                                                    "test": "test"}}
    assert any(p.startswith("splits: train and test are both 'test'") for p in Plan(same).problems())


def test_corpus_sentences_are_every_long_enough_sentence_cut_and_sampled_seeded():
    from pipeline.labels import corpus_sentences

    texts = ["Short one. Statins lower the risk of stroke in older patients. Yes.", "Insulin resistance rises with age."]
    assert corpus_sentences(texts, (4, 5), 10, seed=0) == ["Statins lower the risk of", "Insulin resistance rises with age."]
    sample = corpus_sentences(texts * 50, (4, 48), 7, seed=3)
    assert len(sample) == 7 and sample == corpus_sentences(texts * 50, (4, 48), 7, seed=3)


def test_graded_dev_labels_are_the_teachers_top_k_graded_down_and_only_when_asked():
    from pipeline.labels import graded_from_run

    run = {"q1": {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.1}, "q2": {"x": 1.0, "y": 1.0}}
    graded = graded_from_run(run, 3)
    assert graded.values.tolist() == [["q1", "a", 3], ["q1", "c", 2], ["q1", "b", 1], ["q2", "x", 3], ["q2", "y", 2]]
    assert Plan(label_free()).graded_dev_labels() == [], "dev_depth 1: the dev split reads the training labels"
    assert Plan(label_free(dev_depth=10)).graded_dev_labels()[0].endswith("data/qrels-teacher-graded.parquet")
    assert Plan(config(labels={"source": "qrels+teacher", "dev_depth": 10})).graded_dev_labels() == [], \
        "judged queries give the dev split"


def test_auto_labels_leave_a_calibrated_teacher_scale_on_judged_positives(tmp_path):
    """The presets that calibrate their teachers' scales (strong-teacher, the methods') keep their judged
    training queries alone: the scale is fitted on judged positives, which the teacher's labels would bias."""
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(30)))
    plan = Plan(config(data_dir=str(tmp_path), overrides={"2": {"train": {"teacher_scale": "calibrated"}}}))
    assert plan.config["labels"]["source"] == "qrels" and plan.problems() == []
    assert "but train.teacher_scale: calibrated fits teachers on judged positives only" in plan.label_source_reason
    assert plan.iteration(2)["labels"]["source"] == "qrels", "iteration configs are made after the choice"
