"""A model's token space without the model: its id, input-embedding matrix and tokenizer.

The one embedding-space type of tpv: cross-model transfer (:mod:`tpv.transfer`, as ``ModelSpace``) and FUSE maps
(:mod:`tpv.fuse`, as ``EmbeddingSpace``) both take it. Kept apart from :mod:`tpv.models` (loading models) so each
module holds one idea.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from tpv._tensor import content_hash
from tpv.errors import ConfigError
from tpv.models import input_embeddings, load_embeddings, load_tokenizer, model_name

__all__ = ["EmbeddingSpace", "as_space"]

_FINGERPRINT_ROWS = 4096


def _tokenizer_hash(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items()), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(f"{type(tokenizer).__name__}|{payload}".encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class EmbeddingSpace:
    """A model's token space: its id, the input embedding matrix it feeds its first layer, and its tokenizer.

    What cross-model code needs of a model without the model itself: :mod:`tpv.transfer` (as
    ``tpv.transfer.ModelSpace``) and :mod:`tpv.fuse` (as ``tpv.fuse.EmbeddingSpace``) both take it.

    Attributes:
        name: the model id recorded in results and maps (a packaged name such as ``smollm2-135m``, a folder or a
            Hub id).
        embeddings: the input embedding matrix as the model feeds it (Gemma's ``sqrt(hidden)`` scale applied),
            float, shape ``(vocab_rows, dim)``.
        tokenizer: the model's tokenizer (fast, for the offsets :mod:`tpv.fuse` reads), or ``None`` where no
            tokenizer is needed (e.g. a transfer with precomputed anchors).

    The former ``tpv.fuse.EmbeddingSpace(name, tokenizer, embeddings)`` argument order is accepted too: a tensor
    given as ``tokenizer`` and a non-tensor given as ``embeddings`` are swapped.
    """

    name: str
    embeddings: torch.Tensor
    tokenizer: Any = field(default=None, repr=False)
    _fingerprint: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, torch.Tensor) and not isinstance(self.embeddings, torch.Tensor):
            tok, emb = self.embeddings, self.tokenizer
            object.__setattr__(self, "embeddings", emb)
            object.__setattr__(self, "tokenizer", tok)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"an embedding space needs a non-empty model name, got {self.name!r}")
        e = self.embeddings
        if not isinstance(e, torch.Tensor) or e.ndim != 2 or not e.is_floating_point():
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ConfigError(f"embeddings of {self.name!r} must be a float tensor (vocab, dim), got {shape}")
        if self.tokenizer is not None and not callable(getattr(self.tokenizer, "get_vocab", None)):
            raise ConfigError(f"the tokenizer of {self.name!r} must be a transformers tokenizer (get_vocab missing)")

    def __repr__(self) -> str:
        rows, dim = self.embeddings.shape
        return f"EmbeddingSpace(name={self.name!r}, vocab_rows={rows}, dim={dim})"

    @property
    def dim(self) -> int:
        """The embedding width (a prompt row's width)."""
        return int(self.embeddings.shape[1])

    @functools.cached_property
    def stats(self) -> tuple[float, float]:
        """``(mean, std)`` of all entries of the embedding matrix (PTfer's standardization target)."""
        e = self.embeddings.double()
        return float(e.mean()), float(e.std())

    @functools.cached_property
    def mean_norm(self) -> float:
        """Mean row norm of the embedding matrix."""
        return float(self.embeddings.double().norm(dim=1).mean())

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str | None = None) -> EmbeddingSpace:
        """Take the space of a loaded ``transformers`` model (or a PEFT model wrapping one).

        Args:
            model: the model.
            tokenizer: its tokenizer.
            name: id to record; default :func:`model_name`.
        """
        return cls(name or model_name(model), input_embeddings(model), tokenizer)

    @classmethod
    def from_name(cls, name: str) -> EmbeddingSpace:
        """Load a model's tokenizer and input embeddings by tpv name, folder or Hub id (not cached).

        Raises:
            ModelError: unknown name or missing package (the message holds the install command).
        """
        return cls(name, load_embeddings(name), load_tokenizer(name))

    @classmethod
    def load(cls, name: str) -> EmbeddingSpace:
        """:meth:`from_name`, cached per process (the last four spaces loaded).

        Raises:
            ModelError: unknown name or missing package (the message holds the install command).
        """
        return _load_space(name)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this space in a fitted map: name, tokenizer hash and size, embedding shape and hash.

        The embedding hash covers 4,096 rows spread evenly over the matrix (hashing all of Gemma's 262k x 640
        matrix would cost seconds on every cache lookup).

        Raises:
            ConfigError: the space has no tokenizer.
        """
        if self.tokenizer is None:
            raise ConfigError(f"the embedding space {self.name!r} has no tokenizer: a fingerprint needs one")
        if not self._fingerprint:
            rows = self.embeddings.shape[0]
            idx = torch.linspace(0, rows - 1, min(rows, _FINGERPRINT_ROWS)).round().long()
            fp = {
                "model": self.name,
                "tokenizer_sha256": _tokenizer_hash(self.tokenizer),
                "vocab_size": len(self.tokenizer),
                "embedding_shape": [int(rows), self.dim],
                "embedding_sha256": content_hash(self.embeddings[idx].float()),
            }
            self._fingerprint.update(fp)
        return dict(self._fingerprint)


@functools.lru_cache(maxsize=4)
def _load_space(name: str) -> EmbeddingSpace:
    return EmbeddingSpace.from_name(name)


def as_space(model: str | EmbeddingSpace, role: str, *, cached: bool = True) -> EmbeddingSpace:
    """An :class:`EmbeddingSpace` from a space or a model name (loaded, cached unless ``cached=False``).

    Args:
        model: a space, or a model name (``smollm2-135m``, a folder, a Hub id).
        role: the argument's name, for the error message (e.g. ``"source_model"``).
        cached: load names through :meth:`EmbeddingSpace.load` (cached) rather than :meth:`EmbeddingSpace.from_name`.

    Raises:
        ConfigError: ``model`` is neither.
        ModelError: an unknown model name.
    """
    if isinstance(model, EmbeddingSpace):
        return model
    if isinstance(model, str):
        return EmbeddingSpace.load(model) if cached else EmbeddingSpace.from_name(model)
    raise ConfigError(
        f"{role} must be a model name (e.g. 'smollm2-135m') or a tpv.spaces.EmbeddingSpace (tpv.transfer.ModelSpace, "
        f"tpv.fuse.EmbeddingSpace); got {type(model).__name__}. For a loaded model use "
        "EmbeddingSpace.from_model(model, tokenizer)"
    )
