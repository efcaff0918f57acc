"""The training loop: phases of steps over one or several trainable models, checkpointed and resumable.

A :class:`Phase` names the models it trains (``trains``; the student alone in the common case), its
optimiser settings, its batches (a pure function of the epoch) and its step function
``step(models, batch, global_step) -> (loss, parts)``. Each trained model gets its own AdamW optimiser,
linear warm-up/decay schedule and gradient clipping; one backward pass of the phase's loss reaches them
all (a joint loss, as in mutual or joint teacher-student training). The checkpoint holds every model's
state dict, every optimiser and schedule, and the random states (torch, CUDA, numpy, Python), so a killed
job resumes to the identical result. ``global_step`` counts the phase's steps across epochs; schedules
and periodic resampling inside a step depend on it. Under data-parallel training (:mod:`pipeline.distributed`)
every process runs the same steps on the same batches, the trained models' gradients are averaged after
each backward pass, and rank 0 writes checkpoints (with every process's random states) and snapshots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import distributed
from ..data import atomic_path
from ..precision import autocast_dtype

log = logging.getLogger(__name__)

StepFn = Callable[[Mapping[str, nn.Module], Any, int], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    batches: Callable[[int], list]  # epoch -> batches
    step: StepFn  # (models by name, batch, global step) -> loss, parts
    trains: tuple[str, ...] = ("student",)
    #: keep the trained models as they are at the end of this phase (e.g. the student after its warm-up),
    #: so the run can evaluate them and select among them
    snapshot: bool = False
    #: called with the models when the phase begins at its first step (not when resuming inside it), e.g.
    #: to take a frozen copy of the student; whatever it sets lives in the models, so checkpoints keep it
    on_start: Callable[[Mapping[str, nn.Module]], None] | None = None
    #: models the phase brings into the loop beside the student, by name (a peer, an online teacher, a
    #: frozen copy); phases that share a model bring the same object
    adds: Mapping[str, nn.Module] = field(default_factory=dict)
    #: models saved beside the student when training ends: loop name -> subfolder of the output (OnMKD's peer)
    saves: Mapping[str, str] = field(default_factory=dict)
    #: what the phase's method measured while building it, by method name (``training.json``'s ``reports``)
    report: Mapping[str, Any] = field(default_factory=dict)
    #: the dropout probability of every dropout layer of the models the phase trains, while it trains
    #: (``train.dropout``, ``warmup.dropout``); None keeps each layer's own (its checkpoint's config)
    dropout: float | None = None

    def total_steps(self) -> int:
        return sum(len(self.batches(e)) for e in range(self.epochs))


def loop_models(student: nn.Module, phases: list[Phase]) -> dict[str, nn.Module]:
    """The models the loop holds: the student and what each phase brings (:attr:`Phase.adds`)."""
    models = {"student": student}
    for phase in phases:
        for name, model in phase.adds.items():
            if models.setdefault(name, model) is not model:
                raise ValueError(f"phase {phase.name!r} brings another model under the name {name!r}")
    return models


def linear_schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def random_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class _Optimisers:
    """One AdamW optimiser, schedule and gradient scaler per trained model of a phase."""

    def __init__(self, models: Mapping[str, nn.Module], phase: Phase, total: int, use_scaler: bool):
        self.models = {name: models[name] for name in phase.trains}
        self.optimizers = {name: torch.optim.AdamW(m.parameters(), lr=phase.lr, weight_decay=phase.weight_decay)
                           for name, m in self.models.items()}
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(o, linear_schedule(total, phase.warmup_ratio))
                           for name, o in self.optimizers.items()}
        # one scaler for the one loss: its scale is shared by every model's gradients
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor, max_grad_norm: float) -> None:
        self.scaler.scale(loss).backward()
        for model in self.models.values():  # data-parallel processes: the whole batch's gradient
            distributed.average_gradients(model.parameters())
        for name, optimizer in self.optimizers.items():
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.models[name].parameters(), max_grad_norm)
            self.scaler.step(optimizer)
        self.scaler.update()

    def advance_schedules(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    def last_lr(self) -> float:
        return next(iter(self.schedulers.values())).get_last_lr()[0]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])


def snapshot_path(folder: str | Path, phase: Phase) -> Path:
    return Path(folder) / f"snapshot-{phase.name}.pt"


def set_dropout(model: nn.Module, probability: float | None, own: Mapping[nn.Module, float]) -> None:
    """Every dropout layer of ``model`` at ``probability``, or back at its own (``own``) for None. BERT's
    attention reads its layer's ``p`` at each call, so this reaches the attention dropout too."""
    for layer in model.modules():
        if isinstance(layer, nn.Dropout):
            layer.p = own[layer] if probability is None else probability


