"""The method interface: the standard recipe's pieces, methods composed in one run, and the training
loop with two trained models (trained, checkpointed, killed and resumed to the identical result)."""

import math

import pytest
import torch

from pipeline.config import ConfigError, complete, section_defaults
from pipeline.losses import Batch, CompositeLoss, StudentScores
from pipeline.methods import get_method
from pipeline.methods.base import Needs, merge_needs
from pipeline.methods.standard import Standard, recipe_terms, resolve_warmup_texts, warmup_teacher
from pipeline.models import BiEncoder, ModelSpec
from pipeline.plan import Plan
from pipeline.training import Phase, run_phases
from pipeline.training.loop import set_dropout
from pipeline.training.regularisers import PREVIOUS_STUDENT


def test_registry_knows_standard_and_rejects_unknown_names():
    assert isinstance(get_method("standard"), Standard)
    with pytest.raises(ValueError, match="unknown method 'nope'; methods are"):
        get_method("nope")


def plan_of(**changes):
    config = {"models": {"t": {"kind": "bi-encoder", "source": "t"}, "w": {"kind": "bi-encoder", "source": "w"},
                         "bm25": {"kind": "bm25"}}, "teacher": "t", "warmup": {"epochs": 1}, **changes}
    return Plan(complete(config))


def test_standard_asks_for_its_teacher_and_warmup_teacher():
    standard = Standard()
    plan = plan_of()
    first, second = standard.plan(plan, 1), standard.plan(plan, 2)
    assert first.scorers == second.scorers == ("t",)
    assert first.models == first.embeddings == ("t",) and first.snapshots == ("warmup",), "iteration 1 warms up"
    assert second.models == second.embeddings == second.snapshots == ()
    other = standard.plan(plan_of(warmup={"epochs": 1, "teacher": "w", "texts": ["titles"]}), 1)
    assert other.models == ("w",) and other.embeddings == (), "no corpus texts"
    in_batch = standard.plan(plan_of(train={"kd_in_batch": True}, warmup={"epochs": 0}), 2)
    assert in_batch.models == in_batch.embeddings == ("t",)
    anchored = standard.plan(plan_of(train={"w_embedding_mse": 1.0}, warmup={"epochs": 1, "teacher": "w"}), 2)
    assert anchored.models == anchored.embeddings == ("w",), "iteration 2 keeps the warm-up teacher's embeddings"
    both = standard.plan(plan_of(train={"w_embedding_mse": 1.0, "kd_in_batch": True}, warmup={"epochs": 0}), 2)
    assert both.models == both.embeddings == ("t",), "one teacher serves both, loaded once"


def test_warmup_texts_auto_adds_the_sentences_only_where_the_teacher_labels_training_queries():
    judged = ["corpus", "train_queries", "titles"]
    assert resolve_warmup_texts("auto", "qrels") == judged
    assert resolve_warmup_texts("auto", "qrels+teacher") == resolve_warmup_texts("auto", "teacher") == judged + ["sentences"]
    assert resolve_warmup_texts(["titles"], "teacher") == ["titles"], "a list given stays as it is"


def test_needs_merge_in_config_order():
    first = Needs(scorers=["t", "a"], models=["t"], reports=["r1"], description="one", peers={"peer": {"layers": [0]}})
    second = Needs(scorers=["a", "b"], embeddings=["t"], training_candidates="sel.parquet", description="two")
    merged = merge_needs({"x": first, "y": second, "z": Needs()})
    assert merged.scorers == ("t", "a", "b") and merged.models == ("t",) and merged.embeddings == ("t",)
    assert merged.reports == ("r1",) and merged.description == "one; two" and merged.scored_candidates is None
    assert merged.training_candidates == "sel.parquet" and dict(merged.peers["peer"]) == {"layers": [0]}
    assert merge_needs({}).description is None and merge_needs({}).scorers == ()
    with pytest.raises(ConfigError, match="x and y each choose the candidates the iteration trains on"):
        merge_needs({"x": Needs(training_candidates="a"), "y": second})
    with pytest.raises(ConfigError, match="y: peer 'peer' is trained by another method"):
        merge_needs({"x": first, "y": first})
    with pytest.raises(TypeError):
        merged.peers["other"] = {}  # read-only: a method's answer cannot be changed after the merge


def test_method_steps_are_functions_of_their_own_modules():
    import importlib

    from pipeline.__main__ import method_steps

    steps = method_steps()
    assert set(steps) == {"prod_confusing", "adam_dark", "onmkd_peers", "mta4dpr_select"}
    for step, target in steps.items():
        module, function = target.split(":")
        assert module == f"pipeline.methods.{step.split('_')[0]}" and callable(getattr(importlib.import_module(module), function))


