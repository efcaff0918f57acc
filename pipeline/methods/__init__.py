"""Distillation methods, one module each; :data:`METHODS` maps a config name to its class.

``standard`` is the recipe every other method starts from: a label-free warm-up, then NLL + listwise KL
(+ MarginMSE) on mined candidates. ``prod`` runs it on PROD's teacher stages and confusing-query rounds; ``adam`` adds dark examples
and self-paced selection to it; ``onmkd`` trains two peers with it, mutually; ``lead`` adds
the KL of paired teacher and student layers, the teacher run online; ``mta4dpr`` adds the KL
of a teaching assistant selected per batch, a pool the student joins, harder queries and fused negatives. See :mod:`pipeline.methods.base` for the interface.
"""

from __future__ import annotations

from .adam import Adam
from .base import Method
from .lead import Lead
from .mta4dpr import Mta4dpr
from .onmkd import Onmkd
from .prod import Prod
from .standard import Standard

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Standard, Prod, Adam, Onmkd, Lead, Mta4dpr)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; methods are {sorted(METHODS)}")
    return METHODS[name]()


__all__ = ["METHODS", "Method", "get_method"]
