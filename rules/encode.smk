# Corpus embeddings (sharded) and their FAISS index, for any bi-encoder: teachers and students alike.


rule init_student:
    output:
        directory(f"{R}/students/it0"),
    log:
        f"{R}/logs/init_student.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        # peers only when a method trains some: the params of runs without them stay as they were (no rerun)
        settings=to_json(model=config["student"], **({"peers": plan.peers(1)} if plan.peers(1) else {})),
        args=lambda wc, output: to_json(
            model=dict(config["student"], name="student-it0"), out_dir=output[0], peers=plan.peers(1)
        ),
    shell:
        "python -m pipeline init_student {params.args:q} > {log} 2>&1"


rule encode:
    input:
        corpus=DATA["corpus"],
        model=lambda wc: plan.model_inputs(wc.model),
    output:
        f"{R}/embeddings/{{model}}/shard-{{shard}}-of-{{n}}.parquet",
    log:
        f"{R}/logs/encode/{{model}}-{{shard}}-of-{{n}}.log",
    # teacher work reused by the next experiment on the same data under `--cache` (README); a cached
    # rule may have no benchmark: (Snakemake could not fill it on a cache hit)
    cache: True
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=GPUS,
    params:
        precision=PRECISION,
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        # (the backend only when not the default: runs made before it existed keep their params, so no rerun)
        settings=lambda wc: to_json(
            model=plan.model(wc.model),
            include_title=config["include_title"],
            batch_size=config["encode"]["batch_size"],
            **({"backend": config["encode"]["backend"]} if config["encode"]["backend"] != "torch" else {}),
        ),
        args=lambda wc, input, output: to_json(
            corpus_path=input.corpus,
            model=plan.model(wc.model),
            out_path=output[0],
            shard=int(wc.shard),
            num_shards=int(wc.n),
            include_title=config["include_title"],
            device=config["device"],
            batch_size=config["encode"]["batch_size"],
            backend=config["encode"]["backend"],
        ),
    shell:
        "python -m pipeline encode {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule index:
    input:
        lambda wc: plan.shards(wc.model),
    output:
        directory(f"{R}/index/{{model}}"),
    log:
        f"{R}/logs/index/{{model}}.log",
    # teacher work reused by the next experiment on the same data under `--cache` (README); a cached
    # rule may have no benchmark: (Snakemake could not fill it on a cache hit)
    cache: True
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(**config["index"]),
        args=lambda wc, input, output: to_json(shard_paths=list(input), out_dir=output[0], **config["index"]),
    shell:
        "python -m pipeline index {params.args:q} --threads {threads} > {log} 2>&1"
