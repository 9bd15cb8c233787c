"""Coefficient search: find the combination of task prompt vectors that scores best on validation data.

The task prompt vectors paper (Belanec et al., arXiv 2408.01119) applies a sum of vectors to their origin
with one scalar ``lambda`` picked from ``{0, 0.05, ..., 1}`` on validation data::

    prompt(lambda) = origin + sum_i lambda * tau_i

:func:`search_scalar` runs that protocol; :func:`search_per_task` searches one coefficient per vector
(``origin + sum_i lambda_i * tau_i``), over the full grid product or by coordinate ascent over the grid.

Scoring is abstract: a *scorer* is any callable ``score_prompts(prompts) -> scores`` taking ``c`` candidate
soft prompts at once, shape ``(c, rows, dim)``, and returning one score per candidate, shape ``(c,)``
(higher is better). This module is pure (no model is involved). The scorers for rank classification with a
causal LM live with the rest of the model-level scoring in :mod:`tpv.engine.prompt_scoring` and are re-exported
here: :class:`~tpv.engine.prompt_scoring.BatchedPromptScorer` (the default of ``tpv search``, transfer's target
search and the benchmark's few-shot selection) scores all candidates of a call through the packed primitive of
:func:`tpv.evaluate_many`, their rows sharing forward passes, so each candidate gets the predictions
:func:`tpv.evaluate` gives it alone; :class:`~tpv.engine.prompt_scoring.SequentialPromptScorer` is the
one-candidate-at-a-time baseline through the same primitive.

Example:
    >>> import torch, tpv
    >>> from tpv.search import search_scalar
    >>> origin = tpv.Origin.from_tensor(torch.zeros(2, 3))
    >>> v = tpv.TaskPromptVector.from_prompts(torch.ones(2, 3), origin, task="a")
    >>> best = search_scalar([v], origin, lambda p: -(p.sum(dim=(1, 2)) - 3.0).abs())  # best at 0.5
    >>> best.coefficients, best.score
    ((0.5,), -0.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from tpv._tensor import check_prompt_tensor
from tpv.errors import ConfigError, IncompatibleVectorsError
from tpv.merge import merge
from tpv.vector import TaskPromptVector

if TYPE_CHECKING:
    from tpv.engine.prompt_scoring import BatchedPromptScorer, SequentialPromptScorer
    from tpv.origin import Origin

__all__ = [
    "PAPER_GRID",
    "BatchedPromptScorer",
    "Candidate",
    "PromptScorer",
    "SearchResult",
    "SequentialPromptScorer",
    "candidate_prompts",
    "search_per_task",
    "search_scalar",
]

PAPER_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
"""The paper's lambda grid: ``0, 0.05, ..., 1`` (21 values)."""

PromptScorer = Callable[[torch.Tensor], torch.Tensor]
"""``score_prompts(prompts (c, rows, dim)) -> scores (c,)``; higher is better."""

