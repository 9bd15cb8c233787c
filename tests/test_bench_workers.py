"""Workers sharing one results folder: exclusive files, cell claims, waiting on cells another worker holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tpv._fs import create_exclusive
from tpv.bench.cells import CELL_KINDS, CellKind, CellOutput, make_cell
from tpv.bench.runner import run_cells
from tpv.bench.store import CLAIMS_DIR, claim_cell, claim_holder, release_cell, store_cell


@pytest.fixture
def calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """A cell kind ``toy`` that records (cell name, inputs' metrics) and returns ``{"x": its name}``."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def toy(params: Any, inputs: Any, env: Any) -> CellOutput:
        seen.append((params["name"], {role: dict(i.metrics) for role, i in inputs.items()}))
        return CellOutput({"x": params["name"]})

    CELL_KINDS["toy"] = CellKind("toy", toy, 1)
    yield seen
    del CELL_KINDS["toy"]


@pytest.fixture
def other_worker() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing for another worker (killed after the test)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _claim_as(out: Path, cell_id: str, pid: int | None, host: str | None = None) -> Path:
    path = out / CLAIMS_DIR / f"{cell_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "then"}))
    return path


def _toy(name: str, deps: dict[str, str] | None = None) -> Any:
    return make_cell("toy", name, {"name": name}, stage="toy", deps=deps)


def test_create_exclusive_has_one_winner_and_leaves_nothing_aside(tmp_path: Path) -> None:
    """Of many threads creating one file, exactly one succeeds; its content is whole; no temp sibling is left."""
    path = tmp_path / "sub" / "claim.json"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        results.append(create_exclusive(path, json.dumps({"who": i, "pad": "x" * 4096})))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert json.loads(path.read_text())["pad"] == "x" * 4096
    assert os.listdir(path.parent) == ["claim.json"]
    assert create_exclusive(path, "again") is False and json.loads(path.read_text())["pad"]


def test_claims_are_held_released_and_taken_over_when_stale(
    tmp_path: Path, other_worker: subprocess.Popen[bytes]
) -> None:
    """A live process's claim holds; a dead, reused-pid or garbled old one is stale; release removes only mine."""
    assert claim_holder(tmp_path, "c1") is None
    assert claim_cell(tmp_path, "c1")
    mine = claim_holder(tmp_path, "c1")
    assert mine is not None and (mine["pid"], mine["host"]) == (os.getpid(), socket.gethostname())
    assert not claim_cell(tmp_path, "c1")  # held (by this very process)
    release_cell(tmp_path, "c1")
    assert claim_holder(tmp_path, "c1") is None and not (tmp_path / CLAIMS_DIR / "c1.json").exists()

    theirs = _claim_as(tmp_path, "c2", other_worker.pid)
    assert claim_holder(tmp_path, "c2")["pid"] == other_worker.pid  # type: ignore[index]
    assert not claim_cell(tmp_path, "c2")
    release_cell(tmp_path, "c2")
    assert theirs.exists()  # not mine: left alone
    elsewhere = _claim_as(tmp_path, "c3", 1, host="another-machine")
    assert not claim_cell(tmp_path, "c3") and elsewhere.exists()  # another host: respected

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _claim_as(tmp_path, "c4", int(gone.stdout))
    assert claim_holder(tmp_path, "c4") is None and claim_cell(tmp_path, "c4")  # its worker died: taken over
    assert json.loads((tmp_path / CLAIMS_DIR / "c4.json").read_text())["pid"] == os.getpid()

    reused = _claim_as(tmp_path, "c6", other_worker.pid)  # the pid lives, but another process had it then
    reused.write_text(json.dumps({**json.loads(reused.read_text()), "pid_start": 1}))
    assert claim_holder(tmp_path, "c6") is None and claim_cell(tmp_path, "c6")

    garbled = tmp_path / CLAIMS_DIR / "c5.json"
    garbled.write_text("")
    assert claim_holder(tmp_path, "c5") is not None and not claim_cell(tmp_path, "c5")  # may still be written
    os.utime(garbled, (time.time() - 3600, time.time() - 3600))
    assert claim_cell(tmp_path, "c5")


def test_a_worker_skips_cells_another_holds_and_waits_for_them(
    tmp_path: Path, calls: list[Any], other_worker: subprocess.Popen[bytes]
) -> None:
    """A held cell is not run here; the next wave waits for it and gets its result as input; no claim is left."""
    a1, a2 = _toy("a1"), _toy("a2")
    b = _toy("b", {"up": a1.id})
    claim = _claim_as(tmp_path, a1.id, other_worker.pid)

    def the_other_worker_finishes_a1() -> None:
        time.sleep(0.5)
        store_cell(tmp_path, a1, CellOutput({"x": "a1 elsewhere"}))
        claim.unlink()

    threading.Thread(target=the_other_worker_finishes_a1).start()
    summary = run_cells([a1, a2, b], tmp_path, name="toy", poll_s=0.05)
    assert summary.ok and summary.by_others == [a1.id] and sorted(summary.executed) == sorted([a2.id, b.id])
    assert calls == [("a2", {}), ("b", {"up": {"x": "a1 elsewhere"}})]
    assert os.listdir(tmp_path / CLAIMS_DIR) == []


def test_a_cell_whose_worker_dies_is_run_here(
    tmp_path: Path, calls: list[Any], other_worker: subprocess.Popen[bytes]
) -> None:
    """A worker killed while holding a cell leaves a stale claim: a waiting worker takes the cell over."""
    a1 = _toy("a1")
    _claim_as(tmp_path, a1.id, other_worker.pid)
    threading.Timer(0.3, other_worker.kill).start()
    summary = run_cells([a1], tmp_path, name="toy", poll_s=0.05)
    assert summary.ok and summary.executed == [a1.id] and summary.by_others == []
    assert calls == [("a1", {})] and os.listdir(tmp_path / CLAIMS_DIR) == []
