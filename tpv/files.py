"""Self-describing files: one ``.safetensors`` file per vector or origin, never pickle.

A tpv file is a plain safetensors file holding one tensor (named after the kind: ``vector`` or ``origin``)
and string metadata under the ``tpv.`` namespace. Structured values are JSON strings (safetensors metadata is
``str -> str``). Keys, format version 1:

=================================  ==========================================================  ===========
key                                value                                                       kinds
=================================  ==========================================================  ===========
``tpv.format_version``             ``"1"``                                                     all
``tpv.kind``                       ``"vector"`` or ``"origin"``                                all
``tpv.library_version``            the tpv version that wrote the file                         all
``tpv.base_model``                 model id                                                    all
``tpv.num_virtual_tokens``         integer                                                     all
``tpv.num_transformer_submodules``  integer (2 for encoder-decoder models)                     all
``tpv.token_dim``                  integer, the embedding width                                all
``tpv.origin_id``                  content hash of the origin (for an origin: its own id)      all
``tpv.terms``                      JSON object task -> coefficient                             vector
``tpv.init``                       init kind (``gaussian``, ``first-n-vocab`` ...)             origin
``tpv.seed``                       JSON integer or null                                        origin
``tpv.init_params``                JSON object of the init's parameters                        origin
``tpv.provenance``                 optional JSON object (e.g. a transfer's source model)       all
=================================  ==========================================================  ===========

:func:`inspect` reads only the header (no tensor is loaded). :func:`load` checks the header, refuses newer
format versions, missing keys, wrong kinds, truncated files and pickle files with :class:`~tpv.FormatError`,
and verifies an origin's content hash. :func:`save` writes atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, overload

import torch

from tpv._fs import atomic_write_bytes, check_output, open_regular
from tpv.errors import FormatError, InvalidVectorError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

__all__ = ["FORMAT_VERSION", "FileInfo", "inspect", "load", "load_origin", "load_vector", "save"]

FORMAT_VERSION = 1
Kind = Literal["vector", "origin"]
_COMMON_KEYS = (
    "tpv.format_version",
    "tpv.kind",
    "tpv.base_model",
    "tpv.num_virtual_tokens",
    "tpv.num_transformer_submodules",
    "tpv.token_dim",
    "tpv.origin_id",
)
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "vector": ("tpv.terms",),
    "origin": ("tpv.init", "tpv.seed", "tpv.init_params"),
}
_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_MAX_HEADER = 100 * 1024 * 1024


def _library_version() -> str:
    from tpv._version import __version__

    return __version__


@dataclass(frozen=True)
class FileInfo:
    """What a tpv file's header says, read without loading its tensor.

    Attributes:
        path: the file.
        kind: ``"vector"`` or ``"origin"``.
        format_version: the file's format version.
        shape: ``(rows, dim)`` of the stored tensor.
        dtype: the tensor's dtype name (``float32`` ...).
        size_bytes: file size.
        base_model: model id.
        num_virtual_tokens: virtual tokens per submodule.
        num_transformer_submodules: 1, or 2 for encoder-decoder models.
        token_dim: embedding width.
        origin_id: the origin's content hash.
        library_version: the tpv version that wrote it.
        terms: a vector's composition (empty for origins).
        init: an origin's init kind (``None`` for vectors).
        seed: an origin's seed.
        init_params: an origin's init parameters.
        provenance: optional free-form record (e.g. a transfer's source).
    """

    path: str
    kind: Kind
    format_version: int
    shape: tuple[int, int]
    dtype: str
    size_bytes: int
    base_model: str
    num_virtual_tokens: int
    num_transformer_submodules: int
    token_dim: int
    origin_id: str
    library_version: str
    terms: dict[str, float] = field(default_factory=dict)
    init: str | None = None
    seed: int | None = None
    init_params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# -- writing ------------------------------------------------------------------------------------------------------


def _metadata(obj: TaskPromptVector | Origin, provenance: dict[str, Any] | None) -> dict[str, str]:
    meta = {
        "tpv.format_version": str(FORMAT_VERSION),
        "tpv.library_version": _library_version(),
        "tpv.base_model": obj.base_model,
        "tpv.num_virtual_tokens": str(obj.num_virtual_tokens),
        "tpv.num_transformer_submodules": str(obj.num_transformer_submodules),
        "tpv.token_dim": str(obj.token_dim),
    }
    if isinstance(obj, TaskPromptVector):
        meta["tpv.kind"] = "vector"
        meta["tpv.origin_id"] = obj.origin_id
        meta["tpv.terms"] = json.dumps(dict(obj.terms), sort_keys=True)
    else:
        meta["tpv.kind"] = "origin"
        meta["tpv.origin_id"] = obj.id
        meta["tpv.init"] = obj.init
        meta["tpv.seed"] = json.dumps(obj.seed)
        meta["tpv.init_params"] = json.dumps(dict(obj.params), sort_keys=True)
    if provenance:
        try:
            if not isinstance(provenance, dict):
                raise TypeError(f"a dict is needed, got {type(provenance).__name__}")
            meta["tpv.provenance"] = json.dumps(provenance, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"provenance must be a JSON-serializable dict of finite values: {exc}") from None
    size = 0
    for key, value in meta.items():
        try:
            size += len(value.encode("utf-8")) + len(key)
        except UnicodeEncodeError:
            raise FormatError(
                f"{key} holds text that is not valid Unicode (a lone surrogate, e.g. from a file name in another "
                "encoding); give it as valid UTF-8 text"
            ) from None
    if size > _MAX_HEADER // 2:
        largest = max(meta, key=lambda k: len(meta[k]))
        raise FormatError(
            f"the file's metadata would be {size / 2**20:.1f} MiB (largest field: {largest}); tpv files keep it under "
            f"{_MAX_HEADER // 2**21} MiB: shorten the task names, base_model or provenance"
        )
    return meta


def save(
    obj: TaskPromptVector | Origin,
    path: str | os.PathLike[str],
    *,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a vector or an origin to a self-describing ``.safetensors`` file, atomically.

    Args:
        obj: the vector or origin.
        path: destination file (parent folders are created).
        provenance: optional JSON-serializable record stored under ``tpv.provenance``.
        overwrite: replace an existing file (the old one stays whole until the new one is complete).

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        FormatError: ``obj`` is neither a vector nor an origin, or provenance is not JSON-serializable.
    """
    from safetensors.torch import save as st_save

    if not isinstance(obj, TaskPromptVector | Origin):
        raise FormatError(f"tpv.save writes a TaskPromptVector or an Origin, got {type(obj).__name__}")
    check_output(path, overwrite=overwrite)
    kind = "vector" if isinstance(obj, TaskPromptVector) else "origin"
    data = st_save({kind: obj.tensor.contiguous()}, metadata=_metadata(obj, provenance))
    return atomic_write_bytes(path, data)


# -- reading ------------------------------------------------------------------------------------------------------


_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}


