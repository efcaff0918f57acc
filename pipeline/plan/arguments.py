"""How the plan writes a job's arguments: the JSON ``python -m pipeline STEP`` reads, with the experiment's
and the data's folders as tokens, and the deep merge the per-iteration configs are made with."""

from __future__ import annotations

import copy
import json
from typing import Any

from ..config import ConfigError


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in: nested dicts merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def to_json(**kwargs) -> str:
    """A step's keyword arguments as the JSON that ``python -m pipeline STEP`` reads (sorted: stable params)."""
    return json.dumps(kwargs, sort_keys=True)


# Paths in a job's arguments name the experiment's folder and the data folder by these tokens; the job's
# environment (``PIPELINE_ROOT``, ``PIPELINE_DATA_DIR``; by hand: ``--root``, ``--data-dir``) gives them back
# (:func:`expand_tokens`). So a job's params are the same in every experiment on the same data, and
# Snakemake's between-workflow cache (``cache:``, ``--cache``), which keys an output by the params of its job
# and of every job upstream, serves one experiment's teacher work to the next.
ROOT_TOKEN = "{root}"
DATA_DIR_TOKEN = "{data_dir}"


def replace_prefixes(value: Any, prefixes: dict[str, str]) -> Any:
    """``value`` (JSON-like) with every string that is, or starts with, ``old`` + "/" made to start with
    ``prefixes[old]`` instead."""
    if isinstance(value, dict):
        return {k: replace_prefixes(v, prefixes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_prefixes(v, prefixes) for v in value]
    if isinstance(value, str):
        for old, new in prefixes.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
    return value


def expand_tokens(kwargs: dict[str, Any], root: str | None, data_dir: str | None) -> dict[str, Any]:
    """A job's arguments with :data:`ROOT_TOKEN` and :data:`DATA_DIR_TOKEN` replaced by the folders named
    on its command line (or in its environment: the workflow's jobs); a token without its folder is an
    error, not a path that silently does not exist."""
    text = json.dumps(kwargs)
    for token, folder, option in ((ROOT_TOKEN, root, "--root (nor $PIPELINE_ROOT)"),
                                  (DATA_DIR_TOKEN, data_dir, "--data-dir (nor $PIPELINE_DATA_DIR)")):
        if folder is None and json.dumps(token)[1:-1] in text:
            raise ConfigError(f"the step's arguments name {token} but its command line gives no {option}")
    prefixes = {token: folder for token, folder in ((ROOT_TOKEN, root), (DATA_DIR_TOKEN, data_dir)) if folder}
    return replace_prefixes(kwargs, prefixes)
