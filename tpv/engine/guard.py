"""The guard: a training run that did not learn says so (internal to :func:`tpv.train`).

Two findings, each one sentence with the likely cause and the fix, recorded in ``TrainResult.warnings``,
``run.json`` and the log:

* the prompt ended more than :data:`NORM_RATIO_LIMIT` times its origin's norm away from the origin: it left the
  scale of the model's embeddings (the symptom of a learning rate too high for the model);
* validation accuracy never rose above always answering the commonest class by two binomial standard errors. Its
  likely cause follows from how far the prompt moved: more than :data:`NORM_RATIO_LIMIT` x its origin's norm, a
  rate too high; less than :data:`STILL_RATIO` x, a rate too low (or too few steps); in between, the prompt moved
  without finding the task (too few steps, a rate too high to settle, or label words the model does not tie to the
  classes). In the calibration study (``benchmarks/results/calibration``) the runs stuck at chance were at 0.01-0.14x
  (lr 1e-3, SGD), 0.8-2.9x (Adafactor at 0.3 and AdamW at 0.3 on Gemma with new label words; a WiC-style task the
  model cannot learn) and 16.7x (AdamW at 0.3 on SmolLM2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NORM_RATIO_LIMIT", "STILL_RATIO", "above_chance", "majority_rate", "run_warnings"]

NORM_RATIO_LIMIT = 5.0
"""The guard warns when ``||prompt - origin|| / ||origin||`` ends above this."""
STILL_RATIO = 0.3
"""A run stuck at chance whose prompt moved less than this (``||prompt - origin|| / ||origin||``) is blamed on a
rate too low; runs that learned with the calibrated defaults end at 0.6-0.95."""


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
            regime = "high" if norm_ratio > NORM_RATIO_LIMIT else ("low" if norm_ratio < STILL_RATIO else "moved")
            cause = {
                "high": f"{lr_text} is too high (the prompt ended {norm_ratio:.1f}x its origin's norm away)",
                "low": f"{lr_text} is too low for this model (the prompt moved only {norm_ratio:.2f}x its origin's "
                f"norm) or {steps} steps are too few",
                "moved": f"the prompt moved ({norm_ratio:.2f}x its origin's norm) without finding the task: {steps} "
                f"steps are too few, {lr_text} is too high to settle, or this model does not tie the label words "
                "to the classes",
            }[regime]
            found.append(
                f"validation accuracy never rose above chance (best {best:.3f} vs {chance:.3f} for always "
                f"answering the commonest class, on {n} examples): the prompt did not learn the task. Likely "
                f"cause: {cause}. Fix: {_fix(rule, lr, regime, steps)}"
            )
    return found


def _fix(rule: str, lr: float, regime: str, steps: int) -> str:
    """What to try next for a run that never left chance.

    Given how its learning rate was chosen and how far its prompt moved (``regime``: ``high``, ``low``, ``moved``).
    """
    other = [f"lr='{r}'" for r in ("auto", "range-test") if r != rule]
    if regime == "high":
        return ", ".join([*other, f"a lower lr (e.g. {lr / 10:.3g})"])
    if regime == "low":
        return ", ".join([*other, f"a higher lr (e.g. {lr * 3:.3g})"]) + ", or more steps"
    return ", ".join([f"more steps (e.g. {2 * steps})", *other, f"a lower lr (e.g. {lr / 3:.3g})"]) + (
        ", or label words the model already ties to the classes"
    )
