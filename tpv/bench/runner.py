"""The benchmark runner: plan an experiment as independent cells, run the unfinished ones, store each atomically.

An experiment expands into **cells**, each one unit of work (tune one task from one origin, evaluate one
transfer, train one few-shot init...). A cell knows its *kind* (a registered function), its parameters (plain
JSON), the cells it reads (``deps``, role -> cell id) and its stage. Its id is stable: the kind, a readable name
and a hash of the kind's version, the parameters and the dependencies' ids, so changing any setting a cell uses
gives a new cell, and a cell whose inputs did not change is never run twice::

    source-rotten_tomatoes-o0-3f2a1c9d

Results live under ``OUT/cells/<id>/`` (``result.json`` plus artifacts such as ``vector.safetensors``); the
folder is built aside and moved into place only when complete, so an interrupted run leaves no half cell. A
rerun skips every cell whose folder exists (resume); experiments share cells when they run into the same
``OUT`` (few-shot reuses the source tunings of experiment 1). Cells run wave by wave in dependency order, on an
executor (:mod:`tpv.bench.executors`); a failing cell is recorded and its dependents are skipped, the rest go on.

Cell functions receive their parameters and their dependencies' results *as data* (metrics and artifact bytes)
and return data, so the same function runs in this process or on a Ray worker of another machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tpv._fs import atomic_dir, atomic_write_text
from tpv.errors import ConfigError, TPVError

if TYPE_CHECKING:
    from tpv.bench.config import Config, ConfigLayer
    from tpv.bench.executors import Executor

__all__ = [
    "CELL_KINDS",
    "Cell",
    "CellInput",
    "CellKind",
    "CellOutcome",
    "CellOutput",
    "CellTask",
    "Progress",
    "RunSummary",
    "cell_kind",
    "execute_cell",
    "load_cell_result",
    "make_cell",
    "plan_waves",
    "run",
]

RESULT_FILE = "result.json"
CELLS_DIR = "cells"


# -- cells ------------------------------------------------------------------------------------------------------


def _canonical(data: Any) -> str:
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cell parameters must be plain JSON (no NaN): {exc}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")[:80] or "cell"


@dataclass(frozen=True)
class Cell:
    """One independent unit of work.

    Attributes:
        id: stable id ``<kind>-<name>-<hash8>`` (see :func:`make_cell`); names its results folder.
        kind: the registered cell function (see :data:`CELL_KINDS`).
        name: readable name, e.g. ``rotten_tomatoes/o0``.
        stage: the stage it belongs to (e.g. ``sources``, ``fewshot``), for listing and progress.
        params: plain-JSON parameters; part of the id.
        deps: role -> id of the cells whose results it reads; part of the id.
        estimate_s: expected seconds (dry runs and the ETA).
    """

    id: str
    kind: str
    name: str
    stage: str
    params: Mapping[str, Any]
    deps: Mapping[str, str] = field(default_factory=dict)
    estimate_s: float = 0.0


def make_cell(
    kind: str,
    name: str,
    params: Mapping[str, Any],
    *,
    stage: str,
    deps: Mapping[str, str] | None = None,
    estimate_s: float = 0.0,
) -> Cell:
    """A cell with its stable id.

    Args:
        kind: a registered cell kind.
        name: readable name (``/`` allowed; slugged in the id).
        params: plain-JSON parameters.
        stage: the stage's name.
        deps: role -> cell id.
        estimate_s: expected seconds.

    Returns:
        The cell; its id hashes the kind's version, ``params`` and ``deps``.

    Raises:
        ConfigError: unknown kind, or parameters that are not plain JSON.
    """
    spec = CELL_KINDS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown cell kind {kind!r}; registered kinds: {', '.join(sorted(CELL_KINDS))}")
    deps = dict(deps or {})
    digest = hashlib.sha256(
        _canonical({"kind": kind, "version": spec.version, "params": params, "deps": deps}).encode()
    ).hexdigest()[:8]
    params = json.loads(_canonical(params))  # a private plain copy
    return Cell(f"{kind}-{_slug(name)}-{digest}", kind, name, stage, params, deps, float(estimate_s))


@dataclass(frozen=True)
class CellOutput:
    """What a cell function returns: metrics (plain JSON) and artifacts (file name -> bytes)."""

    metrics: Mapping[str, Any]
    artifacts: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class CellInput:
    """A finished dependency, as a cell function receives it."""

    id: str
    metrics: Mapping[str, Any]
    artifacts: Mapping[str, bytes]


CellFn = Callable[[Mapping[str, Any], Mapping[str, CellInput], Mapping[str, Any]], CellOutput]
"""``fn(params, inputs (role -> CellInput), env) -> CellOutput``. ``env`` holds settings that must not change
the results (torch threads), so it is not part of the id."""


@dataclass(frozen=True)
class CellKind:
    """A registered cell function and its version (bump it when the function's results change)."""

    name: str
    fn: CellFn
    version: int = 1


CELL_KINDS: dict[str, CellKind] = {}
"""Every cell kind by name; :mod:`tpv.bench.experiments` registers the paper's."""


def cell_kind(name: str, *, version: int = 1) -> Callable[[CellFn], CellFn]:
    """Register a cell function under ``name`` (a decorator).

    Args:
        name: the kind's name (letters, digits, ``_``).
        version: part of every id of this kind: bump it to invalidate stored results.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"cell kind names are lowercase letters, digits and _; got {name!r}")

    def register(fn: CellFn) -> CellFn:
        CELL_KINDS[name] = CellKind(name, fn, version)
        return fn

    return register


def execute_cell(
    kind: str, params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any] | None = None
) -> CellOutput:
    """Run one cell function (the entry point executors call, in this process or on a worker).

    Raises:
        ConfigError: unknown kind.
        Exception: whatever the cell function raises.
    """
    if kind not in CELL_KINDS:
        import tpv.bench.calibration  # noqa: F401  (registers the paper's and the calibration's kinds on a fresh worker)
    spec = CELL_KINDS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown cell kind {kind!r}; registered kinds: {', '.join(sorted(CELL_KINDS))}")
    env = dict(env or {})
    threads = env.get("threads")
    if isinstance(threads, int) and threads > 0:
        import torch

        torch.set_num_threads(threads)
    out = spec.fn(params, inputs, env)
    if not isinstance(out, CellOutput):
        raise TypeError(f"cell kind {kind!r} returned {type(out).__name__}, not a CellOutput")
    _canonical(out.metrics)
    return out


# -- executing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellTask:
    """A cell ready to run: the cell, its inputs and the run's environment."""

    cell: Cell
    inputs: Mapping[str, CellInput]
    env: Mapping[str, Any]


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended: its output or its error; seconds taken; the worker's host and device.

    ``device`` names the hardware (``"cpu: <cpu name>"`` or ``"cuda: <gpu name>"``), so a report written on
    another machine can say where its cells ran.
    """

    output: CellOutput | None
    error: str | None = None
    traceback: str | None = None
    elapsed_s: float = 0.0
    host: str = ""
    device: str = ""


def run_task(task: CellTask) -> CellOutcome:
    """Execute a task, catching its failure into the outcome (used by every executor)."""
    import socket

    start = time.perf_counter()
    try:
        out = execute_cell(task.cell.kind, task.cell.params, task.inputs, task.env)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing cell must not stop the others
        return CellOutcome(
            None,
            f"{type(exc).__name__}: {exc}",
            traceback.format_exc(),
            time.perf_counter() - start,
            socket.gethostname(),
        )
    from tpv.bench.report import measured_on

    device = measured_on(str(task.cell.params.get("model", {}).get("device", "cpu")))
    return CellOutcome(out, elapsed_s=time.perf_counter() - start, host=socket.gethostname(), device=device)


class Progress(Protocol):
    """Receives progress events (the CLI draws a tqdm bar on stderr; the library never prints)."""

    def start(self, cells: Sequence[Cell], skipped: int) -> None:
        """Called once with the cells to run and the number already finished."""

    def cell_done(self, cell: Cell, outcome: CellOutcome) -> None:
        """Called after each cell, finished or failed."""

    def close(self) -> None:
        """Called once at the end."""


# -- storage ----------------------------------------------------------------------------------------------------


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


def _load_input(out: Path, cell_id: str) -> CellInput:
    result = load_cell_result(out, cell_id)
    if result is None:
        raise TPVError(f"cell {cell_id} has no result under {out / CELLS_DIR}")
    folder = cell_dir(out, cell_id)
    artifacts = {name: (folder / name).read_bytes() for name in result.get("artifacts", [])}
    return CellInput(cell_id, result.get("metrics", {}), artifacts)


def _store(out: Path, cell: Cell, outcome: CellOutcome) -> None:
    assert outcome.output is not None
    record = {
        "id": cell.id,
        "kind": cell.kind,
        "version": CELL_KINDS[cell.kind].version if cell.kind in CELL_KINDS else None,
        "name": cell.name,
        "stage": cell.stage,
        "params": dict(cell.params),
        "deps": dict(cell.deps),
        "metrics": dict(outcome.output.metrics),
        "artifacts": sorted(outcome.output.artifacts),
        "elapsed_s": round(outcome.elapsed_s, 3),
        "estimate_s": round(cell.estimate_s, 3),
        "host": outcome.host,
        "device": outcome.device,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_dir(cell_dir(out, cell.id)) as tmp:
        for name, data in outcome.output.artifacts.items():
            if "/" in name or name in ("", ".", "..", RESULT_FILE):
                raise TPVError(f"cell {cell.id}: bad artifact name {name!r}")
            (tmp / name).write_bytes(data)
        (tmp / RESULT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")


# -- planning ---------------------------------------------------------------------------------------------------


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


# -- the run ----------------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        name: the config's name.
        experiment: the experiment run.
        cells: every cell of the plan, in plan order.
        finished: ids finished before this run (skipped).
        executed: ids run by this run and stored.
        failed: id -> error line, for cells that raised.
        blocked: ids not run because a dependency failed.
        estimate_s: expected seconds of the cells that were (or would be) run.
        report_dir: where results.json, results.md and the plots went (``None`` for a dry run).
        dry_run: whether nothing was run.
    """

    name: str
    experiment: str
    cells: list[Cell]
    finished: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    estimate_s: float = 0.0
    report_dir: Path | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """No cell failed or was blocked."""
        return not self.failed and not self.blocked


def default_env(config: Config) -> dict[str, Any]:
    """The run environment passed to every cell (not part of cell ids)."""
    return {"threads": config.runtime.threads}


def run(
    config: Config,
    out: str | os.PathLike[str],
    *,
    layers: Sequence[ConfigLayer] = (),
    executor: Executor | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    report: bool = True,
) -> RunSummary:
    """Plan ``config``'s experiment, run its unfinished cells and write the report.

    Args:
        config: the validated config.
        out: the results root: cells go to ``OUT/cells/``, the report to ``OUT/<config.name>/``.
        layers: the config layers (recorded in the report as provenance).
        executor: where cells run (default: in this process).
        dry_run: only plan: list the cells and the estimated time of the unfinished ones.
        progress: receives progress events.
        report: write the report after running.

    Returns:
        The summary. Failing cells do not raise: see ``summary.failed`` and ``summary.blocked``.

    Raises:
        ConfigError: an unknown experiment or an invalid plan.
    """
    from tpv.bench.experiments import get_experiment

    root = Path(out)
    experiment = get_experiment(config.experiment)
    cells = experiment.plan(config)
    by_id = {c.id: c for c in cells}
    done = {c.id for c in cells if load_cell_result(root, c.id) is not None}
    waves = plan_waves(cells, done)
    todo = [c for wave in waves for c in wave]
    summary = RunSummary(
        config.name,
        config.experiment,
        list(by_id.values()),
        finished=sorted(done),
        estimate_s=sum(c.estimate_s for c in todo),
        dry_run=dry_run,
    )
    if dry_run:
        return summary
    from tpv.bench.report import write_config

    report_dir = root / config.name
    write_config(report_dir, config, layers)
    env = default_env(config)
    if executor is None:
        from tpv.bench.executors import InProcessExecutor

        executor = InProcessExecutor()
    if progress is not None:
        progress.start(todo, len(done))
    failed_or_blocked: set[str] = set()
    try:
        for wave in waves:
            tasks: list[CellTask] = []
            for c in wave:
                bad = [d for d in c.deps.values() if d in failed_or_blocked]
                if bad:
                    summary.blocked.append(c.id)
                    failed_or_blocked.add(c.id)
                    continue
                inputs = {role: _load_input(root, dep) for role, dep in c.deps.items()}
                tasks.append(CellTask(c, inputs, env))

            def on_result(task: CellTask, outcome: CellOutcome) -> None:
                cell = task.cell
                if outcome.output is not None:
                    try:
                        _store(root, cell, outcome)
                    except (OSError, TPVError, TypeError, ValueError) as exc:
                        outcome = CellOutcome(None, f"storing the result failed: {exc}", traceback.format_exc())
                if outcome.output is None:
                    summary.failed[cell.id] = outcome.error or "failed"
                    failed_or_blocked.add(cell.id)
                    _log_failure(root, config.name, cell, outcome)
                else:
                    summary.executed.append(cell.id)
                if progress is not None:
                    progress.cell_done(cell, outcome)

            if tasks and getattr(executor, "name", "") == "inprocess":
                # One at a time, each checked just before it runs: another process sharing this --out (a second
                # worker on other targets, say) may have finished it since the plan.
                for t in tasks:
                    if load_cell_result(root, t.cell.id) is not None:
                        summary.finished.append(t.cell.id)
                        continue
                    executor.run([t], on_result)
            elif tasks:
                executor.run(tasks, on_result)
    finally:
        if progress is not None:
            progress.close()
    if report:
        from tpv.bench.report import write_report

        summary.report_dir = write_report(root, config, layers, summary, experiment)
    return summary


def report(config: Config, out: str | os.PathLike[str], *, layers: Sequence[ConfigLayer] = ()) -> RunSummary:
    """Write ``config``'s report from the cells finished so far, running nothing.

    For a long run still under way (or stopped): the tables, plots and tests cover the finished cells, and the
    report says how many are missing. A later ``run`` of the same config rewrites it.

    Args:
        config: the validated config.
        out: the results root the cells were stored under.
        layers: the config layers (recorded in the report as provenance).

    Returns:
        The summary (``dry_run`` is true: nothing was run), with ``report_dir`` set.

    Raises:
        ConfigError: no cell of the plan has finished under ``out`` (a wrong ``out`` or other overrides).
    """
    from tpv.bench.experiments import get_experiment
    from tpv.bench.report import write_report

    summary = run(config, out, layers=layers, dry_run=True)
    if not summary.finished:
        raise ConfigError(
            f"no finished cell of {config.name!r} under {Path(out) / 'cells'}: pass the --out (and --set) the run "
            "was given"
        )
    experiment = get_experiment(config.experiment)
    summary.report_dir = write_report(Path(out), config, layers, summary, experiment)
    return summary


def _log_failure(root: Path, name: str, cell: Cell, outcome: CellOutcome) -> None:
    path = root / name / "failures" / f"{cell.id}.txt"
    atomic_write_text(path, f"{cell.id} ({cell.name})\n{outcome.error}\n\n{outcome.traceback or ''}")
