import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures import prepare_with_candidates
from pipeline import methods as registry
from pipeline.methods import Method
from pipeline.models import BiEncoder, ModelSpec
from pipeline.scorers import score_candidates
from pipeline.training import (Phase, init_student, linear_schedule, run_phases, sample_groups, build_examples,
                               train_student)
from pipeline.training.teachers import teacher_scale


@pytest.fixture(scope="module")
def setup(tiny_beir, tiny_bert, tmp_path_factory):
    """Prepared data, BM25 candidates, teacher scores, an initial 1-layer student."""
    root = tmp_path_factory.mktemp("train")
    data = prepare_with_candidates(tiny_beir, root)
    teacher = {"name": "teacher", "kind": "bi-encoder", "source": str(tiny_bert)}
    from pipeline.embeddings import encode_corpus_shard

    encode_corpus_shard(data["corpus"], teacher, str(root / "teacher-emb.parquet"))
    score_candidates(str(root / "candidates.parquet"), data["qrels-train"], data["queries"], data["corpus"],
                     str(root / "scores.parquet"), teacher, embedding_shards={"teacher": [str(root / "teacher-emb.parquet")]},
                     device="cpu")
    init_student({"name": "student-it0", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 1},
                 str(root / "student0"))
    return root, data, teacher


def train(setup, out, warmup=None, **kwargs):
    root, data, teacher = setup
    settings = {"epochs": 2, "batch_size": 4, "group_size": 4, "lr": 1e-3, "checkpoint_every": 3,
                **kwargs.pop("settings", {})}
    config = {"teacher": "teacher", "train": settings, "warmup": warmup or {}}
    return train_student(str(root / "student0"), str(out), str(root / "candidates.parquet"),
                         {"teacher": str(root / "scores.parquet")}, data["qrels-train"], data["queries"],
                         data["corpus"], config=config, device="cpu", seed=3, **kwargs)


def test_training_learns_and_saves_a_loadable_student(setup, tmp_path):
    summary = train(setup, tmp_path / "student1", scratch_dir=str(tmp_path / "scratch"))
    history = summary["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"nll", "kl:teacher"} <= set(history[0])
    saved = json.loads((tmp_path / "student1" / "training.json").read_text())
    assert saved["initialised_from"].endswith("student0")
    model = BiEncoder.load(ModelSpec("s", source=str(tmp_path / "student1")))
    assert model.num_layers == 1
    assert not (tmp_path / "scratch").exists(), "scratch checkpoints are removed after success"
    before = BiEncoder.load(ModelSpec("s", source=str(setup[0] / "student0")))
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters())]
    assert any(changed)


def test_warmup_phase_runs_before_distillation(setup, tmp_path):
    root, data, teacher = setup
    summary = train(setup, tmp_path / "student1", settings={"epochs": 1},
                    warmup={"epochs": 1, "batch_size": 8, "max_passage_length": 32},
                    models={"teacher": teacher}, embedding_shards={"teacher": [str(root / "teacher-emb.parquet")]})
    phases = [h["phase"] for h in summary["history"]]
    assert phases[0] == "warmup" and phases[-1] == "distill"
    assert "embedding_mse" in summary["history"][0]


def test_the_warmup_and_the_distillation_train_with_their_own_dropout_settings(setup, tmp_path, monkeypatch):
    """warmup.dropout and train.dropout reach their phases (pipeline.training.loop.set_dropout)."""
    from pipeline.config import complete_section
    from pipeline.training import loop

    root, data, teacher = setup
    calls, real = [], loop.set_dropout
    monkeypatch.setattr(loop, "set_dropout", lambda model, p, own: (calls.append(p), real(model, p, own)))
    train(setup, tmp_path / "student1", settings={"epochs": 1, "dropout": 0.5},
          warmup={"epochs": 1, "batch_size": 8, "max_passage_length": 32, "dropout": 0.0},
          models={"teacher": teacher}, embedding_shards={"teacher": [str(root / "teacher-emb.parquet")]})
    assert calls == [0.0, 0.5]
    assert complete_section("train", {})["dropout"] is None and complete_section("warmup", {})["dropout"] is None


