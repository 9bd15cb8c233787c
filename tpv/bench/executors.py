"""Where benchmark cells run: in this process (the default) or on a Ray cluster.

An executor takes a wave of independent :class:`~tpv.bench.runner.CellTask` objects and calls back with each
:class:`~tpv.bench.runner.CellOutcome` as it arrives; the runner stores it. Cells receive their inputs as data
and return data, so a Ray worker needs no shared file system: results are gathered by the driver into the same
``OUT/cells/`` files an in-process run writes.

Ray (``pip install ray``) is optional. ``RayExecutor(address="ray://head:10001")`` or ``address="auto"``
connects to an existing cluster (tpv must be installed on its workers); ``address=None`` starts a local instance
for the run and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from tpv.bench.runner import CellOutcome, CellTask, run_task
from tpv.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "RayExecutor", "make_executor"]

OnResult = Callable[[CellTask, CellOutcome], None]


class Executor(Protocol):
    """Runs a wave of independent cells and reports each outcome through ``on_result``."""

    name: str

    def run(self, tasks: Sequence[CellTask], on_result: OnResult) -> None:
        """Run every task; call ``on_result(task, outcome)`` once per task, in completion order."""

    def close(self) -> None:
        """Release resources (stop a local cluster)."""


class InProcessExecutor:
    """Runs cells one after the other in this process (the default)."""

    name = "inprocess"

    def run(self, tasks: Sequence[CellTask], on_result: OnResult) -> None:
        """Run every task in order."""
        for task in tasks:
            on_result(task, run_task(task))

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ray_entry(task: CellTask) -> CellOutcome:
    """What a Ray worker runs: the same function as in-process, errors returned as data."""
    return run_task(task)


class RayExecutor:
    """Runs cells as Ray tasks, on an existing cluster or on a local instance started for the run.

    Args:
        address: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None`` starts a local
            instance, stopped by :meth:`close`.
        num_cpus: CPUs of a local instance (default: all).
        cpus_per_cell: CPUs Ray reserves for each cell (bounds how many run at once).
        gpus_per_cell: GPUs Ray reserves for each cell.
        init_kwargs: more arguments for ``ray.init``.

    Raises:
        ConfigError: ray is not installed (the message gives the install command), or bad resources.
    """

    name = "ray"

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

    def run(self, tasks: Sequence[CellTask], on_result: OnResult) -> None:
        """Submit every task, then store outcomes as they complete."""
        ray = self._ray
        pending = {self._remote.remote(task): task for task in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # worker died, task could not be deserialized, ...
                    outcome = CellOutcome(None, f"ray: {type(exc).__name__}: {exc}")
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
