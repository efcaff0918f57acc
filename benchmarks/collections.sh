#!/usr/bin/env bash
# Few labels, other domains: per collection (BEIR folders made by benchmarks/collections_data.py), the
# default recipe (its summary holds BM25, the teacher, the warmed-up student and each iteration's), the
# label-free preset, and any further preset named in COLLECTION_PRESETS; then collect_collections.py
# writes benchmarks/results/collections.json and prints the table of student over teacher.
#   bash benchmarks/collections.sh                        # med and cacm under ../shared/data
#   COLLECTIONS="med" COLLECTION_PRESETS="default label-free" bash benchmarks/collections.sh
#   COLLECT_ONLY=1 bash benchmarks/collections.sh         # re-collect the runs already in results/
# A preset is config files joined by `+`, each configs/<name>.yaml or else benchmarks/<name>.yaml, merged in
# order over config.yaml (`default`: config.yaml alone), e.g. label-free+transfer-kd+labelled-half-as-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=$(realpath "${COLLECTIONS_DATA:-../shared/data}")
OUT=${COLLECTIONS_OUT:-benchmarks/results/collections.json}
BIN=.venv/bin
mkdir -p results
runs=()
for collection in ${COLLECTIONS:-med cacm}; do
    for preset in ${COLLECTION_PRESETS:-default label-free}; do
        exp=collection-$collection-${preset//+/-}
        if [ -z "${COLLECT_ONLY:-}" ]; then
            configs=(config.yaml)
            if [ "$preset" != default ]; then
                for part in ${preset//+/ }; do
                    if [ -f "configs/$part.yaml" ]; then configs+=("configs/$part.yaml")
                    else configs+=("benchmarks/$part.yaml"); fi
                done
            fi
            start=$(date +%s.%N)
            PATH=$PWD/$BIN:$PATH "$BIN/snakemake" --cores "${CORES:-all}" --configfile "${configs[@]}" \
                --config data_dir="$DATA_ROOT/$collection" experiment="$exp" > "results/$exp.log" 2>&1 \
                || { echo "failed: $exp (results/$exp.log)"; exit 1; }
            end=$(date +%s.%N)
            "$BIN/python" -c "import json, sys; print(json.dumps({'wall_s': round(float(sys.argv[2]) - float(sys.argv[1]), 1)}))" "$start" "$end" > "results/$exp/wall.json"
        fi
        runs+=("$collection:$preset=results/$exp")
    done
done
"$BIN/python" benchmarks/collect_collections.py "$OUT" "${runs[@]}"
