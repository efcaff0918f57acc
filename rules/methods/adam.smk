# ADAM's dark examples: between mining and scoring, each training query gets synthetic passages of
# moderate relevance (pipeline/methods/adam.py); scoring and training read the extended candidates.


rule adam_dark:
    input:
        candidates=lambda wc: plan.mined_candidates(wc.it),
        qrels_train=DATA["qrels_train"],
        corpus=DATA["corpus"],
    output:
        f"{R}/it{{it}}/dark-candidates.parquet",
    log:
        f"{R}/logs/adam_dark/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/adam_dark/it{{it}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(
            settings=plan.iteration(wc.it)["adam"],
            seed=config["seed"] + int(wc.it),
            include_title=config["include_title"],
        ),
        args=lambda wc, input, output: to_json(
            candidates_path=input.candidates,
            qrels_path=input.qrels_train,
            corpus_path=input.corpus,
            out_path=output[0],
            settings=plan.iteration(wc.it)["adam"],
            seed=config["seed"] + int(wc.it),
            include_title=config["include_title"],
            provenance={"iteration": int(wc.it)},
        ),
    shell:
        "python -m pipeline adam_dark {params.args:q} > {log} 2>&1"
