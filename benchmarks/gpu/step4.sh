#!/bin/bash
# The harness on the GPU: the gpu overlay, cut to minutes (one source group, 2 origins, short budgets).
source .gpu3/go.sh > /dev/null 2>&1
B=/tmp/gb; mkdir -p $B $OUT
SET="--set tasks.groups=[] --set tasks.sources=[rotten_tomatoes,vader_words] --set tasks.targets=[imdb_reviews] --set prompt.origins=[0,1] --set train.steps=100 --set train.eval_every=50 --set data.max_test=500 --set data.max_validation=200 --set fewshot.shots=[0,5,25] --set fewshot.seeds=[0,1] --set fewshot.train.steps=30"
for e in sources cross_origin fewshot; do
  left=$(( 250 - ($(date +%s) - T0) )); [ $left -gt 10 ] || break
  timeout $left python3 -c "from tpv.cli import main; main()" bench run $e gpu $SET --out $B --no-progress 2>&1 | grep -v "Loading weights\|warn" | tail -25
  echo "$e ended $(( $(date +%s) - T0 )) s"
done
cd $B && tar czf $OUT/gb.tar.gz --exclude='*.safetensors' .
