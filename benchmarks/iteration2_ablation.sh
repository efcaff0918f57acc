#!/usr/bin/env bash
# An ablation of a method's preset that changes iteration 2's settings only, in the folder of the preset's
# own benchmark (results/bench-<method>, made first by
#   BENCH_PRESET=configs/<method>.yaml BENCH_EXPERIMENT=bench-<method> \
#     BENCH_OUT=benchmarks/results/scifact-<method>.json bash benchmarks/scifact.sh
# ): iteration 1 and everything before iteration 2's changed jobs are reused; the changed settings rerun
# what they affect in iteration 2 and what follows. Whole runs per ablation would not fit a session here.
#   METHOD=lead ABLATION=fixed bash benchmarks/iteration2_ablation.sh
#     # configs/lead.yaml + benchmarks/lead-fixed.yaml -> benchmarks/results/scifact-lead-ablation-fixed.json
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
METHOD=${METHOD:?set METHOD, e.g. lead or mta4dpr}
NAME=${ABLATION:?set ABLATION to the NAME of a benchmarks/$METHOD-NAME.yaml}
EXP=bench-$METHOD
BIN=.venv/bin
FILES=("configs/$METHOD.yaml" "benchmarks/$METHOD-$NAME.yaml")
ARGS=(--cores all --configfile "${FILES[@]}" --config data_dir="$DATA" experiment="$EXP")
[ -d "results/$EXP" ] || { echo "results/$EXP is missing: run the preset's benchmark first" >&2; exit 1; }
start=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}"
end=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
BENCH_NOTE="METHOD=$METHOD ABLATION=$NAME bash benchmarks/iteration2_ablation.sh: ${FILES[*]}, in the run folder of configs/$METHOD.yaml's benchmark: iteration 2's changed jobs and what follows rerun, iteration 1 reused; wall_s covers the rerun only" \
  "$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "benchmarks/results/scifact-$METHOD-ablation-$NAME.json"
