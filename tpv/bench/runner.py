"""The cell engine: order a plan's cells into waves, skip the finished ones, run the rest, store each atomically.

An experiment expands into **cells** (:mod:`tpv.bench.cells`), each one unit of work. Results live under
``OUT/cells/<id>/`` (:mod:`tpv.bench.store`); a rerun skips every cell whose folder exists (resume), and
experiments share cells when they run into the same ``OUT`` (few-shot reuses the source tunings of experiment 1).
Cells run wave by wave in dependency order, on an executor (:mod:`tpv.bench.executors`); a failing cell is
recorded and its dependents are skipped, the rest go on.

**Packing** (``pack`` > 1, the config's ``runtime.pack``): the ready cells of a wave whose kind has a pack function
are grouped by :meth:`~tpv.bench.cells.CellKind.pack_group` (kind and model, never mixed) into packs of up to
``pack`` cells (:func:`pack_tasks`); the executor runs each pack as one unit and every cell is stored on its own as
soon as its pack finishes, with the id and files it has unpacked. An interrupted packed run resumes like any other:
finished cells are skipped, the rest are packed again.

This module knows no experiment and no report: :mod:`tpv.bench.api` plans an experiment, runs its cells here and
writes the report. (``run`` and ``report`` are still importable from here, as aliases of :mod:`tpv.bench.api`.)
"""

from __future__ import annotations

import itertools
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tpv.bench.cells import (
    CELL_KINDS,
    Cell,
    CellInput,
    CellKind,
    CellOutput,
    cell_kind,
    execute_cell,
    get_kind,
    make_cell,
)
from tpv.bench.executors import CellOutcome, CellPack, CellTask, Unit, run_task
from tpv.bench.store import (
    CELLS_DIR,
    RESULT_FILE,
    cell_dir,
    claim_cell,
    load_cell_result,
    load_input,
    log_failure,
    release_cell,
    store_cell,
)
from tpv.errors import ConfigError, TPVError

if TYPE_CHECKING:
    from tpv.bench.executors import Executor

__all__ = [
    "CELLS_DIR",
    "CELL_KINDS",
    "RESULT_FILE",
    "Cell",
    "CellInput",
    "CellKind",
    "CellOutcome",
    "CellOutput",
    "CellPack",
    "CellTask",
    "Progress",
    "RunSummary",
    "cell_dir",
    "cell_kind",
    "execute_cell",
    "load_cell_result",
    "make_cell",
    "pack_tasks",
    "plan_run",
    "plan_waves",
    "run_cells",
    "run_planned",
    "run_task",
]


class Progress(Protocol):
    """Receives progress events (the CLI draws a tqdm bar on stderr; the library never prints)."""

    def start(self, cells: Sequence[Cell], skipped: int) -> None:
        """Called once with the cells to run and the number already finished."""

    def cell_done(self, cell: Cell, outcome: CellOutcome) -> None:
        """Called after each cell, finished or failed."""

    def close(self) -> None:
        """Called once at the end."""

    # Optional: ``other_done(cell)``, called when another worker sharing the results folder finished a cell of
    # this run's plan (looked up with getattr, so progress objects without it keep working).


