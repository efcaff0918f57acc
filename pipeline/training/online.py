"""Teachers that run inside the training step: loaded in the train job, forward passes on each batch,
every layer's scores of the batch's candidates.

Cached score artifacts carry a teacher's final scores only; a method that distils intermediate layers
(LEAD) or trains a teacher jointly with the student needs the teacher itself in the loop. A frozen online
teacher runs without gradients in eval mode and stays out of the checkpoints (it never changes); a
trainable one is one of the loop's models (:mod:`.loop`), so its optimiser state is checkpointed too.

Layer scores (:func:`layer_scores`) compare only distributions over candidates, so the teacher and the
student need not share a tokenizer, a width or a depth:

- a bi-encoder scores every query of the batch against every passage of the batch with the pooled
  (mean or CLS, as the model pools; normalised when it normalises) layer-l embeddings, on its scale;
- a cross-encoder scores each query's own group with its scoring head on layer l's hidden states
  (:meth:`pipeline.cross_encoder.CrossEncoder.head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..losses import Batch, StudentScores
from ..cross_encoder import CrossEncoder
from ..models import BiEncoder, ModelSpec

LAYERED_KINDS = ("bi-encoder", "cross-encoder")


def load_online_model(name: str, settings: dict[str, Any], device: torch.device, trainable: bool = False) -> nn.Module:
    """A bi-encoder or cross-encoder to run inside the training step; frozen (eval mode, no gradients)
    unless ``trainable``."""
    kind = settings.get("kind")
    if kind not in LAYERED_KINDS:
        raise ValueError(f"online teacher {name!r}: a {kind} model has no layers to run in the training step; "
                         f"name one of kind {' or '.join(LAYERED_KINDS)}")
    spec = ModelSpec.from_config(name, settings)
    model = (BiEncoder if kind == "bi-encoder" else CrossEncoder).load(spec, device)
    if not trainable:
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    return model


@dataclass
class LayerScores:
    """One model's scores of a batch's candidates at every layer (first to last): ``[B, B*G]`` over every
    passage of the batch (``in_batch``, bi-encoders) or ``[B, G]`` over each query's own group."""

    layers: list[torch.Tensor]
    in_batch: bool

    @property
    def depth(self) -> int:
        return len(self.layers)


def layer_scores(model: nn.Module, batch: Batch, scale: float, max_passage: int | None = None,
                 in_batch: bool | None = None) -> LayerScores:
    """Every layer's scaled scores of ``batch`` by ``model`` (gradients as the caller's grad mode says).
    ``in_batch`` (bi-encoders only; default True) scores every passage of the batch, else each group."""
    if isinstance(model, CrossEncoder):
        if in_batch:
            raise ValueError("a cross-encoder scores each query's own group; it has no in-batch scores")
        queries = [q for q in batch.query_texts for _ in range(batch.group_size)]
        per_layer = model(queries, batch.passage_texts, max_passage_length=max_passage, all_layers=True)
        return LayerScores([scale * logits.view(batch.size, batch.group_size) for logits in per_layer], False)
    in_batch = True if in_batch is None else in_batch
    queries = model.embed(batch.query_texts, is_query=True, all_layers=True)
    passages = model.embed(batch.passage_texts, is_query=False, max_length=max_passage, all_layers=True)
    scores = [StudentScores(q, p, scale) for q, p in zip(queries, passages)]
    return LayerScores([s.all_scores if in_batch else s.group_scores for s in scores], in_batch)
