"""What a transfer returns, and the extra sources it takes.

:class:`TransferResult` holds the value, the target origin of a vector, the anchors, the search and the provenance,
and writes them as tpv files or a PEFT adapter; :class:`Source` is one more source for multi-source transfer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tpv.errors import ConfigError
from tpv.origin import Origin
from tpv.spaces import EmbeddingSpace
from tpv.transfer.anchors import SharedAnchors
from tpv.transfer.linear import LinearMap
from tpv.transfer.search import CodeSearchResult
from tpv.vector import UNKNOWN_MODEL, TaskPromptVector

__all__ = ["Source", "TransferResult", "Transferable"]

Transferable = torch.Tensor | TaskPromptVector | Origin


@dataclass(frozen=True)
class Source:
    """One more source for multi-source transfer: a prompt (or vector with its origin) and its model.

    Attributes:
        prompt: a prompt ``(rows, dim)``, or a vector (then ``origin`` is needed: the prompt is ``origin + vector``).
        model: the model it was tuned on (a name or a :class:`~tpv.spaces.EmbeddingSpace`).
        origin: the vector's origin.
    """

    prompt: torch.Tensor | TaskPromptVector
    model: str | EmbeddingSpace
    origin: Origin | None = None


@dataclass(frozen=True, eq=False)
class TransferResult:
    """Everything a transfer produced.

    Attributes:
        value: the transferred prompt tensor ``(rows, target_dim)``, :class:`~tpv.Origin` or
            :class:`~tpv.TaskPromptVector`.
        origin: for a vector, the target origin it applies to (``value.apply_to(origin)`` is the prompt).
        provenance: JSON-serializable record of the source, method, anchors and search; written to files.
        anchors: the anchors of the (first) source/target pair.
        search: the relative search of the (tuned) prompt, or ``None`` for the linear maps.
        linear_map: the fitted map, or ``None`` for ``relative``.
    """

    value: Transferable
    origin: Origin | None
    provenance: dict[str, Any]
    anchors: SharedAnchors
    search: CodeSearchResult | None = None
    linear_map: LinearMap | None = None

    @property
    def prompt(self) -> torch.Tensor:
        """The target prompt: the tensor, the origin's values, or ``origin + vector``, shape ``(rows, dim)``."""
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            return self.value.apply_to(self.origin).float()
        if isinstance(self.value, Origin):
            return self.value.tensor
        return self.value.clone()

    def as_origin(self) -> Origin:
        """A prompt tensor result as an :class:`~tpv.Origin` of init ``"tensor"`` (the tpv file form of a prompt)."""
        if isinstance(self.value, Origin):
            return self.value
        if isinstance(self.value, TaskPromptVector):
            raise ConfigError("this result is a vector: its origin is .origin, its prompt .prompt")
        return Origin(
            self.value,
            init="tensor",
            params={"transferred_prompt": True},
            base_model=str(self.provenance.get("target_model", UNKNOWN_MODEL)),
        )

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        origin_path: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> list[Path]:
        """Write the result as tpv file(s), the provenance under ``tpv.provenance``, atomically.

        A vector is written to ``path`` and its target origin to ``origin_path`` (default: ``<stem>.origin.safetensors``
        beside it); an origin to ``path``; a prompt tensor to ``path`` as an origin-kind file (init ``"tensor"``).

        Args:
            path: the output file.
            origin_path: where a vector's origin goes.
            overwrite: replace existing files (without it, an existing output is refused before anything is written).

        Returns:
            The paths written.
        """
        from tpv._fs import check_output
        from tpv.files import save

        p = Path(path)
        record = _file_provenance(self.provenance)
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            o_path = Path(origin_path) if origin_path is not None else p.with_name(_stem(p) + ".origin.safetensors")
            check_output(p, overwrite=overwrite)
            check_output(o_path, overwrite=overwrite, inputs=[p])
            return [
                save(self.value, p, provenance=record, overwrite=overwrite),
                save(self.origin, o_path, provenance=record, overwrite=overwrite),
            ]
        return [save(self.as_origin(), p, provenance=record, overwrite=overwrite)]

    def save_adapter(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a PEFT prompt-tuning adapter for the target model, with the provenance recorded.

        The folder gets PEFT's two files, ``origin.safetensors`` (and ``tpv_vector.safetensors`` for a vector) with
        ``tpv.provenance`` in their metadata, and ``tpv_transfer.json`` with the full record (search trace included).

        Returns:
            The folder.
        """
        import json

        from tpv._fs import atomic_write_text
        from tpv.adapters import ORIGIN_FILE, VECTOR_FILE, save_adapter
        from tpv.files import save

        target = str(self.provenance.get("target_model", UNKNOWN_MODEL))
        base = None if target == UNKNOWN_MODEL else target
        record = _file_provenance(self.provenance)
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            out = save_adapter(self.value, out_dir, origin=self.origin, base_model=base, overwrite=overwrite)
            save(self.origin, out / ORIGIN_FILE, provenance=record, overwrite=True)
            save(self.value, out / VECTOR_FILE, provenance=record, overwrite=True)
        else:
            origin = self.as_origin()
            out = save_adapter(origin, out_dir, base_model=base, overwrite=overwrite)
            save(origin, out / ORIGIN_FILE, provenance=record, overwrite=True)
        atomic_write_text(out / "tpv_transfer.json", json.dumps(self.provenance, indent=2, sort_keys=True) + "\n")
        return out


def _stem(p: Path) -> str:
    name = p.name
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else p.stem


def _file_provenance(record: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance without the search trace (file metadata stays small)."""
    out = dict(record)
    search = out.get("search")
    if isinstance(search, dict):
        out["search"] = {k: v for k, v in search.items() if k != "history"}
    return out
