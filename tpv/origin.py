"""Origins: the random initializations soft prompts are tuned from.

PEFT never saves the initialization of a prompt-tuning adapter, yet a task prompt vector is defined against
it (``tau = tuned - origin``), so tpv keeps origins as first-class, reproducible values. The same seed and
inputs always give the bit-identical origin, and an origin's :attr:`Origin.id` is the content hash of its
tensor, so vectors can check they are combined and applied against the origin they were tuned from.

Init kinds (``Origin.init``):

* ``gaussian``: i.i.d. normal values, PEFT's ``RANDOM`` init (``nn.Embedding``'s default, std 1).
* ``sample-vocab``: rows of the embedding matrix at ids drawn uniformly over the whole vocabulary
  (PEFT's ``SAMPLE_VOCAB``).
* ``first-n-vocab``: rows of the embedding matrix at distinct random ids among the first ``n`` (5000 by
  default), the task prompt vectors paper's init.
* ``text``: embeddings of a text's token ids, tiled to the prompt length (PEFT's ``TEXT`` init).
* ``tensor``: any tensor you bring.

Example:
    >>> import tpv
    >>> a = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=7)
    >>> b = tpv.Origin.gaussian(num_virtual_tokens=4, token_dim=8, seed=7)
    >>> a.id == b.id
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, get_args

import torch

from tpv._model_id import canonical_model_id
from tpv._tensor import UNKNOWN_MODEL, PromptShape, check_prompt_tensor, content_hash, html_table, text_summary
from tpv.errors import ConfigError, InvalidVectorError

__all__ = ["InitKind", "Origin"]

InitKind = Literal["gaussian", "sample-vocab", "first-n-vocab", "text", "tensor"]
INIT_KINDS: tuple[str, ...] = get_args(InitKind)


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


_MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
_MAX_ELEMENTS = 2**31  # 8 GiB of float32: far beyond any soft prompt; refuses absurd sizes before allocating


def _seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..2**63-1, got {value!r}")
    return value


def _size(rows: int, dim: int) -> None:
    if rows * dim > _MAX_ELEMENTS:
        raise ConfigError(
            f"an origin of {rows} x {dim} values ({rows * dim * 4 / 2**30:.0f} GiB of float32) is far larger than any "
            "soft prompt; check num_virtual_tokens and token_dim"
        )


def _check_embeddings(embeddings: object) -> torch.Tensor:
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ConfigError(
            f"embeddings must be the model's input embedding matrix, a float tensor (vocab_size, dim); got {shape}. "
            "Get it with model.get_input_embeddings().weight"
        )
    return embeddings.detach()


class Origin(PromptShape):
    """A reproducible soft-prompt initialization.

    Attributes:
        tensor: a copy of the values, shape ``(rows, dim)`` with
            ``rows = num_virtual_tokens * num_transformer_submodules``.
        id: content hash of the tensor (dtype, shape and bytes), e.g. ``"sha256:1f0c..."``.
        init: how it was made, one of :data:`InitKind`.
        seed: the seed it was drawn with (``None`` for deterministic kinds).
        params: read-only mapping of the init's parameters (``std``, ``n``, ``vocab_size``, ``token_ids`` ...).
        base_model: id of the model whose embeddings it lives among.
        num_virtual_tokens: virtual tokens per transformer submodule.
        num_transformer_submodules: 1, or 2 for encoder-decoder models.
    """

    __slots__ = (
        "_base_model",
        "_id",
        "_init",
        "_num_transformer_submodules",
        "_num_virtual_tokens",
        "_params",
        "_seed",
        "_tensor",
    )
    __hash__ = None  # type: ignore[assignment]

    _tensor: torch.Tensor
    _id: str
    _init: str
    _seed: int | None
    _params: Mapping[str, Any]
    _base_model: str
    _num_virtual_tokens: int
    _num_transformer_submodules: int

    def __init__(
        self,
        tensor: torch.Tensor,
        *,
        init: InitKind = "tensor",
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        base_model: str = UNKNOWN_MODEL,
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int = 1,
    ) -> None:
        """Wrap a tensor as an origin (see the classmethods for the usual inits).

        Args:
            tensor: values, shape ``(rows, dim)``; copied to CPU.
            init: init kind recorded in files.
            seed: seed recorded in files.
            params: JSON-serializable parameters recorded in files.
            base_model: model id.
            num_virtual_tokens: defaults to ``rows // num_transformer_submodules``.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.

        Raises:
            InvalidVectorError: bad tensor or layout.
            ConfigError: unknown init kind, params not JSON-serializable.
        """
        t = check_prompt_tensor(tensor, what="origin tensor")
        if init not in INIT_KINDS:
            raise ConfigError(f"init must be one of {', '.join(INIT_KINDS)}; got {init!r}")
        subs = _positive(num_transformer_submodules, "num_transformer_submodules")
        rows = int(t.shape[0])
        nvt = rows // subs if num_virtual_tokens is None else _positive(num_virtual_tokens, "num_virtual_tokens")
        if nvt * subs != rows:
            raise InvalidVectorError(
                f"num_virtual_tokens={nvt} x num_transformer_submodules={subs} does not match the {rows} rows"
            )
        p = dict(params or {})
        try:
            json.dumps(p)
        except TypeError as exc:
            raise ConfigError(f"origin params must be JSON-serializable: {exc}") from None
        if not isinstance(base_model, str) or not base_model:
            raise InvalidVectorError(f"base_model must be a non-empty string, got {base_model!r}")
        object.__setattr__(self, "_tensor", t)
        object.__setattr__(self, "_id", content_hash(t))
        object.__setattr__(self, "_init", init)
        object.__setattr__(self, "_seed", None if seed is None else _seed(seed))
        object.__setattr__(self, "_params", MappingProxyType(p))
        object.__setattr__(self, "_base_model", canonical_model_id(base_model))
        object.__setattr__(self, "_num_virtual_tokens", nvt)
        object.__setattr__(self, "_num_transformer_submodules", subs)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Origin is immutable; {name!r} cannot be set")

    # -- constructors -----------------------------------------------------------------------------------------

    @classmethod
    def gaussian(
        cls,
        num_virtual_tokens: int,
        token_dim: int,
        *,
        seed: int = 0,
        std: float = 1.0,
        num_transformer_submodules: int = 1,
        base_model: str = UNKNOWN_MODEL,
        dtype: torch.dtype = torch.float32,
    ) -> Origin:
        """I.i.d. normal values (PEFT's ``RANDOM`` prompt-tuning init uses std 1).

        Args:
            num_virtual_tokens: virtual tokens per submodule.
            token_dim: the model's embedding width.
            seed: RNG seed (a private CPU generator; global RNG state is untouched).
            std: standard deviation.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.
            base_model: model id.
            dtype: dtype of the values (drawn in float32, then cast).

        Returns:
            The origin, shape ``(num_virtual_tokens * num_transformer_submodules, token_dim)``.
        """
        rows = _positive(num_virtual_tokens, "num_virtual_tokens") * _positive(
            num_transformer_submodules, "num_transformer_submodules"
        )
        dim = _positive(token_dim, "token_dim")
        _size(rows, dim)
        if not isinstance(std, int | float) or isinstance(std, bool) or not (std > 0 and math.isfinite(std)):
            raise ConfigError(f"std must be a positive finite number, got {std!r}")
        gen = torch.Generator().manual_seed(_seed(seed))
        t = torch.randn(rows, dim, generator=gen, dtype=torch.float32) * float(std)  # (rows, dim)
        return cls(
            t.to(dtype),
            init="gaussian",
            seed=seed,
            params={"std": float(std)},
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    @classmethod
    def sample_vocab(
        cls,
        embeddings: torch.Tensor,
        num_virtual_tokens: int,
        *,
        seed: int = 0,
        num_transformer_submodules: int = 1,
        base_model: str = UNKNOWN_MODEL,
    ) -> Origin:
        """Embedding rows at ids drawn uniformly (with replacement) over the whole vocabulary (PEFT SAMPLE_VOCAB).

        Args:
            embeddings: the model's input embedding matrix, shape ``(vocab_size, dim)``.
            num_virtual_tokens: virtual tokens per submodule.
            seed: RNG seed.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.
            base_model: model id.

        Returns:
            The origin, in the embeddings' dtype.
        """
        emb = _check_embeddings(embeddings)
        rows = _positive(num_virtual_tokens, "num_virtual_tokens") * _positive(
            num_transformer_submodules, "num_transformer_submodules"
        )
        gen = torch.Generator().manual_seed(_seed(seed))
        ids = torch.randint(0, emb.shape[0], (rows,), generator=gen)  # (rows,)
        return cls(
            emb[ids.to(emb.device)],
            init="sample-vocab",
            seed=seed,
            params={"vocab_size": int(emb.shape[0])},
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    @classmethod
    def first_n_vocab(
        cls,
        embeddings: torch.Tensor,
        num_virtual_tokens: int,
        *,
        seed: int = 0,
        n: int = 5000,
        num_transformer_submodules: int = 1,
        base_model: str = UNKNOWN_MODEL,
    ) -> Origin:
        """Embedding rows at distinct random ids among the first ``n`` (the task prompt vectors paper's init).

        Args:
            embeddings: the model's input embedding matrix, shape ``(vocab_size, dim)``.
            num_virtual_tokens: virtual tokens per submodule.
            seed: RNG seed.
            n: ids are drawn among ``0 .. min(n, vocab_size) - 1``, without replacement when there are enough.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.
            base_model: model id.

        Returns:
            The origin, in the embeddings' dtype.
        """
        emb = _check_embeddings(embeddings)
        rows = _positive(num_virtual_tokens, "num_virtual_tokens") * _positive(
            num_transformer_submodules, "num_transformer_submodules"
        )
        limit = min(_positive(n, "n"), int(emb.shape[0]))
        gen = torch.Generator().manual_seed(_seed(seed))
        if rows <= limit:
            ids = torch.randperm(limit, generator=gen)[:rows]  # (rows,) distinct
        else:
            ids = torch.randint(0, limit, (rows,), generator=gen)  # (rows,)
        return cls(
            emb[ids.to(emb.device)],
            init="first-n-vocab",
            seed=seed,
            params={"n": int(n), "vocab_size": int(emb.shape[0])},
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    @classmethod
    def from_text(
        cls,
        embeddings: torch.Tensor,
        token_ids: Sequence[int],
        num_virtual_tokens: int,
        *,
        text: str | None = None,
        num_transformer_submodules: int = 1,
        base_model: str = UNKNOWN_MODEL,
    ) -> Origin:
        """Embeddings of a text's token ids, tiled (or cut) to the prompt length (PEFT's TEXT init).

        Args:
            embeddings: the model's input embedding matrix, shape ``(vocab_size, dim)``.
            token_ids: the text's token ids (``tokenizer(text)["input_ids"]``, as PEFT's ``TEXT`` init takes them).
            num_virtual_tokens: virtual tokens per submodule.
            text: the text itself, recorded in the origin's params.
            num_transformer_submodules: 1, or 2 for encoder-decoder models.
            base_model: model id.

        Returns:
            The origin, in the embeddings' dtype.
        """
        emb = _check_embeddings(embeddings)
        ids = [int(i) for i in token_ids]
        if not ids:
            raise ConfigError("token_ids is empty: the init text tokenized to nothing")
        bad = [i for i in ids if not 0 <= i < emb.shape[0]]
        if bad:
            raise ConfigError(f"token ids {bad[:5]} are outside the vocabulary (size {emb.shape[0]})")
        rows = _positive(num_virtual_tokens, "num_virtual_tokens") * _positive(
            num_transformer_submodules, "num_transformer_submodules"
        )
        tiled = (ids * (rows // len(ids) + 1))[:rows]
        params: dict[str, Any] = {"token_ids": ids}
        if text is not None:
            params["text"] = text
        return cls(
            emb[torch.tensor(tiled, device=emb.device)],
            init="text",
            params=params,
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    @classmethod
    def from_tensor(
        cls,
        tensor: torch.Tensor,
        *,
        base_model: str = UNKNOWN_MODEL,
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int = 1,
    ) -> Origin:
        """Any tensor as an origin (init kind ``tensor``)."""
        return cls(
            tensor,
            init="tensor",
            base_model=base_model,
            num_virtual_tokens=num_virtual_tokens,
            num_transformer_submodules=num_transformer_submodules,
        )

    # -- attributes -------------------------------------------------------------------------------------------

    @property
    def tensor(self) -> torch.Tensor:
        """A copy of the values, shape ``(rows, dim)``."""
        return self._tensor.clone()

    @property
    def id(self) -> str:
        """Content hash of the values (dtype, shape and bytes)."""
        return self._id

    @property
    def init(self) -> str:
        """The init kind."""
        return self._init

    @property
    def seed(self) -> int | None:
        """The seed, or ``None`` for deterministic kinds."""
        return self._seed

    @property
    def params(self) -> Mapping[str, Any]:
        """Read-only parameters of the init."""
        return self._params

    def describe(self) -> str:
        """One line naming the origin."""
        seed = "" if self._seed is None else f", seed {self._seed}"
        return f"origin {self._id} ({self._init}{seed}, model {self._base_model}, shape {self.shape})"

    def __repr__(self) -> str:
        return (
            f"Origin(id={self._id!r}, init={self._init!r}, seed={self._seed!r}, shape={self.shape}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, base_model={self._base_model!r})"
        )

    def summary(self) -> dict[str, str]:
        """What a notebook shows: id, init and seed, shape, dtype, norm and model, as display strings."""
        return {
            "id": self._id,
            "init": self._init + ("" if self._seed is None else f" (seed {self._seed})"),
            "shape": f"{self.shape[0]} x {self.shape[1]} ({self._num_virtual_tokens} virtual tokens)",
            "dtype": str(self.dtype).removeprefix("torch."),
            "norm": f"{float(torch.linalg.vector_norm(self._tensor.double())):.4g}",
            "model": self._base_model,
        }

    def _repr_html_(self) -> str:
        return html_table("Origin", self.summary())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(text_summary("Origin", self.summary()))

    def with_base_model(self, base_model: str) -> Origin:
        """The same origin (same id: the id hashes the values only) labelled with another model id."""
        if not isinstance(base_model, str) or not base_model:
            raise InvalidVectorError(f"base_model must be a non-empty string, got {base_model!r}")
        new = object.__new__(Origin)
        for slot in Origin.__slots__:
            object.__setattr__(new, slot, getattr(self, slot))
        object.__setattr__(new, "_base_model", canonical_model_id(base_model))
        return new

    def __eq__(self, other: object) -> bool:
        """Exact equality of values and metadata."""
        if not isinstance(other, Origin):
            return NotImplemented
        return (
            self._id == other._id
            and self._init == other._init
            and self._seed == other._seed
            and dict(self._params) == dict(other._params)
            and self._base_model == other._base_model
            and self._num_virtual_tokens == other._num_virtual_tokens
            and self._num_transformer_submodules == other._num_transformer_submodules
            and bool(torch.equal(self._tensor, other._tensor))
        )
