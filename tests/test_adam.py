"""ADAM (pipeline/methods/adam.py): dark examples on crafted word sequences, the NLL that leaves them out,
the self-paced schedule and selection, BM25 scores of passages outside the corpus, its config checks.
The workflow end to end is in tests/test_workflow.py."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ConfigError, complete, section_defaults
from pipeline.losses import Batch, CompositeLoss, ContrastiveNLL, StudentScores
from pipeline.methods import get_method
from pipeline.methods.adam import (DARK_PREFIX, Adam, add_dark_examples, dark_entropy_report, kept_fraction,
                                   make_dark_examples, mask, mix_up, self_paced_weights, teacher_confidence)
from pipeline.methods.standard import recipe_terms
from pipeline.plan import Plan
from pipeline.training.sampling import Example, build_examples, sample_groups

NEGATIVE = [f"n{i}" for i in range(10)]
POSITIVE = [f"p{i}" for i in range(20)]


def test_mix_up_replaces_a_span_of_the_asked_ratio_with_a_span_of_the_positive():
    words, where = mix_up(NEGATIVE, POSITIVE, 0.5, np.random.default_rng(3))
    start, stop = where["span"]
    source, source_stop = where["from_positive"]
    assert stop - start == 5 and len(words) == 10
    assert words[start:stop] == POSITIVE[source:source_stop], "a contiguous span of the positive"
    assert words[:start] + words[stop:] == NEGATIVE[:start] + NEGATIVE[stop:], "the rest is the negative's"
    assert mix_up(NEGATIVE, POSITIVE, 0.5, np.random.default_rng(3)) == (words, where), "deterministic in the seed"
    # a positive shorter than the span: the span shrinks to the whole positive
    short, where = mix_up(NEGATIVE, ["p0", "p1"], 0.9, np.random.default_rng(0))
    assert where["span"][1] - where["span"][0] == 2 and short.count("p0") == 1


def test_mask_replaces_or_drops_the_asked_ratio_of_the_positive():
    words, where = mask(POSITIVE, 0.25, "[MASK]", np.random.default_rng(1))
    assert len(words) == 20 and words.count("[MASK]") == 5 and len(where["masked"]) == 5
    assert all(words[i] == "[MASK]" for i in where["masked"])
    assert all(w == POSITIVE[i] for i, w in enumerate(words) if i not in where["masked"])
    dropped, where = mask(POSITIVE, 0.25, None, np.random.default_rng(1))
    assert dropped == [w for i, w in enumerate(POSITIVE) if i not in where["masked"]] and len(dropped) == 15


def candidates_and_passages():
    candidates = pd.DataFrame([(q, f"d{q}{r}", r, 1.0, "bm25") for q in ("a", "b") for r in range(3)],
                              columns=["query_id", "doc_id", "rank", "score", "miner"])
    passages = {f"d{q}{r}": " ".join(f"{q}{r}w{i}" for i in range(8)) for q in ("a", "b") for r in range(3)}
    passages.update({"pa": "alpha beta gamma delta epsilon zeta", "pb": "one two three four"})
    return candidates, passages, {"a": {"pa": 1}, "b": {"pb": 1}}


def test_dark_examples_per_query_with_their_recipe_deterministic_in_the_seed():
    candidates, passages, qrels = candidates_and_passages()
    settings = section_defaults("adam")
    dark = make_dark_examples(candidates, passages, qrels, settings, seed=5)
    assert len(dark) == 2 * 4 and dark["doc_id"].is_unique and dark["doc_id"].str.startswith(DARK_PREFIX).all()
    first = dark[(dark.query_id == "a") & (dark.miner == "adam-mixup")].iloc[0]
    recipe = json.loads(first["recipe"])
    assert recipe["kind"] == "mixup" and recipe["negative"] == "da0" and recipe["positive"] == "pa"
    assert recipe["ratio"] == 0.5 and recipe["span"][1] - recipe["span"][0] == 4, "half of the 8 words"
    masked = dark[(dark.query_id == "b") & (dark.miner == "adam-mask")].iloc[0]
    assert masked["text"].split().count("[MASK]") == 2 and json.loads(masked["recipe"])["positive"] == "pb"
    pd.testing.assert_frame_equal(dark, make_dark_examples(candidates, passages, qrels, settings, seed=5))
    assert not dark["text"].equals(make_dark_examples(candidates, passages, qrels, settings, seed=6)["text"])


def test_dark_ids_never_collide_with_corpus_ids(tmp_path):
    from pipeline.data import CANDIDATES_SCHEMA, write_table

    candidates, passages, qrels = candidates_and_passages()
    corpus = pd.DataFrame({"doc_id": [f"{DARK_PREFIX}x", *passages], "title": "", "text": ["x", *passages.values()]})
    write_table(corpus, tmp_path / "corpus.parquet", {})
    write_table(candidates, tmp_path / "candidates.parquet", {}, CANDIDATES_SCHEMA)
    write_table(pd.DataFrame([("a", "pa", 1), ("b", "pb", 1)], columns=["query_id", "doc_id", "relevance"]),
                tmp_path / "qrels.parquet", {})
    with pytest.raises(ValueError, match="corpus id 'adam-dark:x' starts with 'adam-dark:'"):
        add_dark_examples(str(tmp_path / "candidates.parquet"), str(tmp_path / "qrels.parquet"),
                          str(tmp_path / "corpus.parquet"), str(tmp_path / "out.parquet"), {}, seed=1)


def test_dark_examples_join_every_group_after_the_positive():
    candidates, passages, qrels = candidates_and_passages()
    dark = make_dark_examples(candidates, passages, qrels, section_defaults("adam"), seed=5)
    examples = build_examples(pd.concat([candidates.assign(text=None), dark], ignore_index=True), qrels)
    assert [len(e.synthetic) for e in examples] == [4, 4] and all(len(e.negatives) == 3 for e in examples)
    for _, group in sample_groups(examples, group_size=6, batch_size=2, seed=0)[0]:
        assert group[1:5] == sorted(d for d in dark["doc_id"] if d.split(":")[1] == group[0][1])
    with pytest.raises(ValueError, match="group_size 5 leaves no room for a negative"):
        sample_groups(examples, group_size=5, batch_size=2, seed=0)


def test_nll_leaves_a_querys_own_dark_examples_out():
    """Group [p, dark, n]: the NLL is -log e^s_p / (e^s_p + e^s_n), in the group and across the batch."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 0.0],   # query a: p, dark, n
                      [0.0, 1.0], [0.0, 5.0], [1.0, 0.0]])  # query b: p, dark, n
    out = StudentScores(q, p, scale=1.0)
    synthetic = torch.tensor([[False, True, False], [False, True, False]])
    group = Batch(["a", "b"], ["a", "b"], list("123456"), 3, synthetic=synthetic)
    expected = [-math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(math.exp(1) / (math.exp(1) + 1))]
    assert ContrastiveNLL(in_batch=False)(out, group).tolist() == pytest.approx(expected, rel=1e-6)
    # in-batch: the other query's passages (its dark example too) stay negatives
    a_row = [2.0, 3.0, 0.0, 0.0, 0.0, 1.0]  # a against every passage; its own dark (column 1) leaves
    expected_a = -math.log(math.exp(2) / sum(math.exp(s) for i, s in enumerate(a_row) if i != 1))
    assert ContrastiveNLL(in_batch=True)(out, group)[0].item() == pytest.approx(expected_a, rel=1e-6)
    plain = Batch(["a", "b"], ["a", "b"], list("123456"), 3)
    assert ContrastiveNLL(in_batch=False)(out, plain)[0].item() > expected[0], "without the mask the dark one counts"