def test_warmup_on_a_sample_of_a_large_corpus(setup):
    """``warmup.max_passages``: a seeded sample of that many corpus passages (their teacher embeddings
    read alone), the same for the same seed; null: every passage."""
    from pipeline.config import complete_section
    from pipeline.data import read_table
    from pipeline.training.warmup import warmup_phase

    root, data, teacher = setup
    corpus = read_table(data["corpus"])

    def passages(max_passages, seed=3):
        settings = complete_section("warmup", {"epochs": 1, "batch_size": 4, "max_passages": max_passages})
        phase = warmup_phase(settings, ModelSpec.from_config("teacher", teacher), [str(root / "teacher-emb.parquet")],
                             corpus, True, [], "cpu", seed)
        return sorted(int(i) for batch in phase.batches(0) for i in batch), phase

    assert len(passages(None)[0]) == len(corpus)
    assert len(passages(10)[0]) == 10 and passages(10)[1].total_steps() == 3
    one = passages(10)[1].batches(0)
    assert [list(b) for b in one] == [list(b) for b in passages(10)[1].batches(0)]


def test_warmup_refuses_embeddings_of_another_model(setup, tmp_path):
    root, data, teacher = setup
    with pytest.raises(ValueError, match="not made by warm-up teacher"):
        train(setup, tmp_path / "s", warmup={"epochs": 1}, models={"teacher": dict(teacher, source="elsewhere")},
              embedding_shards={"teacher": [str(root / "teacher-emb.parquet")]})
    assert not (tmp_path / "s").exists()


class Interrupt(Exception):
    pass


def interrupted_after(make_phase, calls_before_kill: int):
    """``make_phase`` (a phase factory such as ``distill_phase``) whose phase raises :class:`Interrupt`
    at its ``calls_before_kill``-th step, as a killed job would."""

    def interrupting_phase(*args, **kwargs):
        phase = make_phase(*args, **kwargs)
        inner, calls = phase.step, {"n": 0}

        def step(models, batch, global_step):
            calls["n"] += 1
            if calls["n"] == calls_before_kill:
                raise Interrupt()
            return inner(models, batch, global_step)

        phase.step = step
        return phase

    return interrupting_phase


