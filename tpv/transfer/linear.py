"""The linear baseline: a map between two embedding spaces fitted on the shared anchors' embeddings.

With ``X`` the anchors' source embeddings ``(n, d_s)`` and ``Y`` their target embeddings ``(n, d_t)`` (the same
words, row for row), fit ``W`` so that ``(X - mean_X) W + mean_Y ≈ Y``, then move any source prompt row ``x`` to
``(x - mean_X) W + mean_Y``. Two fits:

* ``lstsq``: ordinary (optionally ridge-regularized and anchor-weighted) least squares, ``W (d_s, d_t)``; any
  linear map is recovered exactly when ``n >= d_s`` anchors span the source space.
* ``procrustes``: the best *orthogonal* map (optionally times one global scale). The two widths usually differ
  (SmolLM2 576, Gemma 640), so the narrower side is **zero-padded** to ``d = max(d_s, d_t)``, the orthogonal
  ``R (d, d)`` solving ``min ||X_pad R - Y_pad||`` is found by SVD (``X_padᵀ Y_pad = U S Vᵀ``, ``R = U Vᵀ``), and
  the map keeps ``W = s * R[:d_s, :d_t]``: the padded source coordinates are always zero (so only the first
  ``d_s`` rows of ``R`` act) and the output is **projected** on the first ``d_t`` coordinates (the target's own;
  the padded ones are dropped). When the target is at least as wide, ``W`` is an isometry up to ``s``; when it is
  narrower, ``W`` is an orthogonal map followed by a projection. ``s = trace(S) / ||X_pad||²`` (scaled
  Procrustes) makes up for different embedding norms; pass ``scale=False`` for the pure orthogonal map.

Because the map is affine, moving a task prompt vector is exact and origin-free: ``T(origin + tau) - T(origin) =
tau W`` (:meth:`LinearMap.apply_difference`).

Example:
    >>> import torch
    >>> from tpv.transfer.linear import fit_linear_map
    >>> x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    >>> q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1)))
    >>> m = fit_linear_map(x, x @ q, method="procrustes")
    >>> bool(torch.allclose(m.weight.float(), q, atol=1e-5))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from tpv.errors import ConfigError

__all__ = ["LinearMap", "LinearMethod", "fit_linear_map"]

LinearMethod = Literal["lstsq", "procrustes"]
LINEAR_METHODS: tuple[str, ...] = get_args(LinearMethod)


@dataclass(frozen=True)
class LinearMap:
    """An affine map ``x -> (x - source_mean) @ weight + target_mean`` between two embedding spaces.

    Attributes:
        weight: shape ``(source_dim, target_dim)``.
        source_mean: shape ``(source_dim,)`` (zeros when fitted without centering).
        target_mean: shape ``(target_dim,)``.
        method: ``"lstsq"`` or ``"procrustes"``.
        scale: the global scale of a Procrustes map (1.0 for least squares or ``scale=False``).
        residual: relative fit error on the anchors, ``||X W - Y|| / ||Y||`` (centered).
    """

    weight: torch.Tensor
    source_mean: torch.Tensor
    target_mean: torch.Tensor
    method: str
    scale: float = 1.0
    residual: float = 0.0

    @property
    def source_dim(self) -> int:
        """Width of the source space."""
        return int(self.weight.shape[0])

    @property
    def target_dim(self) -> int:
        """Width of the target space."""
        return int(self.weight.shape[1])

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.source_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError(f"this map takes (rows, {self.source_dim}) source rows; got {got}")
        return x.to(self.weight.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Map source rows to the target space: ``(rows, source_dim) -> (rows, target_dim)``."""
        return (self._check(x) - self.source_mean) @ self.weight + self.target_mean  # (rows, d_t)

    def apply_difference(self, delta: torch.Tensor) -> torch.Tensor:
        """Map a difference of source rows (a task prompt vector): ``delta @ weight``, no translation."""
        return self._check(delta) @ self.weight  # (rows, d_t)

    def summary(self) -> dict[str, Any]:
        """A JSON-serializable description for provenance records."""
        return {
            "method": self.method,
            "source_dim": self.source_dim,
            "target_dim": self.target_dim,
            "scale": self.scale,
            "residual": self.residual,
        }


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))  # (n, width)


