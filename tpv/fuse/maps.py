"""The fitted FUSE maps: :class:`FuseMap`, ``G_1 .. G_K`` from one model's embedding space to another's.

Fitted by :func:`tpv.fuse.fit` (:mod:`tpv.fuse.fit`), stored by :mod:`tpv.fuse.cache`, used by :mod:`tpv.fuse.bridge`
and :mod:`tpv.fuse.move`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tpv.errors import ConfigError, MapMismatchError
from tpv.fuse.tproduct import t_product
from tpv.spaces import EmbeddingSpace

__all__ = ["FuseMap"]


@dataclass(frozen=True, eq=False)
class FuseMap:
    """Fitted FUSE maps from a source model's embedding space to a target model's, one per word length.

    Attributes:
        maps: ``{k: G_k}``, each float32 of shape ``(d_s, d_t, k)``, for ``k = 1 .. max_subtokens``.
        source: fingerprint of the source space (:meth:`EmbeddingSpace.fingerprint`).
        target: fingerprint of the target space.
        word_source: where the fitting words came from.
        words_per_k: number of fitting words per ``k``.
        solvers: ``"pinv"``, ``"ridge(<lambda>)"`` or ``"positionwise(G_1)"`` per ``k``.
        settings: the fit's options (max_subtokens, min_words, max_words_per_k, seed, rcond, ridge,
            ridge_fallback, few_words, word_prefix, words_sha256).
        fit_seconds: wall time of the fit (tokenizing, stacking, solving).
        created: UTC time of the fit, ISO 8601.
        library_version: the tpv version that fitted it.
    """

    maps: Mapping[int, torch.Tensor]
    source: Mapping[str, Any]
    target: Mapping[str, Any]
    word_source: str
    words_per_k: Mapping[int, int]
    solvers: Mapping[int, str]
    settings: Mapping[str, Any]
    fit_seconds: float = 0.0
    created: str = ""
    library_version: str = ""

    def __post_init__(self) -> None:
        ks = sorted(self.maps)
        if not ks or ks != list(range(1, len(ks) + 1)):
            raise ConfigError(f"a FuseMap needs maps for k = 1 .. K, got k = {ks}")
        d = None
        for k in ks:
            g = self.maps[k]
            if g.ndim != 3 or g.shape[2] != k or (d is not None and tuple(g.shape[:2]) != d):
                raise ConfigError(f"map G_{k} must have shape (d_s, d_t, {k}), got {tuple(g.shape)}")
            d = tuple(g.shape[:2])

    @property
    def max_subtokens(self) -> int:
        """``K``: the longest word (in target subtokens) a map exists for."""
        return max(self.maps)

    @property
    def source_dim(self) -> int:
        """Source embedding width ``d_s``."""
        return int(self.maps[1].shape[0])

    @property
    def target_dim(self) -> int:
        """Target embedding width ``d_t``."""
        return int(self.maps[1].shape[1])

    @property
    def source_model(self) -> str:
        """Source model id."""
        return str(self.source.get("model", "unknown"))

    @property
    def target_model(self) -> str:
        """Target model id."""
        return str(self.target.get("model", "unknown"))

    def describe(self) -> str:
        """One line: direction, widths, K and words."""
        counts = ", ".join(f"k={k}: {n}" for k, n in sorted(self.words_per_k.items()))
        return (
            f"FUSE map {self.source_model} ({self.source_dim}) -> {self.target_model} ({self.target_dim}), "
            f"K={self.max_subtokens}, words {counts}"
        )

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def map_words(self, x: torch.Tensor) -> torch.Tensor:
        """Map source words of ``k`` subtokens to the target space: ``x *_t G_k``.

        Args:
            x: ``(n, d_s, k)``, each word stacked and padded as in the fit (zeros after its source subtokens).

        Returns:
            ``(n, d_t, k)`` in the dtype of ``x``.

        Raises:
            ConfigError: wrong width, or ``k`` outside ``1 .. K``.
        """
        if x.ndim != 3 or x.shape[1] != self.source_dim:
            raise ConfigError(f"map_words needs (n, {self.source_dim}, k), got {tuple(x.shape)}")
        k = int(x.shape[2])
        if k not in self.maps:
            raise ConfigError(f"no map for words of {k} subtokens: this map has k = 1 .. {self.max_subtokens}")
        return t_product(x, self.maps[k].to(x.dtype))

    def check(self, source: EmbeddingSpace | Mapping[str, Any], target: EmbeddingSpace | Mapping[str, Any]) -> None:
        """Raise unless this map was fitted for exactly these source and target spaces.

        Args:
            source: the source space or its fingerprint.
            target: the target space or its fingerprint.

        Raises:
            MapMismatchError: naming each differing field (model, tokenizer hash, vocab size, embeddings).
        """
        problems: list[str] = []
        for side, mine, given in (("source", self.source, source), ("target", self.target, target)):
            fp = given.fingerprint() if isinstance(given, EmbeddingSpace) else dict(given)
            for key in ("model", "tokenizer_sha256", "vocab_size", "embedding_shape", "embedding_sha256"):
                if key in fp and key in mine and _norm(fp[key]) != _norm(mine[key]):
                    problems.append(f"{side} {key}: map has {mine[key]!r}, given {fp[key]!r}")
        if problems:
            raise MapMismatchError(
                f"{self.describe()} does not match the models given: " + "; ".join(problems) + ". Fix: fit a map "
                "for these models (tpv.fuse.fit(source, target, refit=True), or `tpv fuse fit --refit`)"
            )


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v
