# Models the workflow makes before they serve. Fine-tunes (models.<name>.finetune): mine their hard negatives on
# the training split, fine-tune, save into models/<name>/. Any rule that loads such a model asks for
# that folder (plan.model_inputs), so it is made first and once.


rule mine_for_finetune:
    input:
        **DATA,
        miner=lambda wc: plan.finetune_miner_inputs(wc.model),
    output:
        f"{R}/finetune/{{model}}/candidates.parquet",
    log:
        f"{R}/logs/finetune/{{model}}-mine.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{model}}-mine.tsv"
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
            miner=plan.model(plan.finetune_settings(wc.model)["miner"]),
            settings=plan.finetune_settings(wc.model),
            include_title=config["include_title"],
        ),
        args=lambda wc, input, output: to_json(
            queries_path=input.queries,
            qrels_path=input.qrels_train,
            corpus_path=input.corpus,
            index_dir=input.miner[0] if input.miner else None,
            out_path=output[0],
            miner=plan.model(plan.finetune_settings(wc.model)["miner"]),
            depth=plan.finetune_settings(wc.model)["depth"],
            window=plan.finetune_settings(wc.model)["window"],
            include_title=config["include_title"],
            device=config["device"],
            provenance={"finetune": wc.model},
        ),
    shell:
        "python -m pipeline mine {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule finetune:
    input:
        corpus=DATA["corpus"],
        queries=DATA["queries"],
        qrels_train=DATA["qrels_train"],
        candidates=f"{R}/finetune/{{model}}/candidates.parquet",
    output:
        directory(f"{R}/models/{{model}}"),
    log:
        f"{R}/logs/finetune/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=12000,
        runtime=240,
        gpu=GPUS,
    params:
        precision=PRECISION,
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(
            model=plan.config["models"][wc.model], seed=config["seed"], include_title=config["include_title"]
        ),
        args=lambda wc, input, output: plan.finetune_args(wc.model, input, output),
    shell:
        "python -m pipeline finetune {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


# A fusion whose weights are chosen on the judged training queries (models.<name>.choose_weights, with
# labels.source qrels or qrels+teacher): every rule that scores with it asks for the choice
# (plan.model_inputs), so it is made first and once.


rule choose_fusion_weights:
    input:
        unpack(lambda wc: plan.weight_choice_inputs(wc.model)),
    output:
        f"{R}/fusion-weights/{{model}}.json",
    log:
        f"{R}/logs/fusion-weights/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/fusion-weights/{{model}}.tsv"
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
        settings=lambda wc: to_json(**plan.weight_choice_settings(wc.model)),
        args=lambda wc, input, output: plan.weight_choice_args(wc.model, input, output),
    shell:
        "python -m pipeline choose_fusion_weights {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"
