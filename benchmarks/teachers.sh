#!/usr/bin/env bash
# Every teacher kind the workflow makes, measured on SciFact test: the models of benchmarks/teachers.yaml
# (plus config.yaml's MiniLM-L6 and BM25) are evaluated by the workflow's own rules, as Snakemake targets,
# so only what they need runs (fine-tunes, corpus encodings, indexes); writes scifact-teachers.json.
#   bash benchmarks/teachers.sh                     TEACHERS="bm25 fusion" bash benchmarks/teachers.sh
#   RERANK_DEPTH=20: rerankers (cross-encoders, fusions) rescore BM25's top 20 instead of
#     evaluate.rerank_depth (100): a cross-encoder scores ~10 pairs/s on these 2 cores
#   (each teacher is evaluated on the dev split too, by the same job: its dev figures go into the JSON)
#   BENCH_SNAKEMAKE_ARGS="--cache": more Snakemake options (here: teacher work from the between-run cache)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
OUT=${BENCH_OUT:-benchmarks/results/scifact-teachers.json}
EXP=bench-teachers
TEACHERS=${TEACHERS:-minilm-l6 bm25 fusion minilm-l6-tuned fusion-tuned minilm-l6-cross}
BIN=.venv/bin
presets=(config.yaml benchmarks/teachers.yaml)
if [ -n "${RERANK_DEPTH:-}" ]; then
    mkdir -p "results/$EXP"
    printf 'evaluate:\n  rerank_depth: %s\n' "$RERANK_DEPTH" > "results/$EXP/rerank-depth.yaml"
    presets+=("results/$EXP/rerank-depth.yaml")
fi
targets=()
for t in $TEACHERS; do targets+=("results/$EXP/eval/test/$t/metrics.json"); done
# shellcheck disable=SC2206
SNAKEMAKE_ARGS=(${BENCH_SNAKEMAKE_ARGS:-})
# one job at a time: each job's timing is then its own, not shared with a neighbour
"$BIN/snakemake" --cores all --jobs 1 "${SNAKEMAKE_ARGS[@]}" --configfile "${presets[@]}" \
    --config data_dir="$DATA" experiment="$EXP" -- "${targets[@]}"
"$BIN/python" benchmarks/collect_teachers.py "results/$EXP" "$OUT" $TEACHERS
