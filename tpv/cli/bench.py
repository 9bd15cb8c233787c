"""``tpv bench``: run the paper's experiments from configs, resumably, in-process or on Ray.

The lead mounts this group as ``tpv bench`` (``app.add_typer(bench.app, name="bench")``). Like the rest of the
CLI it prints; the harness in :mod:`tpv.bench` does not.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tpv.errors import ConfigError

app = typer.Typer(
    help="Benchmarks: re-run the paper's experiments (sources, cross_origin, fewshot, similarity, perf).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _fmt_seconds(seconds: float) -> str:
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _TqdmProgress:
    """A tqdm bar on stderr whose unit is the estimated second, so its ETA follows the measured pace."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.count = 0
        self.total = 0
        self.failed = 0

    def start(self, cells: Any, skipped: int) -> None:
        from tqdm import tqdm

        self.total = len(cells)
        if skipped:
            typer.echo(f"resuming: {skipped} finished cell(s) skipped", err=True)
        est = sum(c.estimate_s for c in cells) or float(len(cells))
        self.bar = tqdm(
            total=round(est, 1),
            unit="s",
            unit_scale=False,
            file=sys.stderr,
            disable=not self.enabled,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {postfix} [{elapsed}<{remaining}]",
        )
        self.bar.set_postfix_str(f"0/{self.total} cells")

    def cell_done(self, cell: Any, outcome: Any) -> None:
        self.count += 1
        if outcome.output is None:
            self.failed += 1
            self.bar.write(f"FAILED {cell.id}: {outcome.error}", file=sys.stderr)
        step = cell.estimate_s if cell.estimate_s else 1.0
        self.bar.update(max(0.0, min(step, self.bar.total - self.bar.n)))
        extra = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.count}/{self.total} cells{extra} · {cell.stage} {cell.name}")

    def other_done(self, cell: Any) -> None:
        self.count += 1
        step = cell.estimate_s if cell.estimate_s else 1.0
        self.bar.update(max(0.0, min(step, self.bar.total - self.bar.n)))
        self.bar.set_postfix_str(f"{self.count}/{self.total} cells · {cell.stage} {cell.name} (another worker)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cores() -> int:
    """CPU cores this process may use."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _spawn_workers(
    procs: list[Any], count: int, configs: list[str], out: Path, overrides: list[str], logs: Path
) -> None:
    """Start ``count`` helper processes of the same run (``--worker``); output goes to ``logs/worker-I.log``.

    Each is appended to ``procs`` as it starts, so a failure part-way leaves the started ones where the caller
    stops them.
    """
    import subprocess

    logs.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        cmd = [sys.executable, "-c", "from tpv.cli import main; main()", "bench", "run", *configs, "--out", str(out),
               "--no-progress", "--worker"]  # fmt: skip
        for item in overrides:
            cmd += ["--set", item]
        with open(logs / f"worker-{i}.log", "ab") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))


@app.command("run")
def run_command(
    configs: Annotated[
        list[str],
        typer.Argument(help="Config files or shipped names, merged in order onto defaults.yaml (e.g. fewshot gpu)."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells and the estimated time; run nothing.")
    ] = False,
    executor: Annotated[str, typer.Option("--executor", help="inprocess (default) or ray.")] = "inprocess",
    address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--address", help="Ray cluster address (auto, ray://host:10001); default: a local instance."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Results root: cells in OUT/cells, the report in OUT/NAME (NAME: the config files joined by -).",
        ),
    ] = Path("benchmarks/results"),
    overrides: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--set", help="Override a key: --set fewshot.seeds=[0,1] (YAML value); repeatable."),
    ] = None,
    cpus_per_cell: Annotated[float, typer.Option(help="Ray: CPUs reserved per cell.")] = 1.0,
    gpus_per_cell: Annotated[float, typer.Option(help="Ray: GPUs reserved per cell.")] = 0.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar with ETA on stderr.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Processes on this machine sharing the plan (each claims the cells it runs; torch threads are split "
            "between them unless runtime.threads is set). Measured on 2 CPU cores: 2 workers run 1.27x the cells per "
            "hour of 1 (benchmarks/results/workers.md).",
        ),
    ] = 1,
    worker: Annotated[bool, typer.Option("--worker", hidden=True, help="Run as a helper of --workers.")] = False,
) -> None:
    """Run an experiment: plan its cells, skip the finished ones, run the rest, write JSON/markdown/PNG.

    A rerun of the same command resumes: finished cells are skipped. Experiments run into the same `--out` share
    cells (few-shot reuses the source prompts of `sources`).

    Examples:
    * `tpv bench run sources --dry-run`   (list the cells and the time they need)
    * `tpv bench run fewshot`             (defaults.yaml + fewshot.yaml, on this machine)
    * `tpv bench run fewshot gpu --executor ray --address auto`
    * `tpv bench run my.yaml --set prompt.origins=[0,1] --out /tmp/bench`
    * `tpv bench run fewshot power --workers 2`   (two processes on this machine split the cells)

    Several runs of one plan may share `--out` (`--workers N` starts them for you; the same command on another
    machine over a shared folder works too): each cell runs once, claimed in `OUT/.claims/`. A claim whose process
    died on this machine is taken over; one left by a worker killed on another machine is removed by hand.
    """
    from tpv.bench.api import run
    from tpv.bench.config import load_config

    overrides = list(overrides or ())
    config, layers = load_config(*configs, overrides=overrides)
    if dry_run:
        summary = run(config, out, layers=layers, dry_run=True)
        _print_plan(summary, config)
        return
    from tpv.bench.executors import make_executor

    if executor == "inprocess" and (cpus_per_cell != 1.0 or gpus_per_cell != 0.0):
        raise ConfigError("--cpus-per-cell and --gpus-per-cell are for --executor ray")
    extra: dict[str, Any] = {}
    if executor == "ray":
        extra = {"cpus_per_cell": cpus_per_cell, "gpus_per_cell": gpus_per_cell}
    helpers: list[Any] = []
    if workers > 1:
        if executor != "inprocess":
            raise ConfigError(
                "--workers is for the in-process executor; with Ray, cells run in parallel on the cluster"
            )
        if config.runtime.threads is None:
            overrides.append(f"runtime.threads={max(1, _cores() // workers)}")
            config, layers = load_config(*configs, overrides=overrides)
        logs = out / config.name / "workers"
        typer.echo(
            f"{workers} workers ({config.runtime.threads} torch thread(s) each); helpers log to {logs}", err=True
        )
    ex = make_executor(executor, address=address, **extra)
    try:
        if workers > 1:
            _spawn_workers(helpers, workers - 1, list(configs), out, overrides, logs)
        summary = run(config, out, layers=layers, executor=ex, progress=_TqdmProgress(progress and not worker),
                      report=not worker)  # fmt: skip
    except BaseException:
        for proc in helpers:
            proc.terminate()
        raise
    finally:
        ex.close()
        for proc in helpers:
            proc.wait()
    if worker:
        raise typer.Exit(0 if summary.ok else 1)
    for i, proc in enumerate(helpers, 1):
        if proc.returncode != 0:
            log = logs / f"worker-{i}.log"
            typer.echo(f"helper worker {i} exited with status {proc.returncode}: see {log}", err=True)
    done = len(summary.executed)
    before = len(summary.finished) - len(summary.by_others)
    by_others = f" {len(summary.by_others)} run by other workers," if workers > 1 or summary.by_others else ""
    typer.echo(
        f"{config.name}: {done} cell(s) run,{by_others} {before} skipped (finished before), "
        f"{len(summary.failed)} failed, {len(summary.blocked)} blocked"
    )
    if summary.report_dir is not None:
        typer.echo(f"report: {summary.report_dir / 'results.md'} (results.json, config.yaml, plots beside it)")
    if not summary.ok:
        typer.echo(
            f"some cells failed; tracebacks in {Path(out) / config.name / 'failures'}. Rerun the same command to "
            "retry them (finished cells are kept).",
            err=True,
        )
        raise typer.Exit(1)


@app.command("report")
def report_command(
    configs: Annotated[list[str], typer.Argument(help="The same configs as the `tpv bench run` to report on.")],
    out: Annotated[
        Path, typer.Option("--out", help="Results root the cells are stored under (as given to `run`).")
    ] = Path("benchmarks/results"),
    overrides: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--set", help="The same --set overrides as the run; repeatable."),
    ] = None,
) -> None:
    """Write the report of a run from its finished cells, running nothing (for a long run still under way).

    Examples:
    * `tpv bench report fewshot`   (tables and plots of the few-shot cells finished so far)
    """
    from tpv.bench.api import report
    from tpv.bench.config import load_config

    config, layers = load_config(*configs, overrides=overrides or ())
    summary = report(config, out, layers=layers)
    missing = len(summary.cells) - len(summary.finished)
    state = "complete" if not missing else f"incomplete: {missing} of {len(summary.cells)} cells not finished"
    assert summary.report_dir is not None
    typer.echo(f"report: {summary.report_dir / 'results.md'} ({state})")


def _print_plan(summary: Any, config: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    finished = set(summary.finished)
    table = Table(title=f"{config.name}: {config.experiment} ({len(summary.cells)} cells)", title_justify="left")
    for col in ("stage", "cell", "status", "estimate"):
        table.add_column(col, justify="right" if col == "estimate" else "left")
    for cell in summary.cells:
        status = "done" if cell.id in finished else "to run"
        table.add_row(cell.stage, cell.id, status, _fmt_seconds(cell.estimate_s))
    console.print(table)
    todo = len(summary.cells) - len(finished)
    console.print(
        f"{todo} cell(s) to run, {len(finished)} finished; estimated {_fmt_seconds(summary.estimate_s)} "
        f"(at {config.runtime.seconds_per_step} s/step, {config.runtime.eval_examples_per_second} eval examples/s; "
        "set runtime.* to your machine's speeds)"
    )


def _read_raw(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    return data if isinstance(data, dict) else {}


@app.command("list")
def list_command() -> None:
    """List the shipped configs: experiments (cells and estimated time, merged onto defaults.yaml) and overlays.

    Example: `tpv bench list`
    """
    from rich.console import Console
    from rich.table import Table

    from tpv.bench.api import run
    from tpv.bench.config import config_dir, list_configs, load_config

    console = Console(soft_wrap=True, highlight=False)
    folder = config_dir()
    if folder is None:
        raise ConfigError(
            "no shipped configs found: run from the repository root (benchmarks/configs) or set TPV_BENCH_CONFIGS"
        )
    table = Table(title=f"configs in {folder}", title_justify="left")
    for col in ("name", "experiment", "cells", "estimate", "description"):
        table.add_column(col)
    for path in list_configs():
        raw = _read_raw(path)
        description = str(raw.get("description") or "")
        if path.stem == "defaults":
            table.add_row("defaults", "-", "-", "-", "shared settings every config is merged onto")
        elif "experiment" not in raw:
            table.add_row(path.stem, "(overlay)", "-", "-", description)
        else:
            try:
                config, _ = load_config(path)
                plan = run(config, "/nonexistent-tpv-bench-out", dry_run=True)
            except ConfigError as exc:
                table.add_row(path.stem, str(raw["experiment"]), "-", "-", f"cannot plan here: {exc}")
                continue
            table.add_row(
                path.stem, config.experiment, str(len(plan.cells)), _fmt_seconds(plan.estimate_s), description
            )
    console.print(table)
    console.print("Run one with `tpv bench run NAME [OVERLAY ...]`, e.g. `tpv bench run fewshot gpu`.")
