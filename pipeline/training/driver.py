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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import distributed
from ..config import ConfigError, complete_section
from ..data import atomic_path, load_qrels, load_queries, passage_texts, read_provenance, read_table
from ..methods import Method, get_method
from ..methods.base import TrainingRun
from ..models import BiEncoder, ModelSpec, load_student_spec, resolve_device, set_threads
from .loop import Phase, fingerprint, run_phases, snapshot_path
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


def train_student(student_dir: str, out_dir: str, candidates_path: str, score_paths: dict[str, str],
                  qrels_path: str, queries_path: str, corpus_path: str, config: dict[str, Any] | None = None,
                  methods: Sequence[str] = ("standard",), models: dict[str, dict] | None = None,
                  embedding_shards: dict[str, Sequence[str]] | None = None, iteration: int = 1,
                  scratch_dir: str | None = None, include_title: bool = True, device: str = "auto",
                  threads: int | None = None, seed: int = 13, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the student in ``student_dir`` with ``methods`` and save it to ``out_dir`` (``save_pretrained``).

    ``score_paths`` maps each scorer the methods asked for to its cached scores of the mined candidates;
    ``config`` holds the config sections the methods read (``train``, ``warmup``, ``teacher``, ...);
    ``models`` and ``embedding_shards`` the configs and corpus embeddings of models the methods load.
    """
    method_objects = [get_method(name) for name in methods]
    if not method_objects:
        raise ConfigError("train: no method configured")
    config = complete_sections(config or {}, method_objects)
    settings = config["train"]
    processes = distributed.launched_size()
    if processes != settings["processes"]:
        raise ConfigError(f"train.processes is {settings['processes']} but {processes} process(es) run this "
                          "step; the workflow starts them with torchrun (--nproc-per-node)")
    # the job's threads are shared by its processes
    set_threads(max(1, threads // processes) if threads else threads)
    device_ = distributed.init(resolve_device(device))
    try:
        return _train(student_dir, out_dir, candidates_path, score_paths, qrels_path, queries_path, corpus_path,
                      config, method_objects, models, embedding_shards, iteration, scratch_dir, include_title,
                      device_, seed, provenance)
    finally:
        distributed.close()


def _train(student_dir, out_dir, candidates_path, score_paths, qrels_path, queries_path, corpus_path, config,
           method_objects, models, embedding_shards, iteration, scratch_dir, include_title, device_, seed,
           provenance) -> dict[str, Any]:
    from ..index import denoise_with_teacher

    settings = config["train"]
    methods = [method.name for method in method_objects]
    torch.manual_seed(seed)
    np.random.seed(seed)

    corpus = read_table(corpus_path)
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    doc_text = dict(zip(corpus["doc_id"], passage_texts(corpus, include_title)))
    candidates = read_table(candidates_path)
    made = synthetic_rows(candidates)  # synthetic passages exist only in the training data
    synthetic_texts = dict(zip(candidates.loc[made, "doc_id"], candidates.loc[made, "text"])) if made.any() else {}
    doc_text.update(synthetic_texts)

    score_frames, teacher_scores, teacher_factors = read_teacher_scores(score_paths, settings, qrels, synthetic_texts)
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
    candidates_provenance = read_provenance(candidates_path)
    selection = candidates_provenance.get("selection")
    if settings["epochs"] > 0 and not examples and not selection:
        raise ValueError(f"{candidates_path}: no training query has both a positive and a negative")

    spec = load_student_spec(student_dir)
    student = BiEncoder.load(spec, device_)
    run = TrainingRun(config=config, iteration=iteration, seed=seed, device=device_, methods=method_objects,
                      corpus=corpus, corpus_path=corpus_path, queries=queries, qrels=qrels, doc_text=doc_text,
                      synthetic_texts=synthetic_texts, examples=examples, teacher_scores=teacher_scores,
                      teacher_factors=teacher_factors,
                      include_title=include_title, models=models or {}, embedding_shards=embedding_shards or {},
                      loop_models={"student": student}, student_dir=student_dir,
                      candidates_provenance=candidates_provenance)
    phases: list[Phase] = [phase for method in method_objects for phase in method.phases(run)] if examples or not selection else []
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names):
        raise ConfigError(f"methods {list(methods)} build phases with the same name: {names}")

    run_id = fingerprint({"student": spec.to_dict(), "config": config, "methods": list(methods), "seed": seed,
                          "inputs": [candidates_path, *score_paths.values()], "provenance": provenance})
    snapshots = [phase for phase in phases if phase.snapshot and "student" in phase.trains and phase.epochs > 0]
    with tempfile.TemporaryDirectory() as own_snapshot_dir:
        snapshot_dir = scratch_dir or own_snapshot_dir
        began = time.perf_counter()
        history = run_phases(run.loop_models, phases, scratch_dir, run_id, settings["max_grad_norm"],
                             settings["checkpoint_every"], settings["max_bad_steps"], seed, snapshot_dir)
        seconds = time.perf_counter() - began
        summary = {"methods": list(methods), "config": config, "phases": names, "seed": seed,
                   "teachers": list(score_paths), "teacher_scales": teacher_factors, "examples": len(examples),
                   "candidates_before_denoise": before, "selection": selection,
                   "candidates_after_denoise": len(candidates), "seconds": seconds, "device": str(device_),
                   "history": history, "initialised_from": student_dir,
                   "snapshots": [phase.name for phase in snapshots], "reports": run.reports, **(provenance or {})}
        if not distributed.is_main():  # rank 0 saves; the other processes' students are the same
            return summary
        with atomic_path(out_dir, directory=True) as tmp:
            student.save_pretrained(tmp, final_path=out_dir)
            (tmp / "training.json").write_text(json.dumps(summary, indent=2, default=str))
            for name, folder in run.saved_models.items():  # models trained beside the student (OnMKD's peer)
                run.loop_models[name].save_pretrained(tmp / folder, final_path=Path(out_dir) / folder)
                (tmp / folder / "training.json").write_text(json.dumps(
                    {"trained_beside": out_dir, "initialised_from": str(Path(student_dir) / folder),
                     **(provenance or {})}, indent=2))
            for phase in snapshots:  # the student as it was after this phase, in a subfolder of the same name
                snapshot = copy.deepcopy(student).cpu()
                snapshot.load_state_dict(torch.load(snapshot_path(snapshot_dir, phase), map_location="cpu")["student"])
                snapshot.save_pretrained(tmp / phase.name, final_path=Path(out_dir) / phase.name)
                (tmp / phase.name / "training.json").write_text(json.dumps(
                    {"snapshot_after_phase": phase.name, "of": out_dir, **(provenance or {})}, indent=2))
    if scratch_dir:
        shutil.rmtree(scratch_dir, ignore_errors=True)
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