def _read_header(path: Path, fh: BinaryIO) -> tuple[dict[str, Any], int, int]:
    """Parse and check a safetensors header from an open file; return (header dict, file size, header length)."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(9)
    # A safetensors header (JSON) starts at byte 8 with "{"; a pickle or torch.save zip starts with its magic.
    # Both checks together: a genuine header length can begin with the pickle magic bytes.
    magic = head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:4] == b"PK\x03\x04"
    if magic and head[8:9] != b"{":
        raise FormatError(
            f"{path}: this is a pickle / torch.save file; tpv never unpickles files (they can run code). "
            "Convert it in a trusted session with tpv.save(...), or read adapters with tpv.from_adapter"
        )
    head = head[:8]
    if len(head) < 8:
        raise FormatError(f"{path}: truncated file ({size} bytes): not even a safetensors header length")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER or n + 8 > size:
        raise FormatError(
            f"{path}: not a valid safetensors file (header length {n} but file size {size}); "
            "the file is truncated or of another format"
        )
    fh.seek(8)
    raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise FormatError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: not a safetensors file (its header is not a JSON object)")
    _check_entries(path, header, size - 8 - n)
    return header, size, n


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _naturals(value: Any) -> list[int] | None:
    """``value`` if it is a list of non-negative integers, else ``None``."""
    if isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value):
        return value
    return None


def _check_entries(path: Path, header: dict[str, Any], data_len: int) -> None:
    """Every tensor entry: a known dtype, a shape of non-negative integers, offsets that match shape x dtype."""
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{path}: the header's __metadata__ must map strings to strings")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: tensor entry {name!r} must be an object, found {type(entry).__name__}")
        offsets, shape, dtype = _naturals(entry.get("data_offsets")), _naturals(entry.get("shape")), entry.get("dtype")
        if offsets is None or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise FormatError(f"{path}: tensor {name!r} has invalid data_offsets {str(entry.get('data_offsets'))[:80]}")
        if shape is None:
            raise FormatError(f"{path}: tensor {name!r} has an invalid shape {str(entry.get('shape'))[:80]}")
        if offsets[1] > data_len:
            raise FormatError(
                f"{path}: truncated file: tensor {name!r} needs bytes up to {offsets[1]} "
                f"but the file holds {data_len} bytes of data"
            )
        if not isinstance(dtype, str):
            raise FormatError(f"{path}: tensor {name!r} has an invalid dtype {str(dtype)[:40]}")
        if dtype in _ITEMSIZE:
            need = _ITEMSIZE[dtype]
            for dim in shape:
                need *= dim
            if need != offsets[1] - offsets[0]:
                raise FormatError(
                    f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} needs {need} bytes but its offsets "
                    f"span {offsets[1] - offsets[0]}: the header is corrupted"
                )


def _parse_json(path: Path, key: str, raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (TypeError, ValueError):
        raise FormatError(f"{path}: metadata key {key!r} is not valid JSON: {raw[:80]!r}") from None


def _parse_int(path: Path, key: str, raw: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise FormatError(f"{path}: metadata key {key!r} must be an integer, found {raw[:40]!r}") from None


def _local_path(path: str | os.PathLike[str]) -> Path:
    """``path``, or the local (cached) copy of an ``hf://owner/repo[@revision]/file`` reference (:mod:`tpv.hub`)."""
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith("hf:/") and not os.path.lexists(text):
        from tpv.hub.refs import resolve_file

        return resolve_file(text)
    return Path(path)


