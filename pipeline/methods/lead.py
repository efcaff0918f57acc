r"""LEAD: layer-wise distillation of score distributions from an online teacher.

[code] At every layer l of a model, each (query, passage) of the batch gets a relevance score, and a
softmax over the candidates gives the layer's distribution :math:`p^l`. Every ``resample_every`` steps, K
layers are drawn without replacement from the teacher (:math:`a_1 < .. < a_K` of N) and K from the
student (:math:`b_1 < .. < b_K` of M) and paired in order (order-preserving). With :math:`s` the student's
final scores and :math:`t` the offline teacher's cached ones:

.. math::
    \mathcal{L} = w_{nll}\,\mathrm{NLL}(s) + w_{kd}\,T^2\,\mathrm{KL}(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T))
        + w_{layers} \sum_{k=1}^{K} w_k\, T_l^2\,\mathrm{KL}\big(p^{a_k}_T \,\|\, p^{b_k}_S\big),
    \qquad w_k = \mathrm{softmax}_k\big(-\mathrm{NLL}(p^{a_k}_T) / \tau\big)

where :math:`\mathrm{NLL}(p^{a_k}_T)` is the batch mean of how badly teacher layer :math:`a_k` ranks each
query's positive (the weights are constants: no gradient), so teacher layers that rank well teach more.
The first two terms are the standard recipe's (:mod:`pipeline.methods.standard`: the final teacher's
scores come from the cached score artifact); the layer terms need the teacher's intermediate layers, so
the teacher runs inside the training step (:mod:`pipeline.training.online`). Layer scores are the pooled
layer-l embeddings' scaled dot products over every passage of the batch for a bi-encoder teacher (the
student scores the same candidates), the teacher's scoring head on layer l's hidden states over each
query's own group for a cross-encoder. Only distributions are compared: teacher and student may differ in
vocabulary, tokenizer, width and depth ("liberal").

With ``joint: true`` the teacher trains too (the released scripts' setting), on
:math:`w_{joint}\,[\mathrm{NLL}(t^N) + \mathrm{KL}(\mathrm{sg}(p^M_S)\,\|\,p^N_T)]` (its own NLL and the
reverse KL of the final layers); the layer terms never send gradients into the teacher. The jointly
trained teacher lives for one iteration's training and is not saved.

[ours] The draw of iteration ``it``'s step ``g`` is a pure function of ``(seed, g // resample_every)``, so a
killed and resumed job pairs the same layers. ``pairing: fixed`` uses evenly spaced layers instead
(:math:`a_k = \lceil kN/K \rceil`, :math:`b_k = \lceil kM/K \rceil`; the last with the last), ``weighting:
uniform`` weights every pair :math:`1/K`: the issue's ablations. The history logs each teacher layer's
mean weight (``lead_weight:t<l>``, 0 while undrawn) and the weighted layer KL (``layer_kl``).

References:
    - Sun, Liu, Qiu, Lin, Jiang, Song, Wang, Jiang, Duan, "LEAD: Liberal Feature-based Distillation for
      Dense Retrieval", WSDM 2024 (arXiv:2212.05225); code: microsoft/SimXNS, folder LEAD.

Requirements:
    - an online teacher (``lead.teacher``, default the iteration's ``teacher``) of kind bi-encoder or
      cross-encoder: BM25 and fusions have no layers;
    - K (``layers_per_draw``) at most the depth of the student and of the teacher.

Inputs:
    +------------------------------------+-------------------------------------------------------------+
    | Batch                              | Teacher scores                                              |
    +====================================+=============================================================+
    | (query, [positive, k negatives])   | cached final scores per pair; every layer's, live, online   |
    +------------------------------------+-------------------------------------------------------------+

Relations:
    - With ``w_layers = 0`` (and ``joint: false``) it is the standard recipe, plus the teacher's forward pass.
    - Feature distillation of hidden states (TinyBERT's, MiniLM's) needs equal widths or projections;
      LEAD compares score distributions instead.
    - Composes with ADAM (``methods: [lead, adam]``: dark examples are candidates of every layer's
      distribution, self-paced weights weigh the layer terms too); replaces ``standard`` in ``methods``.

Example:
    .. code-block:: yaml

        methods: [lead]
        teacher: fusion            # the final KL: cached scores of the strongest teacher
        lead:
          teacher: minilm-l6       # the online teacher whose layers teach
          layers_per_draw: 2
          resample_every: 10
          weight_temperature: 10.0
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sources import model_shape
from .base import Needs, PlanView, TrainingRun, register
from .standard import Standard

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..training.loop import Phase

#: the jointly trained teacher's name among the loop's models
ONLINE_TEACHER = "lead-teacher"


def online_teacher(config: dict[str, Any]) -> str:
    """The model whose layers teach: ``lead.teacher``, or the iteration's teacher."""
    return config["lead"]["teacher"] or config["teacher"]


