"""Experiment ``perf``: the engine and search speed benchmarks of ``benchmarks/`` gathered into one table.

A ``perf`` cell runs one script, ``benchmarks/bench_<name>.py --out STEM [args]``, and keeps the JSON it writes;
with ``perf.gather`` it reads the JSON an earlier run of the script wrote instead. Configs are data: a config can
only name scripts and files inside the project's ``benchmarks/`` folder (or a folder of ``$TPV_BENCH_TRUSTED``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, make_cell
from tpv.bench.experiments._common import metrics_of, model_params
from tpv.bench.report import Report, Table
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.bench.config import Config

__all__ = ["EXPERIMENT", "KINDS", "TRUSTED_ENV"]


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


TRUSTED_ENV = "TPV_BENCH_TRUSTED"
"""Environment variable: extra folders (``os.pathsep``-separated) whose scripts and files a perf config may name,
beside the project's own ``benchmarks/`` (for tests and development; a config itself can never widen this)."""


def _trusted(path: Path, what: str) -> Path:
    """``path`` resolved, if it lies inside ``benchmarks/`` of the project or a folder of ``$TPV_BENCH_TRUSTED``.

    Configs are data: a config naming a script or file elsewhere is refused, so running a config never runs code
    or copies files from outside the project's benchmark folder.
    """
    resolved = path.resolve()
    roots = [_repo_root() / "benchmarks"]
    roots += [Path(p) for p in os.environ.get(TRUSTED_ENV, "").split(os.pathsep) if p]
    if any(resolved.is_relative_to(root.resolve()) for root in roots):
        return resolved
    raise ConfigError(
        f"{what} {str(path)!r} is outside the project's benchmarks/ folder; configs may only name scripts and files "
        f"inside it (or inside a folder listed in ${TRUSTED_ENV})"
    )


def _repo_path(path: str) -> Path:
    p = Path(path)
    return _trusted(p if p.is_absolute() else _repo_root() / p, "perf.results_files names")


def _scripts_dir(configured: str | None) -> Path:
    if configured:
        path = Path(configured)
        return _trusted(path if path.is_absolute() else _repo_root() / path, "perf.scripts_dir")
    return _repo_root() / "benchmarks"


