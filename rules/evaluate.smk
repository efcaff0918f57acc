# Evaluation on the test split: every student iteration, the untrained student, and the teacher.


rule evaluate:
    input:
        unpack(lambda wc: plan.eval_inputs(wc.model)),
    output:
        metrics=f"{R}/eval/{{model}}/metrics.json",
        run=f"{R}/eval/{{model}}/run.trec",
    params:
        args=lambda wc, input, output: to_json(
            model=plan.model(wc.model),
            role=plan.role_of(wc.model)[0],
            iteration=plan.role_of(wc.model)[1],
            queries_path=input.queries,
            qrels_path=input.qrels_test,
            corpus_path=input.corpus,
            out_dir=os.path.dirname(output.metrics),
            depth=config["evaluate"]["depth"],
            rerank_depth=config["evaluate"]["rerank_depth"],
            index_dir=input.get("index"),
            embedding_shards=plan.embedding_shards([wc.model]),
            models=plan.models_of(wc.model),
            include_title=config["include_title"],
            device=config["device"],
        ),
    log:
        f"{R}/logs/evaluate/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{model}}.tsv"
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS,
    shell:
        "{PY} -m pipeline evaluate {params.args:q} --threads {threads} > {log} 2>&1"


rule summary:
    input:
        [f"{R}/eval/{m}/metrics.json" for m in plan.evaluated_models()],
    output:
        markdown=f"{R}/summary.md",
        json=f"{R}/summary.json",
    params:
        args=lambda wc, input, output: to_json(
            metric_paths=list(input), out_markdown=output.markdown, out_json=output.json, experiment=config["experiment"]
        ),
    log:
        f"{R}/logs/summary.log",
    shell:
        "{PY} -m pipeline summary {params.args:q} > {log} 2>&1"
