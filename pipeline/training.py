"""Training a student: an optional label-free embedding warm-up, then distillation from cached teacher
scores, with checkpoints in a scratch folder so that a killed job resumes mid-training.

The loop runs *phases* (``warmup``, ``distill``); each phase has its own optimiser and schedule (AdamW,
linear warm-up then linear decay). Batches are a pure function of (seed, phase, epoch), so a resumed job
skips exactly the steps it had done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .data import atomic_path, load_qrels, load_queries, passage_texts, read_provenance, read_table
from .losses import Batch, StudentScores, anchored_rank_kl, build_loss, embedding_mse
from .models import BiEncoder, ModelSpec, load_student_spec, resolve_device, set_threads

log = logging.getLogger(__name__)

DEFAULT_TRAIN = {
    "epochs": 1, "batch_size": 16, "group_size": 8, "lr": 5e-5, "weight_decay": 0.01, "warmup_ratio": 0.1,
    "max_grad_norm": 1.0, "w_nll": 0.1, "w_kd": 1.0, "w_mse": 0.0, "temperature": 1.0,
    "similarity_scale": 20.0, "teacher_scale": "auto", "in_batch_negatives": True, "teacher_weights": None,
    "checkpoint_every": 50, "max_bad_steps": 10, "denoise": {"margin": None, "max_score": None},
    "max_passage_length": None, "kd_in_batch": False,
}
DEFAULT_WARMUP = {"epochs": 0, "lr": 2e-4, "batch_size": 32, "texts": ["corpus", "train_queries", "titles"],
                  "max_passage_length": None, "w_embedding_mse": 1.0, "w_rank_kl": 1.0, "rank_scale": 20.0}


# --------------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------------


@dataclass
class Example:
    query_id: str
    positives: list[str]
    negatives: list[str]


def teacher_scale(provenance: dict[str, Any], setting: str | float, similarity_scale: float) -> float:
    """Multiplier that puts a teacher's scores on the student's scale.

    Cosine teachers get the student's own similarity scale (their raw scores live in [-1, 1] and would
    give near-uniform distributions); logits, BM25 and fused scores are used as they are, unless the
    config names a number.
    """
    if setting != "auto":
        return float(setting)
    return similarity_scale if provenance.get("scale") == "cosine" else 1.0


def build_examples(candidates: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> list[Example]:
    examples = []
    for query_id, group in candidates.sort_values(["query_id", "rank"]).groupby("query_id", sort=True):
        positives = sorted(d for d, rel in qrels.get(query_id, {}).items() if rel > 0)
        negatives = group["doc_id"].tolist()
        if positives and negatives:
            examples.append(Example(query_id, positives, negatives))
    return examples


def sample_groups(examples: Sequence[Example], group_size: int, batch_size: int, seed: int) -> list[list[tuple[str, list[str]]]]:
    """One epoch of batches: each entry is (query_id, [positive, negatives...]); deterministic in seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    rows = []
    for i in order:
        ex = examples[i]
        positive = ex.positives[rng.integers(len(ex.positives))]
        k = group_size - 1
        picks = rng.choice(len(ex.negatives), size=k, replace=len(ex.negatives) < k)
        rows.append((ex.query_id, [positive] + [ex.negatives[j] for j in picks]))
    return [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length items (less padding), in a shuffled order of batches."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = sorted(order[start:start + batch_size * bucket], key=lambda i: lengths[i])
        batches.extend(chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


# --------------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    batches: Callable[[int], list]  # epoch -> batches
    step: Callable[[BiEncoder, Any], tuple[torch.Tensor, dict[str, float]]]  # (student, batch) -> loss, parts

    def total_steps(self) -> int:
        return sum(len(self.batches(e)) for e in range(self.epochs))


def warmup_phase(student: BiEncoder, settings: dict, teacher_spec: ModelSpec, teacher_shards: Sequence[str],
                 corpus: pd.DataFrame, include_title: bool, short_texts: Sequence[str], device, seed: int) -> Phase:
    """Label-free distillation of the student onto the teacher over corpus passages and short texts
    (training queries, titles): ``w_embedding_mse`` x embedding MSE + ``w_rank_kl`` x ranking KL against
    the teacher's embeddings of the other side (see :func:`pipeline.losses.anchored_rank_kl`).
    Corpus targets are the teacher's cached embeddings."""
    from .embeddings import read_embeddings

    for path in teacher_shards:
        meta = read_provenance(path)
        if meta.get("model", {}).get("source") != teacher_spec.source or meta.get("include_title") != include_title:
            raise ValueError(f"{path}: embeddings were not made by warm-up teacher {teacher_spec.name!r}")
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    teacher = BiEncoder.load(teacher_spec, device)
    dim = teacher.backbone.config.hidden_size
    doc_ids, doc_targets = read_embeddings(teacher_shards) if teacher_shards else ([], np.zeros((0, dim), np.float32))
    short_targets = teacher.encode(list(short_texts), is_query=True) if short_texts else np.zeros((0, dim), np.float32)
    del teacher
    texts = [doc_text[d] for d in doc_ids] + list(short_texts)
    targets = torch.from_numpy(np.concatenate([doc_targets, short_targets]))
    is_query = np.array([False] * len(doc_ids) + [True] * len(short_texts))
    lengths = [len(t) for t in texts]
    max_passage = settings.get("max_passage_length")
    doc_anchors, short_anchors = torch.from_numpy(doc_targets), torch.from_numpy(short_targets)
    doc_items = np.flatnonzero(~is_query)
    short_items = np.flatnonzero(is_query)

    def batches(epoch: int) -> list:
        out = []
        for items in (doc_items, short_items):
            for b in length_bucketed_batches([lengths[i] for i in items], settings["batch_size"], seed + 7919 * epoch):
                out.append(items[b])
        rng = np.random.default_rng(seed + 104729 * epoch)
        return [out[i] for i in rng.permutation(len(out))]

    def step(model: BiEncoder, rows) -> tuple[torch.Tensor, dict[str, float]]:
        queries = bool(is_query[rows[0]])
        batch_texts = [texts[i] for i in rows]
        emb = model.embed(batch_texts, is_query=queries, max_length=None if queries else max_passage)
        target = targets[rows].to(emb.device)
        mse = embedding_mse(emb, target).mean()
        loss = settings["w_embedding_mse"] * mse
        parts = {"embedding_mse": float(mse.detach())}
        anchors = doc_anchors if queries else short_anchors
        if settings["w_rank_kl"] and len(anchors):
            rank = anchored_rank_kl(emb, target, anchors, settings["rank_scale"]).mean()
            loss = loss + settings["w_rank_kl"] * rank
            parts["rank_kl"] = float(rank.detach())
        return loss, parts

    return Phase("warmup", settings["epochs"], settings["lr"], 0.01, 0.05, batches, step)


class InBatchTeacher:
    """A bi-encoder teacher's scores for every (query, passage) pair of a batch, from its cached corpus
    embeddings (synthetic passages are encoded as they come), times the teacher's scale factor."""

    def __init__(self, scorer, factor: float, query_ids: Sequence[str], synthetic: dict[str, str]):
        self.scorer, self.factor, self.synthetic = scorer, factor, synthetic
        ids = list(dict.fromkeys(query_ids))
        self.query_row = {q: i for i, q in enumerate(ids)}
        self.query_embeddings = torch.from_numpy(scorer.query_embeddings(ids))

    def __call__(self, query_ids: Sequence[str], doc_ids: Sequence[str]) -> torch.Tensor:
        q = self.query_embeddings[[self.query_row[x] for x in query_ids]]
        p = torch.from_numpy(self.scorer.passage_embeddings(doc_ids, [self.synthetic.get(d) for d in doc_ids]))
        return self.factor * q @ p.T


def distill_phase(settings: dict, examples: list[Example], doc_text: dict[str, str], queries: dict[str, str],
                  teacher_lookup: dict[str, dict[tuple[str, str], float]], seed: int,
                  in_batch_teachers: dict[str, InBatchTeacher] | None = None) -> Phase:
    in_batch_teachers = in_batch_teachers or {}
    loss_fn = build_loss(settings, list(teacher_lookup))
    scale = float(settings["similarity_scale"])
    max_passage = settings.get("max_passage_length")

    def batches(epoch: int) -> list:
        return sample_groups(examples, settings["group_size"], settings["batch_size"], seed + 15485863 * epoch)

    def step(model: BiEncoder, rows) -> tuple[torch.Tensor, dict[str, float]]:
        doc_ids = [d for _, group in rows for d in group]
        batch = Batch(
            query_ids=[q for q, _ in rows],
            query_texts=[queries[q] for q, _ in rows],
            passage_texts=[doc_text[d] for d in doc_ids],
            group_size=settings["group_size"],
            teacher_scores={name: torch.tensor([[lookup[(q, d)] for d in group] for q, group in rows])
                            for name, lookup in teacher_lookup.items()},
            teacher_batch_scores={name: teacher([q for q, _ in rows], doc_ids)
                                  for name, teacher in in_batch_teachers.items()},
        ).to(model.device)
        out = StudentScores(model.embed(batch.query_texts, is_query=True),
                            model.embed(batch.passage_texts, is_query=False, max_length=max_passage), scale)
        return loss_fn(out, batch)

    return Phase("distill", settings["epochs"], settings["lr"], settings["weight_decay"], settings["warmup_ratio"],
                 batches, step)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def linear_schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_phases(model: BiEncoder, phases: list[Phase], scratch_dir: str | None, run_id: str, max_grad_norm: float,
               checkpoint_every: int, max_bad_steps: int, seed: int) -> list[dict[str, Any]]:
    """Train through ``phases``, checkpointing to ``scratch_dir`` and resuming from it when the run id matches."""
    from tqdm.auto import tqdm

    checkpoint = Path(scratch_dir) / "checkpoint.pt" if scratch_dir else None
    state = {"phase": 0, "step": 0, "history": []}
    resumed = None
    if checkpoint and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("run_id") == run_id:
            resumed = saved
            model.load_state_dict(saved["model"])
            state = {k: saved[k] for k in ("phase", "step", "history")}
            log.info("resuming from %s: phase %d, step %d", checkpoint, state["phase"], state["step"])
        else:
            log.info("ignoring %s: it belongs to another run", checkpoint)

    device = model.device
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    torch.manual_seed(seed)
    for phase_index, phase in enumerate(phases):
        if phase_index < state["phase"] or phase.epochs <= 0:
            continue
        total = phase.total_steps()
        optimizer = torch.optim.AdamW(model.parameters(), lr=phase.lr, weight_decay=phase.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, phase.warmup_ratio))
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        start = 0
        if resumed is not None and phase_index == resumed["phase"]:
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            torch.set_rng_state(resumed["torch_rng"])
            start = resumed["step"]
        model.train()
        bad_steps, step, window = 0, 0, []
        progress = tqdm(total=total, initial=start, desc=phase.name, mininterval=10.0)
        for epoch in range(phase.epochs):
            for batch in phase.batches(epoch):
                if step < start:
                    step += 1
                    continue
                loss, parts = phase.step(model, batch)
                optimizer.zero_grad(set_to_none=True)
                if not torch.isfinite(loss):
                    bad_steps += 1
                    log.warning("%s step %d: non-finite loss %s, step skipped", phase.name, step, parts)
                    if bad_steps > max_bad_steps:
                        raise FloatingPointError(f"{phase.name}: {bad_steps} consecutive non-finite losses; "
                                                 "lower the learning rate or check the teacher scores")
                else:
                    bad_steps = 0
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    window.append({"loss": float(loss.detach()), **parts})
                scheduler.step()
                step += 1
                progress.update(1)
                if window and (step % checkpoint_every == 0 or step == total):
                    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    state["history"].append({"phase": phase.name, "step": step, "epoch": epoch,
                                             "lr": scheduler.get_last_lr()[0], **mean})
                    progress.set_postfix(loss=f"{mean['loss']:.4f}")
                    window = []
                if checkpoint and step % checkpoint_every == 0 and step < total:
                    _save_checkpoint(checkpoint, run_id, phase_index, step, model, optimizer, scheduler, state)
        progress.close()
        state["phase"], state["step"] = phase_index + 1, 0
        resumed = None
        if checkpoint:
            _save_checkpoint(checkpoint, run_id, phase_index + 1, 0, model, optimizer, scheduler, state)
    return state["history"]


def _save_checkpoint(path: Path, run_id, phase, step, model, optimizer, scheduler, state) -> None:
    with atomic_path(path) as tmp:
        torch.save({"run_id": run_id, "phase": phase, "step": step, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "history": state["history"]}, tmp)


def in_batch_teacher_scorers(names: Sequence[str], models: dict[str, dict], embedding_shards: dict[str, Sequence[str]],
                             settings: dict, queries: dict[str, str], corpus_path: str, query_ids: Sequence[str],
                             synthetic: dict[str, str], include_title: bool, device) -> dict[str, InBatchTeacher]:
    from .scorers import make_scorer

    teachers = {}
    for name in names:
        model = models.get(name)
        if model is None or model.get("kind") != "bi-encoder" or name not in embedding_shards:
            kind = model.get("kind") if model else "unknown"
            raise ValueError(f"train.kd_in_batch: teacher {name!r} ({kind}) must be a bi-encoder with cached corpus "
                             "embeddings; in-batch pairs have no cached scores")
        scorer = make_scorer(ModelSpec.from_config(name, model), models, queries, corpus_path, embedding_shards,
                             include_title, device)
        factor = teacher_scale({"scale": scorer.scale}, settings["teacher_scale"], settings["similarity_scale"])
        teachers[name] = InBatchTeacher(scorer, factor, query_ids, synthetic)
    return teachers


def train_student(student_dir: str, out_dir: str, candidates_path: str, score_paths: dict[str, str],
                  qrels_path: str, queries_path: str, corpus_path: str, settings: dict | None = None,
                  warmup: dict | None = None, warmup_teacher: dict | None = None,
                  warmup_teacher_shards: Sequence[str] = (), scratch_dir: str | None = None,
                  include_title: bool = True, device: str = "auto", threads: int | None = None, seed: int = 13,
                  provenance: dict[str, Any] | None = None, teacher_models: dict[str, dict] | None = None,
                  teacher_embedding_shards: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Train the student in ``student_dir`` and save the result to ``out_dir`` (``save_pretrained``).

    ``score_paths`` maps each teacher/assistant to its cached scores of the mined candidates. With
    ``kd_in_batch``, every teacher must be a bi-encoder given in ``teacher_models`` with its corpus
    embeddings in ``teacher_embedding_shards``: it then also scores the batch's other passages.
    """
    from .index import denoise_with_teacher

    set_threads(threads)
    settings = {**DEFAULT_TRAIN, **(settings or {})}
    warmup = {**DEFAULT_WARMUP, **(warmup or {})}
    device_ = resolve_device(device)
    torch.manual_seed(seed)
    np.random.seed(seed)

    corpus = read_table(corpus_path)
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    candidates = read_table(candidates_path)
    synthetic_texts: dict[str, str] = {}
    if "text" in candidates.columns:  # synthetic passages exist only in the training data
        synthetic = candidates[candidates["text"].notna()]
        synthetic_texts = dict(zip(synthetic["doc_id"], synthetic["text"]))
        doc_text.update(synthetic_texts)

    teacher_lookup: dict[str, dict[tuple[str, str], float]] = {}
    score_frames = {name: read_table(path) for name, path in score_paths.items()}
    for name, frame in score_frames.items():
        factor = teacher_scale(read_provenance(score_paths[name]), settings["teacher_scale"],
                               settings["similarity_scale"])
        teacher_lookup[name] = dict(zip(zip(frame["query_id"], frame["doc_id"]), frame["score"].astype(float) * factor))
    denoise = settings.get("denoise") or {}
    before = len(candidates)
    if teacher_lookup and (denoise.get("margin") is not None or denoise.get("max_score") is not None):
        candidates = denoise_with_teacher(candidates, next(iter(score_frames.values())), qrels,
                                          denoise.get("margin"), denoise.get("max_score"))
    examples = build_examples(candidates, qrels)
    missing = [(e.query_id, d) for e in examples for d in e.positives + e.negatives
               for name, lookup in teacher_lookup.items() if (e.query_id, d) not in lookup]
    if missing:
        raise ValueError(f"teacher scores lack {len(missing)} training pairs, e.g. {missing[0]}")
    if settings["epochs"] > 0 and not examples:
        raise ValueError(f"{candidates_path}: no training query has both a positive and a negative")

    spec = load_student_spec(student_dir)
    student = BiEncoder.load(spec, device_)

    phases = []
    if warmup["epochs"] > 0:
        if not warmup_teacher:
            raise ValueError("train.warmup needs a bi-encoder teacher (warmup.teacher)")
        short = []
        if "train_queries" in warmup["texts"]:
            short += [queries[q] for q in sorted(qrels)]
        if "titles" in warmup["texts"]:
            short += [t for t in corpus["title"] if t.strip()]
        shards = list(warmup_teacher_shards) if "corpus" in warmup["texts"] else []
        phases.append(warmup_phase(student, warmup, ModelSpec.from_config(warmup_teacher["name"], warmup_teacher),
                                   shards, corpus, include_title, short, device_, seed))
    in_batch_teachers = {}
    if settings["kd_in_batch"] and settings["epochs"] > 0:
        in_batch_teachers = in_batch_teacher_scorers(list(score_paths), teacher_models or {},
                                                     teacher_embedding_shards or {}, settings, queries, corpus_path,
                                                     [e.query_id for e in examples], synthetic_texts, include_title,
                                                     device_)
    phases.append(distill_phase(settings, examples, doc_text, queries, teacher_lookup, seed, in_batch_teachers))

    run_id = fingerprint({"student": spec.to_dict(), "settings": settings, "warmup": warmup, "seed": seed,
                          "inputs": [candidates_path, *score_paths.values()], "provenance": provenance})
    began = time.perf_counter()
    history = run_phases(student, phases, scratch_dir, run_id, settings["max_grad_norm"],
                         settings["checkpoint_every"], settings["max_bad_steps"], seed)
    seconds = time.perf_counter() - began

    with atomic_path(out_dir, directory=True) as tmp:
        student.save_pretrained(tmp, final_path=out_dir)
        summary = {"settings": settings, "warmup": warmup, "seed": seed, "teachers": list(score_paths),
                   "examples": len(examples), "candidates_before_denoise": before,
                   "candidates_after_denoise": len(candidates), "seconds": seconds, "device": str(device_),
                   "history": history, "initialised_from": student_dir, **(provenance or {})}
        (tmp / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    if scratch_dir:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return summary


def init_student(model: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The untrained student (e.g. the first N layers of a bigger model), saved as a model folder."""
    spec = ModelSpec.from_config(model["name"], model)
    student = BiEncoder.load(spec, "cpu")
    with atomic_path(out_dir, directory=True) as tmp:
        student.save_pretrained(tmp, final_path=out_dir)
        (tmp / "training.json").write_text(json.dumps({"initialised_from": spec.to_dict()}, indent=2))
    return spec.to_dict()
