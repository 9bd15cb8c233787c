"""The guard: a training run that did not learn says so (internal to :func:`tpv.train`).

Two findings, each one sentence with the likely cause and the fix, recorded in ``TrainResult.warnings``,
``run.json`` and the log:

* the prompt ended more than :data:`NORM_RATIO_LIMIT` times its origin's norm away from the origin: it left the
  scale of the model's embeddings (the symptom of a learning rate too high for the model);
* validation accuracy never rose above always answering the commonest class by two binomial standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NORM_RATIO_LIMIT", "above_chance", "majority_rate", "run_warnings"]

NORM_RATIO_LIMIT = 5.0
"""The guard warns when ``||prompt - origin|| / ||origin||`` ends above this."""


def majority_rate(labels: Sequence[int]) -> float:
    """The accuracy of always answering the commonest label (0 for no labels)."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return max(counts.values()) / len(labels) if labels else 0.0


def above_chance(accuracy: float, chance: float, n: int) -> bool:
    """Whether ``accuracy`` on ``n`` examples is above ``chance`` by more than 2 binomial standard errors."""
    return accuracy > chance + 2.0 * math.sqrt(max(chance * (1 - chance), 1e-12) / max(n, 1))


def run_warnings(
    *,
    norm_ratio: float,
    evals: Sequence[Mapping[str, Any]],
    validation_labels: Sequence[int],
    lr: float,
    rule: str,
    steps: int,
) -> list[str]:
    """The guard's findings for a finished run.

    Args:
        norm_ratio: ``||prompt - origin|| / ||origin||``.
        evals: the run's evaluations (each with ``accuracy``).
        validation_labels: the labels of the validation examples scored.
        lr: the peak learning rate used.
        rule: how it was chosen (``given``, ``auto``, ``range-test``).
        steps: steps run.

    Returns:
        One sentence per finding (empty when the run looks healthy).
    """
    found: list[str] = []
    lr_text = f"lr {lr:.3g} ({rule})"
    if not norm_ratio <= NORM_RATIO_LIMIT:
        found.append(
            f"the prompt ended {norm_ratio:.1f}x its origin's norm away from the origin (more than "
            f"{NORM_RATIO_LIMIT:g}x): it left the scale of the model's embeddings, so its vector is mostly noise "
            f"the model learned to tolerate. Likely cause: {lr_text} is too high for this model. Fix: "
            + ("" if rule == "auto" else "lr='auto' or ")
            + f"a lower lr (e.g. {lr / 10:.3g})"
        )
    if evals:
        chance = majority_rate(validation_labels)
        n = len(validation_labels)
        best = max(float(e["accuracy"]) for e in evals)
        if not above_chance(best, chance, n):
            too_high = norm_ratio > NORM_RATIO_LIMIT
            cause = (
                f"{lr_text} is too high (the prompt ended {norm_ratio:.1f}x its origin's norm away)"
                if too_high
                else f"{lr_text} is too low for this model or {steps} steps are too few"
            )
            found.append(
                f"validation accuracy never rose above chance (best {best:.3f} vs {chance:.3f} for always "
                f"answering the commonest class, on {n} examples): the prompt did not learn the task. Likely "
                f"cause: {cause}. Fix: {_fix(rule, lr, too_high)}"
            )
    return found


def _fix(rule: str, lr: float, too_high: bool) -> str:
    """What to try next for a run that never left chance, given how its learning rate was chosen."""
    other = [f"lr='{r}'" for r in ("auto", "range-test") if r != rule]
    rate = f"a {'lower' if too_high else 'higher'} lr (e.g. {lr / 10 if too_high else lr * 3:.3g})"
    return ", ".join([*other, rate]) + ("" if too_high else ", or more steps")
