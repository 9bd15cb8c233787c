"""Where benchmark cells run: in this process (the default) or on a Ray cluster.

An executor takes a wave of independent :class:`CellTask` objects and calls back with each :class:`CellOutcome`
as it arrives; the runner stores it. Cells receive their inputs as data and return data, so a Ray worker needs no
shared file system: results are gathered by the driver into the same ``OUT/cells/`` files an in-process run writes.
A task carries its cell function (:class:`~tpv.bench.cells.CellKind`), so a worker needs no registry either.

A :class:`CellPack` (cells of one kind and model grouped by the runner, ``runtime.pack``) is one unit of work: one
call in this process, one Ray task on a worker; :func:`run_pack` runs it and returns one outcome per cell, stored
by the runner each on its own as soon as the pack finishes.

Ray (``pip install ray``) is optional. ``RayExecutor(address="ray://head:10001")`` or ``address="auto"``
connects to an existing cluster (tpv must be installed on its workers); ``address=None`` starts a local instance
for the run and stops it at the end.
"""

from __future__ import annotations

import platform
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, NotPackableError, execute_cell, execute_pack
from tpv.errors import ConfigError

__all__ = [
    "EXECUTORS",
    "CellOutcome",
    "CellPack",
    "CellTask",
    "Executor",
    "InProcessExecutor",
    "RayExecutor",
    "make_executor",
    "measured_on",
    "run_pack",
    "run_task",
    "run_unit",
]


@dataclass(frozen=True)
class CellTask:
    """A cell ready to run: the cell, its inputs, the run's environment and its cell function.

    ``kind`` is the registered :class:`~tpv.bench.cells.CellKind` resolved by the driver (``None``: looked up by
    name where the task runs).
    """

    cell: Cell
    inputs: Mapping[str, CellInput]
    env: Mapping[str, Any]
    kind: CellKind | None = None


@dataclass(frozen=True)
class CellPack:
    """Cells of one pack group run as one unit by their kind's pack function.

    The runner groups them (same :meth:`~tpv.bench.cells.CellKind.pack_group`: kind and model); an executor runs
    the pack as one call in this process or as one task on a Ray worker (:func:`run_pack`).
    """

    tasks: tuple[CellTask, ...]


