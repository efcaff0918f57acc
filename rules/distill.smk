# One distillation iteration: mine negatives, score them with the scorers the methods ask for, train.


rule mine:
    input:
        **DATA,
        miner=lambda wc: plan.miner_inputs(wc.it),
    output:
        f"{R}/it{{it}}/candidates.parquet",
    log:
        f"{R}/logs/mine/it{{it}}.log",
    # teacher work reused by the next experiment on the same data under `--cache` (README); a cached
    # rule may have no benchmark: (Snakemake could not fill it on a cache hit)
    cache: True
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS,
    params:
        precision=PRECISION,
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(
            miner=plan.model(plan.miner_of(wc.it)),
            **{k: plan.iteration(wc.it)["mine"][k] for k in ("depth", "window")},
            include_title=config["include_title"],
        ),
        args=lambda wc, input, output: to_json(
            queries_path=input.queries,
            qrels_path=input.qrels_train,
            corpus_path=input.corpus,
            index_dir=input.miner[0] if input.miner else None,
            out_path=output[0],
            miner=plan.model(plan.miner_of(wc.it)),
            depth=plan.iteration(wc.it)["mine"]["depth"],
            window=plan.iteration(wc.it)["mine"]["window"],
            include_title=config["include_title"],
            device=config["device"],
            provenance={"iteration": int(wc.it)},
        ),
    shell:
        "python -m pipeline mine {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule score:
    input:
        **DATA,
        candidates=lambda wc: plan.scored_candidates(wc.it),
        embeddings=lambda wc: [p for s in plan.embedding_shards([wc.scorer]).values() for p in s],
        models=lambda wc: plan.scorer_inputs(wc.scorer),
    output:
        f"{R}/it{{it}}/scores/{{scorer}}.parquet",
    log:
        f"{R}/logs/score/it{{it}}-{{scorer}}.log",
    # teacher work reused by the next experiment on the same data under `--cache` (README); a cached
    # rule may have no benchmark: (Snakemake could not fill it on a cache hit)
    cache: True
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS,
    params:
        precision=PRECISION,
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(
            scorer=plan.model(wc.scorer), models=plan.models_of(wc.scorer), include_title=config["include_title"]
        ),
        args=lambda wc, input, output: to_json(
            candidates_path=input.candidates,
            qrels_path=input.qrels_train,
            queries_path=input.queries,
            corpus_path=input.corpus,
            out_path=output[0],
            scorer=plan.model(wc.scorer),
            models=plan.models_of(wc.scorer),
            embedding_shards=plan.embedding_shards([wc.scorer]),
            include_title=config["include_title"],
            device=config["device"],
            provenance={"iteration": int(wc.it)},
        ),
    shell:
        "python -m pipeline score {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule train:
    input:
        unpack(lambda wc: plan.train_inputs(wc.it)),
    output:
        directory(f"{R}/students/it{{it}}"),
    log:
        f"{R}/logs/train/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/train/it{{it}}.tsv"
    # iteration 0 is init_student's; without this, a job run on a cluster node (where only `train` is an
    # allowed rule) would see students/it0 as train's output and try to rebuild it from students/it-1
    wildcard_constraints:
        it=r"[1-9]\d*",
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=lambda wc: 12000 * plan.train_processes(wc.it),
        runtime=720,
        # one GPU per data-parallel process (train.processes)
        gpu=lambda wc: GPUS * plan.train_processes(wc.it),
    params:
        precision=PRECISION,
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: plan.train_settings(wc.it),
        args=lambda wc, input, output: plan.train_args(wc.it, input, output),
        launcher=lambda wc: plan.train_launcher(wc.it),
    shell:
        "python {params.launcher} {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"