def test_warmup_teacher_per_iteration():
    c = {"teacher": "t", "warmup": {"epochs": 1, "iterations": [1, 3], "teacher": None}}
    assert [warmup_teacher(c, it) for it in (1, 2, 3)] == ["t", None, "t"]
    assert warmup_teacher(dict(c, warmup=dict(c["warmup"], teacher="w")), 1) == "w"
    assert warmup_teacher(dict(c, warmup=dict(c["warmup"], epochs=0)), 1) is None


def test_recipe_terms_weights():
    settings = {**section_defaults("train"), "w_nll": 0.1, "w_kd": 0.9, "w_mse": 2.0,
                "teacher_weights": {"a": 1.0, "b": 0.5}}
    terms = recipe_terms(settings, ["a", "b"])
    weights = {name: w for name, (w, _) in terms.items()}
    assert weights == {"nll": 0.1, "kl:a": 0.9, "margin_mse:a": 2.0, "kl:b": 0.45, "margin_mse:b": 1.0, "lwf": 0.0}
    assert terms["kl:a"][1].teacher == "a" and terms["kl:b"][1].temperature == settings["temperature"]
    zero = CompositeLoss(recipe_terms({**settings, "w_mse": 0.0, "teacher_weights": None}, ["a"]))
    assert set(zero.terms) == {"nll", "kl:a"}, "zero-weight terms are dropped"


def test_lwf_term_against_a_hand_computation():
    """w_lwf·T²·KL(softmax(s_old/T) || softmax(s/T)) over the query's own group."""
    settings = {**section_defaults("train"), "w_nll": 0.0, "w_kd": 0.0, "w_lwf": 0.5, "temperature": 2.0}
    loss = CompositeLoss(recipe_terms(settings, ["t"]))
    assert set(loss.terms) == {"lwf"}
    student = StudentScores(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 2.0)  # s = [2, 0]
    total, parts = loss(student, Batch(["q"], ["q"], ["p", "n"], 2, teacher_scores={
        "t": torch.tensor([[0.0, 0.0]]), PREVIOUS_STUDENT: torch.tensor([[0.0, 2.0]])}))
    old = [math.exp(0) / (1 + math.e), math.e / (1 + math.e)]  # softmax([0, 2] / 2)
    new = [math.e / (1 + math.e), 1 / (1 + math.e)]  # softmax([2, 0] / 2)
    kl = 4 * sum(o * math.log(o / n) for o, n in zip(old, new))
    assert parts["lwf"] == pytest.approx(kl, rel=1e-6)
    assert total.item() == pytest.approx(0.5 * kl, rel=1e-6)


def test_standard_loss_terms_only_for_its_distill_phase():
    run = type("Run", (), {"train": section_defaults("train"), "config": {"teacher": "t"}})()
    assert Standard().loss_terms(run, "warmup") == {}
    total, parts = CompositeLoss(Standard().loss_terms(run, "distill"))(
        StudentScores(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0),
        Batch(["q"], ["q"], ["p", "n"], 2, teacher_scores={"t": torch.tensor([[1.0, 0.0]])}))
    nll = -math.log(math.e / (math.e + 1))
    assert parts["nll"] == pytest.approx(nll, rel=1e-6)
    assert parts["kl:t"] == pytest.approx(0.0, abs=1e-7), "the student already matches the teacher"
    assert total.item() == pytest.approx(nll, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Two trained models: train, checkpoint, kill, resume
# --------------------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def two_model_phase(seen: list, interrupt_at: int | None = None, name: str = "mutual") -> Phase:
    texts = [f"text number {i} about topic {i % 3}" for i in range(24)]

    def batches(epoch):
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(epoch)).tolist()
        return [[texts[i] for i in order[s:s + 4]] for s in range(0, len(texts), 4)]

    def step(models, batch, global_step):
        if global_step == interrupt_at:
            raise Interrupt()
        seen.append(global_step)
        a = models["student"].embed(batch, is_query=True)
        b = models["peer"].embed(batch, is_query=True)
        # mutual pull plus a term that makes each model move on its own
        loss = ((a - b) ** 2).sum(-1).mean() - 0.1 * (a[:, 0].mean() + b[:, 1].mean())
        return loss, {"gap": float(((a - b) ** 2).sum(-1).mean().detach())}

    return Phase(name, 2, 1e-3, 0.01, 0.1, batches, step, trains=("student", "peer"))


def two_models(tiny_bert):
    student = BiEncoder.load(ModelSpec("s", source=str(tiny_bert), layers=1))
    peer = BiEncoder.load(ModelSpec("p", source=str(tiny_bert), layers=2))
    return {"student": student, "peer": peer}


