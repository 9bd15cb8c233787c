"""Golden results: every benchmark experiment on the tiny model gives the results recorded before the harness split.

The fixtures in ``tests/fixtures/bench_golden/`` are the ``results.json`` of each experiment run on the tiny model
(``defaults <- EXPERIMENT <- tiny``, model folder ``tiny-llama`` in the working directory, so cell ids are stable),
with the volatile fields (times, environment, host) removed. Ids, parameters and structure must match exactly,
floats to 1e-6. Regenerate them (only when a change of results is intended) with::

    python tests/test_bench_golden.py
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "bench_golden"
SCRIPTS = "tests/fixtures/bench_golden/scripts"  # relative to the repository: part of the perf cells' ids
MODEL = "tiny-llama"  # a folder in the working directory: part of every cell's id
CASES: dict[str, tuple[str, ...]] = {
    "sources": (),
    "cross_origin": (),
    "fewshot": (),
    "similarity": (),
    "perf": (f"perf.scripts_dir={SCRIPTS}", "perf.args={engine: [--quick]}"),
    "calibration": (
        "calibration.tasks=[rotten_tomatoes]",
        "calibration.lrs=[0.01,0.3]",
        "calibration.variant_tasks=[rotten_tomatoes]",
        "prompt.origins=[0]",
        "calibration.sweep_seeds=[0]",
        "calibration.lora.lr=0.01",
        "train.eval_every=7",
        "train.steps=21",
        "calibration.step_budgets=[28]",
        "calibration.budget_tasks=[rotten_tomatoes]",
    ),
}
VOLATILE = frozenset({"seconds", "steps_per_second", "train_seconds", "elapsed_s", "finished_at", "host", "device"})
"""Keys dropped at every depth: wall-clock times and where the cells ran."""
TOLERANCE = 1e-6


def _drop_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def normalize(results: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` without its volatile parts: the environment, times, hosts, and the unused similarity keys."""
    out = {k: v for k, v in results.items() if k != "environment"}
    out["config"] = {k: v for k, v in out["config"].items() if k != "similarity"}
    out["cell_order"] = list(out["cells"])
    return _drop_volatile(out)


def run_case(experiment: str, out: Path) -> dict[str, Any]:
    """Run ``experiment`` on the tiny model into ``out`` and return its normalized ``results.json``."""
    from tpv.bench import load_config, run

    config, layers = load_config(experiment, "tiny", overrides=list(CASES[experiment]))
    summary = run(config, out, layers=layers)
    assert summary.ok, summary.failed
    return normalize(json.loads((out / config.name / "results.json").read_text(encoding="utf-8")))


def _differences(got: Any, want: Any, path: str = "") -> Iterator[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            yield f"{path or '.'}: keys {sorted(set(got) ^ set(want))} differ"
        for key in set(got) & set(want):
            yield from _differences(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            yield f"{path}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            yield from _differences(g, w, f"{path}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        ok = isinstance(got, int | float) and isinstance(want, int | float) and not isinstance(got, bool)
        if not ok or not math.isclose(got, want, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            yield f"{path}: {got!r} != {want!r}"
    elif got != want or type(got) is not type(want):
        yield f"{path}: {got!r} != {want!r}"


def _build_model(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny

    model, tokenizer = build_tiny("llama", seed=0)
    model.save_pretrained(folder / MODEL)
    tokenizer.save_pretrained(folder / MODEL)


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the tiny model as ``tiny-llama`` (the tiny overlay's model name)."""
    folder = tmp_path_factory.mktemp("golden")
    _build_model(folder)
    return folder


@pytest.mark.parametrize("experiment", list(CASES))
def test_results_match_the_golden(
    experiment: str, model_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment's results on the tiny model equal the recorded ones (ids, params and structure exactly)."""
    monkeypatch.chdir(model_home)
    monkeypatch.setenv("TPV_BENCH_CONFIGS", str(ROOT / "benchmarks" / "configs"))
    monkeypatch.setenv("TPV_BENCH_TRUSTED", str(GOLDEN))
    got = run_case(experiment, tmp_path / "out")
    want = json.loads((GOLDEN / f"{experiment}.json").read_text(encoding="utf-8"))
    diffs = sorted(_differences(got, want))
    assert not diffs, f"{len(diffs)} difference(s) from the golden results:\n" + "\n".join(diffs[:40])


def main() -> None:
    """Regenerate the golden files from the tree on ``sys.path`` (only when a change of results is intended)."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["TPV_BENCH_CONFIGS"] = str(ROOT / "benchmarks" / "configs")
    import tpv

    here = Path(tpv.__file__).resolve().parents[1] / "tests" / "fixtures" / "bench_golden"  # the perf script
    os.environ["TPV_BENCH_TRUSTED"] = os.pathsep.join((str(GOLDEN), str(here)))
    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        _build_model(home)
        os.chdir(home)
        for name in names:
            data = run_case(name, home / "out")
            (GOLDEN / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            print(f"wrote {GOLDEN / f'{name}.json'}")


if __name__ == "__main__":
    main()
