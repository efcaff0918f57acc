"""OnMKD (pipeline/methods/onmkd.py): its equations against hand computations, the stop-gradient of the
mutual KL on parameters, two peers killed and resumed, its config checks. The workflow end to end is in
tests/test_workflow.py."""

import copy
import dataclasses
import json
import math

import pytest
import torch

from fixtures import prepare_with_candidates, write_tiny_bert
from pipeline.config import complete
from pipeline.losses import Batch, StudentScores
from pipeline.methods import get_method
from pipeline.methods.onmkd import OTHER_PEER, Onmkd, compare_peers, crosswise_infonce, mutual_phase, peer_losses
from pipeline.models import BiEncoder, ModelSpec, truncate_layers
from pipeline.plan import Plan
from pipeline.training import init_student, train_student
from pipeline.training.driver import TrainingRun, complete_sections
from pipeline.training.sampling import build_examples
from pipeline.data import load_qrels, load_queries, passage_texts, read_table


def test_crosswise_infonce_against_a_hand_computation():
    # two queries, groups of two; A's queries against B's passages, every passage of the batch a candidate
    queries_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    passages_b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    batch = Batch(["q0", "q1"], ["a", "b"], ["p"] * 4, group_size=2)
    # q0's logits [1, 0, 0, 1], positive at 0; q1's [0, 1, 1, 0], positive at 2: both -log(e / (2e + 2))
    expected = math.log(2 * math.e + 2) - 1
    loss = crosswise_infonce(queries_a, passages_b, batch, scale=1.0)
    assert torch.allclose(loss, torch.tensor([expected, expected]))
    # at scale 2 the logits double: -log(e^2 / (2e^2 + 2))
    assert torch.allclose(crosswise_infonce(queries_a, passages_b, batch, scale=2.0),
                          torch.full((2,), math.log(2 * math.e ** 2 + 2) - 2))


def test_peer_layers_keep_the_listed_blocks(tiny_bert):
    full = BiEncoder.load(ModelSpec("full", source=str(tiny_bert)))
    picked = BiEncoder.load(ModelSpec("picked", source=str(tiny_bert), layers=[0, 2]))
    assert picked.num_layers == 2 and picked.backbone.config.num_hidden_layers == 2
    for kept, original in zip(picked.backbone.encoder.layer, [full.backbone.encoder.layer[0], full.backbone.encoder.layer[2]]):
        for x, y in zip(kept.parameters(), original.parameters()):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="increasing order"):
        truncate_layers(copy.deepcopy(full.backbone), [2, 0])
    with pytest.raises(ValueError, match="each below the model's 3"):
        truncate_layers(copy.deepcopy(full.backbone), [0, 3])


@pytest.fixture(scope="module")
def setup(tiny_beir, tiny_bert, tmp_path_factory):
    """Prepared data, BM25 candidates, an untrained 1-layer student and a peer of block 2 (init_student)."""
    root = tmp_path_factory.mktemp("onmkd")
    data = prepare_with_candidates(tiny_beir, root)
    student = {"name": "student-it0", "kind": "bi-encoder", "source": str(tiny_bert), "layers": 1}
    init_student(student, str(root / "student0"), peers={"peer": dict(student, layers=[2], name="student-it1-peer")})
    return root, data


def make_run(setup, onmkd=None, train=None, same_peers=False):
    """A TrainingRun of OnMKD over the fixture's candidates (no teacher scores: the labels and the peers),
    and the loop's models (the student and its peer)."""
    root, data = setup
    config = complete_sections({"teacher": "none", "warmup": {"epochs": 0},
                                "train": {"batch_size": 4, "group_size": 4, "w_kd": 0.0, **(train or {})},
                                "onmkd": onmkd or {}}, [Onmkd()])
    corpus, qrels = read_table(data["corpus"]), load_qrels(data["qrels-train"])
    student = BiEncoder.load(ModelSpec("s", source=str(root / "student0")))
    run = TrainingRun(config=config, iteration=1, seed=3, device=torch.device("cpu"), methods=[Onmkd()],
                      corpus=corpus, corpus_path=data["corpus"], queries=load_queries(data["queries"]), qrels=qrels,
                      doc_text=dict(zip(corpus["doc_id"], passage_texts(corpus, True))), synthetic_texts={},
                      examples=build_examples(read_table(str(root / "candidates.parquet")), qrels),
                      teacher_scores={}, include_title=True, student=student, student_dir=str(root / "student0"))
    if same_peers:
        peer = copy.deepcopy(student)
    else:
        peer = BiEncoder.load(ModelSpec("p", source=str(root / "student0" / "peer")))
    return run, {"student": student, "peer": peer}