def test_two_model_phase_trains_both_and_resumes_exactly(tiny_bert, tmp_path):
    reference, seen = two_models(tiny_bert), []
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in reference.items()}
    history = run_phases(reference, [two_model_phase(seen)], str(tmp_path / "ref"), "run", 1.0, 3, 5, seed=7)
    assert seen == list(range(12)), "the global step counts the phase's steps across epochs"
    for name, model in reference.items():
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before[name])), f"{name} trained"

    killed, seen_killed = two_models(tiny_bert), []
    with pytest.raises(Interrupt):
        run_phases(killed, [two_model_phase(seen_killed, interrupt_at=8)], str(tmp_path / "scratch"), "run", 1.0, 3,
                   5, seed=7)
    checkpoint = torch.load(tmp_path / "scratch" / "checkpoint.pt", weights_only=False)
    assert set(checkpoint["models"]) == {"student", "peer"} and checkpoint["step"] == 6
    assert set(checkpoint["optimisation"]["optimizers"]) == {"student", "peer"}
    assert {"torch", "numpy", "python"} <= set(checkpoint["random"])

    resumed, seen_resumed = two_models(tiny_bert), []  # a fresh process: weights as loaded, not as trained
    history_resumed = run_phases(resumed, [two_model_phase(seen_resumed)], str(tmp_path / "scratch"), "run", 1.0, 3,
                                 5, seed=7)
    assert seen_resumed == list(range(6, 12)), "resumed at the last checkpoint"
    assert history_resumed == history
    for name in reference:
        for p, q in zip(reference[name].parameters(), resumed[name].parameters()):
            assert torch.equal(p, q), f"{name}: resumed weights differ"


def test_each_phase_trains_with_its_own_dropout_and_none_keeps_the_models(tiny_bert, tmp_path):
    """``Phase.dropout`` (train.dropout, warmup.dropout): every dropout layer of the trained models at that
    probability while the phase trains, attention's included; None gives each layer back its own (the
    fixture's config: 0.1), also after a phase that changed it."""
    seen = {}

    def phase(name, dropout):
        base = two_model_phase([], name=name)

        def step(models, batch, global_step):
            seen.setdefault(name, set()).update(
                layer.p for model in models.values() for layer in model.modules() if isinstance(layer, torch.nn.Dropout))
            if name == "off":  # training mode, yet the same texts give the same embeddings: no dropout at all
                assert torch.equal(models["student"].embed(batch, is_query=True), models["student"].embed(batch, is_query=True))
            return base.step(models, batch, global_step)

        return Phase(name, 1, 1e-3, 0.01, 0.1, base.batches, step, trains=base.trains, dropout=dropout)

    models = two_models(tiny_bert)
    run_phases(models, [phase("off", 0.0), phase("own", None), phase("heavy", 0.5)], str(tmp_path / "s"), "run",
               1.0, 50, 5, seed=7)
    assert seen == {"off": {0.0}, "own": {0.1}, "heavy": {0.5}}
    student = models["student"]
    student.train()
    set_dropout(student, None, {layer: 0.1 for layer in student.modules() if isinstance(layer, torch.nn.Dropout)})
    batch = ["text number 1 about topic 1", "text number 2 about topic 2"]
    assert not torch.equal(student.embed(batch, is_query=True), student.embed(batch, is_query=True)), \
        "with the fixture's own dropout, training mode draws masks (so the 'off' phase's equality means something)"


def test_a_job_killed_between_two_phases_resumes_the_second_with_its_own_optimiser(tiny_bert, tmp_path):
    """Killed after the first phase's end-of-phase checkpoint and before the second phase's first checkpoint
    (a short phase never writes one), the resumed job trains the second phase from its start with a fresh
    optimiser and schedule, as the uninterrupted job did: the first phase's schedule, at its end (learning
    rate 0 for a phase as long), must not carry over (it did: the second phase then left the student as the
    first phase made it)."""
    reference = two_models(tiny_bert)
    history = run_phases(reference, [two_model_phase([]), two_model_phase([], name="second")], str(tmp_path / "ref"),
                         "run", 1.0, 50, 5, seed=7)
    killed = two_models(tiny_bert)
    with pytest.raises(Interrupt):
        run_phases(killed, [two_model_phase([]), two_model_phase([], interrupt_at=0, name="second")],
                   str(tmp_path / "scratch"), "run", 1.0, 50, 5, seed=7)
    after_first = {n: [p.detach().clone() for p in m.parameters()] for n, m in killed.items()}
    resumed, seen = two_models(tiny_bert), []
    history_resumed = run_phases(resumed, [two_model_phase([]), two_model_phase(seen, name="second")],
                                 str(tmp_path / "scratch"), "run", 1.0, 50, 5, seed=7)
    assert seen == list(range(12)), "the second phase ran whole"
    assert history_resumed == history
    for name in reference:
        assert any(not torch.equal(p, q) for p, q in zip(resumed[name].parameters(), after_first[name])), \
            f"{name}: the second phase moved it"
        for p, q in zip(reference[name].parameters(), resumed[name].parameters()):
            assert torch.equal(p, q), f"{name}: resumed weights differ from the uninterrupted job's"


def test_a_phase_must_train_known_models(tiny_bert):
    phase = two_model_phase([])
    with pytest.raises(ValueError, match=r"trains unknown models \['peer'\]"):
        run_phases({"student": two_models(tiny_bert)["student"]}, [phase], None, "run", 1.0, 3, 5, seed=0)
