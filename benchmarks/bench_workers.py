"""Harness throughput on a CPU: one `tpv bench run` process against `--workers N` sharing the same plan.

The same calibration cells (SmolLM2-135M prompt tunings on Rotten Tomatoes at a few learning rates, each tuned and
scored on its test set) run into a fresh results folder each time, by:

  1 worker    `tpv bench run calibration ...` (torch's default threads: one per core);
  N workers   `tpv bench run calibration ... --workers N` (N processes splitting the cells, cores / N threads each).

The two run round-robin, ``--repeats`` times each; reported: wall seconds per run (model loading included, as a
user waits for it), cells per hour and the ratio. Run it on an otherwise idle machine.

    python benchmarks/bench_workers.py                          # about 12 minutes on 2 CPU cores
    python benchmarks/bench_workers.py --lrs 0.01 0.03 --steps 4 --repeats 1   # a smoke run

Writes ``benchmarks/results/workers[-TAG].json`` (command, config, environment, every timing) and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.engine.env import cpu_has_native_bf16, environment  # noqa: E402


def _command(args: argparse.Namespace, out: Path, workers: int) -> list[str]:
    lrs = ",".join(str(x) for x in args.lrs)
    sets = [
        f"calibration.tasks=[{args.task}]",
        f"calibration.lrs=[{lrs}]",
        "calibration.parts=[sweep]",
        "calibration.sweep_seeds=[0]",
        f"train.steps={args.steps}",
        f"train.eval_every={args.steps}",
        f"data.max_test={args.test}",
    ]
    cmd = [sys.executable, "-c", "from tpv.cli import main; main()", "bench", "run", "calibration", "--out", str(out)]
    for item in sets:
        cmd += ["--set", item]
    return [*cmd, "--no-progress", "--workers", str(workers)]


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    cells = len(args.lrs)
    variants = {"1 worker": 1, f"{args.workers} workers": args.workers}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tpv-bench-workers-") as tmp:
        for r in range(args.repeats):
            for name, n in variants.items():
                out = Path(tmp) / f"{n}-{r}"
                seconds[name].append(_timed(_command(args, out, n)))
                stored = len(list((out / "cells").iterdir()))
                if stored != cells:
                    raise SystemExit(f"{name}: {stored} cells stored, expected {cells}")
                shutil.rmtree(out)
    load.append(os.getloadavg()[0])
    base = statistics.median(seconds["1 worker"])
    rows = []
    for name, n in variants.items():
        med = statistics.median(seconds[name])
        rows.append({"run": name, "workers": n, "seconds": med, "all_seconds": seconds[name],
                     "cells_per_hour": 3600 * cells / med, "vs_one_worker": base / med})  # fmt: skip
    return {
        "command": " ".join(["python", *sys.argv]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cells": cells,
        "one_run": " ".join(_command(args, Path("OUT"), args.workers)[3:]),
        "environment": {**environment(), "native_bf16": cpu_has_native_bf16(), "cores": os.cpu_count()},
        "load_average": load,
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    c, env = doc["config"], doc["environment"]
    lines = [
        "# Harness throughput: one process vs `--workers` sharing the plan (CPU)",
        "",
        f"`{doc['command']}`",
        "",
        f"Each run: `tpv {doc['one_run']}` (with `--workers 1` for the baseline) into a fresh results folder: "
        f"{doc['cells']} calibration cells ({c['task']}, lr {', '.join(str(x) for x in c['lrs'])}; each loads "
        f"SmolLM2-135M, tunes {c['steps']} steps of batch 8 and scores {c['test']} test examples). Round-robin, "
        f"{c['repeats']} time(s) each; median wall seconds of the whole command. {env.get('cores')} cores; native "
        f"bf16: {env['native_bf16']}; load average {doc['load_average'][0]:.1f} at the start, "
        f"{doc['load_average'][1]:.1f} at the end.",
        "",
        "| run | workers | wall s | cells / hour | vs 1 worker |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['run']} | {r['workers']} | {r['seconds']:.0f} | {r['cells_per_hour']:.1f} | "
            f"{r['vs_one_worker']:.2f}x |"
        )
    lines += [
        "",
        "One worker uses torch's default threads (one per core); each of N workers gets cores / N threads "
        "(`runtime.threads`, set by `--workers` unless given). Small-model prompt tuning keeps few cores busy "
        "(short sequences, small matrices), so processes side by side use the cores better than threads in one.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--test", type=int, default=200, help="test examples scored per cell")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="", help="suffix of the result files: workers-TAG.json")
    args = parser.parse_args(argv)
    doc = run(args)
    stem = "workers" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{stem}.json", json.dumps(doc, indent=1, default=str) + "\n")
    text = markdown(doc)
    atomic_write_text(args.out / f"{stem}.md", text)
    print(text)


if __name__ == "__main__":
    main()
