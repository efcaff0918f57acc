#!/usr/bin/env bash
# LEAD's ablations (benchmarks/README.md), each the whole preset (configs/lead.yaml, both iterations) with
# one setting changed, run in the folder of the preset's own benchmark (results/bench-lead, made by
#   BENCH_PRESET=configs/lead.yaml BENCH_EXPERIMENT=bench-lead BENCH_OUT=benchmarks/results/scifact-lead.json \
#     bash benchmarks/scifact.sh
# first): the teacher's corpus embeddings, BM25's candidates and the fusion's scores of iteration 1 are
# reused; the changed lead settings rerun both trainings and everything after them.
#   ABLATION=uniform bash benchmarks/lead_ablations.sh   # benchmarks/lead-uniform.yaml -> scifact-lead-ablation-uniform.json
#   ABLATION=fixed bash benchmarks/lead_ablations.sh     # benchmarks/lead-fixed.yaml
# The ablation without layer pairs (final-layer KL only: w_layers 0, by construction the standard loss)
# is configs/strong-teacher.yaml, measured in benchmarks/results/scifact-strong-teacher.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=bench-lead
NAME=${ABLATION:?set ABLATION to uniform or fixed}
BIN=.venv/bin
FILES=(configs/lead.yaml "benchmarks/lead-$NAME.yaml")
ARGS=(--cores all --configfile "${FILES[@]}" --config data_dir="$DATA" experiment="$EXP")
[ -d "results/$EXP" ] || { echo "results/$EXP is missing: run the preset's benchmark first" >&2; exit 1; }
start=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}"
end=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
BENCH_NOTE="ABLATION=$NAME bash benchmarks/lead_ablations.sh: ${FILES[*]}, in the run folder of configs/lead.yaml's benchmark (teacher embeddings, BM25 candidates and iteration-1 fusion scores reused; wall_s covers the rest)" \
  "$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "benchmarks/results/scifact-lead-ablation-$NAME.json"
