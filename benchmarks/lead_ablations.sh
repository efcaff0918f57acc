#!/usr/bin/env bash
# LEAD's ablations (benchmarks/README.md), each changing iteration 2's LEAD settings only, in the folder of
# the preset's own benchmark (results/bench-lead); see benchmarks/iteration2_ablation.sh.
#   ABLATION=no-layers bash benchmarks/lead_ablations.sh  # benchmarks/lead-no-layers.yaml -> scifact-lead-ablation-no-layers.json
#   ABLATION=fixed bash benchmarks/lead_ablations.sh      # evenly spaced pairs, not resampled
#   ABLATION=uniform bash benchmarks/lead_ablations.sh    # 1/K, not the NLL weights
set -euo pipefail
: "${ABLATION:?set ABLATION to no-layers, fixed or uniform}"
METHOD=lead exec bash "$(dirname "$0")/iteration2_ablation.sh"
