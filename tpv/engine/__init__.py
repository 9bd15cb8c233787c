"""The training and evaluation engine: fast prompt tuning and rank-classification scoring.

``train`` tunes a soft prompt and returns its task prompt vector; ``evaluate`` scores a model on classification
examples from one forward pass per batch; :class:`TrainConfig` holds every option. See ``docs/training.md``.
``train_many`` and ``evaluate_many`` train and score many prompts at once over one frozen model, packing their rows
into shared batches (:class:`Job` describes one run; see ``docs/many.md``).
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
    from tpv.engine.many import Job, evaluate_many, train_many

__all__ = ["Job", "TrainConfig", "TrainEvent", "TrainResult", "evaluate", "evaluate_many", "train", "train_many"]

# Names served lazily from heavier modules: name -> module.
_LAZY = {
    "TrainEvent": "tpv.engine.loop",
    "TrainResult": "tpv.engine.loop",
    "evaluate": "tpv.engine.loop",
    "train": "tpv.engine.loop",
    "Job": "tpv.engine.many",
    "train_many": "tpv.engine.many",
    "evaluate_many": "tpv.engine.many",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tpv.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
