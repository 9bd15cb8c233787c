#!/bin/bash
# The one command for GPU work, run on the device machine (after pack.sh's three calls have put .gpu3/ there):
#
#   bash .gpu3/run.sh SECONDS COMMAND [ARGS...]
#
# sets the machine up (once per warm machine: setup.sh), runs COMMAND with what is left of SECONDS, and packs
# what it wrote under $OUT/run (results, reports, cells; no tensors) into $OUT/run.tar.gz. Experiments are
# config overlays, not scripts:
#
#   bash .gpu3/run.sh 540 tpv bench run fewshot cuda               # experiment 3 at the CPU sizes, on the GPU
#   bash .gpu3/run.sh 540 tpv bench run fewshot cuda --set "prompt.origins=[0,1,2,3,4]" --set "fewshot.seeds=[0,1,2,3,4]"
#   bash .gpu3/run.sh 250 tpv bench run sources gpu gpu-smoke     # the paper's GPU sizes, cut to minutes
#   bash .gpu3/run.sh 150 python3 benchmarks/bench_engine.py --device cuda --precision bf16 --steps 50
#
# `tpv bench run` gets --out $OUT/run --no-progress added; it resumes, so call again while the machine is warm.
set -u
LIMIT=$1; shift
source .gpu3/setup.sh > /dev/null 2>&1
mkdir -p "$OUT/run"
LEFT=$(( LIMIT - ($(date +%s) - T0) ))
if [ "$1" = "tpv" ]; then
  shift
  timeout $LEFT python3 -c "from tpv.cli import main; main()" "$@" --out "$OUT/run" --no-progress 2>&1 | grep -v "Loading weights"
else
  timeout $LEFT "$@" --out "$OUT/run" 2>&1 | grep -v "Loading weights"
fi
echo "ended after $(( $(date +%s) - T0 )) s"
(cd "$OUT/run" && tar czf "$OUT/run.tar.gz" --exclude='*.safetensors' .)
