#!/bin/bash
source .gpu3/go.sh
mkdir -p $OUT/r
for p in fp32 bf16; do
timeout 200 python3 benchmarks/bench_engine.py --device cuda --precision $p --steps 50 --out $OUT/r 2>&1 | grep -E "^\| |Targets|^- " | head -20
done
echo "done $(( $(date +%s) - T0 )) s"
