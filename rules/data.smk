# Data: fetch (default SciFact only) and validate a BEIR folder into Parquet.

DATA_DIR = config["data_dir"] or f"{config['cache_dir']}/beir/scifact"


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
        "{PY} -m pipeline download {params.args:q} > {log} 2>&1"


rule prepare:
    input:
        corpus=f"{DATA_DIR}/corpus.jsonl",
        queries=f"{DATA_DIR}/queries.jsonl",
        qrels=[f"{DATA_DIR}/qrels/{s}.tsv" for s in sorted(set(config["splits"].values()))],
    output:
        **DATA,
        report=f"{R}/data/report.json",
    params:
        args=to_json(
            data_dir=DATA_DIR,
            out_dir=f"{R}/data",
            splits=sorted(set(config["splits"].values())),
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
        "{PY} -m pipeline prepare {params.args:q} > {log} 2>&1"
