"""Merge methods in prompt space: pure tensor functions over stacked vectors, selected by name.

Every method is a pure function ``fn(stacked, weights, **params) -> Tensor`` over ``stacked``, the ``n``
vectors' values stacked to shape ``(n, rows, dim)``, and ``weights`` of shape ``(n,)`` (one weight per
vector) or ``(n, rows)`` (one weight per vector and prompt row). The functions know nothing of
:class:`~tpv.TaskPromptVector`: :func:`merge` checks the vectors, stacks them, calls the method and wraps
the result. One registry, :data:`MERGE_METHODS`, knows every method's name, parameters (defaults and valid
ranges) and paper.

========================  =====================================================================  ==========
method                    what it does                                                           paper
========================  =====================================================================  ==========
``task_arithmetic``       ``sum_i w_i * v_i``                                                    2212.04089
``mean``                  ``sum_i w_i * v_i / sum_i w_i`` (plain average with default weights)   2203.05482
``norm_sum``              the weighted sum rescaled to ``mean_i ||w_i * v_i||`` (norm-aware)      (tpv)
``per_token``             task arithmetic with one weight per vector and prompt row              (tpv)
``magnitude``             keep each vector's top ``density`` entries by magnitude, then sum      2306.01708
``ties``                  trim to top ``density``, elect a sign per entry, disjoint mean         2306.01708
``dare``                  drop entries with probability ``1 - density``, rescale by 1/density   2311.03099
``dare_ties``             DARE's drop and rescale, then TIES's sign election and disjoint mean   2311.03099
========================  =====================================================================  ==========

Terms of the result. A vector's terms are the linear composition ``{task: coefficient}``. For the linear
methods (``task_arithmetic``, ``mean``) the merged terms are exact: ``sum_i w_i * terms_i`` (divided by
``sum_i w_i`` for ``mean``), the same as the vector algebra gives. For the other methods (``norm_sum``, ``magnitude``,
``ties``, ``dare``, ``dare_ties``) the values are no longer that linear combination, and the terms hold *the
weights given*, ``sum_i w_i * terms_i``: read them as "which tasks went in, with which weights", not as an
exact decomposition. For per-row weights the weight of vector ``i`` in the terms is its mean over rows.
The method and its parameters are not stored on the vector: :func:`merge_record` gives a JSON-ready record
to save as provenance beside the result (``tpv.save(v, path, provenance=...)``), as ``tpv combine`` does.

Example:
    >>> import torch, tpv
    >>> from tpv.merge import merge
    >>> origin = tpv.Origin.from_tensor(torch.zeros(2, 3))
    >>> a = tpv.TaskPromptVector.from_prompts(torch.ones(2, 3), origin, task="a")
    >>> b = tpv.TaskPromptVector.from_prompts(torch.full((2, 3), -2.0), origin, task="b")
    >>> dict(merge([a, b], weights=[1.0, 0.5]).terms)
    {'a': 1.0, 'b': 0.5}
    >>> merge([a, b], weights=[1.0, 0.5]).tensor[0]
    tensor([0., 0., 0.], dtype=torch.float64)
    >>> merge([a, b], method="ties", density=1.0).tensor[0]  # the sign of the total mass (-1) wins
    tensor([-2., -2., -2.], dtype=torch.float64)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch

from tpv.errors import ConfigError, IncompatibleVectorsError
from tpv.merge_ops import (
    dare,
    dare_ties,
    disjoint_merge,
    elect_sign,
    magnitude,
    mean_merge,
    norm_sum,
    per_token,
    task_arithmetic,
    ties,
    trim_magnitude,
)
from tpv.vector import TaskPromptVector

__all__ = [
    "MERGE_METHODS",
    "MergeMethod",
    "Paper",
    "Param",
    "dare",
    "dare_ties",
    "disjoint_merge",
    "elect_sign",
    "get_method",
    "magnitude",
    "mean_merge",
    "merge",
    "merge_record",
    "merge_tensors",
    "norm_sum",
    "per_token",
    "task_arithmetic",
    "ties",
    "trim_magnitude",
]

MergeFn = Callable[..., torch.Tensor]
WeightShape = Literal["any", "per_vector", "per_token"]


# -- the registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paper:
    """The paper a merge method comes from.

    Attributes:
        title: the paper's title.
        arxiv: its arXiv id (``2306.01708``).
        authors: short author list (``Yadav et al.``).
    """

    title: str
    arxiv: str
    authors: str

    @property
    def url(self) -> str:
        """The arXiv abstract page."""
        return f"https://arxiv.org/abs/{self.arxiv}"

    def cite(self) -> str:
        """One line: ``Authors, "Title", arXiv ID``."""
        return f'{self.authors}, "{self.title}", arXiv {self.arxiv}'


@dataclass(frozen=True)
class Param:
    """One parameter of a merge method, with its default and valid range.

    Attributes:
        name: the keyword name.
        kind: ``float`` or ``int``.
        default: the value used when the parameter is not given.
        low: lower bound.
        high: upper bound (``None``: unbounded).
        low_inclusive: whether ``low`` itself is valid.
        high_inclusive: whether ``high`` itself is valid.
        help: one line for ``--help`` and docs.
    """

    name: str
    kind: type
    default: float | int
    low: float
    high: float | None
    low_inclusive: bool
    high_inclusive: bool
    help: str

    def rule(self) -> str:
        """The valid range as text, e.g. ``(0, 1]`` or ``an integer >= 0``."""
        if self.kind is int:
            return f"an integer >= {int(self.low)}" if self.high is None else f"an integer in [{self.low}, {self.high}]"
        left = "[" if self.low_inclusive else "("
        right = "]" if self.high_inclusive else ")"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"a number in {left}{self.low:g}, {high}{right}"

    def validate(self, value: object, *, method: str) -> float | int:
        """Return ``value`` converted to this parameter's kind, or raise naming the method, value and range.

        Raises:
            ConfigError: wrong type, not finite, or out of range.
        """
        what = f"{method}: parameter {self.name}={value!r}"
        if isinstance(value, bool):
            raise ConfigError(f"{what} must be {self.rule()}, not a bool")
        if self.kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ConfigError(f"{what} must be {self.rule()}")
            out: float | int = int(value)
        else:
            if not isinstance(value, int | float):
                raise ConfigError(f"{what} must be {self.rule()}")
            out = float(value)
            if not math.isfinite(out):
                raise ConfigError(f"{what} must be finite")
        ok_low = out >= self.low if self.low_inclusive else out > self.low
        ok_high = self.high is None or (out <= self.high if self.high_inclusive else out < self.high)
        if not (ok_low and ok_high):
            raise ConfigError(f"{what} is out of range: it must be {self.rule()}")
        return out


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method.

    Attributes:
        name: the registry key (``ties``).
        fn: the pure tensor function ``fn(stacked (n, rows, dim), weights (n,) | (n, rows), **params)``.
        summary: one line saying what it does.
        params: its parameters, with defaults and ranges.
        paper: the paper it comes from, or ``None`` for tpv's own.
        linear: whether the result is exactly the linear combination its terms state.
        weights: accepted weight shapes: ``"per_vector"`` ``(n,)``, ``"per_token"`` ``(n, rows)`` or ``"any"``.
    """

    name: str
    fn: MergeFn
    summary: str
    params: tuple[Param, ...] = ()
    paper: Paper | None = None
    linear: bool = False
    weights: WeightShape = "any"
    _by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", MappingProxyType({p.name: p for p in self.params}))

    def defaults(self) -> dict[str, float | int]:
        """Parameter name -> default."""
        return {p.name: p.default for p in self.params}

    def resolve(self, given: Mapping[str, object]) -> dict[str, float | int]:
        """Validate the given parameters and fill in defaults.

        Args:
            given: keyword parameters (``None`` values mean "use the default").

        Returns:
            Every parameter of the method, validated.

        Raises:
            ConfigError: an unknown parameter (the accepted ones are listed) or an invalid value.
        """
        unknown = sorted(k for k, v in given.items() if k not in self._by_name and v is not None)
        if unknown:
            accepted = ", ".join(p.name for p in self.params) or "none"
            raise ConfigError(
                f"merge method {self.name!r} takes no parameter {', '.join(unknown)}; accepted: {accepted}"
            )
        out = self.defaults()
        for name, value in given.items():
            if value is not None:
                out[name] = self._by_name[name].validate(value, method=self.name)
        return out


