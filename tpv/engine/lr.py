"""Learning rates that fit the model: the embedding scale, ``lr="auto"`` and the range test's choice.

A soft prompt lives in the model's input-embedding space, whose scale differs by an order of magnitude between
models (RMS 0.136 on SmolLM2-135M, 1.03 on Gemma-3-270M, whose embeddings are multiplied by ``sqrt(hidden)``).
AdamW moves every coordinate by about ``lr`` per step whatever the gradient's size, so a fixed ``lr`` is a large
step on one model and a timid one on another. ``lr="auto"`` sets ``lr = AUTO_LR[optimizer] x RMS``; the factor
comes from the calibration study (``docs/training.md``, "Choosing hyperparameters").

``lr="range-test"`` runs a learning-rate range test (Smith, WACV 2017; fastai's ``lr_find``) before training:
a few dozen steps with the rate growing geometrically, then :func:`choose_from_range_test` picks the rate a
decade below the one at the smoothed loss's minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tpv.engine.config import AUTO_LR, TrainConfig
from tpv.errors import ConfigError

__all__ = ["RANGE_TEST_SPAN", "auto_lr", "choose_from_range_test", "embedding_scale", "range_test_lrs"]

RANGE_TEST_SPAN = (1e-4, 1.0)
"""The range test's first and last learning rate, as multiples of the embedding RMS (AdamW, SGD) or as
Adafactor's relative step."""

_SAMPLE_ROWS = 4096


def embedding_scale(model: Any) -> float:
    """RMS of the model's input embeddings as the model feeds them (Gemma's ``sqrt(hidden)`` scale included).

    Measured on an evenly strided sample of at most 4,096 vocabulary rows (deterministic), in float32.

    Args:
        model: a ``transformers`` model or a PEFT model wrapping one.

    Returns:
        The RMS, a positive float (0.136 for SmolLM2-135M, 1.03 for Gemma-3-270M).

    Raises:
        ConfigError: the model has no input embeddings, or they are all zero or not finite.
    """
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    get = getattr(base, "get_input_embeddings", None)
    layer = get() if callable(get) else None
    weight = getattr(layer, "weight", None)
    if layer is None or weight is None:
        raise ConfigError(f"{type(base).__name__} has no input embeddings; pass a number as lr instead of 'auto'")
    vocab = int(weight.shape[0])
    ids = torch.arange(0, vocab, max(1, vocab // _SAMPLE_ROWS), device=weight.device)  # (S,)
    with torch.no_grad():
        rows = layer(ids).float()  # (S, D)
    rms = float(rows.pow(2).mean().sqrt())
    if not math.isfinite(rms) or rms <= 0:
        raise ConfigError(f"the input embeddings of {type(base).__name__} have RMS {rms}; pass a number as lr")
    return rms


def auto_lr(optimizer: str, scale: float) -> float:
    """The learning rate ``lr="auto"`` gives ``optimizer`` on a model whose embedding RMS is ``scale``.

    Args:
        optimizer: ``"adamw"``, ``"adafactor"`` or ``"sgd"``.
        scale: :func:`embedding_scale` of the model.

    Returns:
        ``AUTO_LR[optimizer] * scale`` (AdamW, SGD) or ``AUTO_LR["adafactor"]`` (a relative step already).
    """
    factor = AUTO_LR[optimizer]
    return factor if optimizer == "adafactor" else factor * scale


def range_test_lrs(cfg: TrainConfig, scale: float) -> list[float]:
    """The learning rate of each range-test step: geometric from ``RANGE_TEST_SPAN[0]`` to ``[1]`` (x scale)."""
    lo, hi = RANGE_TEST_SPAN
    unit = 1.0 if cfg.optimizer == "adafactor" else scale
    n = cfg.range_test_steps
    return [unit * lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def choose_from_range_test(lrs: Sequence[float], losses: Sequence[float], *, smoothing: float = 0.9) -> float:
    """The range test's choice: a tenth of the learning rate at the smoothed loss's minimum.

    The losses are smoothed by a debiased exponential moving average (``smoothing``); steps after the smoothed
    loss exceeds four times its minimum (divergence) are ignored.

    Args:
        lrs: the learning rate of each step, increasing.
        losses: the training loss of each step (as many as ``lrs``, or fewer when the test stopped early).
        smoothing: the moving average's weight on the past.

    Returns:
        The chosen learning rate (at least ``lrs[0]``).

    Raises:
        ConfigError: fewer than 3 finite losses.
    """
    pairs = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(pairs) < 3:
        raise ConfigError(
            f"the learning-rate range test recorded {len(pairs)} finite losses (need >= 3); raise "
            "range_test_steps or pass a number as lr"
        )
    avg, best, best_lr = 0.0, math.inf, pairs[0][0]
    for i, (lr, loss) in enumerate(pairs):
        avg = smoothing * avg + (1 - smoothing) * loss
        smooth = avg / (1 - smoothing ** (i + 1))
        if smooth > 4 * best:
            break
        if smooth < best:
            best, best_lr = smooth, lr
    return max(best_lr / 10, pairs[0][0])
