"""Start-up time of the ``tpv`` command line, against ``python -c "import torch"`` measured in the same run.

Every command is a fresh process, timed wall-clock from start to exit; the commands run interleaved, ``--runs``
rounds of all of them, so that the load of a shared machine falls on all alike, and the table reports the minimum
(the least disturbed run) and the median. ``import torch`` is the floor of any command that reads tensors; the
target is under 0.5 s beyond it for ``tpv --help``, ``tpv --version`` and ``tpv inspect``.

Rows:

* ``python -c pass`` and ``import torch``: the interpreter and the torch floor;
* ``import tpv.cli`` and the commands through the installed ``tpv`` script;
* ``import tpv.cli (tpv/__init__ skipped)``: what the command modules cost without ``tpv/__init__.py``, which
  imports the torch-based core (``tpv.files``, ``tpv.vector`` ...) and so makes torch the floor of every
  command, ``--help`` included; the row says whether torch was imported all the same.

Each tpv row also lists the heavy libraries its process imported (checked in one extra run per row).

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py`` (about 2 minutes on 2 busy cores); ``--before-src DIR``
adds the same rows for another source tree (e.g. ``git archive HEAD tpv | tar -x -C DIR``), run through the same
interpreter with ``PYTHONPATH=DIR``. Writes ``benchmarks/results/cli_startup.json`` and ``cli_startup.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "accelerate",
    "yaml",
    "pydantic",
    "scipy",
    "matplotlib",
    "rich.table",
    "rich.markdown",
    "tpv.tasks",
)
TARGET_S = 0.5
TARGETED = ("tpv --version", "tpv --help", "tpv inspect FILE")

_RUN_CLI = """
import json, sys
from tpv.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\n@@HEAVY@@" + json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""