_DENSITY_HELP = "fraction of each vector's entries kept, in (0, 1]; 1 keeps all"
_SEED_HELP = "seed of the random drop masks"


def _density(default: float, help: str = _DENSITY_HELP) -> Param:
    return Param("density", float, default, 0.0, 1.0, low_inclusive=False, high_inclusive=True, help=help)


def _seed_param() -> Param:
    return Param("seed", int, 0, 0, None, low_inclusive=True, high_inclusive=False, help=_SEED_HELP)


_TIES = Paper("TIES-Merging: Resolving Interference When Merging Models", "2306.01708", "Yadav et al.")
_DARE = Paper(
    "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch",
    "2311.03099",
    "Yu et al.",
)

MERGE_METHODS: Mapping[str, MergeMethod] = MappingProxyType(
    {
        m.name: m
        for m in (
            MergeMethod(
                "task_arithmetic",
                task_arithmetic,
                "weighted sum sum_i w_i * v_i (the paper's combination: weights 1, or one lambda)",
                paper=Paper("Editing Models with Task Arithmetic", "2212.04089", "Ilharco et al."),
                linear=True,
            ),
            MergeMethod(
                "mean",
                mean_merge,
                "weighted mean sum_i w_i * v_i / sum_i w_i (the plain average with default weights)",
                paper=Paper(
                    "Model soups: averaging weights of multiple fine-tuned models improves accuracy without "
                    "increasing inference time",
                    "2203.05482",
                    "Wortsman et al.",
                ),
                linear=True,
            ),
            MergeMethod(
                "norm_sum",
                norm_sum,
                "weighted sum rescaled to the mean norm of its weighted terms (the sum at the sources' scale)",
            ),
            MergeMethod(
                "per_token",
                per_token,
                "weighted sum with one weight per vector and prompt row (weights of shape (n, rows))",
                linear=True,
                weights="per_token",
            ),
            MergeMethod(
                "magnitude",
                magnitude,
                "keep each vector's top-density entries by magnitude, then the weighted sum (TIES's trim step)",
                params=(_density(0.2),),
                paper=_TIES,
            ),
            MergeMethod(
                "ties",
                ties,
                "trim to top-density by magnitude, elect a sign per entry, mean of the agreeing values",
                params=(_density(0.2),),
                paper=_TIES,
            ),
            MergeMethod(
                "dare",
                dare,
                "drop entries at random with p = 1 - density, rescale kept ones by 1/density, weighted sum",
                params=(_density(0.5, "keep probability of each entry, in (0, 1]; 1 keeps all"), _seed_param()),
                paper=_DARE,
            ),
            MergeMethod(
                "dare_ties",
                dare_ties,
                "DARE's random drop and rescale, then TIES's sign election and disjoint mean",
                params=(_density(0.5, "keep probability of each entry, in (0, 1]; 1 keeps all"), _seed_param()),
                paper=_DARE,
            ),
        )
    }
)
"""Every merge method by name. Each entry knows its function, parameters (defaults, ranges) and paper."""


