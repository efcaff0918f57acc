import math

import pytest
import torch

from pipeline.config import section_defaults
from pipeline.losses import (Batch, CompositeLoss, ContrastiveNLL, EmbeddingMSE, ListwiseKL, MarginMSE,
                             StudentScores, anchored_rank_kl, embedding_mse, kl_divergence)
from pipeline.methods.standard import recipe_terms


def build_loss(weights, teachers):
    """The standard recipe's loss for a train section with these weights (the rest schema defaults)."""
    return CompositeLoss(recipe_terms({**section_defaults("train"), **weights}, teachers))


def one_query_batch(teacher):
    return Batch(query_ids=["q"], query_texts=["q"], passage_texts=["p", "n1", "n2"], group_size=3,
                 teacher_scores={"teacher": torch.tensor([teacher])})


def scores_for(student_scores, scale=1.0):
    """StudentScores whose group scores equal ``student_scores`` (embeddings chosen so q·p_j = s_j)."""
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[s, 1.0] for s in student_scores])
    return StudentScores(q, p, scale)


def test_nll_matches_hand_computation():
    out = scores_for([2.0, 1.0, 0.0])
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    assert ContrastiveNLL(in_batch=False)(out, one_query_batch([0, 0, 0])).item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_nll_uses_other_queries_passages():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # group 0: p0,n0; group 1: p1,n1
    out = StudentScores(q, p, scale=2.0)
    batch = Batch(["a", "b"], ["a", "b"], ["p0", "n0", "p1", "n1"], group_size=2)
    losses = ContrastiveNLL(in_batch=True)(out, batch)
    # query a: scores [2, 0, 0, 0] -> target column 0
    expected = -math.log(math.exp(2) / (math.exp(2) + 3))
    assert losses[0].item() == pytest.approx(expected, rel=1e-6)
    assert losses[1].item() == pytest.approx(expected, rel=1e-6)


def test_kl_matches_hand_computation_and_temperature_squared():
    teacher, student = [3.0, 1.0, 0.0], [1.0, 1.0, 1.0]
    T = 2.0
    pt = [math.exp(t / T) for t in teacher]
    z = sum(pt)
    pt = [x / z for x in pt]
    expected = T ** 2 * sum(p * (math.log(p) - math.log(1 / 3)) for p in pt)
    got = ListwiseKL(temperature=T)(scores_for(student), one_query_batch(teacher))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert kl_divergence(torch.tensor([teacher]), torch.tensor([teacher])).item() == pytest.approx(0.0, abs=1e-7)


def test_embedding_mse_through_distillation_averages_each_query_and_its_candidates():
    # two queries, groups of 2; student and teacher embeddings in 2 dimensions
    student_q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student_p = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    teacher_q = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    teacher_p = torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    batch = Batch(["a", "b"], ["a", "b"], ["p0", "n0", "p1", "n1"], group_size=2,
                  teacher_embeddings={"w": (teacher_q, teacher_p)})
    got = EmbeddingMSE(teacher="w")(StudentScores(student_q, student_p, scale=20.0), batch)
    # query a: |(1,0)-(0,0)|^2 = 1, p0: |(0,-2)|^2 = 4, n0: 0  -> 5/3
    # query b: 0, p1: 0, n1: |(2,0)|^2 = 4                     -> 4/3
    assert got.tolist() == pytest.approx([5 / 3, 4 / 3])
    terms = recipe_terms({**section_defaults("train"), "w_embedding_mse": 0.5}, ["t"], "w")
    assert terms["embedding_mse:w"][0] == 0.5 and isinstance(terms["embedding_mse:w"][1], EmbeddingMSE)
    assert not any(name.startswith("embedding_mse") for name in recipe_terms(section_defaults("train"), ["t"]))
    with pytest.raises(ValueError, match="needs teacher 'other'"):
        EmbeddingMSE(teacher="other")(StudentScores(student_q, student_p, 20.0), batch)


def test_margin_mse_matches_hand_computation():
    teacher, student = [5.0, 2.0, 1.0], [1.0, 0.5, 0.0]
    expected = (((1 - 0.5) - (5 - 2)) ** 2 + ((1 - 0) - (5 - 1)) ** 2) / 2
    assert MarginMSE()(scores_for(student), one_query_batch(teacher)).item() == pytest.approx(expected)


