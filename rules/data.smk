# Data: fetch (default SciFact only) and validate a BEIR folder into Parquet.

DATA_DIR = plan.data_dir


rule download_scifact:
    output:
        corpus=f"{config['cache_dir']}/beir/scifact/corpus.jsonl",
        queries=f"{config['cache_dir']}/beir/scifact/queries.jsonl",
        qrels=[f"{config['cache_dir']}/beir/scifact/qrels/{s}.tsv" for s in ("train", "test")],
    params:
        args=to_json(out_dir=f"{config['cache_dir']}/beir/scifact"),
    log:
        f"{config['cache_dir']}/logs/download_scifact.log",
    resources:
        runtime=30,
    shell:
        "{PY} -m pipeline download {params.args:q} --root {R:q} > {log} 2>&1"


rule prepare:
    input:
        corpus=f"{DATA_DIR}/corpus.jsonl",
        queries=f"{DATA_DIR}/queries.jsonl",
        qrels=[f"{DATA_DIR}/qrels/{s}.tsv" for s in plan.prepared_splits],
    output:
        corpus=DATA["corpus"],
        queries=plan.prepared_queries,
        qrels=[plan.prepared_qrels(s) for s in plan.prepared_splits],
        report=f"{R}/data/report.json",
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(splits=plan.prepared_splits, include_title=config["include_title"], drop_empty_texts=config["drop_empty_texts"]),
        args=lambda wc, output: to_json(
            data_dir=DATA_DIR,
            out_dir=os.path.dirname(output.report),
            splits=plan.prepared_splits,
            include_title=config["include_title"],
            drop_empty_texts=config["drop_empty_texts"],
        ),
    log:
        f"{R}/logs/prepare.log",
    benchmark:
        f"{R}/benchmarks/prepare.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY} -m pipeline prepare {params.args:q} --root {R:q} --data-dir {DATA_DIR:q} > {log} 2>&1"


rule split_training_queries:
    input:
        qrels=plan.training_labels(),
        test=DATA["qrels_test"],
        dev=[plan.prepared_qrels(s) for s in filter(None, [config["splits"]["dev"]["split"]])],
    output:
        training=DATA["qrels_train"],
        dev=DATA["qrels_dev"],
        report=f"{R}/data/splits.json",
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(seed=config["seed"], train_queries=config["splits"]["train_queries"], dev=config["splits"]["dev"]),
        args=lambda wc, input, output: to_json(
            qrels_path=input.qrels,
            test_qrels_path=input.test,
            dev_qrels_path=input.dev[0] if input.dev else None,
            out_training=output.training,
            out_dev=output.dev,
            out_report=output.report,
            seed=config["seed"],
            train_queries=config["splits"]["train_queries"],
            dev=config["splits"]["dev"],
        ),
    log:
        f"{R}/logs/split_training_queries.log",
    shell:
        "{PY} -m pipeline split {params.args:q} --root {R:q} > {log} 2>&1"


# Training labels without judgments (labels.source: teacher; pipeline/labels.py): pseudo-queries made
# from the corpus, then the teacher's top-ranked passages as the positives of every training query.


if plan.teacher_labelled:

    if plan.pseudo_queries:

        rule pseudo_queries:
            input:
                queries=plan.prepared_queries,
                corpus=DATA["corpus"],
            output:
                DATA["queries"],
            params:
                # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
                # that do not derive from input or output, as the job's args do
                settings=to_json(seed=config["seed"], **config["labels"]["pseudo_queries"]),
                args=lambda wc, input, output: to_json(
                    queries_path=input.queries,
                    corpus_path=input.corpus,
                    out_path=output[0],
                    seed=config["seed"],
                    **config["labels"]["pseudo_queries"],
                ),
            log:
                f"{R}/logs/pseudo_queries.log",
            resources:
                mem_mb=4000,
                runtime=30,
            shell:
                "{PY} -m pipeline pseudo_queries {params.args:q} --root {R:q} > {log} 2>&1"

    rule label_with_teacher:
        input:
            unpack(lambda wc: plan.labelling_inputs()),
        output:
            qrels=f"{R}/data/qrels-teacher.parquet",
            report=f"{R}/data/labels.json",
        params:
            # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
            # that do not derive from input or output, as the job's args do
            settings=lambda wc: to_json(teacher=plan.model(plan.labeller), models=plan.models_of(plan.labeller), rerank_depth=config["evaluate"]["rerank_depth"], include_title=config["include_title"], **plan.labelling_settings()),
            args=lambda wc, input, output: plan.labelling_args(input, output),
        log:
            f"{R}/logs/label_with_teacher.log",
        benchmark:
            f"{R}/benchmarks/label_with_teacher.tsv"
        threads: JOB_THREADS
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPUS,
        shell:
            "{PY} -m pipeline label {params.args:q} --root {R:q} --threads {threads} > {log} 2>&1"
