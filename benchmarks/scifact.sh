#!/usr/bin/env bash
# The default experiment on BEIR SciFact, timed end to end; writes benchmarks/results/scifact.json.
#   BENCH_DATA=/path/to/scifact bash benchmarks/scifact.sh      (default: ../shared/data/scifact)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=bench-scifact
BIN=.venv/bin
rm -rf "results/$EXP"
start=$(date +%s.%N)
"$BIN/snakemake" --cores all --config data_dir="$DATA" experiment="$EXP"
end=$(date +%s.%N)
# A second run with nothing changed must do no work.
"$BIN/snakemake" --cores all --config data_dir="$DATA" experiment="$EXP" --dry-run > "results/$EXP/second-run.txt" 2>&1
"$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" benchmarks/results/scifact.json
