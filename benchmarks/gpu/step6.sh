#!/bin/bash
# Experiment 3 at the default config on the GPU with the few-shot lr at 0.03 (the recipe of the tasks issue) instead of 0.3.
# GPU cells can be set beside the CPU ones. Resumable: call again while the machine is warm to go on.
source .gpu3/go.sh > /dev/null 2>&1
B=/tmp/fs; mkdir -p $B $OUT
left=$(( 530 - ($(date +%s) - T0) ))
timeout $left python3 -c "from tpv.cli import main; main()" bench run fewshot \
  --set model.device=cuda --set train.device=cuda --set fewshot.train.lr=0.03 --set runtime.seconds_per_step=0.1 \
  --set runtime.eval_examples_per_second=500 --out $B --no-progress 2>&1 | grep -v "Loading weights\|warn" | tail -8
echo "fewshot call ended $(( $(date +%s) - T0 )) s; cells: $(ls $B/cells | wc -l)"
cd $B && tar czf $OUT/fs03.tar.gz --exclude='*.safetensors' .
