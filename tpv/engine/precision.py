"""bf16 autocast, made fast on a CPU (internal).

Every forward pass of the engine runs under :func:`autocast`. In ``"bf16"`` it is ``torch.autocast`` (the prompt
and the optimizer stay float32); on a CPU two costs of it are removed:

* **Attention.** PyTorch's CPU flash-attention kernel is slow in its bf16 backward (a profile of SmolLM2-135M,
  four packed jobs: 3.6 s of a 12.8 s run, against 0.64 s in fp32). On a CPU in bf16, wherever gradients are
  computed, the scaled-dot-product attention uses its math backend (the same formula from matmuls and a
  softmax); scoring (no gradients) keeps the fused kernel, whose forward is the faster one.
* **Weight casts.** Autocast casts a float32 weight to bf16 at every use and caches the cast only for tensors
  that require grad; the frozen weights of prompt tuning are cast again at every forward and backward (2.1 s of
  the same 12.8 s). :func:`frozen_linears_in_bf16` casts the frozen ``nn.Linear`` weights (and biases) once for
  a whole run and restores the float32 tensors after it, even on an error. Autocast would have cast exactly these
  tensors to bf16 for their matmuls, so the arithmetic is the same (tested bit for bit); norms, embeddings and
  weights shared with another module (a tied LM head) are left alone.

Measured (``benchmarks/bench_precision.py``, SmolLM2-135M, batch 8, 50 virtual tokens, 2 cores with AMX, one
process): seconds per training step 0.99 with plain autocast, 0.92 with the math attention (1.08x), 0.76 with
both (1.30x; fp32: 1.05, so bf16 is now 1.37x fp32 where it was 1.05x).

On CUDA both are left to PyTorch (its fused kernels and cast cache are fast there).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["autocast", "frozen_linears_in_bf16"]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """The engine's mixed precision for one forward pass.

    Args:
        device: where the model runs.
        precision: ``"fp32"`` (nothing changes) or ``"bf16"`` (autocast; on a CPU also the math attention).
    """
    if precision != "bf16":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        if device.type != "cpu" or not torch.is_grad_enabled():  # scoring: the fused kernel's forward is faster
            yield
            return
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            yield


@contextlib.contextmanager
def frozen_linears_in_bf16(model: Any, device: torch.device, precision: str) -> Iterator[int]:
    """Cast the frozen float32 ``nn.Linear`` weights and biases of ``model`` to bf16 for the block, then restore.

    Only on a CPU in ``"bf16"``; elsewhere the block runs unchanged. A tensor is cast when it does not require
    grad, is float32 and belongs to one module only (a weight tied to the input embeddings is not). The
    parameters keep their identity (``param.data`` is swapped), so optimizers, hooks and PEFT wrappers see the
    same objects; the float32 tensors come back when the block exits, also on an error.

    Args:
        model: the module tree (a PEFT model or any ``torch.nn.Module``).
        device: where it runs.
        precision: the run's resolved precision.

    Yields:
        How many tensors were cast (0 when nothing applies).
    """
    if precision != "bf16" or device.type != "cpu" or not isinstance(model, torch.nn.Module):
        yield 0
        return
    uses = collections.Counter(id(p) for _name, p in model.named_parameters(remove_duplicate=False))
    swapped: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    try:
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            for param in (module.weight, module.bias):
                if param is None or id(param) in seen or param.requires_grad or param.dtype != torch.float32:
                    continue
                seen.add(id(param))
                if uses[id(param)] > 1:
                    continue
                swapped.append((param, param.data))
                param.data = param.data.to(torch.bfloat16)
        yield len(swapped)
    finally:
        for param, data in reversed(swapped):
            param.data = data