# The model-level scorers, moved to tpv.engine.prompt_scoring; served from here (on first use) under their old names.
_MOVED = {"BatchedPromptScorer", "SequentialPromptScorer"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'tpv.search' has no attribute {name!r}")
    from tpv.engine import prompt_scoring

    value = getattr(prompt_scoring, name)
    globals()[name] = value
    return value


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One evaluated combination.

    Attributes:
        coefficients: one coefficient per vector, in the order the vectors were given.
        score: what the scorer returned for it.
    """

    coefficients: tuple[float, ...]
    score: float


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a coefficient search.

    Attributes:
        mode: ``"scalar"`` (one lambda for the whole sum) or ``"per_task"`` (one per vector).
        names: one label per vector (its task names joined by ``+``), in the order given.
        coefficients: the best coefficients, one per vector (all equal in scalar mode).
        score: the best score.
        candidates: every evaluated combination with its score, in evaluation order (no duplicates).
        strategy: ``"grid"`` or ``"coordinate"`` (scalar mode is always ``"grid"``).
    """

    mode: Literal["scalar", "per_task"]
    names: tuple[str, ...]
    coefficients: tuple[float, ...]
    score: float
    candidates: tuple[Candidate, ...]
    strategy: Literal["grid", "coordinate"] = "grid"

    @property
    def scalar(self) -> float | None:
        """The best lambda in scalar mode, else ``None``."""
        return self.coefficients[0] if self.mode == "scalar" else None

    def vector(self, vectors: Sequence[TaskPromptVector]) -> TaskPromptVector:
        """The best combination ``sum_i coefficient_i * tau_i`` of the vectors searched (task arithmetic).

        ``result.vector(vectors).apply_to(origin)`` is exactly the best candidate prompt that was scored.
        """
        return merge(vectors, "task_arithmetic", weights=list(self.coefficients))

    def table(self) -> list[dict[str, float]]:
        """One row per candidate: ``{name: coefficient, ..., "score": score}``."""
        return [{**dict(zip(self.names, c.coefficients)), "score": c.score} for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole result."""
        return {
            "mode": self.mode,
            "strategy": self.strategy,
            "names": list(self.names),
            "coefficients": list(self.coefficients),
            "score": self.score,
            "evaluations": len(self.candidates),
            "candidates": [{"coefficients": list(c.coefficients), "score": c.score} for c in self.candidates],
        }


# -- candidates -----------------------------------------------------------------------------------------------


def _check_inputs(
    vectors: Sequence[TaskPromptVector], origin: Origin | torch.Tensor, strict: bool
) -> tuple[list[TaskPromptVector], torch.Tensor]:
    items = list(vectors)
    if not items:
        raise ConfigError("coefficient search needs at least one vector, got none")
    for i, v in enumerate(items):
        if not isinstance(v, TaskPromptVector):
            raise IncompatibleVectorsError(f"item {i} to search over is a {type(v).__name__}, not a TaskPromptVector")
    for v in items[1:]:
        items[0].check_compatible(v, op="search over")
    items[0].apply_to(origin, strict=strict)  # checks the origin's shape and (strict) its content hash
    from tpv.origin import Origin

    o = origin.tensor if isinstance(origin, Origin) else check_prompt_tensor(origin, what="origin")
    return items, o


def _check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    try:
        values = [float(g) for g in grid]
    except (TypeError, ValueError):
        raise ConfigError(f"grid must be a sequence of numbers, got {grid!r}") from None
    if not values:
        raise ConfigError("grid is empty: give at least one coefficient to try, e.g. tpv.search.PAPER_GRID")
    bad = [g for g in values if not math.isfinite(g)]
    if bad:
        raise ConfigError(f"grid values must be finite, got {bad}")
    return tuple(dict.fromkeys(values))


def candidate_prompts(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    coefficients: Sequence[Sequence[float]],
    *,
    strict: bool = True,
) -> torch.Tensor:
    """The soft prompts ``origin + sum_i c_i * tau_i`` for many coefficient tuples.

    Each prompt is computed exactly as ``merge(vectors, weights=c).apply_to(origin)`` computes it.

    Args:
        vectors: ``n`` compatible vectors.
        origin: their origin (an :class:`~tpv.Origin` or its tensor, shape ``(rows, dim)``).
        coefficients: ``c`` tuples of ``n`` coefficients.
        strict: check that ``origin`` is the vectors' origin (content hash).

    Returns:
        The prompts, shape ``(c, rows, dim)``, in the origin's dtype.

    Raises:
        ConfigError: a tuple without one coefficient per vector.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    return _prompts(torch.stack([v.tensor for v in items]), o, coefficients)


def _prompts(stacked: torch.Tensor, origin: torch.Tensor, coefficients: Sequence[Sequence[float]]) -> torch.Tensor:
    """``origin + sum_i c_i * v_i`` per tuple; stacked ``(n, rows, dim)`` -> ``(c, rows, dim)``."""
    from tpv.merge import task_arithmetic

    n = stacked.shape[0]
    out = []
    for coefs in coefficients:
        if len(coefs) != n:
            raise ConfigError(f"got {len(coefs)} coefficient(s) for {n} vector(s): give one per vector")
        tau = task_arithmetic(stacked, torch.tensor(list(coefs), dtype=torch.float64))  # (rows, dim)
        out.append((origin.double() + tau.double()).to(origin.dtype))  # (rows, dim)
    return torch.stack(out)  # (c, rows, dim)


def _names(vectors: Sequence[TaskPromptVector]) -> tuple[str, ...]:
    names = ["+".join(v.terms) or f"vector{i}" for i, v in enumerate(vectors)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return tuple(out)


class _ScoreCache:
    """Scores coefficient tuples through a scorer, in chunks, remembering every score."""

    def __init__(self, stacked: torch.Tensor, origin: torch.Tensor, scorer: PromptScorer, chunk: int) -> None:
        if not callable(scorer):
            raise ConfigError(f"scorer must be callable prompts (c, rows, dim) -> scores (c,), got {scorer!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk must be a positive integer (candidates per scorer call), got {chunk!r}")
        self.stacked = stacked
        self.origin = origin
        self.scorer = scorer
        self.chunk = chunk
        self.scores: dict[tuple[float, ...], float] = {}

    def evaluate(self, coefficients: Sequence[tuple[float, ...]]) -> list[float]:
        todo = [c for c in dict.fromkeys(coefficients) if c not in self.scores]
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            prompts = _prompts(self.stacked, self.origin, part)  # (c, rows, dim)
            scores = self.scorer(prompts)
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(part),):
                got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise ConfigError(f"the scorer must return one score per candidate, shape ({len(part)},); got {got}")
            values = scores.detach().to("cpu", torch.float64).tolist()
            if not all(math.isfinite(s) for s in values):
                raise ConfigError(f"the scorer returned non-finite scores {values}")
            self.scores.update(zip(part, values))
        return [self.scores[c] for c in coefficients]

    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(Candidate(c, s) for c, s in self.scores.items())


def _best(coefficients: Sequence[tuple[float, ...]], scores: Sequence[float]) -> tuple[tuple[float, ...], float]:
    """Highest score; ties go to the first in the given order."""
    i = max(range(len(scores)), key=lambda j: (scores[j], -j))
    return coefficients[i], scores[i]


# -- searches -------------------------------------------------------------------------------------------------


def search_scalar(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    scorer: PromptScorer,
    grid: Sequence[float] = PAPER_GRID,
    *,
    chunk: int = 64,
    strict: bool = True,
) -> SearchResult:
    """The paper's protocol: one lambda for the whole sum, ``origin + lambda * sum_i tau_i``, best on a grid.

    Args:
        vectors: one or more compatible vectors.
        origin: their origin (an :class:`~tpv.Origin` or its tensor).
        scorer: ``prompts (c, rows, dim) -> scores (c,)``, higher is better (e.g. a
            :class:`~tpv.engine.prompt_scoring.BatchedPromptScorer`).
        grid: lambdas to try, in order (default :data:`PAPER_GRID`); ties go to the first.
        chunk: most candidates per scorer call.
        strict: check that ``origin`` is the vectors' origin.

    Returns:
        The result; ``result.coefficients`` repeats the best lambda once per vector.

    Raises:
        ConfigError: no vectors, an empty or non-finite grid, or a scorer returning the wrong shape.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    lambdas = _check_grid(grid)
    ev = _ScoreCache(torch.stack([v.tensor for v in items]), o, scorer, chunk)
    coefs = [(lam,) * len(items) for lam in lambdas]
    best, score = _best(coefs, ev.evaluate(coefs))
    return SearchResult("scalar", _names(items), best, score, ev.candidates(), "grid")


def search_per_task(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    scorer: PromptScorer,
    grid: Sequence[float] = PAPER_GRID,
    *,
    strategy: Literal["coordinate", "grid"] = "coordinate",
    start: Sequence[float] | None = None,
    max_rounds: int = 5,
    max_candidates: int = 10_000,
    chunk: int = 64,
    strict: bool = True,
) -> SearchResult:
    """One coefficient per vector: ``origin + sum_i lambda_i * tau_i``.

    ``strategy="grid"`` scores every tuple of the grid product (``len(grid) ** n`` candidates, at most
    ``max_candidates``). ``strategy="coordinate"`` runs coordinate ascent over the grid: from ``start``
    (default: the best scalar lambda, found with :func:`search_scalar`'s candidates, so the result is never
    worse than the scalar search), it tries every grid value for one coefficient at a time (all scored in one
    scorer call), moves only on a strict improvement, and stops after a round without one or after
    ``max_rounds`` rounds. Each round costs at most ``n * len(grid)`` evaluations, and none is repeated.

    Args:
        vectors: one or more compatible vectors.
        origin: their origin.
        scorer: ``prompts (c, rows, dim) -> scores (c,)``, higher is better.
        grid: the values each coefficient may take, in order; ties go to the first.
        strategy: ``"coordinate"`` or ``"grid"``.
        start: starting coefficients for coordinate ascent (one per vector).
        max_rounds: most rounds of coordinate ascent.
        max_candidates: refuse a grid product larger than this.
        chunk: most candidates per scorer call.
        strict: check that ``origin`` is the vectors' origin.

    Returns:
        The result, in per-task mode.

    Raises:
        ConfigError: bad grid, strategy, start or limits, or a grid product over ``max_candidates``.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    values = _check_grid(grid)
    n = len(items)
    ev = _ScoreCache(torch.stack([v.tensor for v in items]), o, scorer, chunk)
    names = _names(items)
    if strategy == "grid":
        total = len(values) ** n
        if total > max_candidates:
            raise ConfigError(
                f"the grid product has {len(values)}^{n} = {total} candidates, over max_candidates={max_candidates}; "
                "use strategy='coordinate', a coarser grid, or raise max_candidates"
            )
        coefs = list(itertools.product(values, repeat=n))
        best, score = _best(coefs, ev.evaluate(coefs))
        return SearchResult("per_task", names, best, score, ev.candidates(), "grid")
    if strategy != "coordinate":
        raise ConfigError(f"strategy must be 'coordinate' or 'grid', got {strategy!r}")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ConfigError(f"max_rounds must be a positive integer, got {max_rounds!r}")
    if start is None:
        scalar = [(lam,) * n for lam in values]
        current, current_score = _best(scalar, ev.evaluate(scalar))
    else:
        current = tuple(float(x) for x in start)
        if len(current) != n or not all(math.isfinite(x) for x in current):
            raise ConfigError(f"start must hold {n} finite coefficient(s) (one per vector), got {list(start)}")
        current_score = ev.evaluate([current])[0]
    for _ in range(max_rounds):
        moved = False
        for i in range(n):
            options = [(*current[:i], g, *current[i + 1 :]) for g in values]
            best, score = _best(options, ev.evaluate(options))
            if score > current_score:
                current, current_score, moved = best, score, True
        if not moved:
            break
    return SearchResult("per_task", names, current, current_score, ev.candidates(), "coordinate")