def test_killed_training_resumes_to_the_same_weights(setup, tmp_path, monkeypatch):
    reference = train(setup, tmp_path / "reference", scratch_dir=str(tmp_path / "scratch-ref"))

    import pipeline.training.distill as training

    original = training.distill_phase
    monkeypatch.setattr(training, "distill_phase", interrupted_after(original, 8))
    with pytest.raises(Interrupt):
        train(setup, tmp_path / "resumed", scratch_dir=str(tmp_path / "scratch"))
    assert (tmp_path / "scratch" / "checkpoint.pt").is_file()
    assert not (tmp_path / "resumed").exists(), "no output after a killed run"
    monkeypatch.setattr(training, "distill_phase", original)
    resumed = train(setup, tmp_path / "resumed", scratch_dir=str(tmp_path / "scratch"))
    assert resumed["history"] == reference["history"]
    a = BiEncoder.load(ModelSpec("a", source=str(tmp_path / "reference")))
    b = BiEncoder.load(ModelSpec("b", source=str(tmp_path / "resumed")))
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_lwf_keeps_a_frozen_copy_of_the_warmed_up_student_across_a_kill(setup, tmp_path, monkeypatch):
    """With w_lwf the distillation phase scores every batch with the student as it was after the warm-up;
    a job killed inside distillation resumes with that same copy (from the checkpoint), not a copy of the
    half-trained student, and ends identical to an uninterrupted run."""
    root, data, teacher = setup
    kwargs = dict(settings={"epochs": 2, "w_lwf": 1.0}, warmup={"epochs": 1, "batch_size": 8, "max_passage_length": 32},
                  models={"teacher": teacher}, embedding_shards={"teacher": [str(root / "teacher-emb.parquet")]})
    import pipeline.training.distill as training

    original, copies = training.distill_phase, []

    def observed_phase(*args, interrupt_at=None, **phase_kwargs):
        phase = original(*args, **phase_kwargs)
        inner, calls = phase.step, {"n": 0}

        def step(models, batch, global_step):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise Interrupt()
            copies.append({k: v.clone() for k, v in models["previous-student"].state_dict().items()})
            return inner(models, batch, global_step)

        phase.step = step
        return phase

    monkeypatch.setattr(training, "distill_phase", observed_phase)
    reference = train(setup, tmp_path / "reference", scratch_dir=str(tmp_path / "scratch-ref"), **kwargs)
    assert "lwf" in reference["history"][-1] and reference["history"][-1]["lwf"] > 0
    warmed = BiEncoder.load(ModelSpec("w", source=str(tmp_path / "reference" / "warmup"))).state_dict()
    assert copies and all(torch.equal(copy_[k], warmed[k]) for copy_ in copies for k in warmed), \
        "every step scores with the student as it was after the warm-up"

    copies.clear()
    monkeypatch.setattr(training, "distill_phase", lambda *a, **k: observed_phase(*a, interrupt_at=5, **k))
    with pytest.raises(Interrupt):
        train(setup, tmp_path / "resumed", scratch_dir=str(tmp_path / "scratch"), **kwargs)
    monkeypatch.setattr(training, "distill_phase", observed_phase)
    copies.clear()
    resumed = train(setup, tmp_path / "resumed", scratch_dir=str(tmp_path / "scratch"), **kwargs)
    assert all(torch.equal(copy_[k], warmed[k]) for copy_ in copies for k in warmed)
    assert resumed["history"] == reference["history"]
    a = BiEncoder.load(ModelSpec("a", source=str(tmp_path / "reference")))
    b = BiEncoder.load(ModelSpec("b", source=str(tmp_path / "resumed")))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_nan_guard_skips_then_stops(tiny_bert):
    model = BiEncoder.load(ModelSpec("s", source=str(tiny_bert)))
    before = [p.detach().clone() for p in model.parameters()]

    def nan_step(models, batch, global_step):
        return models["student"].embed(["x"], is_query=True).sum() * float("nan"), {}

    phase = Phase("distill", 1, 1e-3, 0.0, 0.0, lambda epoch: [0] * 20, nan_step)
    with pytest.raises(FloatingPointError, match="non-finite"):
        run_phases({"student": model}, [phase], None, "run", 1.0, 5, max_bad_steps=3, seed=0)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q), "skipped steps leave weights untouched"


def test_sampling_is_deterministic_and_groups_start_with_a_positive():
    candidates = pd.DataFrame({"query_id": ["a"] * 3 + ["b"] * 2, "doc_id": ["n1", "n2", "n3", "m1", "m2"],
                               "rank": [0, 1, 2, 0, 1], "score": 0.0, "miner": "x"})
    examples = build_examples(candidates, {"a": {"p": 1}, "b": {"q1": 1, "q2": 1}})
    one = sample_groups(examples, group_size=4, batch_size=2, seed=1)
    assert one == sample_groups(examples, group_size=4, batch_size=2, seed=1)
    for query_id, group in one[0]:
        assert group[0] in {"a": {"p"}, "b": {"q1", "q2"}}[query_id]
        assert len(group) == 4


