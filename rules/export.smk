# A model exported for serving (ONNX fp32, ONNX int8, OpenVINO): by default the last iteration's student,
# each format checked against PyTorch on the corpus's first passages in the job, and those of
# export.evaluate (the quantized ones) evaluated as their own model (student-itN.<format>) through encode,
# index and evaluate.
# Any bi-encoder, teacher or student, is a target: snakemake RESULTS/EXPERIMENT/export/student-it1


rule export:
    input:
        model=lambda wc: plan.model_inputs(wc.model),
        corpus=DATA["corpus"],
    output:
        directory(f"{R}/export/{{model}}"),
    log:
        f"{R}/logs/export/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/export/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: JOB_THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(model=plan.model(wc.model), formats=config["export"]["formats"]),
        args=lambda wc, input, output: to_json(
            model=plan.model(wc.model),
            out_dir=output[0],
            formats=config["export"]["formats"],
            corpus_path=input.corpus,
            include_title=config["include_title"],
        ),
    shell:
        "python -m pipeline export {params.args:q} --threads {threads} > {log} 2>&1"