def _perf(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Run one speed benchmark script (``bench_<name>.py --out STEM [args]``) and keep the JSON it writes.

    The scripts write ``STEM.json`` (and a markdown table beside it); a script that treats ``--out`` as a folder
    may write several ``*.json`` files into it, which are gathered by file name.
    """
    if params.get("gather"):
        path = _repo_path(params["gather"]["file"])
        text = path.read_bytes()
        return CellOutput(
            {"benchmark": params["benchmark"], "gathered_from": params["gather"]["file"], "result": json.loads(text)},
            {f"{params['benchmark']}-{path.name}": text},
        )
    script = _scripts_dir(params.get("scripts_dir")) / f"bench_{params['benchmark']}.py"
    if not script.is_file():
        raise ConfigError(f"benchmark script {script} not found (perf runs from a source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / str(params["benchmark"])
        cmd = [sys.executable, str(script), "--out", str(stem), *params["args"]]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=params["timeout_s"], cwd=_repo_root(), env=dict(os.environ)
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        files = [stem.with_suffix(".json")] if stem.with_suffix(".json").is_file() else sorted(stem.glob("*.json"))
        if not files:
            raise RuntimeError(f"{' '.join(cmd)} wrote no JSON result under {stem}(.json)")
        data: Any = json.loads(files[0].read_text()) if len(files) == 1 else {
            f.stem: json.loads(f.read_text()) for f in files}  # fmt: skip
        artifacts = {f"{params['benchmark']}-{f.name}": f.read_bytes() for f in files}
    metrics = {
        "benchmark": params["benchmark"],
        "command": [Path(cmd[1]).name, *cmd[2:3], "STEM", *cmd[4:]],
        "seconds": time.perf_counter() - start,
        "result": data,
    }
    return CellOutput(metrics, artifacts)


def _gather_cells(config: Config) -> list[Cell]:
    """One cell per benchmark reading the JSON an earlier run of its script wrote (its hash is part of the id)."""
    p = config.perf
    cells = []
    for name in p.benchmarks:
        if name not in p.results_files:
            raise ConfigError(f"perf.gather: perf.results_files has no file for benchmark {name!r}")
        path = _repo_path(p.results_files[name])
        if not path.is_file():
            raise ConfigError(
                f"perf.gather: {path} not found; run `python benchmarks/bench_{name}.py` first, or drop "
                "perf.gather to run the scripts here"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        gather = {"benchmark": name, "gather": {"file": p.results_files[name], "sha256": digest}}
        cells.append(make_cell("perf", name, gather, stage="perf", estimate_s=0.1))
    return cells


def _script_cells(config: Config) -> list[Cell]:
    """One cell per benchmark running its script."""
    p = config.perf
    folder = _scripts_dir(p.scripts_dir)
    missing = [n for n in p.benchmarks if not (folder / f"bench_{n}.py").is_file()]
    if missing:
        have = sorted(f.stem.removeprefix("bench_") for f in folder.glob("bench_*.py"))
        raise ConfigError(
            f"perf.benchmarks names {missing}, but {folder} has no bench_<name>.py for them; "
            f"available: {', '.join(have) or 'none'}"
        )
    cells = []
    for name in p.benchmarks:
        params: dict[str, Any] = {
            "benchmark": name,
            "args": list(p.args.get(name, [])),
            "timeout_s": p.timeout_s,
            "scripts_dir": p.scripts_dir,
            "model": model_params(config),
        }
        cells.append(make_cell("perf", name, params, stage="perf", estimate_s=p.estimate_s.get(name, 600.0)))
    return cells


class _Perf:
    name = "perf"
    description = "Engine and search speed benchmarks gathered into one table."

    def plan(self, config: Config) -> list[Cell]:
        return _gather_cells(config) if config.perf.gather else _script_cells(config)

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        rows: list[list[Any]] = []
        summary: dict[str, Any] = {}
        for _c, m in metrics_of(results, cells, "perf"):
            name, result = m["benchmark"], m["result"]
            summary[name] = result
            curated = _PERF_ROWS.get(name, _generic_perf_rows)(result)
            rows += [[name, *row] for row in curated]
        table = Table(
            "Speed benchmarks",
            ["benchmark", "setup", "measure", "value"],
            rows,
            "The key numbers of each benchmark script's JSON result (benchmarks/bench_<name>.py); the full records, "
            "with the scripts' own config, environment and load average, are in results.json.",
        )
        return Report(summary, [table])


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _engine_rows(result: Any) -> list[list[Any]]:
    """Training and evaluation speed of tpv's engine against plain PEFT + Trainer + generate."""
    rows: list[list[Any]] = []
    matmul = _get(result, "matmul", "fp32", "gflops")
    for run in _get(result, "runs") or []:
        setup = run.get("name", "?")
        measures = [
            ("train steps/s", _get(run, "train", "steps_per_s")),
            ("eval examples/s", _get(run, "eval", "examples_per_s")),
            ("peak RSS (MB)", run.get("peak_rss_mb")),
            ("train GFLOP/s (useful work)", _get(run, "train", "achieved_gflops")),
            ("validation accuracy", _get(run, "eval", "accuracy")),
        ]
        gflops = _get(run, "train", "achieved_gflops")
        if isinstance(gflops, int | float) and isinstance(matmul, int | float) and matmul:
            measures.append(("share of fp32 matmul FLOP/s", gflops / matmul))
        rows += [[setup, k, v] for k, v in measures if v is not None]
    for key in ("train_speedup", "eval_speedup", "flops_fraction"):
        value = _get(result, "summary", key)
        if value is not None:
            rows.append(["tpv vs plain", key.replace("_", " "), value])
    if matmul is not None:
        rows.append(["machine", "fp32 matmul GFLOP/s", matmul])
    return rows or _generic_perf_rows(result)


def _search_rows(result: Any) -> list[list[Any]]:
    """Batched vs sequential coefficient search."""
    rows: list[list[Any]] = []
    for scorer, run in (_get(result, "results") or {}).items():
        if not isinstance(run, Mapping):
            continue
        for key, label in (("wall_s", "wall (s)"), ("cpu_s", "CPU (s)"), ("speedup_wall", "speed-up (wall)"),
                           ("speedup_cpu", "speed-up (CPU)"), ("forward_passes", "forward passes"),
                           ("lambda", "chosen lambda"), ("accuracy", "accuracy")):  # fmt: skip
            if run.get(key) is not None:
                rows.append([scorer, label, run[key]])
    for key in ("same_choice", "same_table"):
        if _get(result, key) is not None:
            rows.append(["all scorers", key.replace("_", " "), result[key]])
    return rows or _generic_perf_rows(result)


def _many_rows(result: Any) -> list[list[Any]]:
    """Packed ``train_many`` / ``evaluate_many`` against sequential ``train`` / ``evaluate``, per number of jobs K."""
    rows: list[list[Any]] = []
    for row in _get(result, "rows") or []:
        if not isinstance(row, Mapping) or "k" not in row:
            continue
        setup = f"K={row['k']}"
        measures = [
            ("packed job-steps/s", _get(row, "packed", "job_steps_per_s")),
            ("sequential job-steps/s", _get(row, "sequential", "job_steps_per_s")),
            ("speed-up vs sequential", row.get("speedup_vs_sequential")),
            ("speed-up vs PEFT + Trainer", row.get("speedup_vs_peft")),
            ("packed share of matmul FLOP/s", _get(row, "packed", "matmul_share")),
            ("packed peak rise (MiB)", _mib(_get(row, "packed", "peak_rise_bytes"))),
            ("eval speed-up (evaluate_many vs evaluate)", _get(row, "eval", "speedup")),
        ]
        rows += [[setup, k, v] for k, v in measures if v is not None]
    for target in _get(result, "targets") or []:
        if isinstance(target, Mapping):
            rows.append(["target", str(target.get("target")), f"{target.get('measured')} ({target.get('status')})"])
    return rows or _generic_perf_rows(result)


def _mib(value: Any) -> float | None:
    return value / 2**20 if isinstance(value, int | float) else None


def _generic_perf_rows(result: Any) -> list[list[Any]]:
    if isinstance(result, Mapping):  # the numbers, not the script's own config and environment records
        result = {k: v for k, v in result.items() if k not in ("command", "config", "environment")}
    return [["", name, value] for name, value in _flatten(result)]


_PERF_ROWS = {"engine": _engine_rows, "search": _search_rows, "many": _many_rows}


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in data.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(data, list) and all(isinstance(x, Mapping) for x in data):
        out = []
        for i, v in enumerate(data):
            label = v.get("name") or v.get("setup") or v.get("label") or str(i)
            out += _flatten({k: x for k, x in v.items() if k not in ("name", "setup", "label")}, f"{prefix}[{label}]")
        return out
    return [(prefix, data if isinstance(data, int | float | str | bool) or data is None else json.dumps(data))]


EXPERIMENT = _Perf()
KINDS = (CellKind("perf", _perf, version=1),)
