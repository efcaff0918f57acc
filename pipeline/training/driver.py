"""The ``train`` step: read what an iteration's training needs, let the configured methods build their
phases and losses, run them, save the student.

The driver only wires parts together (Tevatron's habit): :mod:`.sampling` makes examples and batches,
:mod:`.teachers` reads teacher scores, the methods of :mod:`pipeline.methods` decide the phases and loss
terms, :mod:`.loop` trains and checkpoints. Every setting comes from the config schema
(:mod:`pipeline.config`), also when the step is called by hand.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import distributed
from ..config import ConfigError, complete_section
from ..data import atomic_path, load_qrels, load_queries, passage_texts, read_provenance, read_table
from ..index import denoise_with_teacher
from ..methods import Method, get_method
from ..methods.base import TrainingRun
from ..models import BiEncoder, ModelSpec, load_student_spec, resolve_device, set_threads
from ..precision import precision_used
from .loop import Phase, fingerprint, loop_models, run_phases, snapshot_path
from .sampling import build_examples, synthetic_rows
from .teachers import read_teacher_scores


def complete_sections(config: dict[str, Any], methods: Sequence[Method]) -> dict[str, Any]:
    """The sections ``train`` and those the methods read, validated against the schema, defaults filled in
    (the workflow passes them complete; a call by hand may leave out whatever has a default)."""
    names = ["train"] + [s for m in methods for s in m.sections]
    unknown = set(config) - set(names)
    if unknown:
        raise ConfigError(f"config: sections {sorted(unknown)} are read by none of the methods {[m.name for m in methods]}")
    return {name: complete_section(name, config.get(name)) for name in dict.fromkeys(names)}


@dataclass(frozen=True)
class TrainingJob:
    """One ``train`` step's settings, as the workflow passes them (``python -m pipeline train``).

    ``score_paths`` maps each scorer the methods asked for to its cached scores of the mined candidates;
    ``config`` holds the config sections the methods read (``train``, ``warmup``, ``teacher``, ...);
    ``models`` and ``embedding_shards`` the configs and corpus embeddings of models the methods load.
    """

    student_dir: str
    out_dir: str
    candidates_path: str
    score_paths: dict[str, str]
    qrels_path: str
    queries_path: str
    corpus_path: str
    config: dict[str, Any] | None = None
    methods: Sequence[str] = ("standard",)
    models: dict[str, dict] | None = None
    embedding_shards: dict[str, Sequence[str]] | None = None
    iteration: int = 1
    scratch_dir: str | None = None
    include_title: bool = True
    device: str = "auto"
    threads: int | None = None
    seed: int = 13
    provenance: dict[str, Any] | None = None


def train_student(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Train the student in ``student_dir`` with ``methods`` and save it to ``out_dir`` (``save_pretrained``);
    the arguments are :class:`TrainingJob`'s."""
    job = TrainingJob(*args, **kwargs)
    method_objects = [get_method(name) for name in job.methods]
    if not method_objects:
        raise ConfigError("train: no method configured")
    config = complete_sections(job.config or {}, method_objects)
    processes = distributed.launched_size()
    if processes != config["train"]["processes"]:
        raise ConfigError(f"train.processes is {config['train']['processes']} but {processes} process(es) run "
                          "this step; the workflow starts them with torchrun (--nproc-per-node)")
    # the job's threads are shared by its processes
    set_threads(max(1, job.threads // processes) if job.threads else job.threads)
    device = distributed.init(resolve_device(job.device))
    try:
        return _train(job, config, method_objects, device)
    finally:
        distributed.close()


def _train(job: TrainingJob, config: dict[str, Any], method_objects: list[Method], device: torch.device
           ) -> dict[str, Any]:
    settings = config["train"]
    methods = [method.name for method in method_objects]
    torch.manual_seed(job.seed)
    np.random.seed(job.seed)

    corpus = read_table(job.corpus_path)
    queries = load_queries(job.queries_path)
    qrels = load_qrels(job.qrels_path)
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, job.include_title)))
    candidates = read_table(job.candidates_path)
    made = synthetic_rows(candidates)  # synthetic passages exist only in the training data
    synthetic_texts = dict(zip(candidates.loc[made, "doc_id"], candidates.loc[made, "text"])) if made.any() else {}
    doc_text.update(synthetic_texts)

    score_frames, teacher_scores, teacher_factors = read_teacher_scores(job.score_paths, settings, qrels,
                                                                        synthetic_texts)
    denoise = settings["denoise"]
    before = len(candidates)
    if teacher_scores and (denoise["margin"] is not None or denoise["max_score"] is not None):
        # only mined negatives may be false ones; synthetic passages are meant to be close to the positive
        candidates = pd.concat([denoise_with_teacher(candidates[~made], next(iter(score_frames.values())), qrels,
                                                     denoise["margin"], denoise["max_score"]), candidates[made]],
                               ignore_index=True)
    examples = build_examples(candidates, qrels)
    missing = [(e.query_id, d) for e in examples for d in e.positives + e.synthetic + e.negatives
               for name, lookup in teacher_scores.items() if (e.query_id, d) not in lookup]
    if missing:
        raise ValueError(f"teacher scores lack {len(missing)} training pairs, e.g. {missing[0]}")
    # a method's selection of the mined candidates (PROD's confusing queries) may rightly be empty: the
    # student then has nothing left to learn there and is saved as it is
    candidates_provenance = read_provenance(job.candidates_path)
    selection = candidates_provenance.get("selection")
    if settings["epochs"] > 0 and not examples and not selection:
        raise ValueError(f"{job.candidates_path}: no training query has both a positive and a negative")

    spec = load_student_spec(job.student_dir)
    student = BiEncoder.load(spec, device)
    run = TrainingRun(config=config, iteration=job.iteration, seed=job.seed, device=device, methods=method_objects,
                      corpus=corpus, corpus_path=job.corpus_path, queries=queries, qrels=qrels, doc_text=doc_text,
                      synthetic_texts=synthetic_texts, examples=examples, teacher_scores=teacher_scores,
                      teacher_factors=teacher_factors, include_title=job.include_title, student=student,
                      student_dir=job.student_dir, models=job.models or {},
                      embedding_shards=job.embedding_shards or {}, candidates_provenance=candidates_provenance)
    trains = bool(examples or not selection)
    phases: list[Phase] = [phase for method in method_objects for phase in method.phases(run)] if trains else []
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names):
        raise ConfigError(f"methods {list(methods)} build phases with the same name: {names}")
    reports = {name: report for phase in phases for name, report in phase.report.items()}
    reports.update({method.name: report for method in method_objects if trains
                    and (report := method.report(run)) is not None})
    models = loop_models(student, phases)
    saves = {name: folder for phase in phases for name, folder in phase.saves.items()}

    run_id = fingerprint({"student": spec.to_dict(), "config": config, "methods": list(methods), "seed": job.seed,
                          "inputs": [job.candidates_path, *job.score_paths.values()], "provenance": job.provenance})
    snapshots = [phase for phase in phases if phase.snapshot and "student" in phase.trains and phase.epochs > 0]
    provenance = job.provenance or {}
    with tempfile.TemporaryDirectory() as own_snapshot_dir:
        snapshot_dir = job.scratch_dir or own_snapshot_dir
        began = time.perf_counter()
        history = run_phases(models, phases, job.scratch_dir, run_id, settings["max_grad_norm"],
                             settings["checkpoint_every"], settings["max_bad_steps"], job.seed, snapshot_dir)
        seconds = time.perf_counter() - began
        summary = {"methods": list(methods), "config": config, "phases": names, "seed": job.seed,
                   "teachers": list(job.score_paths), "teacher_scales": teacher_factors, "examples": len(examples),
                   "candidates_before_denoise": before, "selection": selection,
                   "candidates_after_denoise": len(candidates), "seconds": seconds, "device": str(device),
                   "precision": precision_used(device),
                   "history": history, "initialised_from": job.student_dir,
                   "snapshots": [phase.name for phase in snapshots], "reports": reports, **provenance}
        if not distributed.is_main():  # rank 0 saves; the other processes' students are the same
            return summary
        out_dir = job.out_dir
        with atomic_path(out_dir, directory=True) as tmp:
            student.save_pretrained(tmp, final_path=out_dir)
            (tmp / "training.json").write_text(json.dumps(summary, indent=2, default=str))
            for name, folder in saves.items():  # models trained beside the student (OnMKD's peer)
                models[name].save_pretrained(tmp / folder, final_path=Path(out_dir) / folder)
                (tmp / folder / "training.json").write_text(json.dumps(
                    {"trained_beside": out_dir, "initialised_from": str(Path(job.student_dir) / folder),
                     **provenance}, indent=2))
            for phase in snapshots:  # the student as it was after this phase, in a subfolder of the same name
                snapshot = copy.deepcopy(student).cpu()
                snapshot.load_state_dict(torch.load(snapshot_path(snapshot_dir, phase), map_location="cpu")["student"])
                snapshot.save_pretrained(tmp / phase.name, final_path=Path(out_dir) / phase.name)
                (tmp / phase.name / "training.json").write_text(json.dumps(
                    {"snapshot_after_phase": phase.name, "of": out_dir, **provenance}, indent=2))
    if job.scratch_dir:
        shutil.rmtree(job.scratch_dir, ignore_errors=True)
    return summary


def init_student(model: dict[str, Any], out_dir: str, peers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The untrained student (e.g. the first N layers of a bigger model), saved as a model folder, and the
    untrained ``peers`` that iteration 1 trains beside it (OnMKD's), each in the subfolder of its name."""
    specs = {folder: ModelSpec.from_config(settings["name"], settings)
             for folder, settings in {"": model, **(peers or {})}.items()}  # "": the student, the folder itself
    with atomic_path(out_dir, directory=True) as tmp:
        for folder, spec in specs.items():
            BiEncoder.load(spec, "cpu").save_pretrained(tmp / folder, final_path=Path(out_dir) / folder)
            (tmp / folder / "training.json").write_text(json.dumps({"initialised_from": spec.to_dict()}, indent=2))
    return specs[""].to_dict()
