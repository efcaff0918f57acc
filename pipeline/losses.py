"""Distillation losses over one batch structure.

Every term maps ``(StudentScores, Batch)`` to a per-query loss vector ``[B]``, so that per-instance
weights or selection (self-paced learning, confusing-query rounds) apply uniformly, and a
:class:`CompositeLoss` is a weighted sum of named terms. Scores are *scaled* similarities
(cosine x ``similarity_scale`` for a normalised student), teacher scores already multiplied by their
own scale; see :mod:`pipeline.training`.

Notation: for query ``q`` with candidates ``[p+, n_1 .. n_k]`` (positive first), ``s_j`` are student
scores, ``t_j`` teacher scores, ``T`` a temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Batch:
    """B queries, each with a group of G candidates ``[positive, negatives...]`` (positive at column 0).

    ``passage_texts`` is row-major ``B*G``; a passage may be synthetic (not in the corpus).
    ``teacher_scores`` maps a teacher/assistant name to ``[B, G]`` scaled scores;
    ``teacher_batch_scores`` (bi-encoder teachers only) to ``[B, B*G]``: every query against every passage
    of the batch, for in-batch distillation; ``teacher_embeddings`` (the same teachers) to their
    ``([B, d], [B*G, d])`` embeddings of the batch's queries and passages.
    """

    query_ids: list[str]
    query_texts: list[str]
    passage_texts: list[str]
    group_size: int
    teacher_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_batch_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_embeddings: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    weights: torch.Tensor | None = None  # [B] per-instance weights (None = all 1)
    #: [B, G] True where a group's passage was made for its query (ADAM's dark examples): not judged, so
    #: label losses (NLL) neither reward nor penalise it; distillation terms use it like any candidate
    synthetic: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.query_ids)

    def to(self, device: torch.device) -> "Batch":
        self.teacher_scores = {k: v.to(device) for k, v in self.teacher_scores.items()}
        self.teacher_batch_scores = {k: v.to(device) for k, v in self.teacher_batch_scores.items()}
        self.teacher_embeddings = {k: (q.to(device), p.to(device)) for k, (q, p) in self.teacher_embeddings.items()}
        if self.weights is not None:
            self.weights = self.weights.to(device)
        if self.synthetic is not None:
            self.synthetic = self.synthetic.to(device)
        return self


@dataclass
class StudentScores:
    """What a student produced for a batch: embeddings and scaled scores."""

    query_embeddings: torch.Tensor  # [B, d]
    passage_embeddings: torch.Tensor  # [B*G, d]
    scale: float

    @property
    def all_scores(self) -> torch.Tensor:
        """``[B, B*G]``: every query against every passage of the batch (in-batch negatives)."""
        return self.scale * self.query_embeddings @ self.passage_embeddings.T

    @property
    def group_scores(self) -> torch.Tensor:
        """``[B, G]``: every query against its own candidates."""
        b, d = self.query_embeddings.shape
        groups = self.passage_embeddings.view(b, -1, d)
        return self.scale * torch.einsum("bd,bgd->bg", self.query_embeddings, groups)


class ContrastiveNLL:
    r"""Contrastive negative log-likelihood with in-batch and hard negatives (DPR; Karpukhin et al., 2020).

    .. math:: \mathcal{L} = -\log \frac{e^{s(q, p^+)}}{\sum_{p \in P} e^{s(q, p)}}

    where ``P`` is the query's own group (``in_batch=False``) or every passage in the batch
    (``in_batch=True``: the other queries' positives and negatives serve as negatives too), less the
    passages made for the query itself (``Batch.synthetic``: judged neither way).
    Same as sentence-transformers' ``MultipleNegativesRankingLoss`` with hard negatives.
    """

    def __init__(self, in_batch: bool = True):
        self.in_batch = in_batch

    def __call__(self, out: StudentScores, batch: Batch) -> torch.Tensor:
        return positive_nll(out.all_scores if self.in_batch else out.group_scores, batch)


def positive_nll(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``[B]``: ``-log softmax(logits)`` at each query's positive, for logits over the query's own group
    (``[B, G]``) or over every passage of the batch (``[B, B*G]``), less the passages made for the query
    itself (``Batch.synthetic``). Any scorer's logits: the student's, a teacher layer's (LEAD)."""
    in_batch = logits.shape[-1] == batch.size * batch.group_size  # (one query: its group is the batch)
    if in_batch:
        target = torch.arange(batch.size, device=logits.device) * batch.group_size
    else:
        target = torch.zeros(batch.size, dtype=torch.long, device=logits.device)
    if batch.synthetic is not None and batch.synthetic.any():
        own = batch.synthetic
        if in_batch:  # each query's own group sits at columns [b*G, (b+1)*G) of the batch
            own = torch.block_diag(*batch.synthetic.unbind(0)).view(batch.size, -1)
        logits = logits.masked_fill(own, float("-inf"))
    return F.cross_entropy(logits.float(), target, reduction="none")


class ListwiseKL:
    r"""Listwise distillation: KL divergence from the teacher's to the student's candidate distribution
    (Hinton et al., 2015; used by PROD, MTA4DPR, RocketQAv2's listwise KD).

    .. math:: \mathcal{L} = T^2 \, \mathrm{KL}\big(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T)\big)
              = T^2 \sum_j \pi^t_j (\log \pi^t_j - \log \pi^s_j)

    over each query's own group ``[p+, n_1..n_k]``, or with ``in_batch=True`` over every passage of the
    batch (the other queries' candidates too: ``B*G`` instead of ``G`` teacher probabilities per query;
    TAS-B distils in-batch negatives scored by a ColBERT teacher the same way, with Margin-MSE;
    Hofstätter et al., 2021).
    ``teacher`` names the entry of ``Batch.teacher_scores`` (``teacher_batch_scores`` in-batch) to distil
    from. The ``T^2`` factor keeps gradient magnitudes comparable across temperatures.
    """

    def __init__(self, temperature: float = 1.0, teacher: str = "teacher", in_batch: bool = False):
        self.temperature, self.teacher, self.in_batch = temperature, teacher, in_batch

    def __call__(self, out: StudentScores, batch: Batch) -> torch.Tensor:
        if self.in_batch:
            if self.teacher not in batch.teacher_batch_scores:
                raise ValueError(f"in-batch distillation needs in-batch scores of teacher {self.teacher!r}")
            return kl_divergence(batch.teacher_batch_scores[self.teacher], out.all_scores, self.temperature)
        return kl_divergence(batch.teacher_scores[self.teacher], out.group_scores, self.temperature)


def kl_divergence(teacher: torch.Tensor, student: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 KL(softmax(teacher/T) || softmax(student/T))`` per row."""
    t_log = F.log_softmax(teacher.float() / temperature, dim=-1)
    s_log = F.log_softmax(student.float() / temperature, dim=-1)
    return temperature ** 2 * (t_log.exp() * (t_log - s_log)).sum(-1)


class MarginMSE:
    r"""Margin-MSE (Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with
    Cross-Architecture Knowledge Distillation").

    .. math:: \mathcal{L} = \frac{1}{k}\sum_{j=1}^{k} \big((s_{+} - s_j) - (t_{+} - t_j)\big)^2

    Sensitive to the scale of teacher scores, which is why score artifacts record their scale.
    """

    def __init__(self, teacher: str = "teacher"):
        self.teacher = teacher

    def __call__(self, out: StudentScores, batch: Batch) -> torch.Tensor:
        s, t = out.group_scores, batch.teacher_scores[self.teacher].float()
        student_margin = s[:, :1] - s[:, 1:]
        teacher_margin = t[:, :1] - t[:, 1:]
        return ((student_margin - teacher_margin) ** 2).mean(-1)


def embedding_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    r"""Embedding MSE (Reimers & Gurevych, 2020, "Making Monolingual Sentence Embeddings Multilingual
    using Knowledge Distillation"; sentence-transformers' ``MSELoss``), summed over dimensions:

    .. math:: \mathcal{L} = \lVert E_S(x) - E_T(x) \rVert_2^2

    Label-free: a warm-up that pulls a truncated student onto its teacher's embedding space. Needs equal
    embedding sizes.
    """
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(f"embedding MSE needs equal sizes: student {student.shape[-1]}, teacher {teacher.shape[-1]}")
    return ((student.float() - teacher.float()) ** 2).sum(-1)


class EmbeddingMSE:
    r"""The warm-up's embedding MSE kept through distillation: each query's and each of its candidates'
    student embeddings pulled toward a bi-encoder teacher's embeddings of the same texts, averaged over
    the query's ``1 + G`` texts:

    .. math:: \mathcal{L} = \frac{1}{1+G}\Big(\lVert E_S(q) - E_T(q) \rVert_2^2
              + \sum_{j=1}^{G} \lVert E_S(p_j) - E_T(p_j) \rVert_2^2\Big)

    (:func:`embedding_mse` per text). A regulariser toward the space the warm-up pulled the student
    into, where the label and score terms only see a handful of candidates per query (issue 35: the
    phases after the warm-up take away what it gave). ``teacher`` names the entry of
    ``Batch.teacher_embeddings``.
    """

    def __init__(self, teacher: str = "teacher"):
        self.teacher = teacher

    def __call__(self, out: StudentScores, batch: Batch) -> torch.Tensor:
        if self.teacher not in batch.teacher_embeddings:
            raise ValueError(f"embedding MSE needs teacher {self.teacher!r}'s embeddings of the batch")
        queries, passages = batch.teacher_embeddings[self.teacher]
        per_query = embedding_mse(out.query_embeddings, queries)
        per_passage = embedding_mse(out.passage_embeddings, passages).view(batch.size, -1)
        return (per_query + per_passage.sum(-1)) / (1 + per_passage.shape[-1])


def anchored_rank_kl(student: torch.Tensor, teacher: torch.Tensor, anchors: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    r"""Ranking distillation against fixed teacher anchors [ours]: each text's teacher and student
    embeddings rank the same set of teacher embeddings of the *other* side (a query against every
    corpus passage, a passage against every training query), and the student's distribution is pulled
    towards the teacher's:

    .. math:: \mathcal{L} = \mathrm{KL}\big(\mathrm{softmax}(\tau\, E_T(x) A^\top) \,\|\,
              \mathrm{softmax}(\tau\, E_S(x) A^\top)\big)

    with ``A`` the anchors (no gradient) and ``tau`` the similarity scale. Label-free and cheap (one
    matrix product per batch); unlike embedding MSE it weighs the directions that change rankings. The
    student's side is put into the teacher's space, so at search time student queries and student
    passages meet there. Needs equal embedding sizes.
    """
    anchors = anchors.to(student.device, torch.float32)
    return kl_divergence(scale * teacher.float() @ anchors.T, scale * student.float() @ anchors.T)


def weighted_mean(per_query: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The batch mean of a per-query loss, weighted by ``Batch.weights`` when there are any."""
    if weights is None:
        return per_query.mean()
    return (per_query * weights).sum() / weights.sum().clamp(min=1e-9)


class CompositeLoss:
    """A weighted sum of named per-query terms, averaged over the batch with per-instance weights. A term
    with a ``last_parts`` dict (what it decided on the batch) has it logged with the parts."""

    def __init__(self, terms: dict[str, tuple[float, object]]):
        self.terms = {name: (float(w), term) for name, (w, term) in terms.items() if float(w) != 0.0}
        if not self.terms:
            raise ValueError("the loss has no term with a non-zero weight")

    def __call__(self, out: StudentScores, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        weights = batch.weights
        total = 0.0
        parts: dict[str, float] = {}
        for name, (weight, term) in self.terms.items():
            per_query = term(out, batch)
            value = weighted_mean(per_query, weights)
            parts[name] = float(value.detach())
            # a term may say what it decided on this batch (MTA4DPR's choice of assistant): logged alike
            parts.update(getattr(term, "last_parts", {}))
            total = total + weight * value
        return total, parts
