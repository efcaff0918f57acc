# MTA4DPR between scoring and training (pipeline/methods/mta4dpr.py): decide the iteration's pool of
# assistants (the previous student in place of the worst one when it beats it on dev), the previous
# student's hard queries, and the negatives (RRF of the pool's scores); training reads the result.

from pipeline.methods.mta4dpr import select_args, select_inputs


rule mta4dpr_select:
    input:
        unpack(lambda wc: select_inputs(plan, wc.it)),
    output:
        candidates=f"{R}/it{{it}}/mta4dpr/candidates.parquet",
        report=f"{R}/it{{it}}/mta4dpr/pool.json",
    log:
        f"{R}/logs/mta4dpr_select/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/mta4dpr_select/it{{it}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=lambda wc: to_json(settings=plan.iteration(wc.it)["mta4dpr"], metric=config["splits"]["dev"]["metric"]),
        args=lambda wc, input, output: to_json(
            **select_args(plan, wc.it, input),
            out_path=output.candidates,
            report_path=output.report,
            provenance={"iteration": int(wc.it)},
        ),
    shell:
        "python -m pipeline mta4dpr_select {params.args:q} > {log} 2>&1"
