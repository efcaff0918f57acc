# One distillation iteration: mine negatives, score them with the teacher(s), train the student.


def miner_inputs(wildcards):
    miner = model_cfg(miner_of(wildcards.it))
    return [f"{R}/index/{miner['name']}"] if miner["kind"] == "bi-encoder" else []


rule mine:
    input:
        **DATA,
        miner=miner_inputs,
    output:
        f"{R}/it{{it}}/candidates.parquet",
    params:
        args=lambda wc, input, output: to_json(
            queries_path=DATA["queries"],
            qrels_path=DATA["qrels_train"],
            corpus_path=DATA["corpus"],
            index_dir=input.miner[0] if input.miner else None,
            out_path=output[0],
            miner=model_cfg(miner_of(wc.it)),
            depth=cfg(wc.it)["mine"]["depth"],
            window=cfg(wc.it)["mine"]["window"],
            include_title=config["include_title"],
            device=config["device"],
            provenance={"iteration": int(wc.it), "experiment": EXP},
        ),
    log:
        f"{R}/logs/mine/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/mine/it{{it}}.tsv"
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS,
    shell:
        "{PY} -m pipeline mine {params.args:q} --threads {threads} > {log} 2>&1"


def scorer_inputs(wildcards):
    return [p for b in bi_encoders_of(wildcards.scorer) for p in shards(b)]


rule score:
    input:
        **DATA,
        candidates=f"{R}/it{{it}}/candidates.parquet",
        embeddings=scorer_inputs,
    output:
        f"{R}/it{{it}}/scores/{{scorer}}.parquet",
    params:
        args=lambda wc, output: to_json(
            candidates_path=f"{R}/it{wc.it}/candidates.parquet",
            qrels_path=DATA["qrels_train"],
            queries_path=DATA["queries"],
            corpus_path=DATA["corpus"],
            out_path=output[0],
            scorer=model_cfg(wc.scorer),
            models=models_of(wc.scorer),
            embedding_shards={b: shards(b) for b in bi_encoders_of(wc.scorer)},
            include_title=config["include_title"],
            device=config["device"],
            provenance={"iteration": int(wc.it), "experiment": EXP},
        ),
    log:
        f"{R}/logs/score/it{{it}}-{{scorer}}.log",
    benchmark:
        f"{R}/benchmarks/score/it{{it}}-{{scorer}}.tsv"
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS,
    shell:
        "{PY} -m pipeline score {params.args:q} --threads {threads} > {log} 2>&1"


def warmup_teacher(it):
    c = cfg(it)["warmup"]
    if c["epochs"] <= 0 or int(it) not in c["iterations"]:
        return None
    return c["teacher"] or cfg(it)["teacher"]


def train_inputs(wildcards):
    it = int(wildcards.it)
    inputs = {
        "student": f"{R}/students/it{it - 1}",
        "candidates": f"{R}/it{it}/candidates.parquet",
        "scores": [f"{R}/it{it}/scores/{t}.parquet" for t in teachers_of(it)],
    }
    teacher = warmup_teacher(it)
    if teacher and "corpus" in cfg(it)["warmup"]["texts"]:
        inputs["warmup"] = shards(teacher)
    if cfg(it)["train"]["kd_in_batch"]:
        inputs["teacher_embeddings"] = [p for t in teachers_of(it) for b in bi_encoders_of(t) for p in shards(b)]
    return inputs


def train_args(wildcards, output):
    it = int(wildcards.it)
    c = cfg(it)
    teacher = warmup_teacher(it)
    warmup = dict(c["warmup"], epochs=c["warmup"]["epochs"] if teacher else 0)
    warmup.pop("iterations"), warmup.pop("teacher")
    return to_json(
        student_dir=f"{R}/students/it{it - 1}",
        out_dir=output[0],
        candidates_path=f"{R}/it{it}/candidates.parquet",
        score_paths={t: f"{R}/it{it}/scores/{t}.parquet" for t in teachers_of(it)},
        qrels_path=DATA["qrels_train"],
        queries_path=DATA["queries"],
        corpus_path=DATA["corpus"],
        settings=c["train"],
        warmup=warmup,
        warmup_teacher=model_cfg(teacher) if teacher else None,
        warmup_teacher_shards=shards(teacher) if teacher else [],
        scratch_dir=f"{R}/scratch/train-it{it}",
        include_title=config["include_title"],
        device=config["device"],
        seed=config["seed"] + it,
        provenance={"iteration": it, "experiment": EXP},
        teacher_models={n: m for t in teachers_of(it) for n, m in models_of(t).items()},
        teacher_embedding_shards={b: shards(b) for t in teachers_of(it) for b in bi_encoders_of(t)},
    )


rule train:
    # iteration 0 is init_student's; without this, a job run on a cluster node (where only `train` is an
    # allowed rule) would see students/it0 as train's output and try to rebuild it from students/it-1
    wildcard_constraints:
        it=r"[1-9]\d*",
    input:
        unpack(train_inputs),
        **DATA,
    output:
        directory(f"{R}/students/it{{it}}"),
    params:
        args=train_args,
    log:
        f"{R}/logs/train/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/train/it{{it}}.tsv"
    threads: JOB_THREADS
    resources:
        mem_mb=12000,
        runtime=720,
        gpu=GPUS,
    shell:
        "{PY} -m pipeline train {params.args:q} --threads {threads} > {log} 2>&1"
