"""Benchmark reports: results JSON, markdown tables and PNG plots, with the config and the environment beside them.

A run of config ``NAME`` into ``OUT`` writes ``OUT/NAME/``:

* ``config.yaml``: the exact resolved config (every default included) and the files it was merged from;
* ``results.json``: the config, the environment (package versions, device, CPU, git commit), every cell's
  parameters and metrics (so every seed's number is there), and the experiment's summary and tables;
* ``results.md``: the tables in markdown, the plots linked;
* ``*.png``: the plots (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv._fs import atomic_write_bytes, atomic_write_text
from tpv.bench.executors import cpu_name, measured_on

if TYPE_CHECKING:
    from tpv.bench.config import Config, ConfigLayer
    from tpv.bench.runner import RunSummary

__all__ = [
    "Report",
    "Table",
    "environment",
    "markdown_table",
    "measured_on",
    "plot_curves",
    "plot_heatmap",
    "write_config",
    "write_report",
]

_PACKAGES = ("tpv", "torch", "transformers", "peft", "safetensors", "numpy", "scipy", "pydantic", "ray", "matplotlib")


@dataclass
class Table:
    """A results table: a title, column names, rows of cells (numbers or text) and a note under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"title": self.title, "columns": self.columns, "rows": _clean(self.rows), "note": self.note}


@dataclass
class Report:
    """What an experiment's summary produces: a JSON summary, tables and the plot files it wrote."""

    summary: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """Plain JSON: NaN and infinities become ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _git_dirty() -> bool | None:
    """Whether the checkout has uncommitted changes to tracked files (``None``: not a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out)


def environment(device: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Where a report was written: :func:`tpv.engine.env.environment`'s record, plus what the report adds.

    The engine's record (versions, device and its name, precision, threads, CPUs, git commit, time) is extended
    with ``cpu`` (the CPU's name, also on a GPU machine), ``packages`` (the version of every package the harness
    uses; ``None`` when missing), ``git_dirty`` and, on a CUDA machine, ``cuda_devices``.

    Args:
        device: the device the record is about (``"auto"``: CUDA when available, else the CPU).
        precision: the configured precision (``"auto"`` is resolved for ``device``).
    """
    import torch

    from tpv.engine.env import environment as engine_environment
    from tpv.engine.env import resolve_device, resolve_precision

    dev = resolve_device(device)
    env = engine_environment(dev, resolve_precision(precision, dev))
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("tpv") is None:  # run from a checkout that is not installed
        versions["tpv"] = env["tpv"]
    env.update({"cpu": cpu_name(), "packages": versions, "git_dirty": _git_dirty()})
    if dev.type == "cuda":
        env["cuda_devices"] = torch.cuda.device_count()
    return env


def _device_label(env: Mapping[str, Any]) -> str:
    """``"cuda: <GPU name>"`` or ``"cpu"``: the device of an environment record, as cells name theirs."""
    return f"cuda: {env['device_name']}" if str(env["device"]).startswith("cuda") else "cpu"


def write_config(report_dir: Path, config: Config, layers: Sequence[ConfigLayer] = ()) -> Path:
    """Write the resolved config as ``config.yaml`` into ``report_dir`` (atomically)."""
    from tpv.bench.config import dump_config

    return atomic_write_text(report_dir / "config.yaml", dump_config(config, layers))


def _cell_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (floats to 4 significant digits, missing values as ``–``)."""
    head = "| " + " | ".join(_cell_text(c) for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell_text(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _figure(path: Path, draw: Any) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_curves(
    curves: Mapping[str, Sequence[tuple[float, float, float]]],
    path: Path,
    *,
    title: str,
    xlabel: str = "shots per class",
    ylabel: str = "test score (%)",
    xscale: str = "symlog",
) -> Path:
    """Line plot of several curves with error bands, e.g. the few-shot curves of each init.

    Args:
        curves: label -> points ``(x, mean, std)`` (scores in [0, 1]; plotted as percentages).
        path: the PNG to write.
        title: plot title.
        xlabel: x-axis label.
        ylabel: y-axis label.
        xscale: ``"symlog"`` (shots: a symmetric-log axis so 0 shows), ``"log"`` or ``"linear"``.

    Returns:
        The path written.
    """

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for label, points in curves.items():
            pts = sorted(points)
            xs = [p[0] for p in pts]
            ms = [100 * p[1] for p in pts]
            ss = [100 * (p[2] if math.isfinite(p[2]) else 0.0) for p in pts]
            (line,) = ax.plot(xs, ms, marker="o", label=label)
            ax.fill_between(xs, [m - s for m, s in zip(ms, ss)], [m + s for m, s in zip(ms, ss)], alpha=0.15,
                            color=line.get_color())  # fmt: skip
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=5)
        elif xscale == "log":
            ax.set_xscale("log")
        if xscale != "linear":
            ticks = sorted({p[0] for points in curves.values() for p in points})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return fig

    return _figure(path, draw)


def plot_heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str], path: Path, *, title: str) -> Path:
    """A cosine-similarity heatmap, drawn by :func:`tpv.plots.plot_similarity`.

    Args:
        matrix: ``n x n`` similarities.
        labels: ``n`` labels.
        path: the PNG to write.
        title: plot title.

    Returns:
        The path written.
    """
    import torch

    from tpv.plots import plot_similarity

    path.parent.mkdir(parents=True, exist_ok=True)
    plot_similarity(torch.tensor(matrix, dtype=torch.float64), list(labels), path, title=title)
    return path


