"""Few-shot sampling: k examples per class, stratified, deterministic per seed and nested across k.

For each class the examples are put in an order drawn from ``seed`` (and the class), and ``few_shot`` takes the
first ``k`` of every class. So the 5-shot set is inside the 10-shot set, which is inside the 25-shot set, and so
on (the paper's 0/5/10/25/50/100/250/500/1000 shots reuse one draw per seed). The result interleaves the classes
round-robin, so a smaller k's result is also a prefix of a larger k's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from tpv.errors import ConfigError
from tpv.tasks.spec import Example

__all__ = ["SHOTS", "few_shot", "stratified_cap"]

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


def _quotas(counts: Mapping[int | float, int], n: int) -> dict[int | float, int]:
    """Split ``n`` across classes in proportion to ``counts`` (largest remainder, ties by class order)."""
    total = sum(counts.values())
    exact = {c: n * k / total for c, k in counts.items()}
    quotas = {c: int(v) for c, v in exact.items()}
    left = n - sum(quotas.values())
    for c in sorted(counts, key=lambda c: (-(exact[c] - quotas[c]), c))[:left]:
        quotas[c] += 1
    return quotas


def stratified_cap(examples: Sequence[Example], n: int | None, *, regression: bool | None = None) -> list[Example]:
    """The first ``n`` examples, classes in proportion to the whole; list order kept.

    The one stratified cap of tpv: task loading (``max_examples``), the benchmark harness and the scripts use it.

    Args:
        examples: the pool, in the order to keep.
        n: how many to keep; ``None`` (or at least ``len(examples)``) keeps all.
        regression: float labels (then simply the first ``n``); ``None`` detects it from the labels.

    Returns:
        ``min(n, len(examples))`` examples: per class the first ones, quotas by largest remainder (ties by label).
    """
    if n is None or n >= len(examples):
        return list(examples)
    if regression is None:
        regression = any(isinstance(ex.label, float) for ex in examples)
    if regression:
        return list(examples[:n])
    counts: dict[int | float, int] = {}
    for ex in examples:
        counts[ex.label] = counts.get(ex.label, 0) + 1
    quotas = _quotas(counts, n)
    taken: dict[int | float, int] = {}
    out = []
    for ex in examples:
        if taken.get(ex.label, 0) < quotas[ex.label]:
            taken[ex.label] = taken.get(ex.label, 0) + 1
            out.append(ex)
    return out
