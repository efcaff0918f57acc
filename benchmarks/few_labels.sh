#!/usr/bin/env bash
# SciFact with few training labels: the default config with the training qrels cut to a seeded sample of
# 30 and 100 queries, and with all 809. Per size: the warmed-up student (label-free), each iteration's
# student, and the final student the dev split picked; writes benchmarks/results/scifact-few-labels.json.
#   bash benchmarks/few_labels.sh                                  # sizes 30 100 all
#   FEW_LABELS_SIZES="30 100" ALL_RUN=results/bench-scifact bash benchmarks/few_labels.sh
#     (the row for all 809 queries from an existing default run, e.g. make bench's)
#   REUSE_FROM=DIR: copy what does not depend on the training queries (prepared data, the teacher's and
#     the untrained student's corpus embeddings and indexes) from another run on the same data instead
#     of recomputing it (mtimes kept; run with --rerun-triggers mtime). Wall times then exclude it.
#   FEW_LABELS_PRESET="configs/label-free.yaml benchmarks/labels-auto.yaml" FEW_LABELS_NAME=few-labels-fusion
#     BENCH_OUT=...: config files read after config.yaml (and before the sample size), runs named NAME-<size>
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
OUT=${BENCH_OUT:-benchmarks/results/scifact-few-labels.json}
BIN=.venv/bin
# shellcheck disable=SC2206
PRESET=(${FEW_LABELS_PRESET:-})
runs=()
for n in ${FEW_LABELS_SIZES:-30 100 all}; do
    exp=${FEW_LABELS_NAME:-few-labels}-$n
    sample=$([ "$n" = all ] && echo null || echo "$n")
    rm -rf "results/$exp"
    extra=()
    if [ -n "${REUSE_FROM:-}" ]; then
        mkdir -p "results/$exp"
        (cd "$REUSE_FROM" && cp -a --parents data/corpus.parquet data/queries.parquet data/qrels-*.parquet \
            data/report.json students/it0 embeddings/minilm-l6 embeddings/student-it0 index/minilm-l6 \
            index/student-it0 "$OLDPWD/results/$exp/")
        extra=(--rerun-triggers mtime)
    fi
    mkdir -p "results/$exp"
    # a config file, not --config: Snakemake reads a nested --config value's numbers as strings
    printf 'splits:\n  train_queries: %s\n' "$sample" > "results/$exp/few-labels.yaml"
    start=$(date +%s.%N)
    "$BIN/snakemake" --cores all "${extra[@]}" --configfile config.yaml "${PRESET[@]}" "results/$exp/few-labels.yaml" \
        --config data_dir="$DATA" experiment="$exp"
    end=$(date +%s.%N)
    "$BIN/python" -c "import json, sys; print(json.dumps({\"wall_s\": round(float(sys.argv[2]) - float(sys.argv[1]), 1)}))" "$start" "$end" > "results/$exp/wall.json"
    runs+=("$n=results/$exp")
done
[ -n "${ALL_RUN:-}" ] && runs+=("all=$ALL_RUN")
"$BIN/python" benchmarks/collect_few_labels.py "$OUT" "${runs[@]}"
