# Evaluation on the test split: every student iteration, the untrained student, and the teacher.


def eval_inputs(wildcards):
    model = model_cfg(wildcards.model)
    inputs = dict(DATA)
    if model["kind"] == "bi-encoder":
        inputs["index"] = f"{R}/index/{wildcards.model}"
        inputs["shards"] = shards(wildcards.model)
    else:
        inputs["shards"] = [p for b in bi_encoders_of(wildcards.model) for p in shards(b)]
    return inputs


def role_of(name):
    match = STUDENT.match(name)
    return ("student", int(match.group(1))) if match else ("teacher", None)


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        metrics=f"{R}/eval/{{model}}/metrics.json",
        run=f"{R}/eval/{{model}}/run.trec",
    params:
        args=lambda wc, output: to_json(
            model=model_cfg(wc.model),
            role=role_of(wc.model)[0],
            iteration=role_of(wc.model)[1],
            queries_path=DATA["queries"],
            qrels_path=DATA["qrels_test"],
            corpus_path=DATA["corpus"],
            out_dir=f"{R}/eval/{wc.model}",
            depth=config["evaluate"]["depth"],
            rerank_depth=config["evaluate"]["rerank_depth"],
            index_dir=f"{R}/index/{wc.model}" if model_cfg(wc.model)["kind"] == "bi-encoder" else None,
            embedding_shards={b: shards(b) for b in bi_encoders_of(wc.model)},
            models=models_of(wc.model),
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


def evaluated_models():
    students = [f"student-it{k}" for k in range(config["iterations"] + 1)]
    teachers = sorted({cfg(it)["teacher"] for it in range(1, config["iterations"] + 1)})
    return (teachers if config["evaluate"]["teacher"] else []) + students


rule summary:
    input:
        [f"{R}/eval/{m}/metrics.json" for m in evaluated_models()],
    output:
        markdown=f"{R}/summary.md",
        json=f"{R}/summary.json",
    params:
        args=lambda wc, input, output: to_json(
            metric_paths=list(input), out_markdown=output.markdown, out_json=output.json, experiment=EXP
        ),
    log:
        f"{R}/logs/summary.log",
    shell:
        "{PY} -m pipeline summary {params.args:q} > {log} 2>&1"
