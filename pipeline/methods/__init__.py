"""Distillation methods, one module each; :data:`METHODS` maps a config name to its class.

Each method module registers its class (:func:`~pipeline.methods.base.register`); importing this package
imports every module in it, so a new method is its module alone.

``standard`` is the recipe every other method starts from: a label-free warm-up, then NLL + listwise KL
(+ MarginMSE) on mined candidates. ``prod`` runs it on PROD's teacher stages and confusing-query rounds; ``adam`` adds dark examples
and self-paced selection to it; ``onmkd`` trains two peers with it, mutually; ``lead`` adds
the KL of paired teacher and student layers, the teacher run online; ``mta4dpr`` adds the KL
of a teaching assistant selected per batch, a pool the student joins, harder queries and fused negatives. See :mod:`pipeline.methods.base` for the interface.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import METHODS, Method, get_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "get_method"]
