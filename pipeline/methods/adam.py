r"""ADAM: dark examples of moderate relevance made in token space, and self-paced distillation.

[abs] A strong teacher sees mined hard negatives as plainly irrelevant: its soft labels over
``[p+, n_1 .. n_k]`` are nearly one-hot, and little "dark knowledge" reaches the student. ADAM makes
candidates of moderate relevance in the discrete token space, by mixing content of the positive into
negatives and by masking parts of the positive, and distils mostly on the instances the teacher is
confident about, a set that grows as training goes.

[ours] (no code of ADAM is public; the formulation below is this project's reading of the abstract):

- **Mix-up** (``adam.mixup``: ``count`` per query, ``ratio`` r): the j-th hardest mined negative with a
  contiguous span of :math:`\lceil r\,|n| \rfloor` of its words replaced by a span of the positive of
  the same length (at seeded positions).
- **Masking** (``adam.mask``: ``count``, ``ratio`` r', ``token``): the positive with
  :math:`\lceil r'\,|p| \rfloor` of its words, at seeded positions, replaced by ``token`` (``[MASK]``)
  or dropped (``token: null``).

The dark examples of a query ``D_q`` join each of its groups after the positive,
``[p+, d_1 .. d_m, n_1 .. n_k]``; the teacher scores them like any candidate (rule ``adam_dark`` adds
them, with their text and recipe, to the mined candidates before scoring; they are never indexed, mined
or evaluated). The loss is the recipe's (:mod:`pipeline.methods.standard`) with the listwise KL over the
whole group and the NLL of the real positive against the real negatives only
(:attr:`pipeline.losses.Batch.synthetic`):

.. math::
    \mathcal{L} = \frac{1}{\sum_q w_q} \sum_q w_q \Big( w_{nll}\,\mathrm{NLL}(s_q; \{p^+\} \cup N_q)
        + w_{kd}\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t_q/T)\,\|\,\mathrm{softmax}(s_q/T)\big) \Big)

**Self-paced selection** (``adam.self_paced``): the teacher's confidence in each instance, over its real
candidates ``[p+, N_q]``, is the probability of the positive :math:`\mathrm{softmax}(t_q/T)_{p^+}`
(``confidence: probability``) or the margin :math:`t_{q,p^+} - \max_{n \in N_q} t_{q,n}` (``margin``);
the :math:`\lceil \lambda\,B \rceil` most confident queries of each batch get :math:`w_q = 1`, the others 0,
with :math:`\lambda` growing from ``start`` to 1: linearly over the phase's steps (``linear``) or once
per epoch (``epoch``, :math:`\lambda_e = \lambda_0 + (1-\lambda_0)\,e/(E-1)`). It depends on the step
only, so a resumed job selects alike. ``training.json`` reports the teacher's entropy and its
probability of the positive over ``[p+, m dark, k negatives]`` against ``[p+, m + k negatives]``.

References:
    - Tao et al., 2024, "Adam: Dense Retrieval Distillation with Adaptive Dark Examples", Findings of
      ACL 2024 (https://arxiv.org/abs/2212.10192).
    - Kumar et al., 2010, "Self-Paced Learning for Latent Variable Models" (the growing easy-first set).
    - Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization" (mixing examples; here in token space).

Requirements:
    - a recipe with a ``distill`` phase (``methods: [standard, adam]``, ``[prod, adam]``, ``[onmkd, adam]``
      or ``[lead, adam]``);
    - a teacher that scores passages outside the corpus: bi-encoders, cross-encoders, BM25 (with the
      corpus's statistics) and their fusions all do.

Inputs:
    +---------------------------------------------------+---------------------------------------------+
    | Batch                                             | Teacher scores                              |
    +===================================================+=============================================+
    | (query, [positive, m dark examples, k negatives]) | cached scores of every pair, dark ones too  |
    +---------------------------------------------------+---------------------------------------------+

Relations:
    - With ``mixup.count = mask.count = 0`` and ``self_paced.start = 1`` this is the standard recipe.
    - Dark examples are synthetic training passages; RocketQA's denoising (``train.denoise``) and PROD's
      rounds act on the mined negatives only.

Example:
    .. code-block:: yaml

        methods: [standard, adam]
        train: {group_size: 8}          # 1 positive + 4 dark examples + 3 negatives
        adam:
          mixup: {count: 2, ratio: 0.5}
          mask: {count: 2, ratio: 0.5, token: "[MASK]"}
          self_paced: {start: 0.5, schedule: linear, confidence: probability}
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import complete_section
from ..data import CANDIDATES_SCHEMA, load_qrels, passage_texts, read_table, write_table
from .base import Method, Needs, PlanView, TrainingRun, register

log = logging.getLogger(__name__)

#: every dark example's id starts so; corpus ids may not (checked when they are made)
DARK_PREFIX = "adam-dark:"


def dark_count(settings: dict[str, Any]) -> int:
    return settings["mixup"]["count"] + settings["mask"]["count"]


def mix_up(negative: Sequence[str], positive: Sequence[str], ratio: float, rng: np.random.Generator
           ) -> tuple[list[str], dict[str, Any]]:
    """The negative's words with a contiguous span of ``round(ratio·|negative|)`` (at least 1, at most
    ``|positive|``) replaced by an equally long span of the positive's; the recipe says where."""
    length = min(max(1, round(ratio * len(negative))), len(negative), len(positive))
    start = int(rng.integers(0, len(negative) - length + 1))
    source = int(rng.integers(0, len(positive) - length + 1))
    words = list(negative[:start]) + list(positive[source:source + length]) + list(negative[start + length:])
    return words, {"span": [start, start + length], "from_positive": [source, source + length]}


