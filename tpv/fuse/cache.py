"""Fitted maps on disk: one ``.safetensors`` file per model pair and settings, plus a JSON sidecar; never pickle.

A map file holds the tensors ``G_1 .. G_K`` (float32, ``G_k`` of shape ``(d_s, d_t, k)``) and string metadata
(structured values are JSON strings, safetensors metadata being ``str -> str``):

================================  ================================================================================
key                               value
================================  ================================================================================
``tpv.format_version``            ``"1"``
``tpv.kind``                      ``"fuse-map"``
``tpv.library_version``           the tpv version that fitted it
``tpv.fuse.source``               JSON: source model id, tokenizer hash, vocab size, embedding shape and hash
``tpv.fuse.target``               JSON: the same for the target
``tpv.fuse.max_subtokens``        ``K``
``tpv.fuse.word_source``          where the fitting words came from
``tpv.fuse.words_per_k``          JSON ``{"1": n1, ...}``
``tpv.fuse.solvers``              JSON ``{"1": "pinv", ...}``
``tpv.fuse.settings``             JSON: the fit's options
``tpv.fuse.fit_seconds``          wall time of the fit
``tpv.fuse.created``              UTC time of the fit
================================  ================================================================================

The sidecar ``<file>.json`` repeats the metadata for people and tools; the safetensors header is what
:func:`load_map` trusts. Cached maps live in ``$TPV_CACHE/fuse`` (default ``~/.cache/tpv/fuse``), named after
the two models and a hash of the settings and the word list, so a change of options never returns a stale map;
a map whose models changed under the same name (a new package version) is refused by
:meth:`~tpv.fuse.FuseMap.check` with :class:`~tpv.fuse.MapMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Union

import torch

from tpv._fs import atomic_write_bytes, atomic_write_text, check_output, open_regular
from tpv.errors import FormatError
from tpv.fuse.maps import FuseMap

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "CacheOption",
    "cache_path",
    "default_cache_root",
    "load_map",
    "read_map_info",
    "save_map",
]

FORMAT_VERSION = 1
KIND = "fuse-map"
CacheOption = Union[bool, str, "os.PathLike[str]"]
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def default_cache_root() -> Path:
    """``tpv.models.cache_dir() / "fuse"`` (``$TPV_CACHE/fuse``, default ``~/.cache/tpv/fuse``)."""
    from tpv.models import cache_dir

    return cache_dir() / "fuse"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "model"


def cache_path(
    source: str, target: str, settings: dict[str, Any], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """Where the map for a model pair and settings is cached.

    Args:
        source: source model id.
        target: target model id.
        settings: the fit options (JSON-serializable), including the word list hash.
        root: cache folder (default :func:`default_cache_root`).

    Returns:
        ``root / "<source>--to--<target>--<12 hex digits>.safetensors"``.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(root) if root is not None else default_cache_root()
    return folder / f"{_slug(source)}--to--{_slug(target)}--{digest}.safetensors"


def _metadata(fmap: FuseMap) -> dict[str, str]:
    return {
        "tpv.format_version": str(FORMAT_VERSION),
        "tpv.kind": KIND,
        "tpv.library_version": fmap.library_version,
        "tpv.fuse.source": json.dumps(dict(fmap.source), sort_keys=True),
        "tpv.fuse.target": json.dumps(dict(fmap.target), sort_keys=True),
        "tpv.fuse.max_subtokens": str(fmap.max_subtokens),
        "tpv.fuse.word_source": fmap.word_source,
        "tpv.fuse.words_per_k": json.dumps({str(k): int(v) for k, v in sorted(fmap.words_per_k.items())}),
        "tpv.fuse.solvers": json.dumps({str(k): v for k, v in sorted(fmap.solvers.items())}),
        "tpv.fuse.settings": json.dumps(dict(fmap.settings), sort_keys=True),
        "tpv.fuse.fit_seconds": f"{fmap.fit_seconds:.3f}",
        "tpv.fuse.created": fmap.created,
    }


