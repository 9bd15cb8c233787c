"""The merge methods as pure tensor functions over stacked vectors (the registry is :mod:`tpv.merge`).

Every method is ``fn(stacked, weights, **params) -> Tensor``: ``stacked`` holds the ``n`` vectors' values, shape
``(n, rows, dim)``; ``weights`` has shape ``(n,)`` (one weight per vector) or ``(n, rows)`` (per vector and prompt
row). Nothing here knows :class:`~tpv.TaskPromptVector`, names or papers: :mod:`tpv.merge` checks vectors, stacks
them, picks a method by name and wraps the result.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "dare",
    "dare_ties",
    "disjoint_merge",
    "elect_sign",
    "magnitude",
    "mean_merge",
    "per_token",
    "task_arithmetic",
    "ties",
    "trim_magnitude",
]


# -- building blocks (pure) -----------------------------------------------------------------------------------


def _weight_of(weights: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
    """Weight ``i`` shaped to broadcast against ``x`` of shape ``(rows, dim)``.

    A scalar weight stays a 0-dim tensor, so ``x * w`` computes exactly what ``x * float(w)`` does (the vector
    algebra's path); a per-row weight is cast to ``x``'s dtype and shaped ``(rows, 1)``.
    """
    w = weights[i]
    if w.ndim == 0:
        return w
    return w.to(x.dtype)[:, None]  # (rows, 1)


def _weighted_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i * v_i``, accumulated left to right exactly like ``sum(w_i * v_i)`` over vectors."""
    out = stacked[0] * _weight_of(weights, 0, stacked[0])  # (rows, dim)
    for i in range(1, stacked.shape[0]):
        out = out + stacked[i] * _weight_of(weights, i, stacked[i])  # (rows, dim)
    return out


def _weighted_stack(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each vector times its weight, still stacked: ``(n, rows, dim)``."""
    return torch.stack([stacked[i] * _weight_of(weights, i, stacked[i]) for i in range(stacked.shape[0])])


def trim_magnitude(stacked: torch.Tensor, density: float) -> torch.Tensor:
    """Keep each vector's ``density`` fraction of entries with the largest magnitude, zero the rest.

    The number kept per vector is ``round(density * rows * dim)``, at least 1; at ``density = 1`` the input is
    returned unchanged (a copy). Ties in magnitude are broken by ``torch.topk``'s order (deterministic on CPU).

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        density: fraction kept, in ``(0, 1]``.

    Returns:
        The trimmed vectors, shape ``(n, rows, dim)``.
    """
    n = stacked.shape[0]
    flat = stacked.reshape(n, -1)  # (n, rows * dim)
    numel = flat.shape[1]
    k = max(1, math.floor(density * numel + 0.5))
    if k >= numel:
        return stacked.clone()
    idx = flat.abs().topk(k, dim=1).indices  # (n, k)
    keep = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)  # (n, rows * dim)
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(stacked.shape)  # (n, rows, dim)


def elect_sign(stacked: torch.Tensor) -> torch.Tensor:
    """TIES's sign election: per entry, the sign of the total mass ``sum_i v_i`` (``+1`` where it is 0).

    Args:
        stacked: (weighted, trimmed) vectors, shape ``(n, rows, dim)``.

    Returns:
        The elected signs, ``+1`` or ``-1``, shape ``(rows, dim)``, dtype of the input.
    """
    total = stacked.sum(dim=0)  # (rows, dim)
    one = torch.ones_like(total)
    return torch.where(total >= 0, one, -one)  # (rows, dim)


def disjoint_merge(stacked: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """TIES's disjoint merge: per entry, the mean of the values whose sign agrees with the elected one.

    Zeros (trimmed or dropped entries) never count; an entry no vector agrees on is 0.

    Args:
        stacked: (weighted, trimmed) vectors, shape ``(n, rows, dim)``.
        sign: elected signs, shape ``(rows, dim)``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    agree = torch.sign(stacked) == sign  # (n, rows, dim); False where a value is 0
    kept = torch.where(agree, stacked, torch.zeros_like(stacked))  # (n, rows, dim)
    count = agree.sum(dim=0).clamp(min=1).to(stacked.dtype)  # (rows, dim)
    total = kept[0]  # (rows, dim)
    for i in range(1, stacked.shape[0]):
        total = total + kept[i]
    return total / count  # (rows, dim)


def _dare_drop(stacked: torch.Tensor, density: float, seed: int) -> torch.Tensor:
    """Keep each entry with probability ``density`` (drop with ``p = 1 - density``), rescale kept by 1/density."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(stacked.shape, generator=gen, dtype=torch.float64)  # (n, rows, dim) in [0, 1)
    keep = u < density  # (n, rows, dim); all True at density 1
    return torch.where(keep, stacked / density, torch.zeros_like(stacked))  # (n, rows, dim)


# -- the methods (pure) ---------------------------------------------------------------------------------------


def task_arithmetic(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Task arithmetic: the weighted sum ``sum_i w_i * v_i`` (Ilharco et al., arXiv 2212.04089).

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    return _weighted_sum(stacked, weights)


def mean_merge(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean ``sum_i w_i * v_i / sum_i w_i``; with unit weights the plain average (model soups).

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``; their sum (per row) must not be 0.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    total = _weighted_sum(stacked, weights)  # (rows, dim)
    if weights.ndim == 1:
        return total / float(weights.sum())
    return total / weights.sum(dim=0).to(total.dtype)[:, None]  # (rows, dim)


def norm_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum rescaled to the mean norm of its weighted terms (tpv's norm-aware sum).

    Summing ``n`` vectors of similar norm gives a vector up to ``n`` times longer than any of them, far from the
    scale a prompt was tuned at; this keeps the sum's direction and gives it ``mean_i ||w_i * v_i||`` (Frobenius
    norms over the whole prompt). With unit weights: the sum scaled to the inputs' mean norm. A zero sum stays zero.

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    weighted = _weighted_stack(stacked, weights)  # (n, rows, dim)
    total = weighted.sum(dim=0)  # (rows, dim)
    norm = torch.linalg.vector_norm(total)
    if float(norm) == 0.0:
        return total
    target = torch.linalg.vector_norm(weighted.flatten(1), dim=1).mean()  # mean over the n terms
    return total * (target / norm)


def per_token(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-token weighted sum: row ``r`` of the result is ``sum_i w[i, r] * v_i[r]``.

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n, rows)``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    return _weighted_sum(stacked, weights)


def magnitude(stacked: torch.Tensor, weights: torch.Tensor, *, density: float) -> torch.Tensor:
    """Magnitude pruning: trim each vector to its top-``density`` entries by magnitude, then the weighted sum.

    This is TIES's trim step without sign election (Yadav et al., arXiv 2306.01708); nothing is rescaled.

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.
        density: fraction of entries kept per vector, in ``(0, 1]``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    return _weighted_sum(trim_magnitude(stacked, density), weights)


def ties(stacked: torch.Tensor, weights: torch.Tensor, *, density: float) -> torch.Tensor:
    """TIES-merging (Yadav et al., arXiv 2306.01708): trim, elect sign, disjoint merge.

    Each vector keeps its top-``density`` entries by magnitude; the trimmed vectors are weighted; each entry's
    sign is elected by the total weighted mass; the result is the mean of the weighted values that agree with
    the elected sign (as in PEFT's ``ties``). Scale the result (or search a lambda) to apply it.

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.
        density: fraction of entries kept per vector, in ``(0, 1]``.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    weighted = _weighted_stack(trim_magnitude(stacked, density), weights)  # (n, rows, dim)
    return disjoint_merge(weighted, elect_sign(weighted))


def dare(stacked: torch.Tensor, weights: torch.Tensor, *, density: float, seed: int) -> torch.Tensor:
    """DARE (Yu et al., arXiv 2311.03099): random drop with ``p = 1 - density``, rescale by 1/density, sum.

    The drop masks come from a private generator seeded with ``seed`` (global RNG untouched), one independent
    mask per vector; the expectation of the result over seeds is the weighted sum of the inputs.

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.
        density: keep probability, in ``(0, 1]``.
        seed: seed of the drop masks.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    return _weighted_sum(_dare_drop(stacked, density, seed), weights)


def dare_ties(stacked: torch.Tensor, weights: torch.Tensor, *, density: float, seed: int) -> torch.Tensor:
    """DARE's drop and rescale, then TIES's sign election and disjoint merge (Yu et al., arXiv 2311.03099).

    Args:
        stacked: the vectors, shape ``(n, rows, dim)``.
        weights: shape ``(n,)`` or ``(n, rows)``.
        density: keep probability, in ``(0, 1]``.
        seed: seed of the drop masks.

    Returns:
        The merged values, shape ``(rows, dim)``.
    """
    weighted = _weighted_stack(_dare_drop(stacked, density, seed), weights)  # (n, rows, dim)
    return disjoint_merge(weighted, elect_sign(weighted))
