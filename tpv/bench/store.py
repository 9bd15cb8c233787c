"""Finished cells on disk: ``OUT/cells/<id>/result.json`` plus the cell's artifacts.

A cell's folder is built aside and moved into place only when complete, so an interrupted run leaves no half
cell; a cell whose folder holds a ``result.json`` naming its id is finished (and skipped by a rerun). A cell run
in a pack is stored the same way, on its own, with the size of its pack recorded (``pack_size``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tpv._fs import atomic_dir, atomic_write_text
from tpv.bench.cells import CELL_KINDS, Cell, CellInput, CellOutput
from tpv.errors import TPVError

__all__ = ["CELLS_DIR", "RESULT_FILE", "cell_dir", "load_cell_result", "load_input", "log_failure", "store_cell"]

RESULT_FILE = "result.json"
CELLS_DIR = "cells"


def cell_dir(out: Path, cell_id: str) -> Path:
    """The results folder of a cell."""
    return out / CELLS_DIR / cell_id


def load_cell_result(out: Path, cell_id: str) -> dict[str, Any] | None:
    """The stored ``result.json`` of a finished cell, or ``None`` when it has not finished."""
    path = cell_dir(out, cell_id) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("id") == cell_id else None


def load_input(out: Path, cell_id: str) -> CellInput:
    """A finished cell as its dependents receive it: metrics and artifact bytes.

    Raises:
        TPVError: the cell has not finished under ``out``.
    """
    result = load_cell_result(out, cell_id)
    if result is None:
        raise TPVError(f"cell {cell_id} has no result under {out / CELLS_DIR}")
    folder = cell_dir(out, cell_id)
    artifacts = {name: (folder / name).read_bytes() for name in result.get("artifacts", [])}
    return CellInput(cell_id, result.get("metrics", {}), artifacts)


def store_cell(
    out: Path,
    cell: Cell,
    output: CellOutput,
    *,
    elapsed_s: float = 0.0,
    host: str = "",
    device: str = "",
    pack_size: int = 1,
    pack_error: str | None = None,
) -> None:
    """Write a finished cell's folder atomically: its record (``result.json``) and its artifacts.

    Args:
        out: the results root.
        cell: the cell.
        output: its metrics and artifacts.
        elapsed_s: seconds it took (in a pack: its share of the pack's time).
        host: the machine it ran on.
        device: the hardware it ran on (``cpu: <name>``, ``cuda: <name>``).
        pack_size: cells it ran with (1: alone).
        pack_error: the error of the pack it was planned in, when that pack failed and the cell ran alone.

    Raises:
        TPVError: an artifact name that is not a plain file name.
        OSError: the folder cannot be written.
    """
    record = {
        "id": cell.id,
        "kind": cell.kind,
        "version": CELL_KINDS[cell.kind].version if cell.kind in CELL_KINDS else None,
        "name": cell.name,
        "stage": cell.stage,
        "params": dict(cell.params),
        "deps": dict(cell.deps),
        "metrics": dict(output.metrics),
        "artifacts": sorted(output.artifacts),
        "elapsed_s": round(elapsed_s, 3),
        "estimate_s": round(cell.estimate_s, 3),
        "host": host,
        "device": device,
        "pack_size": int(pack_size),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if pack_error is not None:
        record["pack_error"] = pack_error
    with atomic_dir(cell_dir(out, cell.id)) as tmp:
        for name, data in output.artifacts.items():
            if "/" in name or name in ("", ".", "..", RESULT_FILE):
                raise TPVError(f"cell {cell.id}: bad artifact name {name!r}")
            (tmp / name).write_bytes(data)
        (tmp / RESULT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")


def log_failure(folder: Path, cell: Cell, error: str | None, traceback: str | None, *, stem: str | None = None) -> Path:
    """Write a failed cell's error and traceback to ``folder/<stem>.txt`` (atomically; default stem: the cell id)."""
    return atomic_write_text(
        folder / f"{stem or cell.id}.txt", f"{cell.id} ({cell.name})\n{error}\n\n{traceback or ''}"
    )