def layer_pairs(teacher_depth: int, student_depth: int, k: int, draw: int, seed: int,
                pairing: str = "resampled") -> list[tuple[int, int]]:
    """``[(a_k, b_k)]``: K teacher layers and K student layers (1-based), each increasing and without
    repeats, paired in order. ``resampled``: drawn uniformly for draw number ``draw`` (a pure function of
    ``(seed, draw)``); ``fixed``: evenly spaced, the last layer with the last."""
    if not 1 <= k <= min(teacher_depth, student_depth):
        raise ValueError(f"lead.layers_per_draw: {k} pairs need at least {k} layers in both models "
                         f"(teacher {teacher_depth}, student {student_depth})")
    if pairing == "fixed":
        return [(math.ceil(i * teacher_depth / k), math.ceil(i * student_depth / k)) for i in range(1, k + 1)]
    if pairing != "resampled":
        raise ValueError(f"lead.pairing: {pairing!r} is neither 'resampled' nor 'fixed'")
    rng = np.random.default_rng([seed, draw])
    teacher = sorted(int(a) + 1 for a in rng.choice(teacher_depth, size=k, replace=False))
    student = sorted(int(b) + 1 for b in rng.choice(student_depth, size=k, replace=False))
    return list(zip(teacher, student))


def layer_weights(teacher_nll: "torch.Tensor", temperature: float, weighting: str = "nll") -> "torch.Tensor":
    """``[K]`` weights of the pairs: ``softmax(-NLL_k / τ)`` of the teacher layers' NLLs (``nll``), or ``1/K``
    (``uniform``); constants (detached)."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    nll = teacher_nll.detach().float()
    if weighting == "uniform":
        return torch.full_like(nll, 1.0 / len(nll))
    return torch.softmax(-nll / temperature, dim=0)


@register
class Lead(Standard):
    """The standard recipe plus the KL of randomly paired teacher and student layers' distributions."""

    name = "lead"
    sections = Standard.sections + ("lead",)

    # -- parse time ------------------------------------------------------------------------------

    def check(self, plan: PlanView, it: int) -> list[str]:
        problems = super().check(plan, it)
        c = plan.iteration(it)
        settings, teacher = c["lead"], online_teacher(c)
        if teacher not in c["models"]:
            return problems + [f"lead.teacher: {teacher!r} is not a configured model; models are {sorted(c['models'])}"]
        kind = plan.kind(teacher)
        if kind not in ("bi-encoder", "cross-encoder"):
            return problems + [f"lead.teacher: {teacher!r} is a {kind} model, which has no layers to distil; name a "
                               "bi-encoder or cross-encoder (e.g. lead: {teacher: minilm-l6}) and keep the "
                               f"{kind} as the offline teacher"]
        k = settings["layers_per_draw"]
        start = {key: value for key, value in c["models"][teacher].items() if key != "finetune"}
        for role, settings_of in (("teacher", start), ("student", plan.config["student"])):
            depth, _ = model_shape(settings_of)
            if depth is not None and k > depth:
                problems.append(f"lead.layers_per_draw: {k} layers are drawn from the {role}, which has {depth}")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        c = view.iteration(it)
        recipe = super().plan(view, it)
        return dataclasses.replace(recipe, models=[*recipe.models, online_teacher(c)], description=self.description(c))

    @staticmethod
    def description(c: dict[str, Any]) -> str:
        s = c["lead"]
        how = "evenly spaced" if s["pairing"] == "fixed" else f"resampled every {s['resample_every']} steps"
        weights = "uniform weights" if s["weighting"] == "uniform" else f"NLL weights (tau {s['weight_temperature']:g})"
        return (f"LEAD: {s['layers_per_draw']} layer pairs of {online_teacher(c)} (online) and the student, {how}, "
                f"{weights}, w_layers {s['w_layers']:g}" + ("; teacher trained jointly" if s["joint"] else "")
                + f"; final KL from {c['teacher']}")

    # -- training time ---------------------------------------------------------------------------

    def phases(self, run: "TrainingRun") -> list["Phase"]:
        return self.warmup_phases(run) + [lead_phase(run, self)]


def teacher_factor(run: "TrainingRun", name: str, model) -> float:
    """The scale of the online teacher's layer scores: its cached scores' (so that its final layer and the
    cached final scores agree), else what ``train.teacher_scale`` gives its kind."""
    # torch: not at parse time (the Snakefile imports this module)
    from ..models import BiEncoder
    from ..training.teachers import teacher_scale

    if name in run.teacher_factors:
        return run.teacher_factors[name]
    cosine = isinstance(model, BiEncoder) and model.spec.normalize
    setting = run.train["teacher_scale"]
    return teacher_scale({"scale": "cosine" if cosine else "logit"}, "auto" if setting == "calibrated" else setting,
                         run.train["similarity_scale"])


