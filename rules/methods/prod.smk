# PROD's data-progressive rounds: between scoring and training, keep the training queries the student
# still confuses (pipeline/methods/prod.py); the round's train job reads the selection.


rule prod_confusing:
    input:
        candidates=lambda wc: plan.mined_candidates(wc.it),
        qrels_train=DATA["qrels_train"],
        # the student that mined (its scores of the positives too) and the teacher that reranks its list
        student_scores=lambda wc: plan.scores_path(wc.it, f"student-it{int(wc.it) - 1}"),
        teacher_scores=lambda wc: plan.scores_path(wc.it, plan.iteration(wc.it)["teacher"]),
    output:
        candidates=f"{R}/it{{it}}/confusing.parquet",
        report=f"{R}/it{{it}}/confusing.json",
    log:
        f"{R}/logs/prod_confusing/it{{it}}.log",
    benchmark:
        f"{R}/benchmarks/prod_confusing/it{{it}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        # the settings alone, from wildcards: Snakemake tracks (and reruns on) only params
        # that do not derive from input or output, as the job's args do
        settings=to_json(**{k: config["prod"]["rounds"][k] for k in ("max_rank", "negatives")}),
        args=lambda wc, input, output: to_json(
            candidates_path=input.candidates,
            student_scores_path=input.student_scores,
            teacher_scores_path=input.teacher_scores,
            qrels_path=input.qrels_train,
            out_path=output.candidates,
            report_path=output.report,
            max_rank=config["prod"]["rounds"]["max_rank"],
            negatives=config["prod"]["rounds"]["negatives"],
            provenance={"iteration": int(wc.it)},
        ),
    shell:
        "python -m pipeline prod_confusing {params.args:q} > {log} 2>&1"
