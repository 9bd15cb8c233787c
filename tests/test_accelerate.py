"""Tests of multi-process training through accelerate: two CPU processes (gloo) tune one tiny model.

``accelerate launch --cpu`` starts several CPU processes only through MPI, so the processes are started with
``torchrun --standalone`` (what ``tpv train --launcher accelerate`` does); ``Accelerator`` picks up the
distributed environment and wraps model, optimizer and data (DDP over gloo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    from safetensors.torch import save_file
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from tiny_models import build_tiny
    from tpv.engine import train

    model, tok = build_tiny("llama")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    words = ["good", "great", "loved", "fun", "fine", "bad", "awful", "hated", "boring", "dull"]
    data = [("the movie was " + w + " . sentiment :", int(i < 5)) for i, w in enumerate(words)]
    run = train(model, tok, data, label_words=(" negative", " positive"), validation=data, steps=6, lr=0.05,
                batch_size=2, eval_every=3, num_virtual_tokens=4, launcher="accelerate", progress=False,
                out_dir={out!r})
    rank = int(os.environ.get("RANK", "0"))
    save_file({{"prompt": run.prompt, "origin": run.origin.tensor}}, os.path.join({out!r}, f"rank{{rank}}.safetensors"))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="gloo multi-process launch is tested on POSIX only")
def test_two_cpu_processes_end_with_the_same_prompt(tmp_path: Path) -> None:
    """Two gloo processes under accelerate end with the same, tuned prompt, and one run is written."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert ranks[0]["prompt"].equal(ranks[1]["prompt"])
    assert not ranks[0]["prompt"].equal(ranks[0]["origin"])
    assert (out / "run.json").is_file() and (out / "vector.safetensors").is_file()
    record = json.loads((out / "run.json").read_text())
    assert record["world_size"] == 2