def write_report(
    root: Path,
    config: Config,
    layers: Sequence[ConfigLayer],
    summary: RunSummary,
    report: Report,
    results: Mapping[str, Mapping[str, Any]],
) -> Path:
    """Write a run's ``results.json``, ``results.md`` and ``config.yaml`` (the plots are already written).

    Args:
        root: the results root (the report goes to ``root/<config.name>``).
        config: the run's config.
        layers: the config layers (provenance).
        summary: the run's summary (its cells; failed and missing cells are listed in the report).
        report: the experiment's summary of the finished cells: JSON summary, tables, figure names.
        results: cell id -> stored record (``result.json``) of every finished cell of the plan.

    Returns:
        The report folder ``root/<config.name>``.
    """
    report_dir = root / config.name
    missing = [c.id for c in summary.cells if c.id not in results]
    write_config(report_dir, config, layers)
    doc = {
        "name": config.name,
        "experiment": config.experiment,
        "description": config.description,
        "config": config.to_dict(),
        "config_layers": [layer.label for layer in layers],
        "environment": environment("auto", str(config.train.get("precision", "auto"))),
        "complete": not missing,
        "missing_cells": missing,
        "failed_cells": dict(summary.failed),
        "summary": report.summary,
        "tables": [t.to_dict() for t in report.tables],
        "figures": report.figures,
        "cells": {
            cid: {
                "name": r.get("name"),
                "stage": r.get("stage"),
                "kind": r.get("kind"),
                "params": r.get("params"),
                "metrics": r.get("metrics"),
                "elapsed_s": r.get("elapsed_s"),
                "device": r.get("device"),
            }
            for cid, r in results.items()
        },
    }
    atomic_write_text(report_dir / "results.json", json.dumps(_clean(doc), indent=1, sort_keys=False) + "\n")
    atomic_write_text(report_dir / "results.md", _markdown(config, report, doc))
    return report_dir


def _markdown(config: Config, rep: Report, doc: Mapping[str, Any]) -> str:
    env = doc["environment"]
    pk = env["packages"]
    commit = env["git_commit"]
    device = _device_label(env)
    lines = [
        f"# {config.name}: {config.experiment}",
        "",
        config.description or "",
        "",
        f"Model `{config.model.name}` ({config.model.dtype}, {config.model.device}); "
        f"{config.prompt.num_virtual_tokens} virtual tokens; origins {config.prompt.origins}. "
        f"Measured on {device} ({env['cpu']}, {env['cpu_count']} CPUs), tpv {pk.get('tpv')}, "
        f"torch {pk.get('torch')}, transformers {pk.get('transformers')}, commit "
        f"{(commit or 'unknown')[:10]}{' (dirty)' if env['git_dirty'] else ''}.",
        "",
    ]
    ran_on = Counter(cell.get("device") or "not recorded" for cell in doc["cells"].values())
    here = {device, f"cpu: {env['cpu']}"}
    if ran_on and not set(ran_on) <= here:
        where = ", ".join(f"{d} ({n} cells)" for d, n in sorted(ran_on.items()))
        lines += [f"This report was written on the machine above; its cells ran on: {where}.", ""]
    if not doc["complete"]:
        lines += [
            f"**Incomplete:** {len(doc['missing_cells'])} cell(s) have no result yet "
            f"({len(doc['failed_cells'])} failed); `tpv bench run` with the same configs finishes them "
            "(finished cells are skipped).",
            "",
        ]
    for table in rep.tables:
        lines += [f"## {table.title}", "", markdown_table(table.columns, table.rows), ""]
        if table.note:
            lines += [table.note, ""]
    for fig in rep.figures:
        lines += [f"![{fig}]({fig})", ""]
    lines += ["The exact config is in `config.yaml`; every cell's metrics per seed are in `results.json`.", ""]
    return "\n".join(lines)