_IMPORT_CLI = """
import json, sys
import tpv.cli
sys.stderr.write("\\n@@HEAVY@@" + json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""

_SKIP_INIT = """
import sys, types
package = types.ModuleType("tpv")
package.__path__ = [{path!r}]
sys.modules["tpv"] = package
import tpv.cli
sys.stderr.write("\\n@@HEAVY@@" + __import__("json").dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def tpv_script() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = Path(sys.executable).parent / "tpv"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from tpv.cli import main; main(sys.argv[1:])"]


def rows(sample: Path, src: Path | None, tag: str) -> list[dict[str, Any]]:
    """The timed commands of one source tree (``src`` None: the installed tree)."""
    py = sys.executable
    tpv = tpv_script()
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    tree = str(src or ROOT)
    cli_args = {
        "tpv --version": ["--version"],
        "tpv --help": ["--help"],
        "tpv inspect FILE": ["inspect", str(sample)],
        "tpv inspect FILE --json": ["inspect", str(sample), "--json"],
        "tpv train --help": ["train", "--help"],
        "tpv eval --help": ["eval", "--help"],
    }
    probe = _IMPORT_CLI
    out = [
        {
            "label": "import tpv.cli",
            "argv": [py, "-c", "import tpv.cli"],
            "env": env,
            "tree": tag,
            "probe": [py, "-c", probe.format(heavy=HEAVY)],
        }
    ]
    for label, args in cli_args.items():
        out.append(
            {
                "label": label,
                "argv": [*tpv, *args],
                "env": env,
                "tree": tag,
                "probe": [py, "-c", _RUN_CLI.format(heavy=HEAVY), *args],
            }
        )
    skip = _SKIP_INIT.format(path=str(Path(tree) / "tpv"), heavy=HEAVY)
    out.append(
        {
            "label": "import tpv.cli (tpv/__init__ skipped)",
            "argv": [py, "-c", skip],
            "env": env,
            "tree": tag,
            "probe": [py, "-c", skip],
        }
    )
    return out


def time_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def heavy_modules(argv: list[str], env: dict[str, str]) -> list[str]:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    marker = proc.stderr.rsplit("@@HEAVY@@", 1)
    if len(marker) != 2:
        raise SystemExit(f"{shlex.join(argv[:2])} ...: no module list ({proc.returncode}): {proc.stderr[-2000:]}")
    return list(json.loads(marker[1]))


def environment() -> dict[str, Any]:
    from tpv.engine.env import environment as env

    return env(packages=("typer", "click", "rich"))


def make_sample(folder: Path) -> Path:
    import tpv

    origin = tpv.Origin.gaussian(50, 576, seed=0)
    return tpv.save(origin, folder / "origin.safetensors")


def markdown(report: dict[str, Any]) -> str:
    base = report["baseline"]
    envr = report["environment"]
    lines = [
        "# tpv command-line start-up",
        "",
        f"Command: `{report['command']}`  ",
        f"{report['runs']} interleaved runs per row; each is a fresh process timed wall-clock. The machine is shared "
        f"(load average {envr.get('load_average')} at the end, {report['load_at_start']} at the start), so the "
        "minimum is the number to compare; the median shows the noise.  ",
        f"tpv {envr.get('tpv')}, python {envr.get('python')}, torch {envr.get('torch')}, "
        f"{envr.get('cpu_count', '?')} CPUs.",
        "",
        f"Floors in this run: `python -c pass` {base['python -c pass']:.3f} s, `import torch` "
        f"{base['import torch']:.3f} s (min).",
        "",
        "| tree | command | min (s) | median (s) | min - import torch (s) | min / import torch "
        "| heavy modules imported |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        mods = ", ".join(r["heavy_modules"]) if r["heavy_modules"] is not None else ""
        lines.append(
            f"| {r['tree']} | `{r['label']}` | {r['min_s']:.3f} | {r['median_s']:.3f} | {r['minus_torch_s']:+.3f} "
            f"| {r['ratio_to_torch']:.2f} | {mods} |"
        )
    lines += ["", f"## Target: under {TARGET_S} s beyond `import torch`", ""]
    for r in report["results"]:
        if r["label"] in TARGETED:
            verdict = "met" if r["minus_torch_s"] < TARGET_S else "MISSED"
            lines.append(f"- {r['tree']} `{r['label']}`: {r['minus_torch_s']:+.3f} s: {verdict}")
    skipped = [r for r in report["results"] if r["label"].endswith("(tpv/__init__ skipped)")]
    for r in skipped:
        has_torch = "torch" in (r["heavy_modules"] or [])
        lines.append(
            f"- {r['tree']}: the command modules alone (`tpv/__init__.py` skipped) take {r['min_s']:.3f} s "
            f"({r['min_s'] - base['python -c pass']:+.3f} s beyond `python -c pass`) and "
            + ("still import torch." if has_torch else "import no torch.")
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Rounds over all commands (the minimum is reported).")
    parser.add_argument("--before-src", type=Path, default=None, help="Also time the source tree in this folder.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup")
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        sample = make_sample(Path(tmp))
        env = dict(os.environ)
        table: list[dict[str, Any]] = [
            {"label": "python -c pass", "argv": [py, "-c", "pass"], "env": env, "tree": "-"},
            {"label": "import torch", "argv": [py, "-c", "import torch"], "env": env, "tree": "-"},
        ]
        if args.before_src is not None:
            table += rows(sample, args.before_src.resolve(), "before")
        table += rows(sample, None, "after" if args.before_src is not None else "now")
        times: list[list[float]] = [[] for _ in table]
        for i in range(args.runs):
            for j, row in enumerate(table):
                times[j].append(time_once(row["argv"], row["env"]))
            print(f"round {i + 1}/{args.runs} done", file=sys.stderr, flush=True)
        heavy = [heavy_modules(row["probe"], row["env"]) if "probe" in row else None for row in table]
    floor = {row["label"]: min(t) for row, t in zip(table, times) if row["tree"] == "-"}
    results = []
    for row, t, mods in zip(table, times, heavy):
        best = min(t)
        results.append(
            {
                "tree": row["tree"],
                "label": row["label"],
                "argv": [Path(a).name if a == py else a for a in row["argv"][:3]],
                "times_s": [round(x, 4) for x in t],
                "min_s": round(best, 4),
                "median_s": round(statistics.median(t), 4),
                "minus_torch_s": round(best - floor["import torch"], 4),
                "ratio_to_torch": round(best / floor["import torch"], 3),
                "heavy_modules": mods,
            }
        )
    report = {
        "command": shlex.join(["python", "benchmarks/bench_cli_startup.py", *sys.argv[1:]]),
        "runs": args.runs,
        "statistic": "min over runs (median also given); wall-clock seconds of a fresh process",
        "load_at_start": load_start,
        "environment": environment(),
        "baseline": {k: round(v, 4) for k, v in floor.items()},
        "target_s_beyond_torch": TARGET_S,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