def test_self_paced_schedule_keeps_the_asked_fraction_at_given_steps():
    linear = {"start": 0.5, "schedule": "linear", "confidence": "probability"}
    assert [kept_fraction(s, linear, steps_per_epoch=5, epochs=2) for s in (0, 9)] == [0.5, 1.0]
    assert kept_fraction(3, linear, 5, 2) == pytest.approx(0.5 + 0.5 * 3 / 9)
    by_epoch = dict(linear, schedule="epoch")
    assert [kept_fraction(s, by_epoch, 5, 3) for s in (0, 4, 5, 10, 14)] == [0.5, 0.5, 0.75, 1.0, 1.0]
    confidence = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert self_paced_weights(confidence, 0.5).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert self_paced_weights(confidence, 0.6).tolist() == [0.0, 1.0, 1.0, 1.0], "ceil(0.6 x 4) = 3 kept"
    assert self_paced_weights(confidence, 1.0).tolist() == [1.0] * 4


def test_teacher_confidence_leaves_the_dark_examples_out():
    scores = torch.tensor([[2.0, 9.0, 0.0, 1.0]])  # p, dark, n, n
    probability = math.exp(2) / (math.exp(2) + 1 + math.e)
    assert teacher_confidence(scores, 1, "probability", 1.0).item() == pytest.approx(probability, rel=1e-6)
    assert teacher_confidence(scores, 1, "margin", 1.0).item() == pytest.approx(1.0)


def fake_run(start=0.5, examples=None):
    config = {"teacher": "t", "adam": complete({"self_paced": {"start": start}, "mixup": {"count": 0},
                                                "mask": {"count": 1}}, "adam"),
              "train": {**section_defaults("train"), "group_size": 4, "batch_size": 2, "epochs": 1}}
    examples = examples or [Example("a", ["pa"], ["n1", "n2", "n3"], ["adam-dark:a:mask-0"]),
                            Example("b", ["pb"], ["m1", "m2", "m3"], ["adam-dark:b:mask-0"])]
    return SimpleNamespace(config=config, train=config["train"], examples=examples, teacher_scores={}, reports={})


