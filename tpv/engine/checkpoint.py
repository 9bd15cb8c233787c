"""Resumable checkpoints without pickle: tensors in safetensors, everything else in JSON (internal).

A checkpoint is a folder ``<out_dir>/checkpoint/`` written atomically (temp folder, then rename) holding

* ``state.safetensors``: the trainable parameters (``param.<name>``), the best ones so far (``best.<name>``),
  the optimizer's per-parameter state flattened to ``optim.<index>.<key>`` and the RNG states (``rng.*``, uint8);
* ``state.json``: the step, the optimizer's param groups and non-tensor state, the history, the best score, the
  early-stopping counter, the config and fingerprints of the data and the origin.

A torch optimizer ``state_dict()`` is ``{"state": {index: {key: tensor | number}}, "param_groups": [...]}``, so it
flattens losslessly to tensors plus JSON, and ``load_state_dict`` takes it back. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tpv._fs import atomic_dir, recover_dir
from tpv.errors import FormatError

__all__ = ["CHECKPOINT_DIR", "CheckpointState", "read_checkpoint", "write_checkpoint"]

CHECKPOINT_DIR = "checkpoint"
FORMAT = "tpv-checkpoint"
VERSION = 1


@dataclass
class CheckpointState:
    """Everything a run needs to continue exactly where it stopped."""

    step: int
    params: dict[str, torch.Tensor]
    best_params: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def _flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": list(meta["param_groups"])}


def write_checkpoint(out_dir: str | os.PathLike[str], state: CheckpointState) -> Path:
    """Write ``state`` to ``<out_dir>/checkpoint/`` atomically (an older checkpoint is replaced only when done).

    Args:
        out_dir: the run's folder.
        state: what to save.

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.params.items():
        tensors[f"param.{name}"] = value.detach().to("cpu").contiguous().clone()
    for name, value in (state.best_params or {}).items():
        tensors[f"best.{name}"] = value.detach().to("cpu").contiguous().clone()
    optim_tensors, optim_meta = _flatten_optimizer(state.optimizer)
    tensors.update(optim_tensors)
    for name, value in state.rng.items():
        tensors[f"rng.{name}"] = value.detach().to("cpu").contiguous().clone()
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "step": state.step,
        "has_best": state.best_params is not None,
        "optimizer": optim_meta,
        "info": state.info,
    }
    dest = Path(out_dir) / CHECKPOINT_DIR
    with atomic_dir(dest) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": "pt", "tpv.kind": FORMAT})
        (tmp / "state.json").write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    return dest


def read_checkpoint(out_dir: str | os.PathLike[str]) -> CheckpointState | None:
    """Read ``<out_dir>/checkpoint/``; ``None`` when there is none.

    Raises:
        FormatError: the folder exists but is not a readable tpv checkpoint (the message names the file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(out_dir) / CHECKPOINT_DIR
    recover_dir(folder)  # a kill between the two renames of a checkpoint swap left the old one aside
    if not folder.is_dir():
        return None
    meta_path, tensor_path = folder / "state.json", folder / "state.safetensors"
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise FormatError(
            f"cannot read the checkpoint in {str(folder)!r}: {exc}. Fix: delete that folder to start over"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(f"{meta_path} is not a tpv checkpoint (format {got!r}). Fix: delete {folder} to start over")
    try:
        if int(doc.get("version", 0)) > VERSION:
            raise FormatError(f"{meta_path} has checkpoint version {doc['version']}; this tpv reads up to {VERSION}")
        params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
        best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
        rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
        info = doc.get("info", {})
        if not isinstance(info, dict):
            raise TypeError("info is not an object")
        return CheckpointState(
            step=int(doc["step"]),
            params=params,
            best_params=best if doc.get("has_best") else None,
            optimizer=_unflatten_optimizer(tensors, doc["optimizer"]),
            rng=rng,
            info=dict(info),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(
            f"{meta_path} is not a readable tpv checkpoint ({type(exc).__name__}: {exc}). Fix: delete {folder} to "
            "start over"
        ) from None