def inspect(path: str | os.PathLike[str]) -> FileInfo:
    """Read a tpv file's header and metadata without loading its tensor.

    Args:
        path: a file written by :func:`save`, or a Hub reference ``hf://owner/repo[@revision]/path/file.safetensors``
            (downloaded into the Hugging Face cache first, see :mod:`tpv.hub`).

    Returns:
        The file's :class:`FileInfo` (for a Hub reference, ``path`` is the cached file).

    Raises:
        FormatError: missing file, not safetensors, pickle, truncated, not a tpv file, newer format version,
            missing metadata keys or malformed values; a Hub file that is missing or not cached while offline.
    """
    p = _local_path(path)
    with open_regular(p) as fh:
        header, size, _n = _read_header(p, fh)
    return _info(p, header, size)


def _info(p: Path, header: dict[str, Any], size: int) -> FileInfo:
    """The FileInfo of a checked header (every tpv field validated)."""
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or "tpv.format_version" not in meta:
        raise FormatError(
            f"{p}: a safetensors file but not a tpv file (no 'tpv.format_version' metadata). "
            "For a PEFT adapter use tpv.from_adapter(folder, origin=...); for a raw tensor wrap it with "
            "TaskPromptVector.from_tensor or Origin.from_tensor"
        )
    version = _parse_int(p, "tpv.format_version", meta["tpv.format_version"])
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{p}: format version {version} is newer than this tpv reads (up to {FORMAT_VERSION}); "
            "upgrade tpv (pip install -U tpv)"
        )
    if version < 1:
        raise FormatError(f"{p}: format version {version} is not valid (expected 1..{FORMAT_VERSION})")
    kind = meta.get("tpv.kind")
    if kind not in _KIND_KEYS:
        raise FormatError(f"{p}: unknown kind {kind!r}; expected 'vector' or 'origin'")
    missing = [k for k in (*_COMMON_KEYS, *_KIND_KEYS[kind]) if k not in meta]
    if missing:
        raise FormatError(f"{p}: metadata is missing {', '.join(missing)} (expected of a tpv {kind} file)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(tensors) != {kind}:
        raise FormatError(f"{p}: expected exactly one tensor named {kind!r}, found {sorted(tensors)}")
    entry = tensors[kind]
    shape = entry.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2):
        raise FormatError(f"{p}: tensor {kind!r} must have shape (rows, dim), found {shape}")
    dtype_code = entry.get("dtype")
    if dtype_code not in _DTYPES:
        raise FormatError(f"{p}: tensor dtype {dtype_code!r} is not a float dtype tpv reads ({', '.join(_DTYPES)})")
    info = FileInfo(
        path=str(p),
        kind=kind,
        format_version=version,
        shape=(int(shape[0]), int(shape[1])),
        dtype=str(_DTYPES[dtype_code]).removeprefix("torch."),
        size_bytes=size,
        base_model=meta["tpv.base_model"],
        num_virtual_tokens=_parse_int(p, "tpv.num_virtual_tokens", meta["tpv.num_virtual_tokens"]),
        num_transformer_submodules=_parse_int(
            p, "tpv.num_transformer_submodules", meta["tpv.num_transformer_submodules"]
        ),
        token_dim=_parse_int(p, "tpv.token_dim", meta["tpv.token_dim"]),
        origin_id=meta["tpv.origin_id"],
        library_version=meta.get("tpv.library_version", "unknown"),
        terms=_parse_json(p, "tpv.terms", meta["tpv.terms"]) if kind == "vector" else {},
        init=meta.get("tpv.init"),
        seed=_parse_json(p, "tpv.seed", meta["tpv.seed"]) if kind == "origin" else None,
        init_params=_parse_json(p, "tpv.init_params", meta["tpv.init_params"]) if kind == "origin" else {},
        provenance=_parse_json(p, "tpv.provenance", meta["tpv.provenance"]) if "tpv.provenance" in meta else {},
    )
    if info.token_dim != info.shape[1]:
        raise FormatError(f"{p}: metadata token_dim {info.token_dim} does not match the tensor width {info.shape[1]}")
    if not isinstance(info.terms, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in info.terms.values()
    ):
        raise FormatError(f"{p}: 'tpv.terms' must be a JSON object task -> finite number")
    if not isinstance(info.init_params, dict) or not isinstance(info.provenance, dict):
        raise FormatError(f"{p}: 'tpv.init_params' and 'tpv.provenance' must be JSON objects")
    return info


