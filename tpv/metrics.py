"""Task metrics computed in tpv, with the definitions of scikit-learn / ``evaluate`` / scipy.

``evaluate.load(...)`` needs the hub, so the metrics live here: accuracy, binary F1, macro F1, Matthews
correlation, Pearson and Spearman correlation. Each is a pure function ``(preds, labels) -> float`` on plain
Python sequences, returning a fraction (``0.91``, not ``91``), and :func:`compute_metric` picks one by name.

Invalid predictions count as wrong. A prediction is invalid when it is ``None``, not a whole number
(classification), negative (e.g. ``-1`` for an answer that was none of the label words) or not finite
(regression). How "wrong" is scored follows T5's ``*_with_invalid`` metrics, which the prompt-tuning papers use:

- when every label is 0 or 1 (binary tasks), an invalid prediction becomes the other class (``1 - label``);
- for more classes it becomes a class of its own that matches no label: a miss for accuracy, a false negative of
  the true class for macro F1 (averaged over the classes in the labels and the valid predictions, as
  scikit-learn's ``f1_score(..., labels=those, average="macro")``), and a row of its own in Matthews'
  confusion matrix;
- for regression, it becomes ``min(labels) - 1`` (``-1`` on STS-B, as T5's ``string_to_float`` default).

Degenerate inputs follow the references: F1 with no positive label nor prediction and Matthews with a zero
denominator are ``0.0`` (scikit-learn); a correlation with a constant side is ``nan`` (scipy).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from tpv.errors import ConfigError

__all__ = [
    "METRICS",
    "accuracy",
    "binary_f1",
    "compute_metric",
    "macro_f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
]

_INVALID = -1


def _check(preds: Sequence[Any], labels: Sequence[Any], metric: str) -> None:
    if len(preds) != len(labels):
        raise ConfigError(f"{metric}: {len(preds)} predictions but {len(labels)} labels; give one per label")
    if len(labels) == 0:
        raise ConfigError(f"{metric}: no labels to score")


def _as_class(value: Any) -> int:
    """A class index, or ``_INVALID`` for anything that is not a non-negative whole number."""
    if value is None or isinstance(value, str):
        return _INVALID
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _INVALID
    if not math.isfinite(number) or number < 0 or number != int(number):
        return _INVALID
    return int(number)


def _classes(preds: Sequence[Any], labels: Sequence[Any], metric: str) -> tuple[list[int], list[int]]:
    """Validated (predictions, labels) as ints, invalid predictions replaced by a wrong answer."""
    _check(preds, labels, metric)
    gold = [_as_class(y) for y in labels]
    if _INVALID in gold:
        bad = next(y for y in labels if _as_class(y) == _INVALID)
        raise ConfigError(f"{metric}: labels must be non-negative class indices; got {bad!r}")
    pred = [_as_class(p) for p in preds]
    if set(gold) <= {0, 1}:
        pred = [1 - y if p == _INVALID else p for p, y in zip(pred, gold)]
    return pred, gold


def accuracy(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Fraction of predictions equal to their label (scikit-learn ``accuracy_score``).

    Args:
        preds: predicted class indices (``-1`` or ``None`` for an invalid answer).
        labels: gold class indices.

    Returns:
        Accuracy in [0, 1].
    """
    pred, gold = _classes(preds, labels, "accuracy")
    return sum(p == y for p, y in zip(pred, gold)) / len(gold)


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2 * tp / denominator


