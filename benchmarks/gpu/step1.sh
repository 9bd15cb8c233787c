#!/bin/bash
# GPU work, part 1: engine benchmark (fp32 and bf16), tuned-vs-zero-shot on all 12 offline tasks.
source .gpu3/go.sh
mkdir -p $OUT/r
timeout 150 python3 benchmarks/bench_engine.py --device cuda --precision fp32 --steps 50 --out $OUT/r 2>&1 | grep -v "Loading weights" | tail -40
timeout 120 python3 benchmarks/bench_engine.py --device cuda --precision bf16 --steps 50 --out $OUT/r 2>&1 | grep -v "Loading weights" | tail -12
echo "engine done $(( $(date +%s) - T0 )) s"
timeout $(( 540 - ($(date +%s) - T0) )) python3 -c "from tpv.cli import main; main()" bench run tasks gpu --set "prompt.origins=[0]" --set data.max_test=500 --set data.max_validation=100 --out $OUT/r --no-progress 2>&1 | grep -v "Loading weights\|warn" | tail -20
echo "tasks done $(( $(date +%s) - T0 )) s"
ls -la $OUT/r
