#!/bin/bash
# Experiment 3 at the default config on the GPU, seeds 3 and 4 added (5 seeds).
# GPU cells can be set beside the CPU ones. Resumable: call again while the machine is warm to go on.
source .gpu3/go.sh > /dev/null 2>&1
B=/tmp/fs; mkdir -p $B $OUT
left=$(( 470 - ($(date +%s) - T0) ))
timeout $left python3 -c "from tpv.cli import main; main()" bench run fewshot \
  --set model.device=cuda --set train.device=cuda --set "prompt.origins=[0,1,2,3,4]" --set "fewshot.seeds=[0,1,2,3,4]" --set runtime.seconds_per_step=0.1 \
  --set runtime.eval_examples_per_second=470 --out $B --no-progress 2>&1 | grep -v "Loading weights\|warn" | tail -8
echo "fewshot call ended $(( $(date +%s) - T0 )) s; cells: $(ls $B/cells | wc -l)"
cd $B && tar czf $OUT/fs5.tar.gz --exclude='*.safetensors' .
