"""Small tensor helpers shared by the core: validation and content hashing (internal)."""

from __future__ import annotations

import hashlib
import math
from numbers import Real

import torch

from tpv.errors import ConfigError, InvalidVectorError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

UNKNOWN_MODEL = "unknown"
"""The ``base_model`` of a vector or origin whose model was not given."""


def check_prompt_tensor(tensor: object, *, what: str) -> torch.Tensor:
    """Validate a soft-prompt-shaped tensor and return a detached CPU copy.

    Args:
        tensor: candidate, must be a floating ``torch.Tensor`` of shape ``(rows, dim)``.
        what: how to name the tensor in error messages.

    Returns:
        A detached, contiguous CPU clone of shape ``(rows, dim)``.

    Raises:
        InvalidVectorError: not a tensor, not 2-D, empty, not floating point, or not finite.
    """
    if not isinstance(tensor, torch.Tensor):
        raise InvalidVectorError(f"{what} must be a torch.Tensor of shape (rows, dim), got {type(tensor).__name__}")
    if tensor.ndim != 2:
        raise InvalidVectorError(
            f"{what} must have shape (rows, dim) (one row per virtual token), got shape {tuple(tensor.shape)}; "
            "reshape it with tensor.reshape(-1, dim)"
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise InvalidVectorError(f"{what} is empty (shape {tuple(tensor.shape)})")
    if tensor.dtype not in FLOAT_DTYPES:
        raise InvalidVectorError(
            f"{what} must be a floating tensor (float16, bfloat16, float32 or float64), got {tensor.dtype}"
        )
    if tensor.is_meta:
        raise InvalidVectorError(
            f"{what} is on the meta device (it has a shape but no values, e.g. from a model loaded with "
            "device_map='meta' or low_cpu_mem_usage); load real weights first"
        )
    out = tensor.detach().to("cpu", copy=True).contiguous()
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise InvalidVectorError(f"{what} holds {bad} non-finite value(s) (NaN or inf); a prompt must be finite")
    return out


def check_scalar(value: object, *, what: str) -> float:
    """Return ``value`` as a finite Python float, or raise ``ConfigError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise ConfigError(f"{what} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ConfigError(f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    out = float(value)  # type: ignore[arg-type]
    if not math.isfinite(out):
        raise ConfigError(f"{what} must be finite, got {out}")
    return out


def content_hash(tensor: torch.Tensor) -> str:
    """Stable content hash of a tensor: dtype, shape and raw bytes.

    Args:
        tensor: any tensor; hashed from a contiguous CPU copy.

    Returns:
        ``"sha256:"`` followed by the first 16 hex digits of the SHA-256 digest. The same values, shape and
        dtype always give the same id, on any machine (little-endian byte order is assumed).
    """
    t = tensor.detach().to("cpu").contiguous()
    h = hashlib.sha256()
    h.update(f"{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()[:16]


class PromptShape:
    """Read-only shape properties shared by :class:`~tpv.Origin` and :class:`~tpv.TaskPromptVector`.

    The subclasses hold the values in their slots (``_tensor`` of shape ``(rows, dim)``, ``_base_model``,
    ``_num_virtual_tokens``, ``_num_transformer_submodules``).
    """

    __slots__ = ()
    _tensor: torch.Tensor
    _base_model: str
    _num_virtual_tokens: int
    _num_transformer_submodules: int

    @property
    def base_model(self) -> str:
        """Id of the model the prompt belongs to."""
        return self._base_model

    @property
    def num_virtual_tokens(self) -> int:
        """Virtual tokens per transformer submodule."""
        return self._num_virtual_tokens

    @property
    def num_transformer_submodules(self) -> int:
        """1 for decoder-only and encoder-only models, 2 for encoder-decoder models."""
        return self._num_transformer_submodules

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, dim)``: rows = ``num_virtual_tokens * num_transformer_submodules``."""
        rows, dim = self._tensor.shape
        return int(rows), int(dim)

    @property
    def token_dim(self) -> int:
        """Width of one prompt row (the model's embedding size)."""
        return int(self._tensor.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the values."""
        return self._tensor.dtype


def html_table(title: str, fields: dict[str, str]) -> str:
    """A small HTML table (notebooks' ``_repr_html_``): the title, then one row per field."""
    import html

    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in fields.items()
    )
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{rows}</table>"


def text_summary(title: str, fields: dict[str, str]) -> str:
    """The same summary as aligned text (IPython's pretty printer)."""
    width = max(map(len, fields), default=0)
    return "\n".join([title, *(f"  {k.ljust(width)}  {v}" for k, v in fields.items())])
