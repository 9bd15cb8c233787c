"""How many jobs :func:`tpv.train_many` trains at once: a memory budget, each job's activation estimate, peak memory.

A pack keeps every active job's activations until its one backward pass, so its memory grows with the number of
jobs. With ``pack_size=None``, :func:`auto_pack_size` fits the pack to a budget:

* the **budget** (:func:`memory_budget`): 80 % of the free memory of a CUDA device, or half of the memory the
  operating system reports available (``MemAvailable`` in ``/proc/meminfo``) on a CPU;
* a **job's estimate** (:func:`job_bytes`): its micro-batch's tokens (``batch_size`` rows of the prompt and its
  longest training text) times :data:`ACTIVATION_FLOATS` per token and layer. On SmolLM2-135M (CPU, batch 8, 50
  virtual tokens, Rotten Tomatoes texts of up to 67 tokens) each job added about 390 MiB to a pack's peak in fp32
  and 510 MiB in bf16 autocast (packs of 4 to 16 jobs, ``benchmarks/bench_many.py``); the estimate says 1.1 GiB,
  a margin for other models and allocators.

Running out anyway gives one :class:`~tpv.errors.TrainingError` naming ``pack_size`` (:func:`is_out_of_memory`).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["ACTIVATION_FLOATS", "auto_pack_size", "is_out_of_memory", "job_bytes", "memory_budget", "peak_memory"]

ACTIVATION_FLOATS = (8, 4)
"""Floats kept per token and layer for the backward pass: ``8 * hidden + 4 * intermediate`` (4 bytes each)."""

_CUDA_SHARE = 0.8
_CPU_SHARE = 0.5


def memory_budget(device: torch.device) -> int | None:
    """Bytes a pack may use on ``device``; ``None`` when the free memory cannot be read (no limit is then applied)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * _CUDA_SHARE)
    meminfo = Path("/proc/meminfo")
    if device.type != "cpu" or not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(int(line.split()[1]) * 1024 * _CPU_SHARE)
    return None


def job_bytes(model_config: Any, rows: int, tokens: int) -> int:
    """Estimated activation memory of one job's micro-batch of ``rows`` rows of ``tokens`` positions each.

    Args:
        model_config: the backbone's ``transformers`` config (``num_hidden_layers``, ``hidden_size``,
            ``intermediate_size``; a seq2seq config's ``num_layers``/``d_model``/``d_ff``).
        rows: rows per micro-batch (``batch_size``).
        tokens: positions per row (virtual tokens plus the longest text).

    Returns:
        Bytes (at least 1).
    """
    cfg = getattr(model_config, "text_config", None) or model_config
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_layers", None) or 1
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or 1
    inner = getattr(cfg, "intermediate_size", None) or getattr(cfg, "d_ff", None) or 4 * hidden
    if seq2seq_layers := getattr(cfg, "num_decoder_layers", None):
        layers += seq2seq_layers
    per_token = layers * (ACTIVATION_FLOATS[0] * hidden + ACTIVATION_FLOATS[1] * inner) * 4
    return max(1, int(rows) * int(tokens) * int(per_token))


def auto_pack_size(model_config: Any, jobs: Sequence[tuple[int, int]], device: torch.device) -> tuple[int, int | None]:
    """The most jobs that fit the budget at once (at least 1, at most all), and the budget in bytes.

    Args:
        model_config: the backbone's config.
        jobs: ``(rows, tokens)`` of each job's micro-batch (see :func:`job_bytes`).
        device: where the pack trains.

    Returns:
        ``(pack_size, budget)``; ``budget`` is ``None`` (and the pack holds every job) when it cannot be read.
    """
    budget = memory_budget(device)
    if budget is None or not jobs:
        return max(1, len(jobs)), budget
    largest = max(job_bytes(model_config, rows, tokens) for rows, tokens in jobs)
    return max(1, min(len(jobs), budget // largest)), budget


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes held so far: CUDA's allocator peak on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is torch (or the CPU allocator) running out of memory."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