def test_with_the_whole_batch_kept_the_loss_equals_the_plain_one():
    assert Adam().instance_weights(fake_run(start=1.0), "distill") is None, "start 1: no selection at all"
    weigh = Adam().instance_weights(fake_run(start=0.5), "distill")
    batch = Batch(["a", "b"], ["a", "b"], list("abcdefgh"), 4, teacher_scores={"t": torch.tensor(
        [[5.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 2.0]])})
    assert weigh(batch, 0).tolist() == [1.0, 0.0], "half the batch, the confident query"
    assert weigh(batch, 1).tolist() == [1.0, 1.0], "the last step keeps everything"
    loss = CompositeLoss(recipe_terms(section_defaults("train"), ["t"]))
    out = StudentScores(torch.eye(2, 8)[:, :2], torch.randn(8, 2), 1.0)
    batch.weights = weigh(batch, 1)
    weighted, _ = loss(out, batch)
    batch.weights = None
    assert weighted.item() == pytest.approx(loss(out, batch)[0].item(), rel=1e-6)


def test_the_teachers_entropy_is_reported_with_and_without_dark_examples():
    run = fake_run()
    run.teacher_scores = {"t": {("a", "pa"): 4.0, ("a", "adam-dark:a:mask-0"): 3.0, ("a", "n1"): 0.0, ("a", "n2"): 0.0,
                                ("a", "n3"): 0.0}}
    run.examples = run.examples[:1]
    report = dark_entropy_report(run, "t", dark=1)
    with_dark = np.exp([4.0, 3.0, 0.0, 0.0]) / np.exp([4.0, 3.0, 0.0, 0.0]).sum()
    without = np.exp([4.0, 0.0, 0.0, 0.0]) / np.exp([4.0, 0.0, 0.0, 0.0]).sum()
    assert report["entropy_with_dark"] == pytest.approx(float(-(with_dark * np.log(with_dark)).sum()))
    assert report["entropy_without_dark"] == pytest.approx(float(-(without * np.log(without)).sum()))
    assert report["positive_probability_without_dark"] == pytest.approx(without[0])
    assert report["entropy_with_dark"] > report["entropy_without_dark"] and report["list_length"] == 4


def test_bm25_scores_a_passage_outside_the_corpus_with_the_corpus_statistics():
    from pipeline.lexical import BM25

    texts = ["the cat sat on the mat", "dogs chase cats in the park", "a mat of moss", "cats and dogs and cats"]
    bm25 = BM25([f"d{i}" for i in range(4)], texts)
    pairs = pd.DataFrame({"query_id": ["q"] * 4, "doc_id": [f"d{i}" for i in range(4)]})
    in_corpus = bm25.score_pairs({"q": "cats on mats"}, pairs)
    as_synthetic = bm25.score_pairs({"q": "cats on mats"}, pairs, synthetic=texts)
    assert in_corpus.max() > 0 and as_synthetic == pytest.approx(in_corpus, rel=1e-5)


def adam_plan(**changes):
    config = {"experiment": "x", "methods": ["standard", "adam"], "teacher": "t",
              "models": {"t": {"kind": "bi-encoder", "source": "t"}, "bm25": {"kind": "bm25"}},
              "train": {"group_size": 6}, **changes}
    return Plan(complete(config))


def test_plan_scores_and_trains_on_the_candidates_with_dark_examples():
    plan = adam_plan()
    assert isinstance(get_method("adam"), Adam) and plan.problems() == []
    assert plan.scored_candidates(1) == plan.training_candidates(1) == "results/x/it1/dark-candidates.parquet"
    assert plan.train_inputs(1)["candidates"] == "results/x/it1/dark-candidates.parquet"
    none = adam_plan(adam={"mixup": {"count": 0}, "mask": {"count": 0}})
    assert none.scored_candidates(1) == "results/x/it1/candidates.parquet"


@pytest.mark.parametrize("changes, message", [
    ({"train": {"group_size": 5}}, "4 dark examples per query leave no negative in train.group_size 5; set group_size to at least 6"),
    ({"methods": ["adam"]}, "methods ['adam']: none trains the student's distillation, which they add to; list a recipe too (one of "
                            "['lead', 'onmkd', 'prod', 'standard'])"),
])
def test_config_checks_name_the_problem(changes, message):
    assert any(message in p for p in adam_plan(**changes).problems())


@pytest.mark.parametrize("adam, message", [
    ({"mixup": {"ratio": 1.0}}, "adam.mixup.ratio: 1.0 is greater than or equal to the maximum of 1"),
    ({"mask": {"ratio": 0}}, "adam.mask.ratio: 0 is less than or equal to the minimum of 0"),
    ({"mask": {"count": -1}}, "adam.mask.count: -1 is less than the minimum of 0"),
    ({"self_paced": {"start": 0}}, "adam.self_paced.start: 0 is less than or equal to the minimum of 0"),
    ({"self_paced": {"start": 1.5}}, "adam.self_paced.start: 1.5 is greater than the maximum of 1"),
])
def test_schema_rejects_bad_ratios_counts_and_starts(adam, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        complete({"experiment": "x", "methods": ["standard", "adam"], "teacher": "t", "models": {}, "adam": adam})
