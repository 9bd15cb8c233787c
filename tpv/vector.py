"""The core type: :class:`TaskPromptVector`, a tuned soft prompt minus the origin it was tuned from.

A task prompt vector (Belanec et al., arXiv 2408.01119) is ``tau = theta_tuned - theta_origin``: the
difference between a soft prompt after prompt tuning and the random initialization ("origin") it started
from. Vectors of different tasks tuned from the *same* origin on the *same* model can be added, scaled and
averaged; ``origin + sum_i l_i * tau_i`` is a soft prompt again, a better start for a new task.

The class is an immutable value: every operator returns a new vector, and the composition (``terms``, a
mapping task -> coefficient) follows the same algebra as the tensor, so ``-(a + b)`` has terms
``{a: -1, b: -1}``. Combining vectors that do not share origin, shape, dtype or base model raises
:class:`~tpv.errors.IncompatibleVectorsError` naming both sides.

About 600 lines, one idea: the class's algebra, checks, geometry and displays belong together (an operator
needs the checks, a display the geometry).

Example:
    >>> import torch, tpv
    >>> origin = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=0)
    >>> a = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="sst2")
    >>> b = tpv.TaskPromptVector.from_prompts(origin.tensor - 2, origin, task="imdb")
    >>> dict((0.5 * a + b).terms)
    {'imdb': 1.0, 'sst2': 0.5}
    >>> (0.5 * a + b).apply_to(origin).shape
    torch.Size([4, 8])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from tpv._model_id import canonical_model_id
from tpv._tensor import (
    UNKNOWN_MODEL,
    PromptShape,
    check_prompt_tensor,
    check_scalar,
    content_hash,
    html_table,
    text_summary,
)
from tpv.errors import ConfigError, IncompatibleVectorsError, InvalidVectorError

if TYPE_CHECKING:
    from tpv.origin import Origin

__all__ = ["TaskPromptVector", "cosine_matrix", "mean"]


def _fmt_coef(c: float) -> str:
    return f"{c:g}"


def _fmt_terms(terms: Mapping[str, float]) -> str:
    if not terms:
        return "{}"
    return "{" + ", ".join(f"{k}: {_fmt_coef(v)}" for k, v in terms.items()) + "}"


def _normalize_terms(terms: Mapping[str, float]) -> dict[str, float]:
    """Sorted copy without zero coefficients (the reduced form of a linear combination)."""
    if not isinstance(terms, Mapping):
        raise InvalidVectorError(
            f"terms must be a mapping task -> coefficient such as {{'sst2': 1.0}}, got {type(terms).__name__}"
            + (" (a list of pairs: wrap it in dict(...))" if isinstance(terms, list | tuple) else "")
        )
    out: dict[str, float] = {}
    for name, coef in sorted(terms.items(), key=lambda kv: str(kv[0])):
        if not isinstance(name, str) or not name:
            raise InvalidVectorError(f"term names must be non-empty strings, got {name!r}")
        value = check_scalar(coef, what=f"coefficient of term {name!r}")
        if value != 0.0:
            out[name] = value
    return out


class TaskPromptVector(PromptShape):
    """An immutable task prompt vector: ``tau = tuned_prompt - origin``.

    Build one with :meth:`from_prompts` (from a tuned prompt and its origin) or :meth:`from_tensor` (from a
    tensor you already have and its metadata); read one with :func:`tpv.load`.

    Attributes:
        tensor: a copy of the vector's values, shape ``(rows, dim)`` with
            ``rows = num_virtual_tokens * num_transformer_submodules`` (PEFT doubles rows for
            encoder-decoder models).
        origin_id: content hash of the origin the prompt was tuned from (see :attr:`tpv.Origin.id`).
        terms: read-only mapping task -> coefficient; a single task vector is ``{task: 1.0}``. Zero
            coefficients are dropped, so ``a - a`` has no terms.
        base_model: id of the model the prompt was tuned on (a Hugging Face id, a path or a tpv model name).
        num_virtual_tokens: virtual tokens per transformer submodule.
        num_transformer_submodules: 1 for decoder-only and encoder-only models, 2 for encoder-decoder.
    """

    __slots__ = (
        "_base_model",
        "_num_transformer_submodules",
        "_num_virtual_tokens",
        "_origin_id",
        "_tensor",
        "_terms",
    )
    __hash__ = None  # type: ignore[assignment]  # mutable-free but tensor-valued: equality is exact, no hash

    _tensor: torch.Tensor
    _origin_id: str
    _terms: Mapping[str, float]
    _base_model: str
    _num_virtual_tokens: int
    _num_transformer_submodules: int

    def __init__(
        self,
        tensor: torch.Tensor,
        *,
        origin_id: str,
        terms: Mapping[str, float],
        base_model: str = UNKNOWN_MODEL,
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int = 1,
    ) -> None:
        """Create a vector from a tensor and its metadata (same as :meth:`from_tensor`).

        Args:
            tensor: values, shape ``(rows, dim)``; copied, detached and moved to CPU.
            origin_id: content hash of the origin (``Origin.id``); any non-empty string.
            terms: mapping task -> coefficient.
            base_model: id of the model the prompt belongs to.
            num_virtual_tokens: virtual tokens per submodule; defaults to
                ``rows // num_transformer_submodules``.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.

        Raises:
            InvalidVectorError: bad shape, non-finite values, or inconsistent token counts.
        """
        t = check_prompt_tensor(tensor, what="vector tensor")
        if not isinstance(origin_id, str) or not origin_id:
            raise InvalidVectorError(f"origin_id must be a non-empty string, got {origin_id!r}")
        if not isinstance(base_model, str) or not base_model:
            raise InvalidVectorError(f"base_model must be a non-empty string, got {base_model!r}")
        subs = _check_count(num_transformer_submodules, "num_transformer_submodules")
        rows = t.shape[0]
        if rows % subs:
            raise InvalidVectorError(
                f"a vector with {rows} rows cannot have {subs} transformer submodules (rows must be a multiple)"
            )
        nvt = rows // subs if num_virtual_tokens is None else _check_count(num_virtual_tokens, "num_virtual_tokens")
        if nvt * subs != rows:
            raise InvalidVectorError(
                f"num_virtual_tokens={nvt} x num_transformer_submodules={subs} = {nvt * subs} "
                f"does not match the tensor's {rows} rows"
            )
        object.__setattr__(self, "_tensor", t)
        object.__setattr__(self, "_origin_id", origin_id)
        object.__setattr__(self, "_terms", MappingProxyType(_normalize_terms(terms)))
        object.__setattr__(self, "_base_model", canonical_model_id(base_model))
        object.__setattr__(self, "_num_virtual_tokens", nvt)
        object.__setattr__(self, "_num_transformer_submodules", subs)

    # -- construction -----------------------------------------------------------------------------------------

    @classmethod
    def from_tensor(
        cls,
        tensor: torch.Tensor,
        *,
        origin_id: str,
        terms: Mapping[str, float] | None = None,
        task: str | None = None,
        base_model: str = UNKNOWN_MODEL,
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int = 1,
    ) -> TaskPromptVector:
        """Wrap an existing difference tensor with its metadata.

        Args:
            tensor: values of the vector, shape ``(rows, dim)``.
            origin_id: content hash of the origin it was tuned from.
            terms: the composition; give this or ``task``.
            task: shorthand for ``terms={task: 1.0}``.
            base_model: id of the model.
            num_virtual_tokens: virtual tokens per submodule (default: inferred from rows).
            num_transformer_submodules: 1, or 2 for encoder-decoder models.

        Returns:
            The vector.

        Raises:
            ConfigError: both or neither of ``terms`` and ``task`` given.
            InvalidVectorError: bad tensor or metadata.
        """
        return cls(
            tensor,
            origin_id=origin_id,
            terms=_terms_from(terms, task),
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    @classmethod
    def from_prompts(
        cls,
        tuned: torch.Tensor,
        origin: Origin | torch.Tensor,
        *,
        task: str | None = None,
        terms: Mapping[str, float] | None = None,
        base_model: str | None = None,
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> TaskPromptVector:
        """Compute ``tau = tuned - origin``.

        The difference is computed in ``dtype`` (float64 by default): a float32 or bfloat16 difference is then
        exact, so :meth:`apply_to` gives back the tuned prompt bit for bit.

        Args:
            tuned: the tuned soft prompt, shape ``(rows, dim)``.
            origin: the origin it was tuned from: an :class:`~tpv.Origin` or its tensor, shape ``(rows, dim)``.
            task: the task's name (terms ``{task: 1.0}``); give this or ``terms``.
            terms: an explicit composition.
            base_model: model id; defaults to the origin's, else ``"unknown"``.
            num_virtual_tokens: defaults to the origin's, else ``rows // num_transformer_submodules``.
            num_transformer_submodules: defaults to the origin's, else 1.
            dtype: floating dtype of the stored difference.

        Returns:
            The task prompt vector.

        Raises:
            IncompatibleVectorsError: tuned and origin differ in shape.
            InvalidVectorError: non-finite values, bad metadata.
        """
        from tpv.origin import Origin

        t = check_prompt_tensor(tuned, what="tuned prompt")
        if isinstance(origin, Origin):
            o, oid = origin.tensor, origin.id
            base_model = base_model or origin.base_model
            num_virtual_tokens = num_virtual_tokens or origin.num_virtual_tokens
            num_transformer_submodules = num_transformer_submodules or origin.num_transformer_submodules
        else:
            o = check_prompt_tensor(origin, what="origin")
            oid = content_hash(o)
        if t.shape != o.shape:
            raise IncompatibleVectorsError(
                f"tuned prompt has shape {tuple(t.shape)} but its origin has shape {tuple(o.shape)}; "
                "pass the origin this prompt was tuned from"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        return cls(
            t.to(dtype) - o.to(dtype),
            origin_id=oid,
            terms=_terms_from(terms, task),
            base_model=base_model or UNKNOWN_MODEL,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules or 1,
        )

    @classmethod
    def zeros_like(cls, other: TaskPromptVector) -> TaskPromptVector:
        """The zero vector with ``other``'s metadata and no terms (the identity of ``+``)."""
        return other._replace(torch.zeros_like(other._tensor), {})

    # -- attributes ---------------------------------------------------------------------------------------------

    @property
    def tensor(self) -> torch.Tensor:
        """A copy of the values, shape ``(rows, dim)``."""
        return self._tensor.clone()

    @property
    def origin_id(self) -> str:
        """Content hash of the origin this vector was tuned from."""
        return self._origin_id

    @property
    def terms(self) -> Mapping[str, float]:
        """Read-only mapping task -> coefficient, sorted by task name, without zero coefficients."""
        return self._terms

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TaskPromptVector is immutable; {name!r} cannot be set (operators return new vectors)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TaskPromptVector is immutable; {name!r} cannot be deleted")

    def describe(self) -> str:
        """One line naming the vector: terms, shape, dtype, origin and model (used in error messages)."""
        return (
            f"vector {_fmt_terms(self._terms)} (origin {self._origin_id}, model {self._base_model}, "
            f"shape {self.shape}, {str(self.dtype).removeprefix('torch.')})"
        )

    def __repr__(self) -> str:
        return (
            f"TaskPromptVector(terms={dict(self._terms)!r}, shape={self.shape}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, origin_id={self._origin_id!r}, "
            f"base_model={self._base_model!r})"
        )

    def summary(self) -> dict[str, str]:
        """What a notebook shows: terms, shape, dtype, norm, origin and model, as display strings."""
        return {
            "terms": _fmt_terms(self._terms),
            "shape": f"{self.shape[0]} x {self.shape[1]} ({self._num_virtual_tokens} virtual tokens"
            + (f" x {self._num_transformer_submodules} submodules)" if self._num_transformer_submodules > 1 else ")"),
            "dtype": str(self.dtype).removeprefix("torch."),
            "norm": f"{self.norm():.4g}",
            "origin": self._origin_id,
            "model": self._base_model,
        }

    def _repr_html_(self) -> str:
        return html_table("TaskPromptVector", self.summary())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(text_summary("TaskPromptVector", self.summary()))

    def with_base_model(self, base_model: str) -> TaskPromptVector:
        """The same vector labelled with another model id (an explicit relabel; values, origin and terms unchanged).

        Use it when one model was recorded under two names (e.g. a Hub id and a local copy) and you know they are
        the same weights; vectors of genuinely different models must be moved with :func:`tpv.transfer` instead.
        """
        if not isinstance(base_model, str) or not base_model:
            raise InvalidVectorError(f"base_model must be a non-empty string, got {base_model!r}")
        new = self._replace(self._tensor, self._terms)
        object.__setattr__(new, "_base_model", canonical_model_id(base_model))
        return new

    # -- compatibility ----------------------------------------------------------------------------------------

    def check_compatible(self, other: TaskPromptVector, *, op: str = "combine") -> None:
        """Raise :class:`IncompatibleVectorsError` unless ``other`` can be combined with this vector.

        Two vectors combine when they share origin id, shape, dtype, base model and token layout.

        Args:
            other: the other vector.
            op: the operation's name, for the message.

        Raises:
            IncompatibleVectorsError: naming both sides, what differs and the fix.
        """
        if not isinstance(other, TaskPromptVector):
            raise IncompatibleVectorsError(f"cannot {op} a TaskPromptVector with {type(other).__name__}")
        problems: list[tuple[str, str]] = []
        if self._origin_id != other._origin_id:
            problems.append(
                (
                    f"different origins ({self._origin_id} vs {other._origin_id})",
                    "vectors combine only when tuned from the same origin: re-tune one from the other's "
                    "origin, or apply each to its own origin and compare prompts instead",
                )
            )
        if self.shape != other.shape:
            problems.append((f"different shapes ({self.shape} vs {other.shape})", "use the same prompt length"))
        if self.dtype != other.dtype:
            problems.append((f"different dtypes ({self.dtype} vs {other.dtype})", "convert one with .to(other.dtype)"))
        if self._base_model != other._base_model:
            problems.append(
                (
                    f"different base models ({self._base_model!r} vs {other._base_model!r})",
                    "vectors of different models live in different spaces: move one with tpv.transfer",
                )
            )
        if self._num_transformer_submodules != other._num_transformer_submodules:
            problems.append(
                (
                    "different transformer submodules "
                    f"({self._num_transformer_submodules} vs {other._num_transformer_submodules})",
                    "use vectors of the same model type",
                )
            )
        if problems:
            what = "; ".join(p for p, _ in problems)
            fix = "; ".join(dict.fromkeys(f for _, f in problems))
            raise IncompatibleVectorsError(f"cannot {op} {self.describe()} and {other.describe()}: {what}. Fix: {fix}")

    # -- algebra ----------------------------------------------------------------------------------------------

    def _replace(self, tensor: torch.Tensor, terms: Mapping[str, float]) -> TaskPromptVector:
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidVectorError(f"the result of an operation on {self.describe()} overflowed to inf/NaN")
        new = object.__new__(TaskPromptVector)
        object.__setattr__(new, "_tensor", tensor)
        object.__setattr__(new, "_origin_id", self._origin_id)
        object.__setattr__(new, "_terms", MappingProxyType(_normalize_terms(terms)))
        object.__setattr__(new, "_base_model", self._base_model)
        object.__setattr__(new, "_num_virtual_tokens", self._num_virtual_tokens)
        object.__setattr__(new, "_num_transformer_submodules", self._num_transformer_submodules)
        return new

    def __add__(self, other: object) -> TaskPromptVector:
        if not isinstance(other, TaskPromptVector):
            return NotImplemented
        self.check_compatible(other, op="add")
        terms = dict(self._terms)
        for k, v in other._terms.items():
            terms[k] = terms.get(k, 0.0) + v
        return self._replace(self._tensor + other._tensor, terms)

    def __radd__(self, other: object) -> TaskPromptVector:
        # Lets the builtin sum() start from 0.
        if isinstance(other, int | float) and not isinstance(other, bool) and other == 0:
            return self
        if isinstance(other, TaskPromptVector):
            return other.__add__(self)
        return NotImplemented

    def __neg__(self) -> TaskPromptVector:
        return self._replace(-self._tensor, {k: -v for k, v in self._terms.items()})

    def __pos__(self) -> TaskPromptVector:
        return self

    def __sub__(self, other: object) -> TaskPromptVector:
        if not isinstance(other, TaskPromptVector):
            return NotImplemented
        self.check_compatible(other, op="subtract")
        terms = dict(self._terms)
        for k, v in other._terms.items():
            terms[k] = terms.get(k, 0.0) - v
        return self._replace(self._tensor - other._tensor, terms)

    def __mul__(self, k: object) -> TaskPromptVector:
        if isinstance(k, TaskPromptVector):
            raise ConfigError("vectors multiply by scalars only; for a similarity use a.cosine(b)")
        if isinstance(k, str | bytes) or not isinstance(k, int | float | torch.Tensor) or isinstance(k, bool):
            return NotImplemented
        c = check_scalar(k, what="scale factor")
        return self._replace(self._tensor * c, {t: v * c for t, v in self._terms.items()})

    __rmul__ = __mul__

    def __truediv__(self, k: object) -> TaskPromptVector:
        if isinstance(k, str | bytes) or not isinstance(k, int | float | torch.Tensor) or isinstance(k, bool):
            return NotImplemented
        c = check_scalar(k, what="divisor")
        if c == 0.0:
            raise ConfigError("cannot divide a vector by zero")
        return self._replace(self._tensor / c, {t: v / c for t, v in self._terms.items()})

    def __eq__(self, other: object) -> bool:
        """Exact equality: same values (bit for bit), terms and metadata."""
        if not isinstance(other, TaskPromptVector):
            return NotImplemented
        return (
            self._origin_id == other._origin_id
            and self._base_model == other._base_model
            and self._num_virtual_tokens == other._num_virtual_tokens
            and self._num_transformer_submodules == other._num_transformer_submodules
            and dict(self._terms) == dict(other._terms)
            and self._tensor.dtype == other._tensor.dtype
            and self._tensor.shape == other._tensor.shape
            and bool(torch.equal(self._tensor, other._tensor))
        )

    def allclose(self, other: TaskPromptVector, *, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
        """Equality up to floating-point tolerance (values and coefficients), with the same metadata."""
        self.check_compatible(other, op="compare")
        if set(self._terms) != set(other._terms):
            return False
        if any(not math.isclose(self._terms[k], other._terms[k], rel_tol=rtol, abs_tol=atol) for k in self._terms):
            return False
        return bool(torch.allclose(self._tensor, other._tensor, rtol=rtol, atol=atol))

    def to(self, dtype: torch.dtype) -> TaskPromptVector:
        """The same vector stored in another floating dtype."""
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ConfigError(f"dtype must be a floating dtype, got {dtype}")
        return self._replace(self._tensor.to(dtype), self._terms)

    # -- geometry ---------------------------------------------------------------------------------------------

    def norm(self) -> float:
        """Frobenius norm of the vector (computed in float64)."""
        return float(torch.linalg.vector_norm(self._tensor.double()))

    def cosine(self, other: TaskPromptVector | torch.Tensor) -> float:
        """Cosine similarity of the flattened values, in ``[-1, 1]``.

        Vectors of different origins may be compared (the paper's heatmaps do); shapes must match.

        Args:
            other: a vector or a tensor of the same shape ``(rows, dim)``.

        Returns:
            The cosine similarity.

        Raises:
            IncompatibleVectorsError: shapes differ.
            InvalidVectorError: one side is the zero vector (cosine undefined).
        """
        return float(cosine_matrix([self, other])[0, 1])

    def apply_to(self, origin: Origin | torch.Tensor, *, strict: bool = True) -> torch.Tensor:
        """The soft prompt ``origin + tau``, in the origin's dtype.

        The sum is computed in float64 and cast once, so a vector from :meth:`from_prompts` applied to its own
        origin gives back the tuned prompt bit for bit.

        Args:
            origin: an :class:`~tpv.Origin` or an origin tensor of shape ``(rows, dim)``.
            strict: check that the origin is the one this vector was tuned from (its content hash equals
                :attr:`origin_id`). Pass ``False`` to apply a vector to another origin on purpose (the paper's
                cross-origin experiment).

        Returns:
            The soft prompt, shape ``(rows, dim)``, dtype of the origin.

        Raises:
            IncompatibleVectorsError: shape mismatch, or (when ``strict``) another origin.
        """
        from tpv.origin import Origin

        if isinstance(origin, Origin):
            o, oid = origin.tensor, origin.id
        else:
            o = check_prompt_tensor(origin, what="origin")
            oid = content_hash(o) if strict else ""
        if tuple(o.shape) != self.shape:
            raise IncompatibleVectorsError(
                f"cannot apply {self.describe()} to an origin of shape {tuple(o.shape)}: shapes differ"
            )
        if strict and oid != self._origin_id:
            raise IncompatibleVectorsError(
                f"{self.describe()} was tuned from origin {self._origin_id}, but the origin given is {oid}. "
                "Fix: pass the origin it was tuned from (e.g. tpv.load('origin.safetensors')), "
                "or strict=False to apply it to another origin on purpose"
            )
        return (o.double() + self._tensor.double()).to(o.dtype)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidVectorError(f"{name} must be a positive integer, got {value!r}")
    return value


def _terms_from(terms: Mapping[str, float] | None, task: str | None) -> Mapping[str, float]:
    if (terms is None) == (task is None):
        raise ConfigError("give exactly one of task='name' or terms={'name': coefficient}")
    if task is not None:
        if not isinstance(task, str) or not task:
            raise ConfigError(f"task must be a non-empty string, got {task!r}")
        return {task: 1.0}
    assert terms is not None
    return terms


def mean(vectors: Iterable[TaskPromptVector]) -> TaskPromptVector:
    """The average of vectors: ``sum(vectors) / len(vectors)``; terms are averaged likewise.

    Args:
        vectors: one or more compatible vectors.

    Returns:
        The mean vector.

    Raises:
        ConfigError: no vectors given.
        IncompatibleVectorsError: vectors of different origins, shapes, dtypes or models.
    """
    items = list(vectors)
    if not items:
        raise ConfigError("tpv.mean needs at least one vector, got none")
    total: TaskPromptVector = sum(items[1:], items[0])
    return total / len(items)


def cosine_matrix(items: Sequence[TaskPromptVector | torch.Tensor]) -> torch.Tensor:
    """Pairwise cosine similarities of vectors or prompt tensors.

    Args:
        items: ``n`` vectors or tensors, all of the same shape ``(rows, dim)``; origins may differ.

    Returns:
        A float64 tensor of shape ``(n, n)`` with ones on the diagonal.

    Raises:
        ConfigError: fewer than one item.
        IncompatibleVectorsError: shapes differ.
        InvalidVectorError: an item is all zeros.
    """
    if len(items) == 0:
        raise ConfigError("cosine_matrix needs at least one vector")
    flat: list[torch.Tensor] = []
    shape0: tuple[int, ...] | None = None
    for i, item in enumerate(items):
        t = item._tensor if isinstance(item, TaskPromptVector) else check_prompt_tensor(item, what=f"item {i}")
        if shape0 is None:
            shape0 = tuple(t.shape)
        elif tuple(t.shape) != shape0:
            raise IncompatibleVectorsError(
                f"cosine similarity needs equal shapes: item 0 has {shape0}, item {i} has {tuple(t.shape)}"
            )
        flat.append(t.reshape(-1).double())
    x = torch.stack(flat)  # (n, rows * dim)
    norms = torch.linalg.vector_norm(x, dim=1)  # (n,)
    if bool((norms == 0).any()):
        zero = int(torch.nonzero(norms == 0)[0])
        raise InvalidVectorError(f"item {zero} is all zeros: its cosine similarity is undefined")
    x = x / norms[:, None]
    sim = (x @ x.T).clamp(-1.0, 1.0)  # (n, n)
    sim.fill_diagonal_(1.0)
    return sim
