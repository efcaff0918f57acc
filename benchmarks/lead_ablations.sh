#!/usr/bin/env bash
# LEAD's ablations (benchmarks/README.md), each changing iteration 2's LEAD settings only, in the folder of
# the preset's own benchmark (results/bench-lead, made first by
#   BENCH_PRESET=configs/lead.yaml BENCH_EXPERIMENT=bench-lead BENCH_OUT=benchmarks/results/scifact-lead.json \
#     bash benchmarks/scifact.sh
# ): iteration 1 (warm-up and LEAD, as in the preset) and everything before iteration 2's training are
# reused; the changed settings rerun iteration 2's training and what follows it. Three whole runs with
# the warm-up would not fit a session here.
#   ABLATION=no-layers bash benchmarks/lead_ablations.sh  # benchmarks/lead-no-layers.yaml -> scifact-lead-ablation-no-layers.json
#   ABLATION=fixed bash benchmarks/lead_ablations.sh      # evenly spaced pairs, not resampled
#   ABLATION=uniform bash benchmarks/lead_ablations.sh    # 1/K, not the NLL weights
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=bench-lead
NAME=${ABLATION:?set ABLATION to no-layers, fixed or uniform}
BIN=.venv/bin
FILES=(configs/lead.yaml "benchmarks/lead-$NAME.yaml")
ARGS=(--cores all --configfile "${FILES[@]}" --config data_dir="$DATA" experiment="$EXP")
[ -d "results/$EXP" ] || { echo "results/$EXP is missing: run the preset's benchmark first" >&2; exit 1; }
start=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}"
end=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
BENCH_NOTE="ABLATION=$NAME bash benchmarks/lead_ablations.sh: ${FILES[*]}, in the run folder of configs/lead.yaml's benchmark: iteration 2's training and what follows rerun with the changed settings, iteration 1 reused; wall_s covers the rerun only" \
  "$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "benchmarks/results/scifact-lead-ablation-$NAME.json"
