#!/usr/bin/env bash
# PROD's ablations that change configs/prod.yaml from stage 2 on, rerun in place on the finished PROD
# benchmark (results/bench-prod): --forcerun retrains the stage-2 student with the ablation's settings
# and reruns everything after it, and keeps stage 1 (the same student as in scifact-prod.json). wall_s
# is the time of that partial rerun only.
#   BENCH_PRESET="configs/prod.yaml benchmarks/prod-lwf.yaml" BENCH_EXPERIMENT=bench-prod \
#     BENCH_OUT=benchmarks/results/scifact-prod.json bash benchmarks/scifact.sh   # first, PROD as published
#   ABLATION=no-lwf bash benchmarks/prod_ablations.sh   # -> benchmarks/results/scifact-prod-no-lwf.json
#   ABLATION=paper-loss bash benchmarks/prod_ablations.sh
# The run folder then holds the ablation's artifacts; rerun scifact.sh to get PROD's back.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=bench-prod
NAME=${ABLATION:-no-lwf}
[ -f "results/$EXP/summary.json" ] || { echo "results/$EXP/summary.json is missing: run the PROD benchmark first" >&2; exit 1; }
BIN=.venv/bin
ARGS=(--cores all --configfile configs/prod.yaml "benchmarks/prod-$NAME.yaml" --config data_dir="$DATA" experiment="$EXP")
start=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --forcerun "results/$EXP/students/it2"
end=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
BENCH_NOTE="ABLATION=$NAME bash benchmarks/prod_ablations.sh: configs/prod.yaml + benchmarks/prod-$NAME.yaml, rerun from stage 2 on the PROD run's folder (stage 1 kept); wall_s covers the rerun only" \
  "$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "benchmarks/results/scifact-prod-$NAME.json"