def fit_linear_map(
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    method: LinearMethod = "lstsq",
    weights: torch.Tensor | None = None,
    center: bool = True,
    ridge: float = 0.0,
    scale: bool = True,
) -> LinearMap:
    """Fit a linear map on paired anchor embeddings.

    Args:
        source: the anchors' source embeddings, shape ``(n_anchors, source_dim)``.
        target: the same anchors' target embeddings, shape ``(n_anchors, target_dim)``.
        method: ``"lstsq"`` or ``"procrustes"`` (see the module docstring for different widths).
        weights: anchor weights, shape ``(n_anchors,)`` (weighted least squares / weighted Procrustes).
        center: subtract each side's (weighted) anchor mean first, so the map is affine.
        ridge: ``lstsq`` only: L2 penalty ``ridge * ||W||²`` (0: plain least squares).
        scale: ``procrustes`` only: fit one global scale too.

    Returns:
        The :class:`LinearMap` (float64).

    Raises:
        ConfigError: mismatched anchor counts, too few anchors, an unknown method, bad weights or ridge.
    """
    if method not in LINEAR_METHODS:
        raise ConfigError(f"method must be one of {', '.join(LINEAR_METHODS)}; got {method!r}")
    for name, t in (("source", source), ("target", target)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or not t.is_floating_point():
            raise ConfigError(f"{name} anchor embeddings must be a float tensor (n_anchors, dim)")
    if source.shape[0] != target.shape[0]:
        raise ConfigError(
            f"{source.shape[0]} source anchors but {target.shape[0]} target anchors: give the same words' rows"
        )
    if source.shape[0] < 2:
        raise ConfigError(f"a linear map needs at least 2 anchors, got {source.shape[0]}")
    if not ridge >= 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge!r}")
    x, y = source.detach().double().cpu(), target.detach().double().cpu()  # (n, d_s), (n, d_t)
    n, ds = x.shape
    dt = int(y.shape[1])
    if weights is None:
        w = torch.ones(n, dtype=torch.float64)
    else:
        w = weights.detach().double().cpu().reshape(-1)  # (n,)
        if w.shape[0] != n or bool((w <= 0).any()):
            raise ConfigError(f"weights must be {n} positive numbers, one per anchor")
    w = w / w.sum()
    mx = (w[:, None] * x).sum(0) if center else torch.zeros(ds, dtype=torch.float64)  # (d_s,)
    my = (w[:, None] * y).sum(0) if center else torch.zeros(dt, dtype=torch.float64)  # (d_t,)
    root = w.sqrt()[:, None]  # (n, 1)
    xc, yc = (x - mx) * root, (y - my) * root  # (n, d_s), (n, d_t)
    s = 1.0
    if method == "lstsq":
        if ridge > 0:
            gram = xc.T @ xc + ridge * torch.eye(ds, dtype=torch.float64)  # (d_s, d_s)
            weight = torch.linalg.solve(gram, xc.T @ yc)  # (d_s, d_t)
        else:
            weight = torch.linalg.lstsq(xc, yc, driver="gelsd").solution  # (d_s, d_t)
    else:
        d = max(ds, dt)
        xp, yp = _pad(xc, d), _pad(yc, d)  # (n, d), (n, d)
        u, sv, vh = torch.linalg.svd(xp.T @ yp)  # (d, d), (d,), (d, d)
        rot = u @ vh  # (d, d) orthogonal
        if scale:
            denom = float((xp * xp).sum())
            s = float(sv.sum()) / denom if denom > 0 else 1.0
        weight = s * rot[:ds, :dt]  # (d_s, d_t)
    fit = xc @ weight  # (n, d_t)
    norm_y = float(yc.norm())
    residual = float((fit - yc).norm()) / norm_y if norm_y > 0 else 0.0
    return LinearMap(weight=weight, source_mean=mx, target_mean=my, method=method, scale=s, residual=residual)
