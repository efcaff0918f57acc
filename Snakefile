# Iterative knowledge distillation for dense passage retrieval.
#   snakemake --cores all                       # the default experiment (config.yaml)
#   snakemake --cores 2 --config data_dir=PATH  # any BEIR-format folder
# Each rule calls one function of the `pipeline` package through `python -m pipeline STEP`; every
# decision about models, iterations and methods is made by `pipeline.plan.Plan` (unit-tested).

import os
import shlex
import sys

from snakemake.caching import LOCATION_ENVVAR
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, workflow.basedir)
from pipeline.config import method_sections  # noqa: E402
from pipeline.plan import Plan  # noqa: E402


configfile: "config.yaml"


# `--config seeds=[13,7,21]` gives Snakemake's list of strings; a config file's list is of integers
if isinstance(config.get("seeds"), list):
    config["seeds"] = [int(seed) if isinstance(seed, str) and seed.isdigit() else seed for seed in config["seeds"]]
validate(config, "schemas/config.schema.yaml")
# each method's settings: its section, validated by schemas/methods/<method>.schema.yaml
for section, section_schema in method_sections().items():
    validate(config.setdefault(section, {}), str(section_schema))


report: "report/workflow.rst"


plan = Plan(config)
# params name the experiment's folder and the data folder by tokens, which each job's environment gives back
# (below): params equal across experiments let `--cache` reuse teacher work (README)
to_json = plan.to_json
# where `--cache` keeps that work: $SNAKEMAKE_OUTPUT_CACHE, else the config's cache_dir (no `envvars:`
# directive, which would refuse a run without the variable)
OUTPUT_CACHE = os.environ.setdefault(LOCATION_ENVVAR, os.path.abspath(f"{config['cache_dir']}/snakemake-outputs"))
if workflow.workflow_settings.cache is not None:
    os.makedirs(OUTPUT_CACHE, exist_ok=True)
plan.check()  # cross-field checks: fail at parse time, before any job runs
# what the parse says once, not again for each seed's run (seeds, below)
SAYS = workflow.is_main_process and not config["seed_of"]
if plan.label_source_reason and SAYS:  # labels.source: auto
    print(f"labels: {config['labels']['source']} ({plan.label_source_reason})", file=sys.stderr)
if plan.schedule() and SAYS:  # a method sets the iterations (PROD): say what each is
    print("\n".join(f"iteration {it}: {plan.describe(it)}" for it in plan.iterations), file=sys.stderr)

# Where a job runs, which is not what it computes, reaches its shell through the environment (shell.prefix):
# - the interpreter that runs Snakemake, first on PATH, so that `python` in a rule is the pinned environment's
#   (requirements.txt); with `--sdm conda` the rule's `conda:` environment (environment.yml, the same pins)
#   provides it instead;
# - the package's folder (PYTHONPATH): jobs run `python -m pipeline` from the working directory (maybe
#   --directory elsewhere, maybe a cluster node);
# - the experiment's and the data's folders (PIPELINE_ROOT, PIPELINE_DATA_DIR), which `python -m pipeline` puts
#   in place of the `{root}` and `{data_dir}` tokens of its arguments (with seeds, the experiment's folder: a
#   further seed's paths are {root}/seed-K/..., so that every seed's run sets the same shell prefix).
#   Not `params`: Snakemake reruns a job whose params change and its between-workflow cache keys a job by
#   them (never by file names), so a folder in params would re-run a moved checkout and key teacher work by
#   experiment (pipeline.plan.ROOT_TOKEN).
# So `snakemake --lint` has nothing to say (tests/test_workflow.py fails on any lint).
CONDA_ENV = os.path.join(workflow.basedir, "environment.yml")
JOB_ENVIRONMENT = {  # shell words
    "PYTHONPATH": shlex.quote(workflow.basedir) + "${PYTHONPATH:+:$PYTHONPATH}",
    "PIPELINE_ROOT": shlex.quote(plan.shared_root),
    "PIPELINE_DATA_DIR": shlex.quote(plan.data_dir),
    # config warm_start: each job forked from a job server that has imported torch (pipeline.warm_start)
    "PIPELINE_WARM_START": "1" if config["warm_start"] else "0",
}
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    JOB_ENVIRONMENT["PATH"] = shlex.quote(os.path.dirname(sys.executable)) + ":$PATH"
# (Snakemake formats the prefix like a command: its braces are doubled.)
shell.prefix(
    "".join(f"export {name}={value}; " for name, value in JOB_ENVIRONMENT.items()).replace("{", "{{").replace("}", "}}")
)
R = plan.root
DATA = plan.data
# What each model job asks for; Snakemake lowers it to --cores on one machine, and a cluster profile
# can lower it further (max-threads) or per rule (set-threads).
JOB_THREADS = config["threads"]
# What a model job's matrix products compute in (`--precision`; pipeline.precision resolves auto on the node
# that runs the job): a param of every model rule, so that a change reruns the jobs, whose results differ.
PRECISION = config["precision"]
# Snakemake never assigns GPU ids; `device: cuda` asks the scheduler for one GPU per model job.
GPUS = 1 if config["device"].startswith("cuda") else 0


