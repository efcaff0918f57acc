"""The cross-encoder: a (query, passage) -> relevance model, a teacher the workflow fine-tunes (or trains from a
bi-encoder's weights) and scores candidates with; its layers can be distilled (LEAD)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .models import ModelSpec, inference_batch_size, layer_list, resolve_source, truncate_layers
from .precision import autocast


class CrossEncoder(nn.Module):
    """A (query, passage) -> relevance logit model (``AutoModelForSequenceClassification``).

    Loaded from a bi-encoder's weights (MiniLM-L6 here) it gets a fresh one-logit head, to be trained
    (:mod:`pipeline.training.finetune`); saved with ``save_pretrained`` it loads in
    ``sentence_transformers.CrossEncoder``."""

    def __init__(self, model: nn.Module, tokenizer, spec: ModelSpec):
        super().__init__()
        self.model, self.tokenizer, self.spec = model, tokenizer, spec

    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device | str = "cpu") -> "CrossEncoder":
        # transformers (slow to import): only where a Hugging Face model is loaded
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers import logging as hf_logging

        path = resolve_source(spec.source)
        config = AutoConfig.from_pretrained(path)
        # a checkpoint without a classification head (a bi-encoder) gets one logit, a relevance score
        fresh_head = not any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
        verbosity = hf_logging.get_verbosity()
        if fresh_head:
            config.num_labels = 1
            hf_logging.set_verbosity_error()  # the "newly initialized classifier" warning is the intent here
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
        if spec.layers:
            truncate_layers(model.base_model, spec.layers)
        return cls(model, AutoTokenizer.from_pretrained(path), spec).to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_layers(self) -> int:
        parent, attr = layer_list(self.model.base_model)
        return len(getattr(parent, attr))

    def forward(self, queries: Sequence[str], passages: Sequence[str], max_passage_length: int | None = None,
                all_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """One relevance logit per pair; ``max_passage_length`` overrides the spec's (cheaper training).
        ``all_layers``: a list of them per layer (embedding layer excluded), the model's scoring head
        applied to each layer's hidden states (:meth:`head`), the last one's last."""
        max_length = self.spec.max_query_length + (max_passage_length or self.spec.max_passage_length)
        batch = self.tokenizer(list(queries), list(passages), truncation="only_second", padding=True,
                               max_length=max_length, return_tensors="pt").to(self.device)
        with autocast(self.device):
            if not all_layers:
                return self._relevance(self.model(**batch).logits)
            hidden = self.model.base_model(**batch, output_hidden_states=True).hidden_states[1:]
            return [self._relevance(self.head(h)) for h in hidden]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The classification head on a layer's hidden states ``[N, L, d]``: BERT-like models pool the
        [CLS] state (dense + tanh) before their classifier, RoBERTa-like heads take the sequence."""
        pooler = getattr(self.model.base_model, "pooler", None)
        classifier = getattr(self.model, "classifier", None)
        if classifier is None:
            raise ValueError(f"{type(self.model).__name__} has no `classifier` head to score layers with")
        if pooler is not None:
            return classifier(getattr(self.model, "dropout", nn.Identity())(pooler(hidden)))
        return classifier(hidden)

    @staticmethod
    def _relevance(logits: torch.Tensor) -> torch.Tensor:
        # One-logit rerankers score directly; two-class heads score the "relevant" class.
        logits = logits.float()
        return logits[:, 0] if logits.shape[-1] == 1 else logits[:, -1]

    @torch.inference_mode()
    def score(self, queries: Sequence[str], passages: Sequence[str], batch_size: int | None = None,
              show_progress: bool = False) -> np.ndarray:
        """Scores in input order; pairs go through in batches of similar length (longest first), so
        padding is minimal."""
        was_training = self.training
        self.eval()
        batch_size = inference_batch_size(batch_size or self.spec.batch_size, self.device)
        order = sorted(range(len(passages)), key=lambda i: -(len(queries[i]) + len(passages[i])))
        out = np.empty(len(order), dtype=np.float32)
        for start in tqdm(range(0, len(order), batch_size), desc="cross-encoder", disable=not show_progress,
                          mininterval=5.0):
            chunk = order[start:start + batch_size]
            out[chunk] = self([queries[i] for i in chunk], [passages[i] for i in chunk]).cpu().numpy()
        self.train(was_training)
        return out

    def save_pretrained(self, path: str | os.PathLike, final_path: str | os.PathLike | None = None) -> None:
        """HF weights, config and tokenizer (``sentence_transformers.CrossEncoder`` reads the folder), and
        the spec the workflow reloads it with."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        spec = self.spec.to_dict() | {"source": str(final_path or path), "layers": None}
        (path / "pipeline_model.json").write_text(json.dumps(spec, indent=2))