def get_method(name: str) -> MergeMethod:
    """The registered method called ``name``.

    Raises:
        ConfigError: unknown name; the message lists the known methods.
    """
    method = MERGE_METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ConfigError(f"unknown merge method {name!r}; known methods: {', '.join(MERGE_METHODS)}")
    return method


# -- checking inputs and the public entry ---------------------------------------------------------------------


def _check_weights(
    weights: Sequence[float] | torch.Tensor | None, method: MergeMethod, n: int, rows: int
) -> torch.Tensor:
    """Weights as a float64 tensor of shape ``(n,)`` or ``(n, rows)``, checked against the method."""
    if weights is None:
        shape: tuple[int, ...] = (n, rows) if method.weights == "per_token" else (n,)
        return torch.ones(shape, dtype=torch.float64)
    if isinstance(weights, torch.Tensor):
        w = weights.detach().to("cpu", torch.float64)
    else:
        try:
            w = torch.tensor(weights, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"weights must be numbers (one per vector), got {weights!r}: {exc}") from None
    if w.ndim == 0 or w.ndim > 2:
        raise ConfigError(f"weights must have shape ({n},) or ({n}, {rows}), got {tuple(w.shape)}")
    if w.shape[0] != n:
        raise ConfigError(f"got {w.shape[0]} weight(s) for {n} vector(s): give exactly one weight per vector")
    if w.ndim == 2 and w.shape[1] != rows:
        raise ConfigError(
            f"per-token weights must have shape ({n}, {rows}) (one per vector and prompt row), got {tuple(w.shape)}"
        )
    if method.weights == "per_token" and w.ndim != 2:
        raise ConfigError(
            f"merge method 'per_token' needs weights of shape ({n}, {rows}) (one per vector and prompt row), "
            f"got {tuple(w.shape)}; for one weight per vector use method='task_arithmetic'"
        )
    if method.weights == "per_vector" and w.ndim != 1:
        raise ConfigError(f"merge method {method.name!r} needs one weight per vector, shape ({n},)")
    if not bool(torch.isfinite(w).all()):
        raise ConfigError(f"weights must be finite, got {w.tolist()}")
    if method.name == "mean" and bool((w.sum(dim=0) == 0).any()):
        raise ConfigError(f"merge method 'mean' divides by the sum of the weights, which is 0 for {w.tolist()}")
    return w


