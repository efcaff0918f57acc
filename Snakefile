# Iterative knowledge distillation for dense passage retrieval.
#   snakemake --cores all                       # the default experiment (config.yaml)
#   snakemake --cores 2 --config data_dir=PATH  # any BEIR-format folder
# Each rule calls one function of the `pipeline` package through `python -m pipeline STEP`.

import copy
import json
import os
import re
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")

PY = sys.executable
# Jobs run `python -m pipeline` from the working directory (maybe --directory elsewhere, maybe a cluster node).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
EXP = config["experiment"]
R = f"{config['results_dir']}/{EXP}"
# What each model job asks for; Snakemake lowers it to --cores on one machine, and a cluster profile
# can lower it further (max-threads) or per rule (set-threads).
JOB_THREADS = config["threads"]
STUDENT = re.compile(r"^student-it(\d+)$")
# Snakemake never assigns GPU ids; `device: cuda` asks the scheduler for one GPU per model job.
GPUS = 1 if config["device"].startswith("cuda") else 0


def deep_merge(base, update):
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def cfg(it):
    """The config of iteration `it`: the base config with `overrides[it]` deep-merged over it."""
    return deep_merge(config, config["overrides"].get(str(it), {}))


def model_cfg(name):
    """The settings of a named model, or of the student of an iteration (`student-itK`)."""
    match = STUDENT.match(name)
    if match:
        student = dict(config["student"], layers=None, source=f"{R}/students/it{match.group(1)}")
        return dict(student, name=name)
    if name not in config["models"]:
        raise ValueError(f"config: unknown model {name!r}; models are {sorted(config['models'])}")
    return dict(config["models"][name], name=name)


def bi_encoders_of(name):
    """The bi-encoders whose corpus embeddings scoring with `name` needs (itself, or fusion members)."""
    model = model_cfg(name)
    if model["kind"] == "bi-encoder":
        return [name]
    if model["kind"] == "fusion":
        return sorted({b for member in model["members"] for b in bi_encoders_of(member)})
    return []


def shards(model):
    n = config["encode"]["shards"]
    return [f"{R}/embeddings/{model}/shard-{k}-of-{n}.parquet" for k in range(n)]


def miner_of(it):
    c = cfg(it)["mine"]
    name = c["first_miner"] if int(it) == 1 else c["miner"]
    return f"student-it{int(it) - 1}" if name == "student" else name


def teachers_of(it):
    """Scorers whose scores the student of iteration `it` learns from (the teacher, for now)."""
    return [cfg(it)["teacher"]]


def to_json(**kwargs):
    return json.dumps(kwargs, sort_keys=True)


def models_of(name):
    """The configured models a scorer needs to be rebuilt: itself and, for a fusion, its members."""
    model = model_cfg(name)
    names = {name} | {n for member in model.get("members", {}) for n in models_of(member)}
    return {n: dict(config["models"][n], name=n) for n in sorted(names) if n in config["models"]}


def check_config():
    """Cross-field checks the schema cannot express; fail at parse time, before any job runs."""
    problems = []
    models = config["models"]
    for name, model in models.items():
        if model["kind"] in ("bi-encoder", "cross-encoder") and not model.get("source"):
            problems.append(f"models.{name}: a {model['kind']} needs a source")
        for member in model.get("members", {}) if model["kind"] == "fusion" else ():
            if member not in models:
                problems.append(f"models.{name}.members: unknown model {member!r}")
        if model["kind"] == "fusion" and not model.get("members"):
            problems.append(f"models.{name}: a fusion needs members")
    if config["student"]["kind"] != "bi-encoder":
        problems.append("student.kind: the student must be a bi-encoder")
    for it in range(1, config["iterations"] + 1):
        c = cfg(it)
        where = f"iteration {it}"
        if c["teacher"] not in models:
            problems.append(f"{where}: teacher: unknown model {c['teacher']!r}; models are {sorted(models)}")
        miner = c["mine"]["first_miner"] if it == 1 else c["mine"]["miner"]
        if miner != "student":
            if miner not in models:
                problems.append(f"{where}: mine: unknown miner {miner!r}")
            elif models[miner]["kind"] not in ("bm25", "bi-encoder"):
                problems.append(f"{where}: mine: {miner!r} is a {models[miner]['kind']}; miners are bm25 or bi-encoders")
        low, high = c["mine"]["window"]
        if not low < high:
            problems.append(f"{where}: mine.window [{low}, {high}) is empty")
        warm = c["warmup"]
        if warm["epochs"] > 0 and it in warm["iterations"]:
            name = warm["teacher"] or c["teacher"]
            if models.get(name, {}).get("kind") != "bi-encoder":
                problems.append(f"{where}: warmup needs a bi-encoder teacher; set warmup.teacher (got {name!r})")
        if c["train"]["kd_in_batch"]:
            for name in teachers_of(it):
                if models.get(name, {}).get("kind") != "bi-encoder":
                    problems.append(f"{where}: train.kd_in_batch needs bi-encoder teachers; {name!r} is not one")
    if problems:
        raise ValueError("config: " + "; ".join(problems))


check_config()


DATA = {
    "corpus": f"{R}/data/corpus.parquet",
    "queries": f"{R}/data/queries.parquet",
    "qrels_train": f"{R}/data/qrels-{config['splits']['train']}.parquet",
    "qrels_test": f"{R}/data/qrels-{config['splits']['test']}.parquet",
}

wildcard_constraints:
    it=r"\d+",
    model=r"[A-Za-z0-9._-]+",
    scorer=r"[A-Za-z0-9._-]+",
    shard=r"\d+",
    n=r"\d+",


include: "rules/data.smk"
include: "rules/encode.smk"
include: "rules/distill.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        f"{R}/summary.md",
        f"{R}/summary.json",
    default_target: True


onsuccess:
    summary = f"{R}/summary.md"
    if os.path.exists(summary):
        print(open(summary).read())
