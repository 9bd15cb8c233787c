"""Relative encodings: a prompt described by its similarities to anchor embeddings, not by its coordinates.

Two models embed words in different spaces (different widths, bases and scales), but the *angles* between a
vector and the words of a shared vocabulary are comparable across models (Moschella et al., "Relative
representations enable zero-shot latent space communication", ICLR 2023). A soft prompt row ``x`` of a model
with anchor embeddings ``A`` (one row per shared word) is encoded as::

    rel(x) = cos(x, A)          # (rows, n_anchors): row i, column j = cosine(x_i, a_j)

A projection is a pure function ``(x, *, anchors) -> Tensor`` registered by name (the latentis convention), so
new ones plug in with :func:`register_projection`. Built in:

* ``cosine``: PTfer's encoding (Wu, Wu, Mou, ICLR 2024). Unchanged by any rotation or reflection applied to both
  the prompt and the anchors, and by any positive rescale of either (each prompt row may even be scaled alone).
* ``centered-cosine``: cosine after subtracting the anchors' mean from both; also unchanged by a shared
  translation of the space.

:func:`keep_top_k` keeps the ``k`` largest entries per row (PTfer's ``topk``), zeroing the rest: sparser codes
that ignore the many near-zero similarities.

Example:
    >>> import torch
    >>> from tpv.transfer.relative import encode
    >>> anchors = torch.eye(3)                      # (n_anchors, dim)
    >>> encode(torch.tensor([[2.0, 0.0, 0.0]]), anchors=anchors)
    tensor([[1., 0., 0.]])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812

from tpv.errors import ConfigError

__all__ = [
    "PROJECTIONS",
    "Projection",
    "centered_cosine",
    "cosine",
    "encode",
    "get_projection",
    "keep_top_k",
    "register_projection",
]


class Projection(Protocol):
    """A relative projection: ``(x (rows, dim), *, anchors (n_anchors, dim)) -> (rows, n_anchors)``."""

    def __call__(self, x: torch.Tensor, *, anchors: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ...


PROJECTIONS: dict[str, Projection] = {}
"""Registered projections, by name."""


def register_projection(name: str) -> Callable[[Projection], Projection]:
    """Register a projection function under ``name`` (decorator).

    Args:
        name: the registry key, e.g. ``"cosine"``.

    Returns:
        A decorator that stores the function and returns it unchanged.

    Raises:
        ConfigError: the name is taken.
    """

    def decorate(fn: Projection) -> Projection:
        if name in PROJECTIONS:
            raise ConfigError(f"a relative projection named {name!r} is already registered")
        PROJECTIONS[name] = fn
        return fn

    return decorate


def get_projection(name: str) -> Projection:
    """The projection registered as ``name``.

    Raises:
        ConfigError: no such projection (the message lists the registered ones).
    """
    fn = PROJECTIONS.get(name)
    if fn is None:
        raise ConfigError(f"unknown relative projection {name!r}; registered: {', '.join(sorted(PROJECTIONS))}")
    return fn


def _check(x: torch.Tensor, anchors: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ConfigError(f"x must be a float tensor (rows, dim), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(anchors, torch.Tensor) or anchors.ndim != 2 or not anchors.is_floating_point():
        got = getattr(anchors, "shape", type(anchors).__name__)
        raise ConfigError(f"anchors must be a float tensor (n_anchors, dim), got {got}")
    if x.shape[1] != anchors.shape[1]:
        raise ConfigError(
            f"x is {x.shape[1]} wide but the anchors are {anchors.shape[1]} wide: encode a prompt against anchor "
            "embeddings of its own model"
        )


@register_projection("cosine")
def cosine(x: torch.Tensor, *, anchors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``x`` to every anchor.

    Args:
        x: prompt rows, shape ``(rows, dim)``.
        anchors: anchor embeddings of the same model, shape ``(n_anchors, dim)``.

    Returns:
        Shape ``(rows, n_anchors)``, values in ``[-1, 1]`` (a zero row encodes as zeros).
    """
    _check(x, anchors)
    return F.normalize(x, dim=-1) @ F.normalize(anchors, dim=-1).T  # (rows, n_anchors)


@register_projection("centered-cosine")
def centered_cosine(x: torch.Tensor, *, anchors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity after moving the origin of the space to the anchors' mean.

    Args:
        x: prompt rows, shape ``(rows, dim)``.
        anchors: anchor embeddings of the same model, shape ``(n_anchors, dim)``.

    Returns:
        Shape ``(rows, n_anchors)``.
    """
    _check(x, anchors)
    center = anchors.mean(dim=0, keepdim=True)  # (1, dim)
    return cosine(x - center, anchors=anchors - center)  # (rows, n_anchors)


def encode(x: torch.Tensor, *, anchors: torch.Tensor, projection: str = "cosine") -> torch.Tensor:
    """Relative encoding of prompt rows with a registered projection.

    Args:
        x: prompt rows, shape ``(rows, dim)``.
        anchors: anchor embeddings of the same model, shape ``(n_anchors, dim)``.
        projection: a name in :data:`PROJECTIONS`.

    Returns:
        Shape ``(rows, n_anchors)``.
    """
    return get_projection(projection)(x, anchors=anchors)


def keep_top_k(code: torch.Tensor, k: int | None, *, absolute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` largest entries of each row of a relative code, zeroing the rest.

    Args:
        code: a relative code, shape ``(rows, n_anchors)``.
        k: entries kept per row; ``None`` (or ``k >= n_anchors``) keeps all.
        absolute: rank entries by absolute value (keep strong negative similarities too).

    Returns:
        ``(masked code, mask)``, both shape ``(rows, n_anchors)``; the mask is 1.0 where kept, else 0.0.

    Raises:
        ConfigError: ``k`` is not a positive integer.
    """
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"top_k must be a positive integer or None, got {k!r}")
    if k is None or k >= code.shape[-1]:
        return code, torch.ones_like(code)
    ranked = code.abs() if absolute else code
    idx = ranked.topk(k, dim=-1).indices  # (rows, k)
    mask = torch.zeros_like(code).scatter_(-1, idx, 1.0)  # (rows, n_anchors)
    return code * mask, mask
