"""The similarity heatmap: written atomically, in the suffix's format, with labels; bad input rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tpv
from tpv.plots import plot_similarity

MATRIX = torch.tensor([[1.0, 0.25, -0.5], [0.25, 1.0, 0.1], [-0.5, 0.1, 1.0]])
LABELS = ["sst2", "imdb", "trec"]


def test_png_is_written(tmp_path: Path) -> None:
    """A .png path gets a PNG image and nothing else is left in the folder."""
    out = plot_similarity(MATRIX, LABELS, tmp_path / "sim.png", title="cosine")
    assert out == tmp_path / "sim.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sim.png"]


def test_svg_holds_labels_title_and_annotations(tmp_path: Path) -> None:
    """The SVG names every label, the title and the annotated values."""
    out = plot_similarity(MATRIX.tolist(), LABELS, tmp_path / "sim.svg", title="same task, other origins")
    text = out.read_text()
    for needle in ("sst2", "imdb", "trec", "same task, other origins", "0.25", "-0.50"):
        assert needle in text


def test_existing_file_is_replaced(tmp_path: Path) -> None:
    """Writing over an existing file replaces it."""
    out = tmp_path / "sim.png"
    out.write_bytes(b"old")
    plot_similarity(MATRIX, LABELS, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_bad_input_is_rejected(tmp_path: Path) -> None:
    """Non-square matrices, label mismatches, unknown suffixes and NaNs are ConfigErrors; nothing is written."""
    with pytest.raises(tpv.ConfigError, match="square"):
        plot_similarity(torch.ones(2, 3), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(tpv.ConfigError, match="2 label"):
        plot_similarity(MATRIX, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(tpv.ConfigError, match="suffix"):
        plot_similarity(MATRIX, LABELS, tmp_path / "x.bmp")
    with pytest.raises(tpv.ConfigError, match="non-finite"):
        plot_similarity(torch.full((2, 2), float("nan")), ["a", "b"], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