def mask(positive: Sequence[str], ratio: float, token: str | None, rng: np.random.Generator
         ) -> tuple[list[str], dict[str, Any]]:
    """The positive's words with ``round(ratio·|positive|)`` of them (at least 1) replaced by ``token``, or
    dropped when ``token`` is None."""
    count = min(max(1, round(ratio * len(positive))), len(positive))
    masked = set(rng.choice(len(positive), size=count, replace=False).tolist())
    words = [token if i in masked else w for i, w in enumerate(positive) if not (token is None and i in masked)]
    return words, {"masked": sorted(masked)}


def make_dark_examples(candidates: pd.DataFrame, passages: dict[str, str], qrels: dict[str, dict[str, int]],
                       settings: dict[str, Any], seed: int) -> pd.DataFrame:
    """Per query of ``candidates`` with a judged positive: ``mixup.count`` mix-ups of its hardest mined
    negatives (the j-th with the j-th positive, cycling) and ``mask.count`` maskings of its positives.
    Words are whitespace tokens of the passage text (title included as the corpus is read), so every
    model re-tokenises the result its own way. Deterministic in (seed, query id)."""
    rows = []
    for query_id, group in candidates.sort_values(["query_id", "rank"]).groupby("query_id", sort=True):
        positives = sorted(d for d, rel in qrels.get(query_id, {}).items() if rel > 0)
        negatives = group["doc_id"].tolist()
        if not positives or not negatives:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(query_id.encode())])
        for j in range(settings["mixup"]["count"]):
            negative, positive = negatives[j % len(negatives)], positives[j % len(positives)]
            words, where = mix_up(passages[negative].split(), passages[positive].split(), settings["mixup"]["ratio"], rng)
            recipe = {"kind": "mixup", "negative": negative, "positive": positive, "ratio": settings["mixup"]["ratio"], **where}
            rows.append((query_id, f"{DARK_PREFIX}{query_id}:mixup-{j}", " ".join(words), "adam-mixup", recipe))
        for j in range(settings["mask"]["count"]):
            positive = positives[j % len(positives)]
            words, where = mask(passages[positive].split(), settings["mask"]["ratio"], settings["mask"]["token"], rng)
            recipe = {"kind": "mask", "positive": positive, "ratio": settings["mask"]["ratio"],
                      "token": settings["mask"]["token"], **where}
            rows.append((query_id, f"{DARK_PREFIX}{query_id}:mask-{j}", " ".join(words), "adam-mask", recipe))
    return pd.DataFrame({
        "query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
        "rank": np.full(len(rows), -1, dtype=np.int32),  # not mined: no rank
        "score": np.full(len(rows), np.nan, dtype=np.float32), "miner": [r[3] for r in rows],
        "text": [r[2] for r in rows], "recipe": [json.dumps(r[4], sort_keys=True) for r in rows],
    })


