#!/bin/bash
# Experiment 3 (few-shot) at the *default CPU config* on the GPU (same sizes, fp32; only the device differs), so the
# GPU cells can be set beside the CPU ones. Resumable: call again while the machine is warm to go on.
source .gpu3/go.sh > /dev/null 2>&1
B=/tmp/fs; mkdir -p $B $OUT
left=$(( 530 - ($(date +%s) - T0) ))
timeout $left python3 -c "from tpv.cli import main; main()" bench run fewshot \
  --set model.device=cuda --set train.device=cuda --set runtime.seconds_per_step=0.1 \
  --set runtime.eval_examples_per_second=500 --out $B --no-progress 2>&1 | grep -v "Loading weights\|warn" | tail -8
echo "fewshot call ended $(( $(date +%s) - T0 )) s; cells: $(ls $B/cells | wc -l)"
cd $B && tar czf $OUT/fs.tar.gz --exclude='*.safetensors' .
