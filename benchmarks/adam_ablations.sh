#!/usr/bin/env bash
# ADAM's ablations (benchmarks/README.md), each changing iteration 2's ADAM settings only, in the folder of
# the preset's own benchmark (results/bench-adam); see benchmarks/iteration2_ablation.sh.
#   ABLATION=no-dark bash benchmarks/adam_ablations.sh        # self-paced selection on mined negatives only
#   ABLATION=mixup-only | mask-only                           # one kind of dark example
#   ABLATION=no-self-paced                                    # dark examples, every query from the start
set -euo pipefail
: "${ABLATION:?set ABLATION to no-dark, mixup-only, mask-only or no-self-paced}"
METHOD=adam exec bash "$(dirname "$0")/iteration2_ablation.sh"
