"""Finished cells on disk: ``OUT/cells/<id>/result.json`` plus the cell's artifacts; claims of running cells.

A cell's folder is built aside and moved into place only when complete, so an interrupted run leaves no half
cell; a cell whose folder holds a ``result.json`` naming its id is finished (and skipped by a rerun). A cell run
in a pack is stored the same way, on its own, with the size of its pack recorded (``pack_size``).

Workers sharing one results folder (``tpv bench run --workers N``, or the same command started twice) split the
work by *claims*: before running a cell a worker creates ``OUT/.claims/<id>.json`` (its process id, host and start
time), which succeeds for one worker only, and removes it once the cell is stored. A claim whose process is gone
(same host, pid not alive: a killed worker) is stale and taken over; a claim from another host is respected until
it is removed (delete ``OUT/.claims`` when no worker runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tpv._fs import atomic_dir, atomic_write_text, create_exclusive, pid_alive, process_start
from tpv.bench.cells import CELL_KINDS, Cell, CellInput, CellOutput
from tpv.errors import TPVError

__all__ = [
    "CELLS_DIR",
    "CLAIMS_DIR",
    "RESULT_FILE",
    "cell_dir",
    "claim_cell",
    "claim_holder",
    "load_cell_result",
    "load_input",
    "log_failure",
    "release_cell",
    "store_cell",
]

RESULT_FILE = "result.json"
CELLS_DIR = "cells"
CLAIMS_DIR = ".claims"
UNREADABLE_CLAIM_S = 60.0
"""An unreadable claim (its writer killed while writing it, on a filesystem without hard links) counts as held for
this long, then as stale."""


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


def _claim_path(out: Path, cell_id: str) -> Path:
    return out / CLAIMS_DIR / f"{cell_id}.json"


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": process_start(os.getpid())}


def claim_holder(out: Path, cell_id: str) -> dict[str, Any] | None:
    """Who is running the cell: its claim's record (``pid``, ``host``, ``started``), or ``None`` when nobody is.

    A claim left by a process that is gone (same host; the pid not alive, a zombie, or a later process's) counts as
    nobody's; so does one that cannot be
    read after :data:`UNREADABLE_CLAIM_S` seconds. A claim from another host counts as held.
    """
    path = _claim_path(out, cell_id)
    try:
        text = path.read_text(encoding="utf-8")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        text, age = "", 0.0
    try:
        record = json.loads(text)
        pid, host = int(record["pid"]), str(record["host"])
        start = record.get("pid_start")
    except (ValueError, TypeError, KeyError):
        return None if age > UNREADABLE_CLAIM_S else {"pid": None, "host": None, "started": None}
    if host == socket.gethostname() and not pid_alive(pid, start if isinstance(start, int) else None):
        return None
    return {"pid": pid, "host": host, "started": record.get("started")}


def claim_cell(out: Path, cell_id: str) -> bool:
    """Claim the cell for this process before running it; ``False`` when another live worker holds it.

    A stale claim (see :func:`claim_holder`) is replaced. Two workers taking over the same stale claim at the same
    instant could both run the cell; its folder is written atomically, so the worst case is work done twice.

    Raises:
        OSError: the claims folder cannot be written.
    """
    path = _claim_path(out, cell_id)
    record = json.dumps({**_me(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    for _ in range(2):
        if create_exclusive(path, record):
            return True
        if claim_holder(out, cell_id) is not None:
            return False
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return False


def release_cell(out: Path, cell_id: str) -> None:
    """Remove this process's claim of the cell (a claim held by another process is left alone)."""
    path = _claim_path(out, cell_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    me = _me()
    if isinstance(record, dict) and all(record.get(k) == me[k] for k in ("pid", "host")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
