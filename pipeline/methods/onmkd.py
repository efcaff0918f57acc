r"""OnMKD: two peer students trained together, with mutual distillation and a cross-wise contrastive loss.

[abs] No frozen teacher is needed: two lightweight peers with the same dual-encoder structure and
different initial parameters are updated together ("online mutual knowledge refinement"), and a
cross-wise contrastive loss alternates the representations of questions and passages between the
peers, at the last layer and at intermediate ones.

[ours] (no code of OnMKD is public; the formulation below is this project's). Peers A (``student``)
and B (``peer``) embed the same batch of groups ``[p+, n_1 .. n_k]``; with :math:`s_A, s_B` their scaled
scores of each query's group, :math:`q^l_X, P^l_X` peer X's query and passage embeddings at layer l
(pooled and normalised as the peers pool), sg a stop-gradient and :math:`\mathcal{R}_X` the recipe's
terms of peer X (:mod:`pipeline.methods.standard`: the NLL, and the offline teacher's KL and MarginMSE
for the peers in ``teacher_peers``):

.. math::
    \mathcal{L} = \mathcal{R}_A(s_A) + \mathcal{R}_B(s_B)
        + \lambda_{kl}\,T^2\,\big[\mathrm{KL}(\mathrm{softmax}(\mathrm{sg}(s_B)/T)\,\|\,\mathrm{softmax}(s_A/T))
        + \mathrm{KL}(\mathrm{softmax}(\mathrm{sg}(s_A)/T)\,\|\,\mathrm{softmax}(s_B/T))\big]
        + \lambda_{cw} \sum_{l \in L \cup \{last\}} \big[\mathrm{InfoNCE}(q^l_A, P^l_B) + \mathrm{InfoNCE}(q^l_B, P^l_A)\big]

with :math:`\mathrm{InfoNCE}(q, P) = -\log \frac{e^{\tau\,q_i \cdot p^+_i}}{\sum_{p \in P} e^{\tau\,q_i \cdot p}}` over
every passage of the batch (in-batch negatives; :class:`pipeline.losses.ContrastiveNLL` on the crossed
embeddings, :math:`\tau` = ``train.similarity_scale``). The mutual KL is deep mutual learning's
(:class:`pipeline.losses.ListwiseKL` against the other peer's detached scores); the cross-wise loss sends
gradients into both peers. Both peers warm up like the student when the iteration warms up.

Peer B starts from ``onmkd.peer`` (settings over the student's: by default the blocks [0, 3] of the
student's backbone, where the student keeps [0, 1]) in iteration 1 and from ``students/it<k-1>/peer``
afterwards: both peers carry on through the iterations, the student's line mines. Each iteration saves
peer B in ``students/it<k>/peer`` (``student-it<k>-peer``); it is evaluated on dev and test like the
student, so the better peer on the dev split (carved out of the training queries) becomes the run's final
student (``final.json``); rule ``onmkd_peers`` writes which peer of each iteration is better on dev
(``it<k>/peers.json``), a line of the summary's "Iterations:".

References:
    - Deng, Li, Zhang and He, 2023, "OnMKD: An Online Mutual Knowledge Distillation Framework for Passage
      Retrieval", NLPCC 2023.
    - Zhang, Xiang, Hospedales and Lu, 2018, "Deep Mutual Learning" (the mutual KL between peers).
    - van den Oord, Li and Vinyals, 2018, "Representation Learning with Contrastive Predictive Coding"
      (InfoNCE).

Requirements:
    - peers with the same embedding size when the cross-wise loss is on, each deeper than every
      intermediate layer in ``crosswise_layers``;
    - OnMKD from iteration 1 on (peer B continues from the previous iteration's), without ``train.w_lwf``.

Inputs:
    +------------------------------------+------------------------------------------------------+
    | Batch                              | Teacher scores                                       |
    +====================================+======================================================+
    | (query, [positive, k negatives])   | optional (``teacher_peers``): cached scores per pair |
    +------------------------------------+------------------------------------------------------+

Relations:
    - With ``w_mutual = w_crosswise = 0`` it trains two independent students of the standard recipe.
    - With ``teacher_peers: []`` and ``w_nll = 0`` the peers learn from each other alone.
    - Composes with ADAM (``methods: [onmkd, adam]``): dark examples and self-paced weights apply to both peers.

Example:
    .. code-block:: yaml

        methods: [onmkd]
        onmkd:
          peer: {layers: [0, 3]}
          w_mutual: 1.0
          w_crosswise: 0.1
          crosswise_layers: [1]
          teacher_peers: [student, peer]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, complete
from ..data import write_json
from ..sources import model_shape
from .base import LossTerm, Needs, PlanView, TrainingRun, register
from .standard import Standard

if TYPE_CHECKING:  # pragma: no cover
    from ..training.loop import Phase

PEERS = ("student", "peer")
#: where each peer finds the other's (detached) scores of its groups in ``Batch.teacher_scores``
OTHER_PEER = "onmkd:other-peer"


def peer_settings(student: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """Peer B's model settings: the student's with ``onmkd.peer`` over them."""
    return {**student, **peer}


@register
class Onmkd(Standard):
    """The standard recipe for two peers at once, plus their mutual KL and cross-wise InfoNCE."""

    name = "onmkd"
    sections = Standard.sections + ("onmkd",)
    rules = "rules/methods/onmkd.smk"
    steps = {"onmkd_peers": "compare_peers"}

    # -- parse time ------------------------------------------------------------------------------

    def check(self, plan: PlanView, it: int) -> list[str]:
        problems = super().check(plan, it)
        c = plan.iteration(it)
        settings = c["onmkd"]
        if it > 1 and "onmkd" not in plan.iteration(it - 1)["methods"]:
            problems.append(f"onmkd: peer B continues from iteration {it - 1}'s (students/it{it - 1}/peer); "
                            f"list onmkd in every iteration from 1 to {it}")
        if c["train"]["w_lwf"] > 0:
            problems.append("onmkd: train.w_lwf keeps a frozen copy of one student; set it to 0 with two peers")
        student = plan.config["student"]
        try:
            peer = complete(peer_settings(student, settings["peer"]), "model", where="onmkd.peer")
        except ConfigError as err:
            return problems + [str(err)]
        if peer["kind"] != "bi-encoder":
            problems.append(f"onmkd.peer: the peer must be a bi-encoder (got {peer['kind']!r})")
        if peer == complete(student, "model"):
            problems.append("onmkd.peer: peer B must start from other parameters than the student "
                            "(e.g. peer: {layers: [0, 3]})")
        (student_depth, student_width), (peer_depth, peer_width) = model_shape(student), model_shape(peer)
        if settings["w_crosswise"] > 0 and student_width and peer_width and student_width != peer_width:
            problems.append(f"onmkd: the cross-wise loss compares the peers' embeddings, of sizes {student_width} "
                            f"(student) and {peer_width} (peer); give them one size or set w_crosswise: 0")
        for name, depth in (("student", student_depth), ("peer", peer_depth)):
            missing = [layer for layer in settings["crosswise_layers"] if depth is not None and layer >= depth]
            if missing:
                problems.append(f"onmkd.crosswise_layers: {missing} are not intermediate layers of the {name} "
                                f"({depth} layers: 1 to {depth - 1}; the last always has a cross-wise loss)")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        c = view.iteration(it)
        settings = c["onmkd"]
        peer = peer_settings(view.config["student"], settings["peer"])
        layers = sorted(settings["crosswise_layers"])
        teacher = ", ".join(settings["teacher_peers"]) or "neither peer"
        description = (f"OnMKD: student and peer (student-it{it}-peer) trained together, mutual KL "
                       f"{settings['w_mutual']:g}, cross-wise {settings['w_crosswise']:g}"
                       + (f" (also layers {layers})" if layers else "") + f"; teacher {c['teacher']} for {teacher}")
        recipe = super().plan(view, it)
        return dataclasses.replace(recipe, peers={"peer": dict(peer, name=f"student-it{it}-peer")},
                                   reports=[*recipe.reports, f"{view.root}/it{it}/peers.json"], description=description)

    # -- training time ---------------------------------------------------------------------------

    def phases(self, run: "TrainingRun") -> list["Phase"]:
        # torch: not at parse time (the Snakefile imports this module)
        from ..models import BiEncoder, load_student_spec

        folder = Path(run.student_dir) / "peer"
        if not (folder / "pipeline_model.json").is_file():
            raise FileNotFoundError(f"onmkd: peer B should continue from {folder}, which holds no model; OnMKD "
                                    "must train every iteration from the first (whose peer init_student makes)")
        peer = {"peer": BiEncoder.load(load_student_spec(folder), run.device)}
        warmups = [dataclasses.replace(phase, adds=peer) for phase in self.warmup_phases(run, trains=PEERS)]
        return warmups + [dataclasses.replace(mutual_phase(run, self), adds=peer, saves={"peer": "peer"})]

    def loss_terms(self, run: "TrainingRun", phase: str) -> dict[str, tuple[float, LossTerm]]:
        # torch: not at parse time (the Snakefile imports this module)
        from ..losses import ListwiseKL

        terms = super().loss_terms(run, phase)
        if phase == "distill":
            settings = run.config["onmkd"]
            terms["mutual_kl"] = (settings["w_mutual"], ListwiseKL(settings["temperature"], teacher=OTHER_PEER))
        return terms


def compare_peers(dev_metric_paths: list[str], out_path: str, metric: str = "ndcg@10") -> dict[str, Any]:
    """Which of an iteration's peers is better on the dev split (rule ``onmkd_peers``): their dev figures,
    the better one's name, and a ``summary`` line."""
    dev = {row["name"]: row[metric] for row in (json.loads(Path(p).read_text()) for p in dev_metric_paths)}
    if any(value is None for value in dev.values()):
        report = {"dev": dev, "better": None, "summary": "peers: no dev split to compare them on"}
    else:
        better = max(dev, key=lambda name: dev[name])  # the student on a tie: it comes first
        figures = " vs ".join(f"{name} {value:.4f}" for name, value in dev.items())
        report = {"dev": dev, "better": better, "summary": f"peers on dev {metric}: {figures}; better: {better}"}
    write_json(report, out_path)
    return report