Unit = CellTask | CellPack
"""What an executor runs: one cell, or a pack of cells."""


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended: its output or its error; seconds taken; the worker's host and device; its pack.

    ``device`` names the hardware (``"cpu: <cpu name>"`` or ``"cuda: <gpu name>"``), so a report written on
    another machine can say where its cells ran. ``pack_size`` is the number of cells it ran with (1: alone;
    ``elapsed_s`` is then its share of the pack's time). ``pack_error`` is the error of the pack it was planned
    in when that pack failed and the cell was then run alone; ``pack_traceback`` (on the pack's first cell only)
    is that failure's traceback.
    """

    output: CellOutput | None
    error: str | None = None
    traceback: str | None = None
    elapsed_s: float = 0.0
    host: str = ""
    device: str = ""
    pack_size: int = 1
    pack_error: str | None = None
    pack_traceback: str | None = None


def cpu_name() -> str:
    """This machine's CPU model name (``/proc/cpuinfo``; the platform's processor name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measured_on(device: str) -> str:
    """Name the hardware a cell ran on: ``"cuda: <GPU name>"`` for a CUDA device, else ``"cpu: <CPU name>"``.

    Args:
        device: the cell's ``model.device`` setting (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
    """
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                index = int(device.split(":", 1)[1]) if ":" in device else 0
                return f"cuda: {torch.cuda.get_device_name(index)}"
        except (ImportError, ValueError, RuntimeError):
            pass
        return device
    return f"cpu: {cpu_name()}"


def run_task(task: CellTask) -> CellOutcome:
    """Execute a task, catching its failure into the outcome (used by every executor)."""
    start = time.perf_counter()
    try:
        out = execute_cell(task.kind or task.cell.kind, task.cell.params, task.inputs, task.env)
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
    return CellOutcome(out, elapsed_s=time.perf_counter() - start, host=socket.gethostname(), device=_device(task))


def _device(task: CellTask) -> str:
    return measured_on(str(task.cell.params.get("model", {}).get("device", "cpu")))


def run_pack(pack: CellPack) -> list[CellOutcome]:
    """Execute a pack: one call of its kind's pack function; one outcome per cell, in the pack's order.

    A pack whose function raises :class:`~tpv.bench.cells.NotPackableError` (a model ``tpv.train_many`` does not pack)
    runs its cells one by one, as without packing. A pack whose function raises anything else does too, each
    outcome recording the pack's error (``pack_error``; the traceback on the first): so a failing job (a diverging
    loss, say) fails its own cell only, and every other cell ends as an unpacked run ends it. An interrupt
    (``KeyboardInterrupt``) stops the pack with nothing stored: a rerun runs its cells again.
    """
    tasks = pack.tasks
    if len(tasks) == 1:
        return [run_task(tasks[0])]
    first = tasks[0]
    start = time.perf_counter()
    try:
        outputs = execute_pack(first.kind or first.cell.kind, [(t.cell.params, t.inputs) for t in tasks], first.env)
    except KeyboardInterrupt:
        raise
    except NotPackableError:
        return [run_task(t) for t in tasks]
    except Exception as exc:  # the pack failed as a whole: each cell alone decides its own outcome
        error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        outcomes = [replace(run_task(t), pack_error=error) for t in tasks]
        outcomes[0] = replace(outcomes[0], pack_traceback=trace)
        return outcomes
    share = (time.perf_counter() - start) / len(tasks)
    host = socket.gethostname()
    return [
        CellOutcome(out, elapsed_s=share, host=host, device=_device(t), pack_size=len(tasks))
        for t, out in zip(tasks, outputs)
    ]


def run_unit(unit: Unit) -> list[tuple[CellTask, CellOutcome]]:
    """Execute a cell or a pack: each of its tasks with its outcome."""
    if isinstance(unit, CellPack):
        return list(zip(unit.tasks, run_pack(unit)))
    return [(unit, run_task(unit))]


def _tasks_of(unit: Unit) -> tuple[CellTask, ...]:
    return unit.tasks if isinstance(unit, CellPack) else (unit,)


OnResult = Callable[[CellTask, CellOutcome], None]


class Executor(Protocol):
    """Runs a wave of independent units (cells, or packs of cells) and reports each cell's outcome.

    ``one_at_a_time`` tells the runner that the executor runs units one after the other where the runner is: the
    runner then hands it one unit at a time and checks just before each whether another process sharing the
    results folder has finished some of its cells meanwhile.
    """

    name: str
    one_at_a_time: bool

    def run(self, tasks: Sequence[Unit], on_result: OnResult) -> None:
        """Run every unit; call ``on_result(task, outcome)`` once per cell, in completion order.

        A pack's cells are reported together, as soon as the pack finishes.
        """

    def close(self) -> None:
        """Release resources (stop a local cluster)."""


class InProcessExecutor:
    """Runs cells one after the other in this process (the default)."""

    name = "inprocess"
    one_at_a_time = True

    def run(self, tasks: Sequence[Unit], on_result: OnResult) -> None:
        """Run every unit in order."""
        for unit in tasks:
            for task, outcome in run_unit(unit):
                on_result(task, outcome)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ray_entry(unit: Unit) -> list[CellOutcome]:
    """What a Ray worker runs: a cell or a whole pack, as in-process; errors returned as data."""
    return [outcome for _task, outcome in run_unit(unit)]


class RayExecutor:
    """Runs cells as Ray tasks, on an existing cluster or on a local instance started for the run.

    A pack of cells is one Ray task: the worker loads the model once and returns every cell's outcome.

    Args:
        address: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None`` starts a local
            instance, stopped by :meth:`close`.
        num_cpus: CPUs of a local instance (default: all).
        cpus_per_cell: CPUs Ray reserves for each cell or pack (bounds how many run at once).
        gpus_per_cell: GPUs Ray reserves for each cell or pack.
        init_kwargs: more arguments for ``ray.init``.

    Raises:
        ConfigError: ray is not installed (the message gives the install command), or bad resources.
    """

    name = "ray"
    one_at_a_time = False

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_cell: float = 1.0,
        gpus_per_cell: float = 0.0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'ray>=2.9'") from None
        if cpus_per_cell <= 0 or gpus_per_cell < 0:
            raise ConfigError(f"cpus_per_cell must be > 0 and gpus_per_cell >= 0, got {cpus_per_cell}, {gpus_per_cell}")
        self._ray = ray
        self.address = address
        self._started = False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        kwargs.update(init_kwargs or {})
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=num_cpus, **kwargs)
            else:
                ray.init(address=address, **kwargs)
            self._started = True
        self._remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(_ray_entry)

    def run(self, tasks: Sequence[Unit], on_result: OnResult) -> None:
        """Submit every unit (a cell or a pack), then report outcomes as units complete."""
        ray = self._ray
        pending = {self._remote.remote(unit): unit for unit in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                members = _tasks_of(pending.pop(ref))
                try:
                    outcomes = list(ray.get(ref))
                except Exception as exc:  # worker died, task could not be deserialized, ...
                    outcomes = [CellOutcome(None, f"ray: {type(exc).__name__}: {exc}")] * len(members)
                for task, outcome in zip(members, outcomes):
                    on_result(task, outcome)

    def close(self) -> None:
        """Disconnect; a local instance started here is stopped."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: tuple[str, ...] = ("inprocess", "ray")


def make_executor(
    kind: Literal["inprocess", "ray"] | str = "inprocess", *, address: str | None = None, **kwargs: Any
) -> InProcessExecutor | RayExecutor:
    """An executor by name.

    Args:
        kind: ``"inprocess"`` or ``"ray"``.
        address: Ray cluster address (``ray`` only; ``None`` starts a local instance).
        **kwargs: more :class:`RayExecutor` arguments.

    Raises:
        ConfigError: unknown kind, or ``address`` given for the in-process executor.
    """
    if kind == "inprocess":
        if address is not None:
            raise ConfigError("--address is for --executor ray; the in-process executor runs here")
        return InProcessExecutor()
    if kind == "ray":
        return RayExecutor(address, **kwargs)
    raise ConfigError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
