#!/usr/bin/env bash
# The default experiment on BEIR SciFact, timed end to end; writes benchmarks/results/scifact.json.
#   BENCH_DATA=/path/to/scifact bash benchmarks/scifact.sh      (default: ../shared/data/scifact)
#   BENCH_CONFIG="iterations=3" BENCH_OUT=benchmarks/results/scifact-3-iterations.json bash benchmarks/scifact.sh
#   BENCH_PRESET=configs/strong-teacher.yaml BENCH_EXPERIMENT=bench-strong-teacher \
#     BENCH_OUT=benchmarks/results/scifact-strong-teacher.json bash benchmarks/scifact.sh
#   BENCH_SNAKEMAKE_ARGS="--cache" ...      more Snakemake options (here: the between-experiment cache)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=${BENCH_EXPERIMENT:-bench-scifact}
OUT=${BENCH_OUT:-benchmarks/results/scifact.json}
# shellcheck disable=SC2206
EXTRA=(${BENCH_CONFIG:-})
PRESET=()
# shellcheck disable=SC2206
[ -n "${BENCH_PRESET:-}" ] && PRESET=(--configfile $BENCH_PRESET)   # one or more config files, in order
# shellcheck disable=SC2206
SNAKEMAKE_ARGS=(${BENCH_SNAKEMAKE_ARGS:-})
BIN=.venv/bin
rm -rf "results/$EXP"
start=$(date +%s.%N)
"$BIN/snakemake" --cores all "${SNAKEMAKE_ARGS[@]}" "${PRESET[@]}" --config data_dir="$DATA" experiment="$EXP" "${EXTRA[@]}"
end=$(date +%s.%N)
# A second run with nothing changed must do no work.
"$BIN/snakemake" --cores all "${SNAKEMAKE_ARGS[@]}" "${PRESET[@]}" --config data_dir="$DATA" experiment="$EXP" "${EXTRA[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
"$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "$OUT"
