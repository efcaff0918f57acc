# Evaluation: every model on the test split (the table people read) and on the dev split (held out of
# training; it chooses the final student and MTA4DPR's pool) in one job, the final student, the summary.


rule evaluate:
    input:
        unpack(lambda wc: plan.eval_inputs(wc.model)),
    output:
        test_metrics=f"{R}/eval/test/{{model}}/metrics.json",
        test_run=f"{R}/eval/test/{{model}}/run.trec",
        dev_metrics=f"{R}/eval/dev/{{model}}/metrics.json",
        dev_run=f"{R}/eval/dev/{{model}}/run.trec",
    log:
        f"{R}/logs/evaluate/{{model}}.log",
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
            model=plan.model(wc.model),
            models=plan.models_of(wc.model),
            depth=config["evaluate"]["depth"],
            rerank_depth=config["evaluate"]["rerank_depth"],
            include_title=config["include_title"],
        ),
        args=lambda wc, input, output: to_json(
            model=plan.model(wc.model),
            role=plan.evaluated_role(wc.model),
            iteration=plan.role_of(wc.model)[1],
            phase=plan.role_of(wc.model)[2],
            queries_path=input.queries,
            corpus_path=input.corpus,
            splits={
                split: {"qrels_path": input[f"qrels_{split}"], "out_dir": os.path.dirname(output[f"{split}_metrics"])}
                for split in plan.EVAL_SPLITS
            },
            depth=config["evaluate"]["depth"],
            rerank_depth=config["evaluate"]["rerank_depth"],
            index_dir=input.get("index"),
            embedding_shards=plan.embedding_shards([wc.model]),
            models=plan.models_of(wc.model),
            include_title=config["include_title"],
            device=config["device"],
        ),
    shell:
        "python -m pipeline evaluate {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule select_student:
    input:
        dev=[plan.metrics(m, "dev") for m in plan.students()],
        splits=DATA["splits_report"],
        dev_qrels=DATA["qrels_dev"],
    output:
        f"{R}/final.json",
    log:
        f"{R}/logs/select_student.log",
    conda:
        CONDA_ENV
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(
            metric=config["splits"]["dev"]["metric"],
            select=config["splits"]["dev"]["select"],
            fallback=config["splits"]["dev"]["fallback"],
        ),
        args=lambda wc, input, output: to_json(
            dev_metric_paths=list(input.dev),
            splits_report=input.splits,
            out_path=output[0],
            metric=config["splits"]["dev"]["metric"],
            select=config["splits"]["dev"]["select"],
            dev_qrels_path=input.dev_qrels,
            fallback=config["splits"]["dev"]["fallback"],
            sources={m: plan.model(m)["source"] for m in plan.students()},
        ),
    shell:
        "python -m pipeline select {params.args:q} > {log} 2>&1"


# The final student fused with BM25 (pipeline/hybrid.py): a row of the summary and export/hybrid/ to serve.
if plan.hybrid:

    rule hybrid:
        input:
            unpack(lambda wc: plan.hybrid_inputs()),
        output:
            test_metrics=plan.metrics("hybrid"),
            test_run=f"{R}/eval/test/hybrid/run.trec",
            dev_metrics=plan.metrics("hybrid", "dev"),
            dev_run=f"{R}/eval/dev/hybrid/run.trec",
            export=directory(f"{R}/export/hybrid"),
        log:
            f"{R}/logs/hybrid.log",
        conda:
            CONDA_ENV
        threads: JOB_THREADS
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPUS,
        params:
            precision=PRECISION,
            # the settings alone, not derived from input or output (Snakemake reruns a job on those only)
            settings=lambda wc: to_json(
                **config["hybrid"],
                lexical_model=plan.model(config["hybrid"]["lexical"]),
                stand_in=plan.hybrid_stand_in_settings(),
                rerank_depth=config["evaluate"]["rerank_depth"],
                include_title=config["include_title"],
            ),
            args=lambda wc, input, output: plan.hybrid_args(input, output),
        shell:
            "python -m pipeline hybrid {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"


rule summary:
    # the table and the figures of `snakemake --report` (pipeline/report.py); Snakemake adds each rule's runtime
    input:
        test=[plan.metrics(m) for m in plan.evaluated_models()] + plan.hybrid_metrics(),
        # every evaluated model's dev figure, the teachers' and baselines' too (the job that evaluates a model
        # on test evaluates it on dev): what the students are chosen by, beside what they learnt from
        dev=[plan.metrics(m, "dev") for m in plan.evaluated_models()] + plan.hybrid_metrics("dev"),
        final=f"{R}/final.json",
        reports=[path for it in plan.iterations for path in plan.reports(it)],
        students=[f"{R}/students/it{it}" for it in plan.iterations],
        exports=plan.export_dirs(),
    output:
        markdown=f"{R}/summary.md",
        json=f"{R}/summary.json",
        table=report(f"{R}/report/summary.html", caption="../report/summary.rst", category="Summary"),
        ndcg=report(
            f"{R}/report/ndcg-per-iteration.svg", caption="../report/ndcg-per-iteration.rst", category="Quality"
        ),
        quality_speed=report(f"{R}/report/quality-speed.svg", caption="../report/quality-speed.rst", category="Quality"),
        training=report(f"{R}/report/training-curves.svg", caption="../report/training-curves.rst", category="Training"),
    log:
        f"{R}/logs/summary.log",
    conda:
        CONDA_ENV
    params:
        args=lambda wc, input, output: to_json(
            metric_paths=list(input.test),
            dev_metric_paths=list(input.dev),
            final_path=input.final,
            out_markdown=output.markdown,
            out_json=output.json,
            experiment=plan.experiment_name,
            seed=config["seed"],
            iterations=[
                {"iteration": it, "label": plan.describe(it), "reports": plan.reports(it)} for it in plan.iterations
            ],
            training_paths={f"it{it}": f"{path}/training.json" for it, path in zip(plan.iterations, input.students)},
            export_paths=[f"{path}/export.json" for path in input.exports],
            figures={
                "table": output.table,
                "ndcg": output.ndcg,
                "quality_speed": output.quality_speed,
                "training": output.training,
            },
        ),
    shell:
        "python -m pipeline summary {params.args:q} > {log} 2>&1"
