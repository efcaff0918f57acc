# OnMKD: after both peers of an iteration are evaluated on dev, say which is better
# (pipeline/methods/onmkd.py); the summary's "Iterations:" shows it.


rule onmkd_peers:
    input:
        dev=lambda wc: [plan.metrics(f"student-it{wc.it}", "dev"), plan.metrics(f"student-it{wc.it}-peer", "dev")],
    output:
        f"{R}/it{{it}}/peers.json",
    log:
        f"{R}/logs/onmkd_peers/it{{it}}.log",
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(metric=config["splits"]["dev"]["metric"]),
        args=lambda wc, input, output: to_json(
            dev_metric_paths=list(input.dev),
            out_path=output[0],
            metric=config["splits"]["dev"]["metric"],
        ),
    shell:
        "python -m pipeline onmkd_peers {params.args:q} > {log} 2>&1"
