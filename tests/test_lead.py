"""LEAD (pipeline/methods/lead.py) and the online teacher (pipeline/training/online.py): layer scores
against the models' own, the order-preserving pairing, the NLL weights against a hand computation, the
plain loss at weight 0, teachers of another width, depth and kind, joint training, a killed job resumed,
the config checks. The preset end to end is in tests/test_workflow.py."""

import math

import pytest
import torch

from fixtures import prepare_with_candidates, write_tiny_bert
from pipeline.config import complete
from pipeline.data import load_qrels, load_queries, passage_texts, read_table
from pipeline.losses import Batch, StudentScores, positive_nll
from pipeline.methods import get_method
from pipeline.methods.lead import ONLINE_TEACHER, Lead, layer_pairs, layer_weights, lead_phase
from pipeline.methods.standard import Standard
from pipeline.cross_encoder import CrossEncoder
from pipeline.models import BiEncoder, ModelSpec
from pipeline.plan import Plan
from pipeline.training import init_student, train_student
from pipeline.training.distill import distill_phase
from pipeline.training.loop import loop_models
from pipeline.training.driver import TrainingRun, complete_sections
from pipeline.training.online import layer_scores, load_online_model
from pipeline.training.sampling import build_examples


@pytest.mark.parametrize("teacher_depth, student_depth", [(6, 2), (3, 3), (12, 6), (1, 1), (4, 7)])
def test_layer_pairs_are_sorted_without_repeats_and_reproducible(teacher_depth, student_depth):
    for k in range(1, min(teacher_depth, student_depth) + 1):
        draws = [layer_pairs(teacher_depth, student_depth, k, draw, seed=5) for draw in range(30)]
        for pairs in draws:
            teacher, student = [a for a, _ in pairs], [b for _, b in pairs]
            assert len(pairs) == k
            assert teacher == sorted(set(teacher)) and student == sorted(set(student)), "increasing, no repeats"
            assert 1 <= teacher[0] and teacher[-1] <= teacher_depth and 1 <= student[0] and student[-1] <= student_depth
        assert draws == [layer_pairs(teacher_depth, student_depth, k, draw, seed=5) for draw in range(30)]
        if k < teacher_depth:
            assert len({tuple(p) for p in draws}) > 1, "later draws pair other layers"
    with pytest.raises(ValueError, match="need at least"):
        layer_pairs(teacher_depth, student_depth, min(teacher_depth, student_depth) + 1, 0, seed=5)


def test_fixed_pairing_spreads_the_layers_evenly():
    assert layer_pairs(6, 2, 2, draw=7, seed=1, pairing="fixed") == [(3, 1), (6, 2)]
    assert layer_pairs(12, 6, 3, draw=0, seed=1, pairing="fixed") == [(4, 2), (8, 4), (12, 6)]
    assert layer_pairs(6, 2, 1, draw=0, seed=1, pairing="fixed") == [(6, 2)], "one pair: the last with the last"


def test_layer_weights_against_a_hand_computation():
    nll = torch.tensor([1.0, 2.0, 4.0])
    # softmax(-nll / 10): e^-0.1, e^-0.2, e^-0.4 over their sum
    e = [math.exp(-0.1), math.exp(-0.2), math.exp(-0.4)]
    expected = torch.tensor([x / sum(e) for x in e])
    assert torch.allclose(layer_weights(nll, 10.0), expected)
    assert torch.allclose(layer_weights(nll, 10.0, "uniform"), torch.full((3,), 1 / 3))
    sharp = layer_weights(nll, 0.1)
    assert sharp[0] > 0.99, "a low temperature gives the best-ranking teacher layer nearly all the weight"
    # and the NLL of a teacher layer: -log softmax at the positive, over the group or over the batch
    batch = Batch(["q0", "q1"], ["a", "b"], ["p"] * 4, group_size=2)
    group = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(positive_nll(group, batch),
                          torch.tensor([math.log(1 + math.exp(-2)), math.log(1 + math.e)]))
    every = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # q1's positive is column 2
    assert torch.allclose(positive_nll(every, batch),
                          torch.tensor([2 - math.log(math.exp(2) + 3), 1 - math.log(math.e + 3)]).neg())


@pytest.fixture(scope="module")
def setup(tiny_beir, tiny_bert, tmp_path_factory):
    """Prepared data, BM25 candidates and an untrained 2-layer student of the 3-layer fixture model."""
    root = tmp_path_factory.mktemp("lead")
    data = prepare_with_candidates(tiny_beir, root)
    init_student({"name": "student-it0", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 2},
                 str(root / "student0"))
    return root, data