def binary_f1(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """F1 of the positive class 1 (scikit-learn ``f1_score`` with ``average="binary"``).

    Args:
        preds: predicted labels, 0 or 1 (anything else is invalid and counts as wrong).
        labels: gold labels, 0 or 1.

    Returns:
        F1 in [0, 1]; 0.0 when there is no positive label and no positive prediction.

    Raises:
        ConfigError: a label is not 0 or 1.
    """
    pred, gold = _classes(preds, labels, "f1")
    if not set(gold) <= {0, 1}:
        raise ConfigError(f"f1 is binary: labels must be 0 or 1, got classes {sorted(set(gold))}; use macro_f1")
    tp = sum(p == 1 and y == 1 for p, y in zip(pred, gold))
    fp = sum(p == 1 and y != 1 for p, y in zip(pred, gold))
    fn = sum(p != 1 and y == 1 for p, y in zip(pred, gold))
    return _f1(tp, fp, fn)


def macro_f1(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Unweighted mean of per-class F1 (scikit-learn ``f1_score`` with ``average="macro"``).

    The classes averaged are those in the labels or in the valid predictions; an invalid prediction only counts
    as a false negative of the true class.

    Args:
        preds: predicted class indices (``-1`` or ``None`` for an invalid answer).
        labels: gold class indices.

    Returns:
        Macro F1 in [0, 1].
    """
    pred, gold = _classes(preds, labels, "macro_f1")
    classes = sorted(set(gold) | ({p for p in pred} - {_INVALID}))
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(pred, gold))
        fp = sum(p == c and y != c for p, y in zip(pred, gold))
        fn = sum(p != c and y == c for p, y in zip(pred, gold))
        scores.append(_f1(tp, fp, fn))
    return math.fsum(scores) / len(scores)


def matthews_corrcoef(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Matthews correlation coefficient (scikit-learn ``matthews_corrcoef``, multiclass form).

    Args:
        preds: predicted class indices (``-1`` or ``None`` for an invalid answer).
        labels: gold class indices.

    Returns:
        MCC in [-1, 1]; 0.0 when undefined (a constant side).
    """
    pred, gold = _classes(preds, labels, "matthews")
    n = len(gold)
    correct = sum(p == y for p, y in zip(pred, gold))
    pred_counts = Counter(pred)
    true_counts = Counter(gold)
    classes = set(pred_counts) | set(true_counts)
    cov_ytyp = correct * n - sum(pred_counts[c] * true_counts[c] for c in classes)
    cov_ypyp = n * n - sum(v * v for v in pred_counts.values())
    cov_ytyt = n * n - sum(v * v for v in true_counts.values())
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp)


def _scores(preds: Sequence[Any], labels: Sequence[Any], metric: str) -> tuple[list[float], list[float]]:
    _check(preds, labels, metric)
    gold: list[float] = []
    for y in labels:
        try:
            value = float(y)
        except (TypeError, ValueError):
            raise ConfigError(f"{metric}: labels must be numbers; got {y!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{metric}: labels must be finite numbers; got {y!r}")
        gold.append(value)
    fallback = min(gold) - 1.0
    pred: list[float] = []
    for p in preds:
        try:
            value = float(p) if p is not None and not isinstance(p, str) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        pred.append(value if math.isfinite(value) else fallback)
    return pred, gold


def _pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    if n < 2 or min(x) == max(x) or min(y) == max(y):  # a constant side (scipy: nan)
        return math.nan
    mx = math.fsum(x) / n
    my = math.fsum(y) / n
    dx = [a - mx for a in x]
    dy = [b - my for b in y]
    sxx = math.fsum(a * a for a in dx)
    syy = math.fsum(b * b for b in dy)
    if sxx == 0 or syy == 0:
        return math.nan
    r = math.fsum(a * b for a, b in zip(dx, dy)) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions (scipy ``rankdata``)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    return ranks


def pearson(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Pearson correlation of predicted and gold scores (scipy ``pearsonr``).

    Args:
        preds: predicted scores (``None`` or non-finite for an invalid answer).
        labels: gold scores.

    Returns:
        r in [-1, 1]; ``nan`` when either side is constant or there are fewer than two pairs.
    """
    pred, gold = _scores(preds, labels, "pearson")
    return _pearson(pred, gold)


def spearman(preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Spearman rank correlation (scipy ``spearmanr``): Pearson of the average ranks.

    Args:
        preds: predicted scores (``None`` or non-finite for an invalid answer).
        labels: gold scores.

    Returns:
        rho in [-1, 1]; ``nan`` when either side is constant or there are fewer than two pairs.
    """
    pred, gold = _scores(preds, labels, "spearman")
    return _pearson(_ranks(pred), _ranks(gold))


METRICS: dict[str, Callable[[Sequence[Any], Sequence[Any]], float]] = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "macro_f1": macro_f1,
    "matthews": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}
"""Metric functions by name (the names a :class:`tpv.tasks.TaskSpec` uses)."""


def compute_metric(name: str, preds: Sequence[Any], labels: Sequence[Any]) -> float:
    """Score predictions with the metric called ``name``.

    Args:
        name: one of ``accuracy``, ``f1``, ``macro_f1``, ``matthews``, ``pearson``, ``spearman``.
        preds: predictions (class indices, ``-1``/``None`` when invalid; or scores for regression).
        labels: gold labels.

    Returns:
        The metric value.

    Raises:
        ConfigError: unknown metric name, length mismatch, empty input or invalid labels.

    Example:
        >>> compute_metric("accuracy", [1, 0, -1], [1, 1, 0])
        0.3333333333333333
    """
    fn = METRICS.get(name)
    if fn is None:
        raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return fn(preds, labels)