def lead_phase(run: "TrainingRun", method: Lead) -> "Phase":
    """The ``distill`` phase with LEAD's layer terms: the recipe's loss on the student's final scores, plus
    the weighted KLs of the drawn layer pairs, the online teacher's layers scored live."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    from ..losses import StudentScores, kl_divergence, positive_nll, weighted_mean
    from ..models import BiEncoder
    from ..training.distill import batch_builder
    from ..training.loop import Phase
    from ..training.online import layer_scores, load_online_model
    from ..training.sampling import group_batches

    settings, lead = run.train, run.config["lead"]
    name = online_teacher(run.config)
    if name not in run.models:
        raise ValueError(f"lead: the online teacher {name!r} is not among the models given to training "
                         f"({sorted(run.models)})")
    joint = lead["joint"]
    teacher = load_online_model(name, run.models[name], run.device, trainable=joint)
    in_batch = isinstance(teacher, BiEncoder)
    factor = teacher_factor(run, name, teacher)
    teacher_depth, student_depth = teacher.num_layers, run.student.num_layers
    layer_pairs(teacher_depth, student_depth, lead["layers_per_draw"], 0, run.seed, lead["pairing"])  # fails early
    report = {"teacher": name, "teacher_depth": teacher_depth, "student_depth": student_depth,
              "teacher_scale": factor, "candidates": "batch" if in_batch else "group"}

    frozen, take_copy, adds = method.previous_student(run)
    build = batch_builder(settings, run.examples, run.doc_text, run.queries, run.teacher_scores,
                          method.in_batch_teachers(run), frozen_scorers=frozen,
                          instance_weights=run.instance_weights("distill"))
    loss = run.loss("distill")
    scale, max_passage = float(settings["similarity_scale"]), settings.get("max_passage_length")
    temperature = lead["temperature"]

    def step(models, rows, global_step: int):
        batch = build(models, rows, global_step)
        student = models["student"]
        queries = student.embed(batch.query_texts, is_query=True, all_layers=True)
        passages = student.embed(batch.passage_texts, is_query=False, max_length=max_passage, all_layers=True)
        final = StudentScores(queries[-1], passages[-1], scale)
        total, parts = loss(final, batch)
        online = models.get(ONLINE_TEACHER, teacher)
        with torch.set_grad_enabled(joint):
            taught = layer_scores(online, batch, factor, max_passage, in_batch=in_batch)
        pairs = layer_pairs(teacher_depth, student_depth, lead["layers_per_draw"],
                            global_step // lead["resample_every"], run.seed, lead["pairing"])
        teacher_nll = torch.stack([weighted_mean(positive_nll(taught.layers[a - 1].detach(), batch), batch.weights)
                                   for a, _ in pairs])
        weights = layer_weights(teacher_nll, lead["weight_temperature"], lead["weighting"])
        layer_kl = 0.0
        for weight, (a, b) in zip(weights, pairs):
            own = StudentScores(queries[b - 1], passages[b - 1], scale)
            student_layer = own.all_scores if in_batch else own.group_scores
            layer_kl = layer_kl + weight * weighted_mean(
                kl_divergence(taught.layers[a - 1].detach(), student_layer, temperature), batch.weights)
        total = total + lead["w_layers"] * layer_kl
        parts["layer_kl"] = float(layer_kl.detach())  # a tensor: layer_pairs draws at least one pair
        drawn = {a: float(w) for w, (a, _) in zip(weights, pairs)}
        parts.update({f"lead_weight:t{layer}": drawn.get(layer, 0.0) for layer in range(1, teacher_depth + 1)})
        if joint:
            own_final = final.all_scores if in_batch else final.group_scores
            teacher_final = taught.layers[-1]
            teacher_nll_final = weighted_mean(positive_nll(teacher_final, batch), batch.weights)
            reverse_kl = weighted_mean(kl_divergence(own_final.detach(), teacher_final, temperature), batch.weights)
            total = total + lead["w_joint"] * (teacher_nll_final + reverse_kl)
            parts["teacher_nll"], parts["teacher_reverse_kl"] = float(teacher_nll_final.detach()), float(reverse_kl.detach())
        if batch.weights is not None:
            parts["kept_fraction"] = float((batch.weights > 0).float().mean())
        return total, parts

    trains = ("student", ONLINE_TEACHER) if joint else ("student",)
    return Phase("distill", settings["epochs"], settings["lr"], settings["weight_decay"], settings["warmup_ratio"],
                 group_batches(run.examples, settings["group_size"], settings["batch_size"], run.seed), step,
                 trains=trains, on_start=take_copy, report={"lead": report},
                 adds={**({ONLINE_TEACHER: teacher} if joint else {}), **adds}, dropout=settings.get("dropout"))