def test_the_mutual_kl_sends_no_gradient_into_its_target(setup):
    run, models = make_run(setup, train={"w_nll": 0.0})
    losses = peer_losses(run, Onmkd())
    assert set(losses["student"].terms) == {"mutual_kl"}, "the teacher-free, label-free loss: the mutual KL alone"
    student, peer = models["student"], models["peer"]
    phase = mutual_phase(run, Onmkd())
    rows = phase.batches(0)[0]
    batch = Batch([q for q, _ in rows], [run.queries[q] for q, _ in rows],
                  [run.doc_text[d] for _, g in rows for d in g], group_size=4)

    def scores(model):
        return StudentScores(model.embed(batch.query_texts, True), model.embed(batch.passage_texts, False), 20.0)

    for target in (lambda s: s.detach(), lambda s: s):  # the second shows that the check can fail
        student.zero_grad(set_to_none=True)
        peer.zero_grad(set_to_none=True)
        view = dataclasses.replace(batch, teacher_scores={OTHER_PEER: target(scores(peer).group_scores)})
        loss, parts = losses["student"](scores(student), view)
        loss.backward()
        assert parts["mutual_kl"] > 0
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
        reached = [p.grad is not None and p.grad.abs().sum() > 0 for p in peer.parameters()]
        if target(torch.ones(1, requires_grad=True)).requires_grad:
            assert any(reached), "without the stop-gradient the target's parameters get gradients"
        else:
            assert not any(reached), "the mutual KL's target gets no gradient"