def a_batch(run, rows):
    return Batch([q for q, _ in rows], [run.queries[q] for q, _ in rows],
                 [run.doc_text[d] for _, g in rows for d in g], group_size=run.train["group_size"])


def test_the_last_layer_scores_are_the_models_own(setup, tiny_bert, tiny_cross_encoder):
    root, data = setup
    queries = load_queries(data["queries"])
    texts = list(queries.values())
    batch = Batch(["a", "b"], texts[:2], texts[2:8], group_size=3)
    bi = BiEncoder.load(ModelSpec("t", source=str(tiny_bert)))
    with torch.no_grad():
        layered = layer_scores(bi, batch, scale=20.0, max_passage=32)
        own = StudentScores(bi.embed(batch.query_texts, True), bi.embed(batch.passage_texts, False, max_length=32), 20.0)
    assert layered.depth == 3 and layered.in_batch
    assert torch.allclose(layered.layers[-1], own.all_scores, atol=1e-5)
    assert not torch.allclose(layered.layers[0], own.all_scores, atol=1e-3)
    ce = CrossEncoder.load(ModelSpec("ce", kind="cross-encoder", source=str(tiny_cross_encoder)))
    with torch.no_grad():
        layered = layer_scores(ce, batch, scale=1.0)
        pairs = [q for q in batch.query_texts for _ in range(3)]
        direct = ce(pairs, batch.passage_texts).view(2, 3)
    assert layered.depth == 2 and not layered.in_batch and layered.layers[-1].shape == (2, 3)
    assert torch.allclose(layered.layers[-1], direct, atol=1e-5)
    with pytest.raises(ValueError, match="no in-batch scores"):
        layer_scores(ce, batch, 1.0, in_batch=True)
    with pytest.raises(ValueError, match="a bm25 model has no layers"):
        load_online_model("bm25", {"kind": "bm25"}, torch.device("cpu"))


def make_run(setup, teacher_source, lead=None, train=None, kind="bi-encoder"):
    root, data = setup
    config = complete_sections({"teacher": "t", "warmup": {"epochs": 0}, "lead": {"teacher": "t", **(lead or {})},
                                "train": {"batch_size": 4, "group_size": 4, "w_kd": 0.0, "max_passage_length": 32,
                                          **(train or {})}}, [Lead()])
    corpus, qrels = read_table(data["corpus"]), load_qrels(data["qrels-train"])
    return TrainingRun(config=config, iteration=1, seed=3, device=torch.device("cpu"), methods=[Lead()],
                       corpus=corpus, corpus_path=data["corpus"], queries=load_queries(data["queries"]), qrels=qrels,
                       doc_text=dict(zip(corpus["doc_id"], passage_texts(corpus, True))), synthetic_texts={},
                       examples=build_examples(read_table(str(root / "candidates.parquet")), qrels),
                       teacher_scores={}, include_title=True,
                       models={"t": {"kind": kind, "source": str(teacher_source)}},
                       student=BiEncoder.load(ModelSpec("s", source=str(root / "student0"))),
                       student_dir=str(root / "student0"))


@pytest.fixture(scope="module")
def other_bert(tmp_path_factory):
    """A 3-layer teacher with other weights than the student's origin (whose layers 1-2 are the student's)."""
    return write_tiny_bert(tmp_path_factory.mktemp("other") / "bert", layers=3, seed=4)


def test_with_the_layer_terms_at_weight_zero_the_loss_is_the_plain_one(setup, other_bert, tiny_bert):
    plain_run = make_run(setup, other_bert, lead={"w_layers": 0.0})
    plain = distill_phase(plain_run.train, plain_run.examples, plain_run.doc_text, plain_run.queries, {},
                          plain_run.loss("distill"), plain_run.seed)
    rows = plain.batches(0)[0]
    expected, _ = plain.step({"student": plain_run.student}, rows, 0)
    loss, parts = lead_phase(plain_run, Lead()).step({"student": plain_run.student}, rows, 0)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert parts["layer_kl"] > 0, "measured, at weight 0"
    layered_run = make_run(setup, other_bert)
    layered = lead_phase(layered_run, Lead())
    loss, parts = layered.step({"student": layered_run.student}, rows, 0)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()) + parts["layer_kl"], rel=1e-5)
    weights = [parts[f"lead_weight:t{layer}"] for layer in (1, 2, 3)]
    assert sum(weights) == pytest.approx(1.0) and sorted(weights)[0] == 0.0, "2 of the 3 teacher layers drawn"
    assert layered.report["lead"]["candidates"] == "batch" and layered.report["lead"]["teacher_depth"] == 3
    # a teacher whose layers 1-2 are the student's: pairs (1, 1) and (2, 2) have nothing to teach
    same = make_run(setup, tiny_bert, lead={"pairing": "fixed", "layers_per_draw": 1})
    same.config["lead"]["teacher"] = "t"
    same.models["t"]["layers"] = 2
    _, parts = lead_phase(same, Lead()).step({"student": same.student}, rows, 0)
    assert parts["layer_kl"] == pytest.approx(0.0, abs=1e-6) and parts["lead_weight:t2"] == 1.0


