#!/usr/bin/env bash
# OnMKD's ablations (benchmarks/README.md), each at iteration 1 without the warm-up, in one run folder:
# the first call runs configs/onmkd.yaml itself (ABLATION=none), later calls retrain only the iteration-1
# pair with the ablation's settings (--forcerun) and re-evaluate it; the teacher's embeddings, BM25's
# candidates and the fusion's scores are shared. Without the warm-up (two peers warm up in ~20 minutes
# here) the four runs fit a session; benchmarks/results/scifact-onmkd.json is the preset as published.
#   ABLATION=none bash benchmarks/onmkd_ablations.sh          # -> scifact-onmkd-ablation-none.json
#   ABLATION=no-crosswise bash benchmarks/onmkd_ablations.sh  # benchmarks/onmkd-no-crosswise.yaml
#   ABLATION=no-mutual bash benchmarks/onmkd_ablations.sh     # two independent students
#   ABLATION=no-teacher bash benchmarks/onmkd_ablations.sh    # the peers learn from the labels and each other
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${BENCH_DATA:-../shared/data/scifact}")
EXP=bench-onmkd-ablations
NAME=${ABLATION:-none}
BIN=.venv/bin
FILES=(configs/onmkd.yaml benchmarks/onmkd-ablation-base.yaml)
[ "$NAME" != none ] && FILES+=("benchmarks/onmkd-$NAME.yaml")
ARGS=(--cores all --configfile "${FILES[@]}" --config data_dir="$DATA" experiment="$EXP")
FORCE=()
[ "$NAME" != none ] && FORCE=(--forcerun "results/$EXP/students/it1")
[ "$NAME" = none ] && rm -rf "results/$EXP"
start=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" "${FORCE[@]}"
end=$(date +%s.%N)
"$BIN/snakemake" "${ARGS[@]}" --dry-run > "results/$EXP/second-run.txt" 2>&1
BENCH_NOTE="ABLATION=$NAME bash benchmarks/onmkd_ablations.sh: ${FILES[*]} (iteration 1, no warm-up); $([ "$NAME" = none ] && echo 'the whole run' || echo 'the iteration-1 pair retrained and re-evaluated in the run folder of ABLATION=none; wall_s covers that only')" \
  "$BIN/python" benchmarks/collect_scifact.py "results/$EXP" "$start" "$end" "benchmarks/results/scifact-onmkd-ablation-$NAME.json"