@overload
def load(path: str | os.PathLike[str], *, kind: Literal["vector"]) -> TaskPromptVector: ...
@overload
def load(path: str | os.PathLike[str], *, kind: Literal["origin"]) -> Origin: ...
@overload
def load(path: str | os.PathLike[str], *, kind: None = None) -> TaskPromptVector | Origin: ...


def load(path: str | os.PathLike[str], *, kind: Kind | None = None) -> TaskPromptVector | Origin:
    """Load a vector or an origin from a tpv file.

    Args:
        path: a file written by :func:`save`, or a Hub reference ``hf://owner/repo[@revision]/path/file.safetensors``
            (see :mod:`tpv.hub`).
        kind: expect this kind (``"vector"`` or ``"origin"``); ``None`` accepts either.

    Returns:
        The :class:`~tpv.TaskPromptVector` or :class:`~tpv.Origin`.

    Raises:
        FormatError: anything :func:`inspect` refuses, a wrong kind, values that do not form a valid vector or
            origin, or an origin whose content hash does not match its recorded id (a corrupted file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    p = _local_path(path)
    with open_regular(p) as fh:  # header and tensor from one open file: a concurrent replace cannot mix two files
        header, size, _n = _read_header(p, fh)
        info = _info(p, header, size)
        if kind is not None and info.kind != kind:
            raise FormatError(f"{path}: expected a tpv {kind} file, found a {info.kind} file")
        fh.seek(0)
        blob = fh.read()
    try:
        tensor = st_load(blob)[info.kind]
    except (SafetensorError, KeyError) as exc:
        raise FormatError(f"{path}: cannot read the tensor: {exc}") from None
    try:
        if info.kind == "vector":
            return TaskPromptVector(
                tensor,
                origin_id=info.origin_id,
                terms=info.terms,
                base_model=info.base_model,
                num_virtual_tokens=info.num_virtual_tokens,
                num_transformer_submodules=info.num_transformer_submodules,
            )
        origin = Origin(
            tensor,
            init=info.init,  # type: ignore[arg-type]
            seed=info.seed,
            params=info.init_params,
            base_model=info.base_model,
            num_virtual_tokens=info.num_virtual_tokens,
            num_transformer_submodules=info.num_transformer_submodules,
        )
    except (InvalidVectorError, ValueError) as exc:
        raise FormatError(f"{path}: the stored values do not form a valid {info.kind}: {exc}") from None
    if origin.id != info.origin_id:
        raise FormatError(
            f"{path}: the origin's content hash is {origin.id} but the file records {info.origin_id}; "
            "the file is corrupted"
        )
    return origin


def load_vector(path: str | os.PathLike[str]) -> TaskPromptVector:
    """Load a vector file (a :class:`~tpv.FormatError` if it holds an origin)."""
    return load(path, kind="vector")


def load_origin(path: str | os.PathLike[str]) -> Origin:
    """Load an origin file (a :class:`~tpv.FormatError` if it holds a vector)."""
    return load(path, kind="origin")