def test_identical_peers_give_a_symmetric_loss(setup):
    run, models = make_run(setup, onmkd={"crosswise_layers": []}, same_peers=True)
    phase = mutual_phase(run, Onmkd())
    assert phase.trains == ("student", "peer")
    loss, parts = phase.step(models, phase.batches(0)[0], 0)
    assert parts["nll"] == pytest.approx(parts["peer:nll"])
    assert parts["mutual_kl"] == pytest.approx(0.0, abs=1e-6) and parts["peer:mutual_kl"] == pytest.approx(0.0, abs=1e-6)
    # the total: both NLLs, both (zero) mutual KLs, and the cross-wise InfoNCE both ways at the last layer
    expected = 2 * parts["nll"] + 0.1 * parts["crosswise:last"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    # with the peers identical, A's queries against B's passages are the NLL over the batch, both ways
    assert parts["crosswise:last"] == pytest.approx(2 * parts["nll"], rel=1e-5)


def test_intermediate_crosswise_layers_and_teacher_terms_per_peer(setup):
    run, models = make_run(setup, onmkd={"crosswise_layers": [1], "teacher_peers": ["peer"]})
    with pytest.raises(ValueError, match=r"crosswise_layers \[1\]: a peer has 1 layers"):
        mutual_phase(run, Onmkd()).step(models, mutual_phase(run, Onmkd()).batches(0)[0], 0)
    run.config["teacher"] = "teacher"
    run.config["train"]["w_kd"] = 1.0
    losses = peer_losses(run, Onmkd())
    assert "kl:teacher" in losses["peer"].terms and "kl:teacher" not in losses["student"].terms


def train_pair(setup, out, scratch, **kwargs):
    root, data = setup
    config = {"teacher": "teacher", "warmup": {"epochs": 0},
              "train": {"epochs": 2, "batch_size": 4, "group_size": 4, "lr": 1e-3, "checkpoint_every": 3,
                        "w_kd": 0.0},
              "onmkd": {"w_crosswise": 0.5}}
    return train_student(str(root / "student0"), str(out), str(root / "candidates.parquet"), {}, data["qrels-train"],
                         data["queries"], data["corpus"], config=config, methods=["onmkd"], device="cpu", seed=3,
                         scratch_dir=str(scratch), **kwargs)


def test_two_peers_are_killed_and_resume_to_the_identical_pair(setup, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from test_training import Interrupt, interrupted_after
    import pipeline.methods.onmkd as onmkd

    reference = train_pair(setup, tmp_path / "reference", tmp_path / "scratch-ref")
    assert {"nll", "peer:nll", "mutual_kl", "peer:mutual_kl", "crosswise:last"} <= set(reference["history"][0])
    original = onmkd.mutual_phase
    monkeypatch.setattr(onmkd, "mutual_phase", interrupted_after(original, 5))
    with pytest.raises(Interrupt):
        train_pair(setup, tmp_path / "resumed", tmp_path / "scratch")
    assert not (tmp_path / "resumed").exists(), "no output after a killed run"
    monkeypatch.setattr(onmkd, "mutual_phase", original)
    resumed = train_pair(setup, tmp_path / "resumed", tmp_path / "scratch")
    assert resumed["history"] == reference["history"]
    for folder in ("", "peer"):
        a = BiEncoder.load(ModelSpec("a", source=str(tmp_path / "reference" / folder)))
        b = BiEncoder.load(ModelSpec("b", source=str(tmp_path / "resumed" / folder)))
        for x, y in zip(a.parameters(), b.parameters()):
            assert torch.equal(x, y)
    # both peers trained (away from where they started), saved and loadable in sentence-transformers
    start = BiEncoder.load(ModelSpec("p0", source=str(setup[0] / "student0" / "peer")))
    trained = BiEncoder.load(ModelSpec("p1", source=str(tmp_path / "resumed" / "peer")))
    assert not all(torch.equal(x, y) for x, y in zip(start.parameters(), trained.parameters()))
    assert json.loads((tmp_path / "resumed" / "peer" / "training.json").read_text())["trained_beside"].endswith("resumed")
    for folder in ("", "peer"):
        SentenceTransformer(str(tmp_path / "resumed" / folder), device="cpu").encode(["a query"])


def onmkd_plan(tmp_path, **changes):
    config = {"experiment": "x", "iterations": 2, "methods": ["onmkd"], "teacher": "t",
              "models": {"t": {"kind": "bi-encoder", "source": "t"}, "bm25": {"kind": "bm25"}},
              "student": {"kind": "bi-encoder", "source": "packaged:all-MiniLM-L6-v2", "layers": 2}, **changes}
    return Plan(complete(config))


def test_plan_trains_evaluates_and_names_the_peer(tmp_path):
    plan = onmkd_plan(tmp_path, onmkd={"crosswise_layers": [1]})
    assert plan.problems() == []
    assert isinstance(get_method("onmkd"), Onmkd)
    assert plan.students() == ["student-it0", "student-it1", "student-it1-peer", "student-it2", "student-it2-peer"]
    assert plan.peers(1)["peer"]["layers"] == [0, 3], "the preset's default: other blocks of the same backbone"
    assert plan.model("student-it2-peer")["source"] == "results/x/students/it2/peer"
    assert "mutual KL 1, cross-wise 0.1 (also layers [1])" in plan.describe(1)
    assert plan.reports(2) == ["results/x/it2/peers.json"] and plan.method_rules() == ["rules/methods/onmkd.smk"]


@pytest.mark.parametrize("changes, message", [
    ({"onmkd": {"crosswise_layers": [2]}}, "onmkd.crosswise_layers: [2] are not intermediate layers of the student (2 layers"),
    ({"onmkd": {"peer": {"layers": [0, 2, 4]}, "crosswise_layers": [3]}}, "[3] are not intermediate layers of the peer (3 layers"),
    ({"onmkd": {"peer": {}}}, "onmkd.peer: peer B must start from other parameters than the student"),
    ({"onmkd": {"peer": {"kind": "bm25"}}}, "onmkd.peer: the peer must be a bi-encoder"),
    ({"onmkd": {"peer": {"pooling": "max"}}}, "onmkd.peer.pooling"),
    ({"train": {"w_lwf": 1.0}}, "onmkd: train.w_lwf keeps a frozen copy of one student"),
    ({"methods": ["standard", "onmkd"]}, "methods ['standard', 'onmkd'] each train the student's distillation (a recipe)"),
    ({"methods": ["standard"], "overrides": {"2": {"methods": ["onmkd"]}}}, "list onmkd in every iteration from 1 to 2"),
])
def test_config_checks_name_the_problem(tmp_path, changes, message):
    problems = onmkd_plan(tmp_path, **changes).problems()
    assert any(message in p for p in problems), problems


def test_peers_of_different_embedding_sizes_fail_with_the_crosswise_loss_on(tmp_path):
    wide = write_tiny_bert(tmp_path / "wide", layers=2, hidden=48)
    narrow = write_tiny_bert(tmp_path / "narrow", layers=2, hidden=32)
    changes = {"student": {"kind": "bi-encoder", "source": str(narrow)}, "onmkd": {"peer": {"source": str(wide)}}}
    problems = onmkd_plan(tmp_path, **changes).problems()
    assert any("embeddings, of sizes 32 (student) and 48 (peer)" in p for p in problems), problems
    changes["onmkd"]["w_crosswise"] = 0.0
    assert onmkd_plan(tmp_path, **changes).problems() == []


def test_onmkd_composes_with_adam(tmp_path):
    plan = onmkd_plan(tmp_path, methods=["onmkd", "adam"], train={"group_size": 6})
    assert plan.problems() == []
    assert plan.scored_candidates(1) == "results/x/it1/dark-candidates.parquet"
    assert "OnMKD" in plan.describe(1) and "ADAM" in plan.describe(1)


def test_the_peers_report_names_the_better_on_dev(tmp_path):
    paths = []
    for name, value in (("student-it1", 0.5), ("student-it1-peer", 0.625)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"name": name, "ndcg@10": value}))
    report = compare_peers(list(map(str, paths)), str(tmp_path / "peers.json"))
    assert report["better"] == "student-it1-peer"
    assert report["summary"] == "peers on dev ndcg@10: student-it1 0.5000 vs student-it1-peer 0.6250; better: student-it1-peer"
    assert json.loads((tmp_path / "peers.json").read_text()) == report
    paths[1].write_text(json.dumps({"name": "student-it1-peer", "ndcg@10": None}))
    assert compare_peers(list(map(str, paths)), str(tmp_path / "none.json"))["better"] is None
