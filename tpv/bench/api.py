"""Running an experiment from a config: plan its cells, run the unfinished ones, write the report.

The one place the harness's layers meet: the experiment registry (:mod:`tpv.bench.experiments`) plans the cells
and summarizes their results, the cell engine (:mod:`tpv.bench.runner`, :mod:`tpv.bench.executors`,
:mod:`tpv.bench.store`) runs and stores them, and :mod:`tpv.bench.report` writes the tables, plots and records.

Example:
    >>> from tpv.bench import load_config, run  # doctest: +SKIP
    >>> config, layers = load_config("sources", overrides=["prompt.origins=[0,1]"])  # doctest: +SKIP
    >>> summary = run(config, "benchmarks/results", layers=layers)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.experiments import get_experiment
from tpv.bench.report import write_config, write_report
from tpv.bench.runner import RunSummary, plan_run, run_planned
from tpv.bench.store import CELLS_DIR, load_cell_result
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.bench.config import Config, ConfigLayer
    from tpv.bench.executors import Executor
    from tpv.bench.runner import Progress

__all__ = ["default_env", "report", "run", "run_experiment"]


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
        executor: where cells run (default: in this process); with ``config.runtime.pack`` > 1, compatible cells
            run in packs (see :func:`tpv.bench.runner.pack_tasks`).
        dry_run: only plan: list the cells and the estimated time of the unfinished ones.
        progress: receives progress events.
        report: write the report after running.

    Returns:
        The summary. Failing cells do not raise: see ``summary.failed`` and ``summary.blocked``.

    Raises:
        ConfigError: an unknown experiment or an invalid plan.
    """
    root = Path(out)
    experiment = get_experiment(config.experiment)
    summary = plan_run(experiment.plan(config), root, name=config.name, experiment=config.experiment)
    if dry_run:
        return summary
    write_config(root / config.name, config, layers)
    run_planned(summary, root, env=default_env(config), executor=executor, progress=progress, pack=config.runtime.pack)
    if report:
        summary.report_dir = _write_report(root, config, layers, summary)
    return summary


run_experiment = run
"""Another name of :func:`run`."""


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
    summary = run(config, out, layers=layers, dry_run=True)
    if not summary.finished:
        raise ConfigError(
            f"no finished cell of {config.name!r} under {Path(out) / CELLS_DIR}: pass the --out (and --set) the run "
            "was given"
        )
    summary.report_dir = _write_report(Path(out), config, layers, summary)
    return summary


def _write_report(root: Path, config: Config, layers: Sequence[ConfigLayer], summary: RunSummary) -> Path:
    """Summarize the finished cells of ``summary`` with the experiment and write the report."""
    results: dict[str, dict[str, Any]] = {}
    for cell in summary.cells:
        stored = load_cell_result(root, cell.id)
        if stored is not None:
            results[cell.id] = stored
    rep = get_experiment(config.experiment).summarize(config, summary.cells, results, root / config.name)
    return write_report(root, config, layers, summary, rep, results)
