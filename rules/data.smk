# Data: fetch (data_dir: null) and validate a BEIR folder into Parquet.

DATA_DIR = plan.data_dir


# Only with `data_dir: null`: the BEIR zip of `download.url` (SciFact by default), its sha256 checked before
# anything is extracted, into the cache folder that plan.data_dir names after it.
if plan.downloads:

    rule download:
        output:
            corpus=f"{DATA_DIR}/corpus.jsonl",
            queries=f"{DATA_DIR}/queries.jsonl",
            qrels=[f"{DATA_DIR}/qrels/{s}.tsv" for s in plan.prepared_splits],
        log:
            f"{config['cache_dir']}/logs/download-{os.path.basename(DATA_DIR)}.log",
        conda:
            CONDA_ENV
        resources:
            runtime=30,
        params:
            # a function: a string param is formatted like a wildcard pattern, and the args name {data_dir}
            settings=lambda wc: to_json(**config["download"]),
            args=lambda wc, output: to_json(
                out_dir=DATA_DIR, required=[os.path.relpath(f, DATA_DIR) for f in output], **config["download"]
            ),
        shell:
            "python -m pipeline download {params.args:q} > {log} 2>&1"


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
    log:
        f"{R}/logs/prepare.log",
    benchmark:
        f"{R}/benchmarks/prepare.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(
            splits=plan.prepared_splits,
            include_title=config["include_title"],
            drop_empty_texts=config["drop_empty_texts"],
        ),
        args=lambda wc, output: to_json(
            data_dir=DATA_DIR,
            out_dir=os.path.dirname(output.report),
            splits=plan.prepared_splits,
            include_title=config["include_title"],
            drop_empty_texts=config["drop_empty_texts"],
        ),
    shell:
        "python -m pipeline prepare {params.args:q} > {log} 2>&1"


rule split_training_queries:
    input:
        qrels=plan.training_labels(),
        # labels.source: qrels+teacher: the teacher's labels of the queries that are not judged
        teacher=[plan.teacher_labels] if plan.judged_training and plan.teacher_labelled else [],
        # labels.dev_depth > 1: the dev queries' labels are the teacher's graded top passages
        graded=plan.graded_dev_labels(),
        test=DATA["qrels_test"],
        dev=[plan.prepared_qrels(s) for s in filter(None, [config["splits"]["dev"]["split"]])],
    output:
        training=DATA["qrels_train"],
        dev=DATA["qrels_dev"],
        report=DATA["splits_report"],
    log:
        f"{R}/logs/split_training_queries.log",
    conda:
        CONDA_ENV
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(
            seed=config["seed"], train_queries=config["splits"]["train_queries"], dev=config["splits"]["dev"]
        ),
        args=lambda wc, input, output: to_json(
            qrels_path=input.qrels,
            test_qrels_path=input.test,
            dev_qrels_path=input.dev[0] if input.dev else None,
            teacher_qrels_path=input.teacher[0] if input.teacher else None,
            graded_dev_path=input.graded[0] if input.graded else None,
            out_training=output.training,
            out_dev=output.dev,
            out_report=output.report,
            seed=config["seed"],
            train_queries=config["splits"]["train_queries"],
            dev=config["splits"]["dev"],
        ),
    shell:
        "python -m pipeline split {params.args:q} > {log} 2>&1"


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
            log:
                f"{R}/logs/pseudo_queries.log",
            conda:
                CONDA_ENV
            resources:
                mem_mb=4000,
                runtime=30,
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
            shell:
                "python -m pipeline pseudo_queries {params.args:q} > {log} 2>&1"

    rule label_with_teacher:
        input:
            unpack(lambda wc: plan.labelling_inputs()),
        output:
            qrels=plan.teacher_labels,
            graded=plan.teacher_graded_labels,
            report=f"{R}/data/labels.json",
        log:
            f"{R}/logs/label_with_teacher.log",
        benchmark:
            f"{R}/benchmarks/label_with_teacher.tsv"
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
                teacher=plan.model(plan.labeller),
                models=plan.models_of(plan.labeller),
                rerank_depth=config["evaluate"]["rerank_depth"],
                include_title=config["include_title"],
                **plan.labelling_settings(),
            ),
            args=lambda wc, input, output: plan.labelling_args(input, output),
        shell:
            "python -m pipeline label {params.args:q} --threads {threads} --precision {params.precision} > {log} 2>&1"