def run_phases(models: Mapping[str, nn.Module], phases: list[Phase], scratch_dir: str | None, run_id: str,
               max_grad_norm: float, checkpoint_every: int, max_bad_steps: int, seed: int,
               snapshot_dir: str | None = None) -> list[dict[str, Any]]:
    """Train ``models`` through ``phases``, checkpointing to ``scratch_dir`` and resuming from it when the
    run id matches. Returns the loss history (means over each ``checkpoint_every`` window). A phase with
    ``snapshot`` leaves the state dicts of the models it trained in ``snapshot_dir`` (default
    ``scratch_dir``) as :func:`snapshot_path` names them."""
    for phase in phases:
        unknown = set(phase.trains) - set(models)
        if unknown:
            raise ValueError(f"phase {phase.name!r} trains unknown models {sorted(unknown)}; have {sorted(models)}")
    checkpoint = Path(scratch_dir) / "checkpoint.pt" if scratch_dir else None
    state = {"phase": 0, "step": 0, "history": []}
    resumed = None
    if checkpoint and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("run_id") == run_id and set(saved.get("models", {})) == set(models):
            resumed = saved
            for name, model in models.items():
                model.load_state_dict(saved["models"][name])
            state = {k: saved[k] for k in ("phase", "step", "history")}
            log.info("resuming from %s: phase %d, step %d", checkpoint, state["phase"], state["step"])
        else:
            log.info("ignoring %s: it belongs to another run", checkpoint)

    device = next(iter(models.values())).device
    # fp16 autocast (a CUDA GPU without bf16) needs its loss scaled; bf16 and float32 do not
    use_scaler = autocast_dtype(device) == torch.float16
    # the seed draws dropout only (batches come from seeded generators): data-parallel processes draw
    # their own masks, rank 0 those of a one-process run
    torch.manual_seed(seed + distributed.rank())
    # each dropout layer's own probability, which a phase without a dropout setting trains with
    own_dropout = {layer: layer.p for model in models.values() for layer in model.modules()
                   if isinstance(layer, nn.Dropout)}
    for phase_index, phase in enumerate(phases):
        if phase_index < state["phase"] or phase.epochs <= 0:
            continue
        total = phase.total_steps()
        optimisers = _Optimisers(models, phase, total, use_scaler)
        start = 0
        if resumed is not None and phase_index == resumed["phase"]:
            # a checkpoint at a phase's start (the one the previous phase leaves) holds no optimiser state:
            # the phase starts with fresh optimisers and schedules, as it does in an uninterrupted job
            if resumed["optimisation"] is not None:
                optimisers.load_state_dict(resumed["optimisation"])
            set_random_states(resumed["random"][distributed.rank()] if distributed.world_size() > 1
                              else resumed["random"])
            start = resumed["step"]
        if start == 0 and phase.on_start is not None:
            phase.on_start(models)
        for name in phase.trains:
            models[name].train()
            set_dropout(models[name], phase.dropout, own_dropout)
        bad_steps, step, window = 0, 0, []
        progress = tqdm(total=total, initial=start, desc=phase.name, mininterval=10.0,
                        disable=not distributed.is_main())
        for epoch in range(phase.epochs):
            for batch in phase.batches(epoch):
                if step < start:
                    step += 1
                    continue
                loss, parts = phase.step(models, batch, step)
                optimisers.zero_grad()
                if not torch.isfinite(loss):
                    bad_steps += 1
                    log.warning("%s step %d: non-finite loss %s, step skipped", phase.name, step, parts)
                    if bad_steps > max_bad_steps:
                        raise FloatingPointError(f"{phase.name}: {bad_steps} consecutive non-finite losses; "
                                                 "lower the learning rate or check the teacher scores")
                else:
                    bad_steps = 0
                    optimisers.step(loss, max_grad_norm)
                    window.append({"loss": float(loss.detach()), **parts})
                # a skipped step still advances the schedules, so a resumed run stays step-aligned
                optimisers.advance_schedules()
                step += 1
                progress.update(1)
                if window and (step % checkpoint_every == 0 or step == total):
                    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    state["history"].append({"phase": phase.name, "step": step, "epoch": epoch,
                                             "lr": optimisers.last_lr(), **mean})
                    progress.set_postfix(loss=f"{mean['loss']:.4f}")
                    window = []
                if checkpoint and step % checkpoint_every == 0 and step < total:
                    _save_checkpoint(checkpoint, run_id, phase_index, step, models, optimisers, state)
        progress.close()
        if phase.snapshot and (snapshot_dir or scratch_dir) and distributed.is_main():
            # before the phase-end checkpoint: a job killed in between redoes the phase's last steps
            with atomic_path(snapshot_path(snapshot_dir or scratch_dir, phase)) as tmp:
                torch.save({name: models[name].state_dict() for name in phase.trains}, tmp)
        state["phase"], state["step"] = phase_index + 1, 0
        resumed = None
        if checkpoint:  # the finished phase's optimisers are not the next phase's: none saved
            _save_checkpoint(checkpoint, run_id, phase_index + 1, 0, models, None, state)
    return state["history"]


def _save_checkpoint(path: Path, run_id: str, phase: int, step: int, models: Mapping[str, nn.Module],
                     optimisers: _Optimisers | None, state: dict[str, Any]) -> None:
    """Rank 0 writes; the random states are every process's (their dropout streams differ), by rank.
    ``optimisers`` None: a checkpoint at a phase's start, which resumes with fresh ones."""
    states = distributed.gather_objects(random_states())
    if not distributed.is_main():
        return
    with atomic_path(path) as tmp:
        torch.save({"run_id": run_id, "phase": phase, "step": step,
                    "models": {name: model.state_dict() for name, model in models.items()},
                    "optimisation": optimisers.state_dict() if optimisers is not None else None,
                    "random": states if len(states) > 1 else states[0], "history": state["history"]}, tmp)