def test_the_layer_terms_send_no_gradient_into_a_frozen_teacher_and_some_into_a_joint_one(setup, tiny_bert):
    run = make_run(setup, tiny_bert)
    phase = lead_phase(run, Lead())
    models = loop_models(run.student, [phase])
    loss, _ = phase.step(models, phase.batches(0)[0], 0)
    loss.backward()
    assert ONLINE_TEACHER not in models and phase.trains == ("student",)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in run.student.parameters())
    joint_run = make_run(setup, tiny_bert, lead={"joint": True})
    phase = lead_phase(joint_run, Lead())
    assert phase.trains == ("student", ONLINE_TEACHER)
    models = loop_models(joint_run.student, [phase])
    loss, parts = phase.step(models, phase.batches(0)[0], 0)
    loss.backward()
    assert {"teacher_nll", "teacher_reverse_kl"} <= set(parts)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in models[ONLINE_TEACHER].parameters())


def train_with(setup, teacher, out, scratch=None, kind="bi-encoder", lead=None, **kwargs):
    root, data = setup
    config = {"teacher": "t", "warmup": {"epochs": 0}, "lead": {"resample_every": 2, **(lead or {})},
              "train": {"epochs": 2, "batch_size": 4, "group_size": 4, "lr": 1e-3, "checkpoint_every": 3,
                        "w_kd": 0.0, "max_passage_length": 32}}
    return train_student(str(root / "student0"), str(out), str(root / "candidates.parquet"), {}, data["qrels-train"],
                         data["queries"], data["corpus"], config=config, methods=["lead"], device="cpu", seed=3,
                         models={"t": {"kind": kind, "source": str(teacher)}},
                         scratch_dir=str(scratch) if scratch else None, **kwargs)


@pytest.mark.parametrize("kind", ["bi-encoder", "cross-encoder"])
def test_a_teacher_of_another_width_depth_and_kind_teaches(setup, tmp_path, kind):
    """LEAD's "liberal" promise: a 4-layer, 48-wide teacher (a bi-encoder scoring the whole batch, or a
    cross-encoder scoring each group) teaches the 2-layer, 32-wide student."""
    teacher = write_tiny_bert(tmp_path / "wide", layers=4, hidden=48, seed=2, cross_encoder=kind == "cross-encoder")
    summary = train_with(setup, teacher, tmp_path / "out", kind=kind)
    assert summary["reports"]["lead"]["teacher_depth"] == 4
    assert summary["reports"]["lead"]["candidates"] == ("batch" if kind == "bi-encoder" else "group")
    last = summary["history"][-1]
    assert last["layer_kl"] > 0 and sum(last[f"lead_weight:t{layer}"] for layer in range(1, 5)) == pytest.approx(1.0)
    start = BiEncoder.load(ModelSpec("s0", source=str(setup[0] / "student0")))
    trained = BiEncoder.load(ModelSpec("s1", source=str(tmp_path / "out")))
    assert not all(torch.equal(x, y) for x, y in zip(start.parameters(), trained.parameters()))


def test_a_killed_job_resumes_to_the_identical_student(setup, tiny_bert, tmp_path, monkeypatch):
    import pipeline.methods.lead as lead
    from test_training import Interrupt, interrupted_after

    reference = train_with(setup, tiny_bert, tmp_path / "reference", tmp_path / "scratch-ref")
    original = lead.lead_phase
    monkeypatch.setattr(lead, "lead_phase", interrupted_after(original, 6))  # past a checkpoint and two draws
    with pytest.raises(Interrupt):
        train_with(setup, tiny_bert, tmp_path / "resumed", tmp_path / "scratch")
    assert not (tmp_path / "resumed").exists()
    monkeypatch.setattr(lead, "lead_phase", original)
    resumed = train_with(setup, tiny_bert, tmp_path / "resumed", tmp_path / "scratch")
    assert resumed["history"] == reference["history"]
    a = BiEncoder.load(ModelSpec("a", source=str(tmp_path / "reference")))
    b = BiEncoder.load(ModelSpec("b", source=str(tmp_path / "resumed")))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def lead_plan(**changes):
    config = {"experiment": "x", "iterations": 2, "methods": ["lead"], "teacher": "fusion",
              "models": {"minilm": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2"}, "bm25": {"kind": "bm25"},
                         "fusion": {"kind": "fusion", "members": {"minilm": 0.7, "bm25": 0.3}}},
              "lead": {"teacher": "minilm"},
              "student": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 2}, **changes}
    return Plan(complete(config))


