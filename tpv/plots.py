"""Plots: the similarity heatmap (the paper's figure of cosine similarities between vectors or prompts).

matplotlib is imported on first use (install ``tpv[plot]``), with the non-interactive Agg backend; the
figure is rendered to bytes in memory and written atomically, so a failed render never leaves a half file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tpv._fs import atomic_write_bytes
from tpv.errors import ConfigError

__all__ = ["plot_similarity"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'tpv[plot]'") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_similarity(
    matrix: torch.Tensor | Sequence[Sequence[float]],
    labels: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
    *,
    annotate: bool = True,
    digits: int = 2,
    vmin: float = -1.0,
    vmax: float = 1.0,
    dpi: int = 150,
) -> Path:
    """Draw a similarity matrix as an annotated heatmap and write it to ``path`` atomically.

    Args:
        matrix: similarities, shape ``(n, n)`` (e.g. :func:`tpv.cosine_matrix` or a
            :class:`~tpv.select.SimilarityTable`'s ``matrix``).
        labels: one label per row and column.
        path: output file; the format follows the suffix: ``.png``, ``.svg`` or ``.pdf``.
        title: a title above the plot.
        annotate: write each cell's value in it.
        digits: decimals of the annotations.
        vmin: similarity at the bottom of the colour scale.
        vmax: similarity at the top of the colour scale.
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        ConfigError: a matrix that is not square or finite, labels that do not match it, an unknown suffix, or
            matplotlib missing.
    """
    m = torch.as_tensor(matrix, dtype=torch.float64).detach().cpu()  # (n, n)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ConfigError(f"a similarity matrix must be square (n, n) with n >= 1, got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ConfigError("the similarity matrix holds non-finite values")
    names = [str(x) for x in labels]
    if len(names) != m.shape[0]:
        raise ConfigError(f"got {len(names)} label(s) for a {m.shape[0]} x {m.shape[0]} matrix: one per row")
    dest = Path(path)
    fmt = _FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell the image format of {str(dest)!r}: use a suffix among {', '.join(_FORMATS)}")
    if not vmin < vmax:
        raise ConfigError(f"vmin must be below vmax, got vmin={vmin}, vmax={vmax}")
    plt = _pyplot()
    n = int(m.shape[0])
    side = max(3.0, 0.6 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    try:
        image = ax.imshow(m.numpy(), cmap="coolwarm", vmin=vmin, vmax=vmax)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
        ax.set_xticks(range(n), labels=names, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels=names)
        if annotate:
            span = vmax - vmin
            for i in range(n):
                for j in range(n):
                    value = float(m[i, j])
                    strong = abs((value - vmin) / span - 0.5) > 0.3
                    ax.text(j, i, f"{value:.{digits}f}", ha="center", va="center", fontsize=8,
                            color="white" if strong else "black")  # fmt: skip
        if title:
            ax.set_title(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return atomic_write_bytes(dest, buffer.getvalue())
