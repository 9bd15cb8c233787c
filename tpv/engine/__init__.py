"""The training and evaluation engine: fast prompt tuning and rank-classification scoring.

``train`` tunes a soft prompt and returns its task prompt vector; ``evaluate`` scores a model on classification
examples from one forward pass per batch; :class:`TrainConfig` holds every option. See ``docs/training.md``.
Importing :mod:`tpv.engine.config` alone stays light (no torch); the rest loads on first use.

Example:
    >>> import tpv  # doctest: +SKIP
    >>> run = tpv.train(model="smollm2-135m", task="rotten_tomatoes", steps=80, out_dir="runs/rt")  # doctest: +SKIP
    >>> tpv.evaluate(run, task="rotten_tomatoes", max_examples=200)["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tpv.engine.config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from tpv.engine.loop import TrainEvent, TrainResult, evaluate, train

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "evaluate", "train"]

_LAZY = {"TrainEvent", "TrainResult", "evaluate", "train"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tpv.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module("tpv.engine.loop"), name)
    globals()[name] = value
    return value