def test_the_plan_gives_training_the_online_teacher_and_describes_the_pairing():
    plan = lead_plan()
    assert plan.problems() == []
    assert isinstance(get_method("lead"), Lead) and issubclass(Lead, Standard)
    assert plan.train_models(1) == ["minilm"], "the online teacher's config goes to the train job"
    assert plan.teachers_of(1) == ["fusion"], "the final KL reads the offline teacher's cached scores"
    assert plan.describe(1) == ("LEAD: 2 layer pairs of minilm (online) and the student, resampled every 10 steps, "
                                "NLL weights (tau 10), w_layers 1; final KL from fusion")


@pytest.mark.parametrize("changes, message", [
    ({"lead": {}}, "lead.teacher: 'fusion' is a fusion model, which has no layers to distil"),
    ({"lead": {"teacher": "bm25"}}, "lead.teacher: 'bm25' is a bm25 model"),
    ({"lead": {"teacher": "nope"}}, "lead.teacher: 'nope' is not a configured model"),
    ({"lead": {"teacher": "minilm", "layers_per_draw": 3}}, "lead.layers_per_draw: 3 layers are drawn from the student, which has 2"),
    ({"lead": {"teacher": "minilm", "layers_per_draw": 3}, "student": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 4},
      "models": {"minilm": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 2}, "fusion": {"kind": "bm25"}}},
     "lead.layers_per_draw: 3 layers are drawn from the teacher, which has 2"),
    ({"methods": ["standard", "lead"]}, "methods ['standard', 'lead'] each train the student's distillation (a recipe); list one of them"),
])
def test_config_checks_name_the_problem(changes, message):
    assert any(message in problem for problem in lead_plan(**changes).problems()), lead_plan(**changes).problems()


@pytest.mark.parametrize("changes, field", [
    ({"lead": {"layers_per_draw": 0}}, "lead.layers_per_draw"),
    ({"lead": {"pairing": "random"}}, "lead.pairing"),
    ({"lead": {"weighting": "rank"}}, "lead.weighting"),
    ({"lead": {"weight_temperature": 0}}, "lead.weight_temperature"),
])
def test_bad_values_fail_schema_validation(changes, field):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        lead_plan(**changes)


def test_lead_composes_with_adam(setup, tiny_bert, tmp_path):
    """[lead, adam]: the plan scores ADAM's dark candidates, and training spans them in every layer's
    distribution, with ADAM's self-paced weights on the layer terms too."""
    from pipeline.methods.adam import add_dark_examples

    plan = lead_plan(methods=["lead", "adam"], train={"group_size": 6})
    assert plan.problems() == []
    assert plan.scored_candidates(1) == "results/x/it1/dark-candidates.parquet"
    assert "LEAD" in plan.describe(1) and "ADAM" in plan.describe(1)
    root, data = setup
    dark = tmp_path / "dark.parquet"
    add_dark_examples(str(root / "candidates.parquet"), data["qrels-train"], data["corpus"], str(dark),
                      {"mixup": {"count": 1}, "mask": {"count": 1}}, seed=3)
    from pipeline.embeddings import encode_corpus_shard
    from pipeline.scorers import score_candidates

    teacher = {"name": "t", "kind": "bi-encoder", "source": str(tiny_bert)}
    encode_corpus_shard(data["corpus"], teacher, str(tmp_path / "emb.parquet"), device="cpu")
    score_candidates(str(dark), data["qrels-train"], data["queries"], data["corpus"], str(tmp_path / "scores.parquet"),
                     teacher, embedding_shards={"t": [str(tmp_path / "emb.parquet")]}, device="cpu")
    summary = train_student(str(root / "student0"), str(tmp_path / "out"), str(dark),
                            {"t": str(tmp_path / "scores.parquet")}, data["qrels-train"],
                            data["queries"], data["corpus"], methods=["lead", "adam"], device="cpu", seed=3,
                            config={"teacher": "t", "warmup": {"epochs": 0},
                                    "train": {"epochs": 1, "batch_size": 4, "group_size": 5, "max_passage_length": 32},
                                    "adam": {"mixup": {"count": 1}, "mask": {"count": 1}, "self_paced": {"start": 0.5}}},
                            models={"t": {"kind": "bi-encoder", "source": str(tiny_bert)}})
    history = summary["history"]
    assert {"layer_kl", "kl:t", "kept_fraction"} <= set(history[0]) and history[0]["kept_fraction"] < 1.0