wildcard_constraints:
    it=r"\d+",
    # "hybrid" is the final student fused with BM25 (rule hybrid), not a model to evaluate or export; the
    # lookahead ends at the name's end, not the path's, or eval/test/hybrid/metrics.json would still match
    model=r"(?!hybrid(?![A-Za-z0-9._-]))[A-Za-z0-9._-]+",
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


# seeds: the experiment once per further seed, each its own run of this Snakefile in seed-K/ (a module with
# the seed's config, pipeline.plan.Plan.seed_configs) whose plan reads what the seed does not change from
# this run's folder, so that Snakemake's DAG makes it once. The data rules are left out of the seeds' runs:
# their outputs are the shared ones, which a second rule would make ambiguous; with splits.per_seed, each
# seed's run splits the training queries itself.
for seed_config in plan.seed_configs():
    seed_run = f"seed_{seed_config['seed']}_"

    module:
        name: seed_run
        snakefile:
            "Snakefile"
        config:
            seed_config

    # two statements that differ by split_training_queries: `exclude` takes rule names, not an expression
    if config["splits"]["per_seed"]:

        use rule * from seed_run exclude all, seeds, download, prepare, pseudo_queries, label_with_teacher as seed_run*

    else:

        use rule * from seed_run exclude all, seeds, download, prepare, split_training_queries, pseudo_queries, label_with_teacher as seed_run*


if config["seeds"]:

    rule seeds:
        # each model's mean, sd and per-seed figures over the seeds' runs (pipeline/seeds.py)
        input:
            [f"{root}/summary.json" for root in plan.seed_roots().values()],
        output:
            markdown=report(f"{R}/seeds.md", caption="report/seeds.rst", category="Summary"),
            json=f"{R}/seeds.json",
        log:
            f"{R}/logs/seeds.log",
        conda:
            CONDA_ENV
        params:
            args=lambda wc, input, output: to_json(
                seeds=list(plan.seed_roots()),
                summary_paths=list(input),
                out_markdown=output.markdown,
                out_json=output.json,
                experiment=config["experiment"],
                shared_from_seed=config["seed"],
                splits_per_seed=config["splits"]["per_seed"],
            ),
        shell:
            "python -m pipeline seeds {params.args:q} > {log} 2>&1"


rule all:
    default_target: True
    input:
        # the summary's table and figures too: Snakemake reruns a job for the missing outputs asked for only
        rules.summary.output,
        rules.seeds.output if config["seeds"] else [],


onsuccess:
    for summary in (f"{R}/summary.md", f"{R}/seeds.md"):
        if os.path.exists(summary):
            print(open(summary).read())
