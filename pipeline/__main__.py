"""Command line: ``python -m pipeline STEP '<json keyword arguments>' [--root DIR] [--data-dir DIR] [--threads N]``.

Each Snakemake rule calls exactly one step; the same call runs a step by hand. Paths in the arguments may
start with ``{root}`` (the experiment's folder) or ``{data_dir}`` (the BEIR folder), given by ``--root``
and ``--data-dir``, or else by the environment's ``PIPELINE_ROOT`` and ``PIPELINE_DATA_DIR``, which is how
the workflow's jobs get them (why: :data:`pipeline.plan.ROOT_TOKEN`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys

from . import PRECISION_ENVVAR, PRECISIONS

STEPS = {
    "download": "pipeline.data:download_beir",
    "prepare": "pipeline.data:prepare_dataset",
    "split": "pipeline.splits:split_training_queries",
    "pseudo_queries": "pipeline.labels:add_pseudo_queries",
    "label": "pipeline.labels:label_with_teacher",
    "init_student": "pipeline.training.driver:init_student",
    "encode": "pipeline.embeddings:encode_corpus_shard",
    "index": "pipeline.index:build_shard_indexes",
    "mine": "pipeline.index:mine_negatives",
    "score": "pipeline.scorers:score_candidates",
    "train": "pipeline.training.driver:train_student",
    "finetune": "pipeline.training.finetune:finetune_model",
    "export": "pipeline.runtime:export_checked",
    "evaluate": "pipeline.evaluation:evaluate_splits",
    "select": "pipeline.evaluation:select_final_student",
    "summary": "pipeline.evaluation:summarize",
    "seeds": "pipeline.seeds:summarize_seeds",
    "hybrid": "pipeline.hybrid:evaluate_hybrid",
    "choose_fusion_weights": "pipeline.fusion_weights:choose_fusion_weights",
}


def method_steps() -> dict[str, str]:
    """The steps the methods declare (``Method.steps``: step -> a function of the method's module); the
    methods are imported only for a step that is not the workflow's own."""
    # the methods: imported only for a step that is not the workflow's own
    from .methods import METHODS

    return {step: f"{cls.__module__}:{function}" for cls in METHODS.values() for step, function in cls.steps.items()}


def takes_keyword(function, name: str) -> bool:
    """Whether ``function`` accepts keyword ``name`` (by name, or through ``**kwargs``: the train step's
    arguments are a ``TrainingJob``'s)."""
    parameters = inspect.signature(function).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("step", help=f"one of {', '.join(sorted(STEPS))}, or a method's (its ``steps``)")
    parser.add_argument("kwargs", help="keyword arguments of the step, as a JSON object")
    parser.add_argument("--root", default=os.environ.get("PIPELINE_ROOT"),
                        help="the experiment's folder, for {root} in the arguments (default: $PIPELINE_ROOT)")
    parser.add_argument("--data-dir", default=os.environ.get("PIPELINE_DATA_DIR"),
                        help="the BEIR folder, for {data_dir} in the arguments (default: $PIPELINE_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch/FAISS")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="what the models' matrix products compute in (config precision; default auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # after argument parsing: --help and a bad call answer without pandas and pyarrow
    from .config import ConfigError
    from .data import InputError
    from .plan import expand_tokens

    try:
        kwargs = expand_tokens(json.loads(args.kwargs), args.root, args.data_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    target = STEPS.get(args.step) or method_steps().get(args.step)
    if target is None:
        parser.error(f"unknown step {args.step!r}; steps are {sorted(STEPS) + sorted(method_steps())}")
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if args.threads is not None and takes_keyword(function, "threads"):
        kwargs["threads"] = args.threads
    if args.precision is not None:
        # process-wide, as torch's threads: every model the step loads computes in it; through the
        # environment, which pipeline.precision reads when first imported, so that a step that loads no model
        # does not import torch for it
        os.environ[PRECISION_ENVVAR] = args.precision
        if "pipeline.precision" in sys.modules:  # imported already (main called in-process): tell it too
            sys.modules["pipeline.precision"].set_precision(args.precision)
    try:
        function(**kwargs)
    except (InputError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if os.environ.get("PIPELINE_WARM_START") == "1":  # a workflow job: forked from a job server that has
        # imported torch and transformers (pipeline.warm_start); None where none can serve it
        from .warm_start import run_in_server, wanted

        if wanted():
            code = run_in_server(sys.argv[1:])
            if code is not None:
                sys.exit(code)
    sys.exit(main())
