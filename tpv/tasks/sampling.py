"""Few-shot sampling: k examples per class, stratified, deterministic per seed and nested across k.

For each class the examples are put in an order drawn from ``seed`` (and the class), and ``few_shot`` takes the
first ``k`` of every class. So the 5-shot set is inside the 10-shot set, which is inside the 25-shot set, and so
on (the paper's 0/5/10/25/50/100/250/500/1000 shots reuse one draw per seed). The result interleaves the classes
round-robin, so a smaller k's result is also a prefix of a larger k's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tpv.errors import ConfigError
from tpv.tasks.spec import Example

__all__ = ["SHOTS", "few_shot"]

SHOTS: tuple[int, ...] = (0, 5, 10, 25, 50, 100, 250, 500, 1000)
"""The shot counts of the paper's few-shot experiments."""


def _rng(seed: int, label: object) -> random.Random:
    # A string seed is hashed with SHA-512 by random.Random: stable across processes and Python versions.
    return random.Random(f"tpv-few-shot:{seed}:{label!r}")


def few_shot(examples: Sequence[Example], k: int, seed: int = 0, *, allow_fewer: bool = False) -> list[Example]:
    """Draw ``k`` examples of every class.

    Args:
        examples: the pool (usually ``load_task(...).train``).
        k: examples per class; 0 gives an empty list. For regression tasks (float labels) ``k`` examples in all.
        seed: the draw; the same seed and pool always give the same examples.
        allow_fewer: take every example of a class that has fewer than ``k`` instead of raising.

    Returns:
        ``k * number_of_classes`` examples, classes interleaved round-robin (label order), each class's examples
        in its drawn order. ``few_shot(pool, 5, s)`` is a prefix of ``few_shot(pool, 10, s)``.

    Raises:
        ConfigError: ``k`` is negative, the pool is empty, or a class has fewer than ``k`` examples (unless
            ``allow_fewer``); the message names the class and its count.

    Example:
        >>> pool = [Example(f"text {i}", i % 2) for i in range(20)]
        >>> len(few_shot(pool, 4, seed=0))
        8
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"few_shot: k must be a non-negative int (examples per class); got {k!r}")
    if k == 0:
        return []
    if not examples:
        raise ConfigError("few_shot: the pool of examples is empty")
    if any(isinstance(ex.label, float) for ex in examples):
        order = list(range(len(examples)))
        _rng(seed, "regression").shuffle(order)
        if k > len(order) and not allow_fewer:
            raise ConfigError(f"few_shot: asked for {k} examples of a regression task but the pool has {len(order)}")
        return [examples[i] for i in order[:k]]

    by_class: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(int(ex.label), []).append(i)
    drawn: dict[int, list[int]] = {}
    for label in sorted(by_class):
        indices = by_class[label]
        if len(indices) < k and not allow_fewer:
            raise ConfigError(
                f"few_shot: class {label} has {len(indices)} examples, fewer than k={k}; "
                "lower k or pass allow_fewer=True"
            )
        order = list(indices)
        _rng(seed, label).shuffle(order)
        drawn[label] = order[:k]
    out: list[Example] = []
    for rank in range(k):
        for label in sorted(drawn):
            if rank < len(drawn[label]):
                out.append(examples[drawn[label][rank]])
    return out