def peer_losses(run: "TrainingRun", method: Onmkd) -> dict[str, Any]:
    """Each peer's :class:`pipeline.losses.CompositeLoss`: every method's ``distill`` terms, less the
    offline teacher's for a peer outside ``onmkd.teacher_peers``."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..losses import CompositeLoss

    terms = run.loss_terms("distill")
    teacher_terms = {f"{kind}:{t}" for t in method.teachers(run.config) for kind in ("kl", "margin_mse")}
    taught = run.config["onmkd"]["teacher_peers"]
    return {name: CompositeLoss({k: v for k, v in terms.items() if name in taught or k not in teacher_terms})
            for name in PEERS}


def crosswise_infonce(queries, passages, batch, scale: float):
    """``[B]``: InfoNCE of one peer's query embeddings against the other's passage embeddings, every
    passage of the batch a candidate (:class:`pipeline.losses.ContrastiveNLL` on the crossed pair)."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..losses import ContrastiveNLL, StudentScores

    return ContrastiveNLL(in_batch=True)(StudentScores(queries, passages, scale), batch)


def mutual_phase(run: "TrainingRun", method: Onmkd) -> "Phase":
    """The ``distill`` phase of both peers: one batch, one backward pass, an optimiser each."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..losses import StudentScores, weighted_mean
    from ..training.distill import batch_builder
    from ..training.loop import Phase
    from ..training.sampling import group_batches

    settings, onmkd = run.train, run.config["onmkd"]
    build = batch_builder(settings, run.examples, run.doc_text, run.queries, run.teacher_scores,
                          method.in_batch_teachers(run), instance_weights=run.instance_weights("distill"))
    losses = peer_losses(run, method)
    scale, max_passage = float(settings["similarity_scale"]), settings.get("max_passage_length")
    layers = sorted(onmkd["crosswise_layers"])
    w_crosswise = onmkd["w_crosswise"]

    def embed(model, batch):
        """The peer's (queries, passages) per cross-wise layer, the last layer's last."""
        queries = model.embed(batch.query_texts, is_query=True, all_layers=bool(layers))
        passages = model.embed(batch.passage_texts, is_query=False, max_length=max_passage, all_layers=bool(layers))
        if not layers:
            return [(queries, passages)]
        if max(layers) >= len(queries):
            raise ValueError(f"onmkd.crosswise_layers {layers}: a peer has {len(queries)} layers")
        return [(queries[layer - 1], passages[layer - 1]) for layer in layers] + [(queries[-1], passages[-1])]

    def step(models, rows, global_step: int):
        batch = build(models, rows, global_step)
        embedded = {name: embed(models[name], batch) for name in PEERS}
        scores = {name: StudentScores(*embedded[name][-1], scale) for name in PEERS}
        total, parts = 0.0, {}
        for name, other in (("student", "peer"), ("peer", "student")):
            view = dataclasses.replace(batch, teacher_scores={**batch.teacher_scores,
                                                              OTHER_PEER: scores[other].group_scores.detach()})
            loss, own = losses[name](scores[name], view)
            total = total + loss
            parts.update({(k if name == "student" else f"peer:{k}"): v for k, v in own.items()})
        if w_crosswise > 0:
            for layer, ((q_a, p_a), (q_b, p_b)) in zip(layers + ["last"], zip(embedded["student"], embedded["peer"])):
                crossed = (weighted_mean(crosswise_infonce(q_a, p_b, batch, scale), batch.weights)
                           + weighted_mean(crosswise_infonce(q_b, p_a, batch, scale), batch.weights))
                total = total + w_crosswise * crossed
                parts[f"crosswise:{layer}"] = float(crossed.detach())
        if batch.weights is not None:
            parts["kept_fraction"] = float((batch.weights > 0).float().mean())
        return total, parts

    return Phase("distill", settings["epochs"], settings["lr"], settings["weight_decay"], settings["warmup_ratio"],
                 group_batches(run.examples, settings["group_size"], settings["batch_size"], run.seed), step,
                 trains=PEERS, dropout=settings.get("dropout"))