def merge_tensors(
    stacked: torch.Tensor,
    method: str = "task_arithmetic",
    weights: Sequence[float] | torch.Tensor | None = None,
    **params: object,
) -> torch.Tensor:
    """Run a registered method on raw stacked values (validated name, weights and parameters).

    Args:
        stacked: the vectors' values, shape ``(n, rows, dim)``.
        method: a name in :data:`MERGE_METHODS`.
        weights: ``(n,)`` or ``(n, rows)``; default all ones.
        **params: the method's parameters (see ``MERGE_METHODS[method].params``).

    Returns:
        The merged values, shape ``(rows, dim)``.

    Raises:
        ConfigError: unknown method, bad parameters or weights, or an empty stack.
    """
    m = get_method(method)
    if not isinstance(stacked, torch.Tensor) or stacked.ndim != 3 or stacked.shape[0] == 0:
        shape = tuple(stacked.shape) if isinstance(stacked, torch.Tensor) else type(stacked).__name__
        raise ConfigError(f"stacked values must have shape (n >= 1, rows, dim), got {shape}")
    resolved = m.resolve(params)
    w = _check_weights(weights, m, int(stacked.shape[0]), int(stacked.shape[1]))
    return m.fn(stacked, w, **resolved)


def _merged_terms(vectors: Sequence[TaskPromptVector], weights: torch.Tensor, method: MergeMethod) -> dict[str, float]:
    """``sum_i w_i * terms_i`` (per-row weights: their mean), divided by ``sum_i w_i`` for ``mean``."""
    per_vector = weights if weights.ndim == 1 else weights.mean(dim=1)  # (n,)
    terms: dict[str, float] = {}
    for v, w in zip(vectors, per_vector.tolist()):
        for task, coef in v.terms.items():
            terms[task] = terms.get(task, 0.0) + coef * w
    if method.name == "mean":
        total = float(weights.sum()) if weights.ndim == 1 else float(weights.sum(dim=0).mean())
        terms = {k: c / total for k, c in terms.items()}
    return terms


def merge(
    vectors: Sequence[TaskPromptVector],
    method: str = "task_arithmetic",
    weights: Sequence[float] | torch.Tensor | None = None,
    **params: object,
) -> TaskPromptVector:
    """Merge compatible task prompt vectors with a registered method.

    Args:
        vectors: one or more vectors tuned from the same origin on the same model.
        method: a name in :data:`MERGE_METHODS` (``task_arithmetic``, ``mean``, ``per_token``, ``magnitude``,
            ``ties``, ``dare``, ``dare_ties``).
        weights: one weight per vector, shape ``(n,)``, or per vector and prompt row, shape ``(n, rows)``;
            default all ones.
        **params: the method's parameters, e.g. ``density=0.2`` for ``ties``, ``seed=0`` for ``dare``.

    Returns:
        The merged vector, with the first vector's metadata. Its terms are ``sum_i w_i * terms_i`` (divided by
        ``sum_i w_i`` for ``mean``): exact for the linear methods, the weights given for the others (see the
        module docs).

    Raises:
        ConfigError: no vectors, unknown method (known ones listed), unknown parameter, density outside
            ``(0, 1]``, or a weights count that does not match the vectors.
        IncompatibleVectorsError: vectors of different origins, shapes, dtypes or models.
    """
    m = get_method(method)
    items = list(vectors)
    if not items:
        raise ConfigError(f"merge method {m.name!r} needs at least one vector, got none")
    for i, v in enumerate(items):
        if not isinstance(v, TaskPromptVector):
            raise IncompatibleVectorsError(f"item {i} to merge is a {type(v).__name__}, not a TaskPromptVector")
    first = items[0]
    for v in items[1:]:
        first.check_compatible(v, op=f"merge ({m.name})")
    resolved = m.resolve(params)
    rows = first.shape[0]
    w = _check_weights(weights, m, len(items), rows)
    stacked = torch.stack([v.tensor for v in items])  # (n, rows, dim)
    values = m.fn(stacked, w, **resolved)  # (rows, dim)
    return TaskPromptVector(
        values,
        origin_id=first.origin_id,
        terms=_merged_terms(items, w, m),
        base_model=first.base_model,
        num_virtual_tokens=first.num_virtual_tokens,
        num_transformer_submodules=first.num_transformer_submodules,
    )


def merge_record(
    method: str,
    weights: Sequence[float] | torch.Tensor | None = None,
    sources: Sequence[str] = (),
    **params: object,
) -> dict[str, Any]:
    """A JSON-ready record of a merge, to save as provenance beside its result.

    Args:
        method: the method's name.
        weights: the weights given (``None``: the default ones).
        sources: names of the merged inputs (file paths or task names).
        **params: the parameters given; defaults are filled in.

    Returns:
        ``{"merge": {"method", "params", "weights", "sources", "paper", "linear"}}``.

    Raises:
        ConfigError: unknown method or invalid parameters.
    """
    m = get_method(method)
    w: Any = weights.tolist() if isinstance(weights, torch.Tensor) else (None if weights is None else list(weights))
    return {
        "merge": {
            "method": m.name,
            "params": m.resolve(params),
            "weights": w,
            "sources": list(sources),
            "paper": None if m.paper is None else m.paper.arxiv,
            "linear": m.linear,
        }
    }