def test_margin_mse_ignores_a_constant_shift_of_teacher_scores():
    loss = MarginMSE()
    a = loss(scores_for([1.0, 0.2, 0.1]), one_query_batch([3.0, 1.0, 0.0]))
    b = loss(scores_for([1.0, 0.2, 0.1]), one_query_batch([13.0, 11.0, 10.0]))
    assert a.item() == pytest.approx(b.item())


def test_embedding_mse_and_size_check():
    assert embedding_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="equal sizes"):
        embedding_mse(torch.zeros(1, 3), torch.zeros(1, 2))


def test_composite_is_weighted_sum_with_instance_weights():
    out = scores_for([2.0, 1.0, 0.0])
    batch = one_query_batch([3.0, 1.0, 0.0])
    nll = ContrastiveNLL(in_batch=False)(out, batch).item()
    kl = ListwiseKL()(out, batch).item()
    total, parts = CompositeLoss({"nll": (0.1, ContrastiveNLL(False)), "kl": (0.9, ListwiseKL())})(out, batch)
    assert total.item() == pytest.approx(0.1 * nll + 0.9 * kl, rel=1e-6)
    assert parts == pytest.approx({"nll": nll, "kl": kl})

    # weights: the second query counts three times as much as the first
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    two = StudentScores(q, p, 1.0)
    batch2 = Batch(["a", "b"], ["a", "b"], ["p", "n", "p", "n"], 2, weights=torch.tensor([1.0, 3.0]))
    per_query = ContrastiveNLL(False)(two, batch2)
    total2, _ = CompositeLoss({"nll": (1.0, ContrastiveNLL(False))})(two, batch2)
    assert total2.item() == pytest.approx((per_query[0] + 3 * per_query[1]).item() / 4)


def test_build_loss_drops_zero_weight_terms():
    loss = build_loss({"w_nll": 0.1, "w_kd": 1.0, "w_mse": 0.0}, ["teacher"])
    assert set(loss.terms) == {"nll", "kl:teacher"}
    with pytest.raises(ValueError):
        CompositeLoss({"nll": (0.0, ContrastiveNLL())})


def test_losses_have_gradients():
    q = torch.randn(2, 4, requires_grad=True)
    p = torch.randn(6, 4, requires_grad=True)
    batch = Batch(["a", "b"], ["a", "b"], ["x"] * 6, 3, teacher_scores={"teacher": torch.randn(2, 3)})
    total, _ = build_loss({"w_nll": 1, "w_kd": 1, "w_mse": 1}, ["teacher"])(StudentScores(q, p, 20.0), batch)
    total.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and p.grad.abs().sum() > 0


def test_anchored_rank_kl_matches_hand_computation():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0]])
    student = torch.tensor([[0.0, 1.0]])
    # teacher ranks anchors with logits [2, 0], student with [0, 2] (scale 2)
    pt = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    ps = [pt[1], pt[0]]
    expected = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
    got = anchored_rank_kl(student, teacher, anchors, scale=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert anchored_rank_kl(teacher, teacher, anchors).item() == pytest.approx(0.0, abs=1e-7)


def test_in_batch_kl_spans_every_passage_of_the_batch():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 0.0]])
    out = StudentScores(q, p, scale=2.0)
    teacher_batch = torch.tensor([[4.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
    batch = Batch(["a", "b"], ["a", "b"], ["p0", "n0", "p1", "n1"], group_size=2,
                  teacher_scores={"t": torch.tensor([[4.0, 1.0], [3.0, 1.0]])},
                  teacher_batch_scores={"t": teacher_batch})
    got = ListwiseKL(teacher="t", in_batch=True)(out, batch)
    student = [[2.0, 1.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0]]
    for row in range(2):
        pt = torch.softmax(teacher_batch[row], -1)
        ps = torch.softmax(torch.tensor(student[row]), -1)
        assert got[row].item() == pytest.approx(float((pt * (pt.log() - ps.log())).sum()), rel=1e-5)
    group_only = ListwiseKL(teacher="t")(out, batch)
    assert not torch.allclose(got, group_only), "the in-batch list is longer than the query's own group"
    with pytest.raises(ValueError, match="in-batch scores of teacher 'x'"):
        ListwiseKL(teacher="x", in_batch=True)(out, batch)