def add_dark_examples(candidates_path: str, qrels_path: str, corpus_path: str, out_path: str,
                      settings: dict[str, Any], seed: int, include_title: bool = True,
                      provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``adam_dark`` step: the mined candidates plus every query's dark examples, with their text and
    recipe (``kind``, source passages, ratio, positions)."""
    settings = complete_section("adam", settings)
    corpus = read_table(corpus_path)
    clash = corpus["doc_id"][corpus["doc_id"].str.startswith(DARK_PREFIX)]
    if len(clash):
        raise ValueError(f"{corpus_path}: corpus id {clash.iloc[0]!r} starts with {DARK_PREFIX!r}, the prefix of "
                         "ADAM's dark examples; rename it")
    candidates = read_table(candidates_path)
    passages = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    dark = make_dark_examples(candidates, passages, load_qrels(qrels_path), settings, seed)
    mined = candidates.assign(text=None, recipe=None)
    schema = pa.schema(list(CANDIDATES_SCHEMA) + [("text", pa.string()), ("recipe", pa.string())])
    meta = {"dark_examples": len(dark), "per_query": dark_count(settings), "settings": settings, "seed": seed,
            "added_to": candidates_path, **(provenance or {})}
    write_table(pd.concat([mined, dark], ignore_index=True), out_path, meta, schema)
    log.info("%d dark examples for %d queries", len(dark), dark["query_id"].nunique())
    return meta


def kept_fraction(step: int, settings: dict[str, Any], steps_per_epoch: int, epochs: int) -> float:
    """The self-paced fraction of a batch kept at the phase's ``step`` (0-based)."""
    start = settings["start"]
    if settings["schedule"] == "epoch":
        epoch = min(step // max(1, steps_per_epoch), epochs - 1)
        return start + (1 - start) * epoch / max(1, epochs - 1)
    total = steps_per_epoch * epochs
    return start + (1 - start) * min(1.0, step / max(1, total - 1))


def teacher_confidence(teacher_scores, dark: int, how: str, temperature: float):
    """Each query's teacher confidence over its real candidates ``[p+, negatives]`` (the dark examples,
    columns 1..dark, left out): the positive's probability, or its margin over the best negative."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    real = torch.cat([teacher_scores[:, :1], teacher_scores[:, 1 + dark:]], dim=1)
    if how == "margin":
        return real[:, 0] - real[:, 1:].max(dim=1).values
    return torch.softmax(real / temperature, dim=1)[:, 0]


def self_paced_weights(confidence, fraction: float):
    """1 for the ``ceil(fraction·B)`` most confident queries of a batch (ties to the earlier), 0 else."""
    # torch: not at parse time (the Snakefile imports this module)
    import torch

    keep = max(1, math.ceil(fraction * len(confidence) - 1e-9))
    order = torch.argsort(-confidence, stable=True)
    weights = torch.zeros(len(confidence), dtype=torch.float32, device=confidence.device)
    weights[order[:keep]] = 1.0
    return weights


def dark_entropy_report(run: "TrainingRun", teacher: str, dark: int) -> dict[str, float]:
    """The effect ADAM builds on: the teacher's softmax (at the recipe's temperature) over
    ``[p+, m dark, k negatives]`` against ``[p+, m + k negatives]`` (lists of equal length): mean
    entropy and mean probability of the positive."""
    lookup, temperature = run.teacher_scores[teacher], run.train["temperature"]
    k = run.train["group_size"] - 1 - dark
    with_dark, without = [], []
    for example in run.examples:
        positive = example.positives[0]
        scores_with = [lookup[(example.query_id, d)] for d in [positive, *example.synthetic, *example.negatives[:k]]]
        scores_without = [lookup[(example.query_id, d)] for d in [positive, *example.negatives[:k + dark]]]
        with_dark.append(np.asarray(scores_with, dtype=np.float64))
        without.append(np.asarray(scores_without, dtype=np.float64))

    def stats(lists):
        entropy, positive = [], []
        for scores in lists:
            z = scores / temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            entropy.append(float(-(p * np.log(np.clip(p, 1e-300, None))).sum()))
            positive.append(float(p[0]))
        return float(np.mean(entropy)), float(np.mean(positive))

    entropy_with, positive_with = stats(with_dark)
    entropy_without, positive_without = stats(without)
    return {"teacher": teacher, "list_length": k + dark + 1, "queries": len(with_dark),
            "entropy_with_dark": entropy_with, "entropy_without_dark": entropy_without,
            "positive_probability_with_dark": positive_with, "positive_probability_without_dark": positive_without}


@register
class Adam(Method):
    """Dark examples before scoring, the NLL on real candidates, self-paced weights in ``distill``."""

    name = "adam"
    sections = ("adam",)
    rules = "rules/methods/adam.smk"
    steps = {"adam_dark": "add_dark_examples"}

    # -- parse time ------------------------------------------------------------------------------

    def check(self, plan: PlanView, it: int) -> list[str]:
        c = plan.iteration(it)
        problems = []
        dark = dark_count(c["adam"])
        if dark and c["train"]["group_size"] - 1 - dark < 1:
            problems.append(f"adam: {dark} dark examples per query leave no negative in train.group_size "
                            f"{c['train']['group_size']}; set group_size to at least {dark + 2}")
        return problems

    def plan(self, view: PlanView, it: int) -> Needs:
        c = view.iteration(it)
        dark, paced = dark_count(c["adam"]), c["adam"]["self_paced"]["start"]
        return Needs(scored_candidates=f"{view.root}/it{it}/dark-candidates.parquet" if dark else None,
                     description=(f"ADAM: teacher {c['teacher']}, {dark} dark examples per query"
                                  + (f", self-paced from {paced:g} of each batch" if paced < 1 else "")))

    # -- training time ---------------------------------------------------------------------------

    def _teacher(self, run: "TrainingRun") -> str:
        return run.config["teacher"] if "teacher" in run.config else next(iter(run.teacher_scores))

    @staticmethod
    def _dark_in_groups(run: "TrainingRun") -> int:
        """How many dark examples each group holds: the configured number, or none where the iteration
        trains on a selection of the mined candidates only (a PROD round)."""
        lengths = {len(example.synthetic) for example in run.examples}
        if len(lengths) > 1 or lengths - {0, dark_count(run.config["adam"])}:
            raise ValueError(f"adam: every training query needs {dark_count(run.config['adam'])} dark examples; "
                             f"found {sorted(lengths)} per query")
        return lengths.pop() if lengths else 0

    def report(self, run: "TrainingRun") -> dict | None:
        dark = self._dark_in_groups(run)
        report = None
        if dark and run.teacher_scores:
            report = dark_entropy_report(run, self._teacher(run), dark)
            log.info("teacher entropy with dark examples %.3f, without %.3f (positive probability %.3f vs %.3f)",
                     report["entropy_with_dark"], report["entropy_without_dark"],
                     report["positive_probability_with_dark"], report["positive_probability_without_dark"])
        return report

    def instance_weights(self, run: "TrainingRun", phase: str) -> Callable | None:
        settings = run.config["adam"]["self_paced"]
        if phase != "distill" or settings["start"] >= 1 or not run.examples:
            return None
        teacher, dark, temperature = self._teacher(run), self._dark_in_groups(run), run.train["temperature"]
        steps_per_epoch = math.ceil(len(run.examples) / run.train["batch_size"])

        def weights(batch, step):
            confidence = teacher_confidence(batch.teacher_scores[teacher], dark, settings["confidence"], temperature)
            return self_paced_weights(confidence, kept_fraction(step, settings, steps_per_epoch, run.train["epochs"]))

        return weights
