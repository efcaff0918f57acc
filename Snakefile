# Iterative knowledge distillation for dense passage retrieval.
#   snakemake --cores all                       # the default experiment (config.yaml)
#   snakemake --cores 2 --config data_dir=PATH  # any BEIR-format folder
# Each rule calls one function of the `pipeline` package through `python -m pipeline STEP`; every
# decision about models, iterations and methods is made by `pipeline.plan.Plan` (unit-tested).

import os
import shlex
import sys

from snakemake.caching import LOCATION_ENVVAR
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, workflow.basedir)
from pipeline.plan import Plan  # noqa: E402


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"

plan = Plan(config)
# params name the experiment's folder and the data folder by tokens, which each job's `--root` and
# `--data-dir` give back: params equal across experiments let `--cache` reuse teacher work (README)
to_json = plan.to_json
# where `--cache` keeps that work: $SNAKEMAKE_OUTPUT_CACHE, else the config's cache_dir (no `envvars:`
# directive, which would refuse a run without the variable)
OUTPUT_CACHE = os.environ.setdefault(LOCATION_ENVVAR, os.path.abspath(f"{config['cache_dir']}/snakemake-outputs"))
if workflow.workflow_settings.cache is not None:
    os.makedirs(OUTPUT_CACHE, exist_ok=True)
plan.check()  # cross-field checks: fail at parse time, before any job runs
if plan.schedule() and workflow.is_main_process:  # a method sets the iterations (PROD): say what each is
    print("\n".join(f"iteration {it}: {plan.describe(it)}" for it in plan.iterations), file=sys.stderr)

# `snakemake --lint` reports two things on purpose (tests/test_workflow.py fails on any other):
# - "Specify a conda environment or container for each rule": every rule runs the interpreter that runs
#   Snakemake, whose environment requirements.txt (or environment.yml) pins; a per-rule conda env
#   would install the same torch stack ten times.
# - "Shell command directly uses variable PY": PY is that interpreter; as a `params` entry it would
#   re-run every job of a run whose checkout (and so venv) moved.
# - "Shell command directly uses variable R" (and DATA_DIR, in prepare): the experiment's and the data's
#   folders, which jobs get on their command line (`--root`, `--data-dir`) rather than in `params`: the
#   between-workflow cache keys a job by its params, so params naming the experiment could never be
#   shared by the next one (pipeline.plan.ROOT_TOKEN).
PY = sys.executable
# Jobs run `python -m pipeline` from the working directory (maybe --directory elsewhere, maybe a
# cluster node), so every job's shell finds the package through PYTHONPATH.
# (Snakemake formats the prefix like a command: its braces are doubled.)
shell.prefix("export PYTHONPATH=%s${{PYTHONPATH:+:$PYTHONPATH}}; " % shlex.quote(workflow.basedir))
R = plan.root
DATA = plan.data
# What each model job asks for; Snakemake lowers it to --cores on one machine, and a cluster profile
# can lower it further (max-threads) or per rule (set-threads).
JOB_THREADS = config["threads"]
# Snakemake never assigns GPU ids; `device: cuda` asks the scheduler for one GPU per model job.
GPUS = 1 if config["device"].startswith("cuda") else 0


wildcard_constraints:
    it=r"\d+",
    model=r"[A-Za-z0-9._-]+",
    scorer=r"[A-Za-z0-9._-]+",
    shard=r"\d+",
    n=r"\d+",


include: "rules/data.smk"
include: "rules/encode.smk"
include: "rules/finetune.smk"
include: "rules/distill.smk"
include: "rules/evaluate.smk"
include: "rules/export.smk"


# methods that add stages to the DAG bring their own rules
for method_rules in plan.method_rules():

    include: method_rules


rule all:
    input:
        # the summary's table and figures too: Snakemake reruns a job for the missing outputs asked for only
        rules.summary.output,
    default_target: True


onsuccess:
    summary = f"{R}/summary.md"
    if os.path.exists(summary):
        print(open(summary).read())
