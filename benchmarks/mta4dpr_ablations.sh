#!/usr/bin/env bash
# MTA4DPR's ablations (benchmarks/README.md), each changing iteration 2's MTA4DPR settings only, in the
# folder of the preset's own benchmark (results/bench-mta4dpr); see benchmarks/iteration2_ablation.sh.
#   ABLATION=no-assistants bash benchmarks/mta4dpr_ablations.sh   # gamma = 0 (the paper's ablation)
#   ABLATION=fused bash benchmarks/mta4dpr_ablations.sh           # the mean distribution, not one per batch
#   ABLATION=footrule | rbo                                       # the other selection measures (preset: kl)
#   ABLATION=no-replacement                                       # the configured pool, student left out
#   ABLATION=recipe                                               # no assistant, hard queries or RRF: the recipe
set -euo pipefail
: "${ABLATION:?set ABLATION to no-assistants, fused, footrule, rbo, no-replacement or recipe}"
METHOD=mta4dpr exec bash "$(dirname "$0")/iteration2_ablation.sh"