def save_map(fmap: FuseMap, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a map to ``path`` (safetensors) and ``path + ".json"`` (sidecar), each atomically.

    Args:
        fmap: the fitted map.
        path: destination ``.safetensors`` file; parent folders are created.
        overwrite: replace an existing map (and its sidecar).

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` or its sidecar exists and ``overwrite`` is false.
    """
    from safetensors.torch import save as st_save

    check_output(path, overwrite=overwrite)
    check_output(str(path) + ".json", overwrite=overwrite)
    meta = _metadata(fmap)
    tensors = {f"G_{k}": fmap.maps[k].float().contiguous() for k in sorted(fmap.maps)}
    dest = atomic_write_bytes(path, st_save(tensors, metadata=meta))
    sidecar = {k: (json.loads(v) if k.startswith("tpv.fuse.") and v[:1] in "{[" else v) for k, v in meta.items()}
    atomic_write_text(str(dest) + ".json", json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return dest


def _json(path: Path, meta: dict[str, str], key: str) -> Any:
    raw = meta.get(key)
    if raw is None:
        raise FormatError(f"{path}: the map file lacks the metadata key {key!r}; it was not written by tpv.fuse")
    try:
        return json.loads(raw)
    except ValueError:
        raise FormatError(f"{path}: metadata {key!r} is not valid JSON: {raw[:80]!r}") from None


def read_map_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A map file's metadata, read from the header without loading the tensors.

    Args:
        path: a map ``.safetensors`` file.

    Returns:
        The metadata, JSON values parsed.

    Raises:
        FormatError: not a file, a pickle file, not safetensors, not a FUSE map, or a newer format version.
    """
    p = Path(path)
    meta, _ = _read(p, tensors=False)
    return _info(p, meta)


def _info(p: Path, meta: dict[str, str]) -> dict[str, Any]:
    info: dict[str, Any] = {k: v for k, v in meta.items() if k.startswith("tpv.")}
    for key in ("tpv.fuse.source", "tpv.fuse.target", "tpv.fuse.words_per_k", "tpv.fuse.solvers", "tpv.fuse.settings"):
        info[key] = _json(p, meta, key)
    for key in ("tpv.fuse.max_subtokens", "tpv.fuse.word_source"):
        if key not in meta:
            raise FormatError(f"{p}: the map file lacks the metadata key {key!r}")
    k_max = meta["tpv.fuse.max_subtokens"]
    if not (k_max.isascii() and k_max.isdigit() and 1 <= int(k_max) <= 64):
        raise FormatError(f"{p}: metadata 'tpv.fuse.max_subtokens' must be an integer in 1..64, got {k_max[:40]!r}")
    return info


def _read(p: Path, *, tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Read a map file in one open: its checked metadata and (if asked) its tensors."""
    import struct

    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    if not p.exists():
        raise FormatError(f"no map file at {str(p)!r}. Fix: tpv fuse fit SOURCE TARGET -o {p}")
    with open_regular(p) as fh:
        data = fh.read() if tensors else fh.read(8)
        if not tensors and len(data) == 8:
            data += fh.read(min(struct.unpack("<Q", data)[0], 100 * 2**20))
    # A safetensors file starts with its header length (8 bytes, little-endian) and then "{"; a length such as
    # 640 also starts with 0x80 0x02, so the pickle magic counts only when no header follows.
    if data.startswith(_PICKLE_MAGIC) and data[8:9] != b"{":
        raise FormatError(f"{p} looks like a pickle / torch.save file; tpv never loads pickle (it can run code)")
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n].decode("utf-8")) if 8 + n <= len(data) else None
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("no string metadata")
        loaded = st_load(data) if tensors else {}
    except (struct.error, ValueError, SafetensorError) as exc:
        raise FormatError(f"{p} is not a valid safetensors map file: {exc}") from None
    if meta.get("tpv.kind") != KIND:
        raise FormatError(f"{p} is not a FUSE map (tpv.kind={meta.get('tpv.kind')!r}, expected {KIND!r})")
    version = meta.get("tpv.format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise FormatError(
            f"{p} has map format version {version!r}; this tpv reads up to {FORMAT_VERSION}. Fix: upgrade tpv"
        )
    return meta, loaded


def load_map(path: str | os.PathLike[str]) -> FuseMap:
    """Load a map written by :func:`save_map` (safetensors only, never pickle).

    Args:
        path: the ``.safetensors`` file.

    Returns:
        The :class:`~tpv.fuse.FuseMap`; check it against your models with :meth:`~tpv.fuse.FuseMap.check`.

    Raises:
        FormatError: see :func:`read_map_info`, or tensors missing or of the wrong shape.
    """
    p = Path(path)
    meta, tensors = _read(p, tensors=True)
    info = _info(p, meta)
    k_max = int(info["tpv.fuse.max_subtokens"])
    maps: dict[int, torch.Tensor] = {}
    for k in range(1, k_max + 1):
        g = tensors.get(f"G_{k}")
        if g is None or g.ndim != 3 or g.shape[2] != k:
            shown = None if g is None else tuple(g.shape)
            raise FormatError(f"{p}: tensor G_{k} is missing or has shape {shown}, expected (d_s, d_t, {k})")
        maps[k] = g
    try:
        return FuseMap(
            maps=maps,
            source=info["tpv.fuse.source"],
            target=info["tpv.fuse.target"],
            word_source=str(info["tpv.fuse.word_source"]),
            words_per_k={int(k): int(v) for k, v in info["tpv.fuse.words_per_k"].items()},
            solvers={int(k): str(v) for k, v in info["tpv.fuse.solvers"].items()},
            settings=info["tpv.fuse.settings"],
            fit_seconds=float(info.get("tpv.fuse.fit_seconds", 0.0)),
            created=str(info.get("tpv.fuse.created", "")),
            library_version=str(info.get("tpv.library_version", "")),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise FormatError(f"{p}: inconsistent map file: {exc}") from None