def plan_waves(cells: Sequence[Cell], done: set[str]) -> list[list[Cell]]:
    """Group the unfinished cells into waves: every cell's dependencies are finished or in an earlier wave.

    Raises:
        ConfigError: duplicate ids, a dependency on an unknown cell, or a cycle.
    """
    by_id: dict[str, Cell] = {}
    for c in cells:
        if c.id in by_id and by_id[c.id] != c:
            raise ConfigError(f"two different cells share the id {c.id}")
        by_id[c.id] = c
    for c in by_id.values():
        for role, dep in c.deps.items():
            if dep not in by_id and dep not in done:
                raise ConfigError(f"cell {c.id} depends on {dep} ({role}), which is not in the plan")
    level: dict[str, int] = {}

    def depth(cid: str, trail: tuple[str, ...]) -> int:
        if cid in done and cid not in level:
            return -1
        if cid in level:
            return level[cid]
        if cid in trail:
            raise ConfigError(f"cells depend on each other in a cycle: {' -> '.join((*trail, cid))}")
        d = 1 + max((depth(dep, (*trail, cid)) for dep in by_id[cid].deps.values()), default=-1)
        level[cid] = d
        return d

    pending = [c for c in by_id.values() if c.id not in done]
    for c in pending:
        depth(c.id, ())
    waves: list[list[Cell]] = [[] for _ in range(1 + max((level[c.id] for c in pending), default=-1))]
    for c in pending:
        waves[level[c.id]].append(c)
    return [w for w in waves if w]


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        name: the run's name (the config's name).
        experiment: the experiment run.
        cells: every cell of the plan, in plan order.
        finished: ids not run by this run because they were finished: before it, or by another worker sharing
            the results folder during it.
        by_others: the ids of ``finished`` that another worker finished during this run.
        executed: ids run by this run and stored.
        failed: id -> error line, for cells that raised.
        blocked: ids not run because a dependency failed.
        pack_failed: id -> error of the pack it was planned in, for cells whose pack failed (they then ran alone:
            their own outcome is in ``executed`` or ``failed``).
        estimate_s: expected seconds of the cells that were (or would be) run.
        report_dir: where results.json, results.md and the plots went (``None`` for a dry run).
        dry_run: whether nothing was run.
        waves: the unfinished cells in dependency order (what a run executes).
    """

    name: str
    experiment: str
    cells: list[Cell]
    finished: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    pack_failed: dict[str, str] = field(default_factory=dict)
    by_others: list[str] = field(default_factory=list)
    estimate_s: float = 0.0
    report_dir: Path | None = None
    dry_run: bool = False
    waves: list[list[Cell]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """No cell failed or was blocked."""
        return not self.failed and not self.blocked


def plan_run(cells: Sequence[Cell], out: str | os.PathLike[str], *, name: str, experiment: str = "") -> RunSummary:
    """Check a plan and find its finished cells under ``out``, running nothing (a dry run's summary).

    Args:
        cells: every cell of the plan (finished ones included).
        out: the results root (cells under ``OUT/cells/``).
        name: the run's name.
        experiment: the experiment's name (recorded in the summary).

    Returns:
        The summary (``dry_run`` true) with the finished ids, the waves to run and their estimated seconds.

    Raises:
        ConfigError: an invalid plan (duplicate ids, dangling dependencies, a cycle).
    """
    root = Path(out)
    by_id = {c.id: c for c in cells}
    done = {c.id for c in cells if load_cell_result(root, c.id) is not None}
    waves = plan_waves(cells, done)
    todo = [c for wave in waves for c in wave]
    return RunSummary(
        name,
        experiment,
        list(by_id.values()),
        finished=sorted(done),
        estimate_s=sum(c.estimate_s for c in todo),
        dry_run=True,
        waves=waves,
    )


class _Gather:
    """Stores each outcome as it arrives and keeps the summary's books."""

    def __init__(self, root: Path, summary: RunSummary, failures: Path, progress: Progress | None) -> None:
        self.root = root
        self.summary = summary
        self.failures = failures
        self.progress = progress
        self.failed_or_blocked: set[str] = set()

    def __call__(self, task: CellTask, outcome: CellOutcome) -> None:
        cell = task.cell
        if outcome.pack_error is not None:
            self.summary.pack_failed[cell.id] = outcome.pack_error
            if outcome.pack_traceback is not None:
                error = f"its pack failed (its cells then ran one by one): {outcome.pack_error}"
                log_failure(self.failures, cell, error, outcome.pack_traceback, stem=f"pack-{cell.id}")
        if outcome.output is not None:
            try:
                store_cell(self.root, cell, outcome.output, elapsed_s=outcome.elapsed_s, host=outcome.host,
                           device=outcome.device, pack_size=outcome.pack_size,
                           pack_error=outcome.pack_error)  # fmt: skip
            except (OSError, TPVError, TypeError, ValueError) as exc:
                outcome = CellOutcome(None, f"storing the result failed: {exc}", traceback.format_exc())
        if outcome.output is None:
            self.summary.failed[cell.id] = outcome.error or "failed"
            self.failed_or_blocked.add(cell.id)
            log_failure(self.failures, cell, outcome.error, outcome.traceback)
        else:
            self.summary.executed.append(cell.id)
        if self.progress is not None:
            self.progress.cell_done(cell, outcome)

    def tasks(self, wave: Sequence[Cell], env: Mapping[str, Any]) -> list[CellTask]:
        """The wave's tasks; cells whose dependencies failed are recorded as blocked instead."""
        tasks: list[CellTask] = []
        for c in wave:
            if any(d in self.failed_or_blocked for d in c.deps.values()):
                self.summary.blocked.append(c.id)
                self.failed_or_blocked.add(c.id)
                continue
            inputs = {role: load_input(self.root, dep) for role, dep in c.deps.items()}
            tasks.append(CellTask(c, inputs, env, get_kind(c.kind)))
        return tasks


def _check_pack(pack: object) -> int:
    """``pack`` as a pack size.

    Raises:
        ConfigError: not a whole number >= 1.
    """
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise ConfigError(
            f"pack = {pack!r}: must be a whole number >= 1, the most cells of one kind and model run together "
            "(1: no packing); e.g. --set runtime.pack=4"
        )
    return pack


def pack_tasks(tasks: Sequence[CellTask], pack: int) -> list[Unit]:
    """Group a wave's tasks into packs of up to ``pack`` cells; the others stay single tasks.

    Cells pack together only when their kind has a pack function and their
    :meth:`~tpv.bench.cells.CellKind.pack_group` is equal (same kind and model: never mixed). A group of ``n`` cells
    is cut into ``ceil(n / pack)`` packs of near-equal size, in plan order; each pack takes the place of its first
    cell in the wave, and a pack of one cell is a single task.

    Args:
        tasks: the wave's ready tasks.
        pack: the most cells in one pack (1: none packed).

    Returns:
        The units to run: :class:`CellTask` and :class:`CellPack` objects.

    Raises:
        ConfigError: ``pack`` is not a whole number >= 1, or a task of an unknown kind.
    """
    pack = _check_pack(pack)
    groups: dict[str, list[CellTask]] = {}
    order: list[tuple[str | None, CellTask]] = []
    for task in tasks:
        key = (task.kind or get_kind(task.cell.kind)).pack_group(task.cell.params) if pack > 1 else None
        if key is None or key not in groups:
            order.append((key, task))
        if key is not None:
            groups.setdefault(key, []).append(task)
    units: list[Unit] = []
    for key, task in order:
        if key is None:
            units.append(task)
            continue
        members = groups[key]
        count = math.ceil(len(members) / pack)
        bounds = [round(i * len(members) / count) for i in range(count + 1)]
        for lo, hi in itertools.pairwise(bounds):
            chunk = tuple(members[lo:hi])
            units.append(chunk[0] if len(chunk) == 1 else CellPack(chunk))
    return units


def run_planned(
    summary: RunSummary,
    out: str | os.PathLike[str],
    *,
    env: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    failures: str | os.PathLike[str] | None = None,
    pack: int = 1,
    poll_s: float = 5.0,
) -> RunSummary:
    """Run the waves of a :func:`plan_run` summary and store each finished cell under ``out``.

    With an executor that runs one unit at a time here (the default), several processes may share ``out`` and
    split the plan: each claims a cell before running it (:func:`tpv.bench.store.claim_cell`), skips cells another
    live worker holds, and at the end of a wave waits for those to finish (or runs them itself if their worker
    died or failed them) before the next wave, whose cells may depend on them.

    Args:
        summary: the plan's summary (updated in place: ``executed``, ``failed``, ``blocked``, ``finished``).
        out: the results root.
        env: settings passed to every cell that do not change results (``threads``).
        executor: where cells run (default: in this process).
        progress: receives progress events.
        failures: folder of the failed cells' tracebacks (default: ``OUT/<summary.name>/failures``).
        pack: the most cells of one kind and model run together as one pack (1: no packing; see
            :func:`pack_tasks`). Results equal an unpacked run's up to float rounding.
        poll_s: seconds between looks at cells another worker is running.

    Returns:
        ``summary``, with ``dry_run`` false. Failing cells do not raise: see ``summary.failed`` and ``.blocked``.

    Raises:
        ConfigError: ``pack`` is not a whole number >= 1.
    """
    root = Path(out)
    pack = _check_pack(pack)
    summary.dry_run = False
    if executor is None:
        from tpv.bench.executors import InProcessExecutor

        executor = InProcessExecutor()
    gather = _Gather(root, summary, Path(failures) if failures else root / summary.name / "failures", progress)
    if progress is not None:
        progress.start([c for wave in summary.waves for c in wave], len(summary.finished))
    try:
        for wave in summary.waves:
            units = pack_tasks(gather.tasks(wave, dict(env or {})), pack)
            if units and getattr(executor, "one_at_a_time", False):
                _run_shared(units, executor, gather, root, summary, progress, poll_s)
            elif units:
                executor.run(units, gather)
    finally:
        if progress is not None:
            progress.close()
    return summary


def _run_shared(
    units: Sequence[Unit],
    executor: Executor,
    gather: _Gather,
    root: Path,
    summary: RunSummary,
    progress: Progress | None,
    poll_s: float,
) -> None:
    """One wave, one unit at a time, with claims: cells finished or held by other workers are not run here."""
    others = getattr(progress, "other_done", None)

    def finished_elsewhere(task: CellTask) -> bool:
        if load_cell_result(root, task.cell.id) is None:
            return False
        summary.finished.append(task.cell.id)
        summary.by_others.append(task.cell.id)
        if others is not None:
            others(task.cell)
        return True

    def run_claimed(tasks: Sequence[CellTask]) -> None:
        try:
            executor.run([tasks[0] if len(tasks) == 1 else CellPack(tuple(tasks))], gather)
        finally:
            for t in tasks:
                release_cell(root, t.cell.id)

    waiting: list[CellTask] = []
    for unit in units:
        mine = []
        for t in unit.tasks if isinstance(unit, CellPack) else (unit,):
            if finished_elsewhere(t):
                continue
            if claim_cell(root, t.cell.id):
                if load_cell_result(root, t.cell.id) is None:
                    mine.append(t)
                    continue
                release_cell(root, t.cell.id)  # another worker stored it between the look and the claim
                finished_elsewhere(t)
            else:
                waiting.append(t)
        if mine:
            run_claimed(mine)
    while waiting:  # held by other workers: the next wave may need them
        time.sleep(poll_s)
        still = []
        for t in waiting:
            if finished_elsewhere(t):
                continue
            if claim_cell(root, t.cell.id):  # its worker died or gave up on it: run it here
                if finished_elsewhere(t):
                    release_cell(root, t.cell.id)
                else:
                    run_claimed([t])
            else:
                still.append(t)
        waiting = still


def run_cells(
    cells: Sequence[Cell],
    out: str | os.PathLike[str],
    *,
    name: str,
    experiment: str = "",
    env: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    pack: int = 1,
    poll_s: float = 5.0,
) -> RunSummary:
    """Plan ``cells`` (:func:`plan_run`) and run the unfinished ones (:func:`run_planned`: the arguments).

    Raises:
        ConfigError: an invalid plan, or ``pack`` not a whole number >= 1.
    """
    summary = plan_run(cells, out, name=name, experiment=experiment)
    return run_planned(summary, out, env=env, executor=executor, progress=progress, pack=pack, poll_s=poll_s)