def test_schedule_and_teacher_scale():
    factor = linear_schedule(10, 0.2)
    assert [round(factor(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert teacher_scale({"scale": "cosine"}, "auto", 20.0) == 20.0
    assert teacher_scale({"scale": "logit"}, "auto", 20.0) == 1.0
    assert teacher_scale({"scale": "cosine"}, 5, 20.0) == 5.0


def test_calibrated_teacher_scale_matches_a_hand_computation():
    from pipeline.training.teachers import calibrated_scale

    # three queries, positive and negative one unit apart; the teacher is right on two, wrong on one:
    # NLL(a) = 2·log(1 + e^-a) + log(1 + e^a), minimal where σ(a) = 2/3, i.e. a = ln 2
    frame = pd.DataFrame({"query_id": ["a", "a", "b", "b", "c", "c"],
                          "doc_id": ["p", "n", "p", "n", "p", "n"],
                          "score": [1.0, 0.0, 3.0, 2.0, -5.0, -4.0]})
    qrels = {q: {"p": 1} for q in "abc"}
    assert calibrated_scale(frame, qrels) == pytest.approx(np.log(2), abs=1e-4)
    # the fitted scale is in the teacher's units: scores ten times larger, a scale ten times smaller
    assert calibrated_scale(frame.assign(score=frame.score * 10), qrels) == pytest.approx(np.log(2) / 10, abs=1e-5)
    # queries without a judged positive among their pairs, or with nothing but positives, do not count
    extra = pd.DataFrame({"query_id": ["d", "d", "e"], "doc_id": ["x", "y", "p"], "score": [9.0, 0.0, 1.0]})
    assert calibrated_scale(pd.concat([frame, extra]), qrels | {"e": {"p": 1}}) == pytest.approx(np.log(2), abs=1e-4)
    assert calibrated_scale(extra, {"e": {"p": 1}}) is None


def test_calibrated_teacher_scale_is_what_training_reads(tmp_path):
    from pipeline.data import SCORES_SCHEMA, write_table
    from pipeline.training.teachers import read_teacher_scores

    frame = pd.DataFrame({"query_id": ["a", "a", "b", "b", "c", "c"], "doc_id": ["p", "n"] * 3,
                          "scorer": "t", "score": np.array([1.0, 0.0, 3.0, 2.0, -5.0, -4.0], dtype=np.float32)})
    path = tmp_path / "t.parquet"
    write_table(frame, path, {"scale": "fusion-zscore"}, SCORES_SCHEMA)
    settings = {"teacher_scale": "calibrated", "similarity_scale": 20.0}
    _, lookups, factors = read_teacher_scores({"t": str(path)}, settings, {q: {"p": 1} for q in "abc"})
    assert factors["t"] == pytest.approx(np.log(2), abs=1e-4)
    assert lookups["t"][("b", "p")] == pytest.approx(3 * factors["t"])
    # no judged query among the pairs: the automatic scale (1 for a fusion), not a failure
    _, _, factors = read_teacher_scores({"t": str(path)}, settings, {})
    assert factors == {"t": 1.0}


def test_in_batch_distillation_scores_the_whole_batch_with_the_teacher(setup, tmp_path):
    root, data, teacher = setup
    from pipeline.data import load_queries, read_table
    from pipeline.training.teachers import in_batch_teacher_scorers

    shards = {"teacher": [str(root / "teacher-emb.parquet")]}
    queries = load_queries(data["queries"])
    scores = read_table(root / "scores.parquet")
    query_ids = sorted(set(scores.query_id))[:3]
    teachers = in_batch_teacher_scorers(["teacher"], {"teacher": teacher}, shards, {"teacher_scale": "auto",
                                        "similarity_scale": 20.0}, queries, data["corpus"], query_ids, {}, True, "cpu")
    docs = scores[scores.query_id.isin(query_ids)].groupby("query_id").head(2)
    matrix = teachers["teacher"](query_ids, docs.doc_id.tolist())
    assert matrix.shape == (3, len(docs))
    lookup = dict(zip(zip(scores.query_id, scores.doc_id), scores.score))
    for i, q in enumerate(query_ids):  # where the score step scored a pair, the in-batch matrix agrees (x scale)
        for j, d in enumerate(docs.doc_id):
            if (q, d) in lookup:
                assert matrix[i, j].item() == pytest.approx(20.0 * lookup[(q, d)], abs=1e-3)

    in_batch = train(setup, tmp_path / "student1", settings={"kd_in_batch": True}, models={"teacher": teacher},
                     embedding_shards=shards)["history"]
    group = train(setup, tmp_path / "student0", settings={"kd_in_batch": False})["history"]
    assert [h["step"] for h in in_batch] == [h["step"] for h in group]
    assert in_batch[0]["kl:teacher"] != pytest.approx(group[0]["kl:teacher"]), "the KL spans the whole batch"
    with pytest.raises(ValueError, match="must be a bi-encoder with cached corpus embeddings"):
        train(setup, tmp_path / "student2", settings={"kd_in_batch": True})
    assert not (tmp_path / "student2").exists()


def test_embedding_mse_keeps_the_student_near_the_warmup_teacher_through_distillation(setup, tmp_path):
    root, data, teacher = setup
    shards = {"teacher": [str(root / "teacher-emb.parquet")]}
    plain = train(setup, tmp_path / "plain", settings={"epochs": 3})
    anchored = train(setup, tmp_path / "anchored", settings={"epochs": 3, "w_embedding_mse": 5.0},
                     models={"teacher": teacher}, embedding_shards=shards)
    first, last = anchored["history"][0], anchored["history"][-1]
    assert "embedding_mse:teacher" in first and "embedding_mse:teacher" not in plain["history"][0]
    assert first["embedding_mse:teacher"] > 0 and last["embedding_mse:teacher"] > 0
    # the 1-layer cut starts near the tiny teacher (0.0007 on the corpus); distillation moves it away
    # (0.58 without the term), the term keeps it near (0.026 at weight 5)
    from pipeline.data import passage_texts, read_table
    from pipeline.embeddings import read_embeddings

    ids, target = read_embeddings(shards["teacher"])
    texts = passage_texts(read_table(data["corpus"]).set_index("doc_id").loc[ids].reset_index(), True)

    def distance(path):
        student = BiEncoder.load(ModelSpec("s", source=str(path)))
        return float(((student.encode(texts, is_query=False) - target) ** 2).sum(-1).mean())

    assert distance(tmp_path / "anchored") < distance(tmp_path / "plain") / 5
    with pytest.raises(ValueError, match="must be a bi-encoder with cached corpus embeddings"):
        train(setup, tmp_path / "unanchored", settings={"w_embedding_mse": 1.0})


# --------------------------------------------------------------------------------------------------
# Composition: a second method adds a loss term to standard's phase and a phase of its own
# --------------------------------------------------------------------------------------------------


class SquaredQueryNorm:
    """Per-query loss: the squared norm of the query embedding (any differentiable term will do)."""

    def __call__(self, out, batch):
        return (out.query_embeddings ** 2).sum(-1)


class Toy(Method):
    name = "toy"

    def phases(self, run):
        texts = sorted(run.queries.values())[:8]

        def step(models, batch, global_step):
            a = models["student"].embed(batch, is_query=True)
            b = models["peer"].embed(batch, is_query=True)
            return ((a - b) ** 2).sum(-1).mean() + (b ** 2).sum(-1).mean(), {}

        return [Phase("toy", 1, 1e-3, 0.0, 0.0, lambda epoch: [texts[:4], texts[4:]], step,
                      trains=("student", "peer"), adds={"peer": copy.deepcopy(run.student)},
                      saves={"peer": "toy-peer"}, report={"toy": {"texts": len(texts)}})]

    def loss_terms(self, run, phase):
        return {"toy": (0.5, SquaredQueryNorm())} if phase == "distill" else {}


def test_methods_compose_in_one_run(setup, monkeypatch, tmp_path):
    monkeypatch.setitem(registry.METHODS, "toy", Toy)
    summary = train(setup, tmp_path / "composed", methods=["standard", "toy"], settings={"epochs": 1})
    assert summary["phases"] == ["distill", "toy"]
    distill = [h for h in summary["history"] if h["phase"] == "distill"]
    assert {"nll", "kl:teacher", "toy"} <= set(distill[0]), "the toy's term joins standard's loss"
    assert any(h["phase"] == "toy" for h in summary["history"])
    # what the phase declared: its peer saved beside the student, its report in training.json
    assert summary["reports"] == {"toy": {"texts": 8}}
    assert (tmp_path / "composed/toy-peer/model.safetensors").is_file()
    with pytest.raises(ValueError, match="read by none of the methods"):
        train(setup, tmp_path / "x", methods=["toy"])


def test_a_step_called_by_hand_validates_its_settings_against_the_schema(setup, tmp_path, capsys):
    from pipeline.__main__ import main

    root, data, teacher = setup
    args = {"student_dir": str(root / "student0"), "out_dir": str(tmp_path / "out"),
            "candidates_path": str(root / "candidates.parquet"), "score_paths": {"teacher": str(root / "scores.parquet")},
            "qrels_path": data["qrels-train"], "queries_path": data["queries"], "corpus_path": data["corpus"],
            "config": {"teacher": "teacher", "train": {"epochs": 1, "lrr": 0.1}}, "device": "cpu"}
    assert main(["train", json.dumps(args)]) == 2
    assert "train: Additional properties are not allowed ('lrr' was unexpected)" in capsys.readouterr().err
    args["config"]["train"] = {"epochs": 1, "lr": -1}
    assert main(["train", json.dumps(args)]) == 2
    assert "train.lr: -1 is less than or equal to the minimum of 0" in capsys.readouterr().err
    del args["config"]["teacher"]
    args["config"]["train"] = {}
    assert main(["train", json.dumps(args)]) == 2
    assert "config.teacher: missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_line_hands_its_threads_to_the_train_step(monkeypatch):
    """`python -m pipeline train ... --threads N` (rule train): the step's arguments are a TrainingJob's,
    taken through **kwargs, and the thread count must reach it (a cluster job's cpus-per-task)."""
    import pipeline.training.driver as driver
    from pipeline.__main__ import main

    seen = {}
    monkeypatch.setattr(driver, "train_student", lambda *args, **kwargs: seen.update(kwargs) or {})
    assert main(["train", json.dumps({"student_dir": "s"}), "--threads", "3"]) == 0
    assert seen == {"student_dir": "s", "threads": 3}


# --------------------------------------------------------------------------------------------------
# Fine-tuning a configured bi-encoder (models.<name>.finetune)
# --------------------------------------------------------------------------------------------------


def finetune(setup, out, kind="bi-encoder", **kwargs):
    from pipeline.training.finetune import finetune_model

    root, data, teacher = setup
    settings = {"epochs": 3, "batch_size": 4, "group_size": 4, "lr": 1e-3, "checkpoint_every": 2,
                "max_passage_length": 32, **kwargs.pop("settings", {})}
    return finetune_model(dict(teacher, kind=kind), str(out), str(root / "candidates.parquet"), data["qrels-train"],
                          data["queries"], data["corpus"], settings=settings, device="cpu", seed=5, **kwargs)


def test_finetune_learns_and_saves_a_sentence_transformer(setup, tmp_path):
    from sentence_transformers import SentenceTransformer

    summary = finetune(setup, tmp_path / "tuned", scratch_dir=str(tmp_path / "scratch"))
    history = summary["history"]
    assert {h["phase"] for h in history} == {"finetune"} and set(history[0]) >= {"loss", "nll"}
    assert history[-1]["loss"] < history[0]["loss"], "the contrastive loss goes down"
    assert summary["settings"]["in_batch_negatives"] is True, "schema defaults fill the settings"
    tuned = SentenceTransformer(str(tmp_path / "tuned"), device="cpu")
    ours = BiEncoder.load(ModelSpec("t", source=str(tmp_path / "tuned")))
    texts = ["a query about topic 1", "another text"]
    assert torch.allclose(torch.tensor(tuned.encode(texts)), torch.tensor(ours.encode(texts, is_query=True)),
                          atol=1e-5), "sentence-transformers reads the same model"
    start = BiEncoder.load(ModelSpec("s", source=setup[2]["source"]))
    assert any(not torch.equal(a, b) for a, b in zip(ours.parameters(), start.parameters()))
    assert not (tmp_path / "scratch").exists()


@pytest.mark.parametrize("kind, phase_maker", [("bi-encoder", "distill_phase"),
                                               ("cross-encoder", "cross_encoder_phase")])
def test_killed_finetune_resumes_to_the_same_weights(setup, tmp_path, monkeypatch, kind, phase_maker):
    from pipeline.cross_encoder import CrossEncoder

    reference = finetune(setup, tmp_path / "reference", kind, scratch_dir=str(tmp_path / "scratch-ref"))
    import pipeline.training.finetune as finetuning

    original = getattr(finetuning, phase_maker)
    monkeypatch.setattr(finetuning, phase_maker, interrupted_after(original, 6))
    with pytest.raises(Interrupt):
        finetune(setup, tmp_path / "resumed", kind, scratch_dir=str(tmp_path / "scratch"))
    assert not (tmp_path / "resumed").exists(), "no output after a killed job"
    monkeypatch.setattr(finetuning, phase_maker, original)
    resumed = finetune(setup, tmp_path / "resumed", kind, scratch_dir=str(tmp_path / "scratch"))
    assert resumed["history"] == reference["history"]
    model = BiEncoder if kind == "bi-encoder" else CrossEncoder
    a = model.load(ModelSpec("a", kind, source=str(tmp_path / "reference")))
    b = model.load(ModelSpec("b", kind, source=str(tmp_path / "resumed")))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("loss", ["lce", "bce"])
def test_a_cross_encoder_trained_from_bi_encoder_weights_learns_and_loads_in_sentence_transformers(
        setup, tmp_path, loss):
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.cross_encoder import CrossEncoder

    summary = finetune(setup, tmp_path / "ce", "cross-encoder", settings={"loss": loss, "epochs": 4})
    history = summary["history"]
    assert set(history[0]) >= {"loss", loss}
    first, last = np.mean([h["loss"] for h in history[:3]]), np.mean([h["loss"] for h in history[-3:]])
    assert last < first, f"the {loss} loss goes down: {first:.3f} -> {last:.3f}"
    ours = CrossEncoder.load(ModelSpec("ce", "cross-encoder", source=str(tmp_path / "ce")))
    assert ours.model.config.num_labels == 1, "one relevance logit"
    queries, passages = ["a query about topic 1", "what is topic 2"], ["topic 1 text here", "unrelated words"]
    scores = ours.score(queries, passages)
    # the same figures from a direct forward pass of the saved folder, and from sentence-transformers
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ce")
    direct = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ce").eval()
    with torch.no_grad():
        logits = direct(**tokenizer(queries, passages, padding=True, truncation="only_second",
                                    return_tensors="pt")).logits[:, 0]
    assert np.allclose(scores, logits.numpy(), atol=1e-5)
    st = STCrossEncoder(str(tmp_path / "ce"), device="cpu", activation_fn=torch.nn.Identity())
    assert np.allclose(st.predict(list(zip(queries, passages))), scores, atol=1e-5)


def test_finetune_without_judged_training_queries_says_so(setup, tmp_path):
    from pipeline.training.finetune import finetune_bi_encoder

    root, data, teacher = setup
    empty = tmp_path / "no-qrels.parquet"
    pd.read_parquet(data["qrels-train"]).iloc[:0].to_parquet(empty)
    with pytest.raises(ValueError, match="no judged training query.*needs training labels"):
        finetune_bi_encoder(teacher, str(tmp_path / "t"), str(root / "candidates.parquet"), str(empty),
                            data["queries"], data["corpus"], device="cpu")
    assert not (tmp_path / "t").exists()
