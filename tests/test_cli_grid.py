"""Tests of the `tpv train` grid: several tasks x origin seeds trained in one process by ``tpv.train_many``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import tpv
from tpv.cli import app
from tpv.engine.runfolder import ADAPTER_DIR, ORIGIN_FILE, RUN_FILE, RUN_VECTOR_FILE
from tpv.errors import ConfigError

WORDS = (" negative", " positive")
POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")
SUMMARY_KEYS = {"task", "steps", "best_step", "best_score", "stopped_early", "lr", "lr_rule", "norm_ratio",
                "warnings", "seconds", "out"}  # fmt: skip
"""The keys of the single-run JSON summary line (the grid adds ``origin_seed``)."""


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


@pytest.fixture
def toy_tasks(tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tasks ``toy_a`` and ``toy_b`` (ten sentiment sentences each, b's labels flipped); the tiny Llama's folder."""
    from tpv.engine import setup
    from tpv.tasks import Example, TaskData, TaskSpec

    model, tok = tiny("llama")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)

    def data(name: str, seed: int) -> TaskData:
        spec = TaskSpec(name=name, group="test", source="local", text_fields=("text",), template="{text}",
                        label_words=WORDS, label_names=("neg", "pos"), metric="accuracy")  # fmt: skip
        flip = name == "toy_b"
        rows = [(f"the movie was {w} . sentiment :", 1) for w in POS]
        rows += [(f"the movie was {w} . sentiment :", 0) for w in NEG]
        examples = [Example(t, 1 - y if flip else y) for t, y in rows]
        return TaskData(spec, examples, examples, examples)

    monkeypatch.setattr(setup, "_load_task_data", data)
    return folder


def _options(model: Path) -> list[str]:
    return ["--model", str(model), "--steps", "2", "--num-virtual-tokens", "4", "--eval-every", "1", "--lr", "0.3",
            "--precision", "fp32", "--no-progress"]  # fmt: skip


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_grid_trains_one_run_per_task_and_origin(
    toy_tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 tasks x 2 origins: 4 run folders, loadable, each run equal to the same run trained alone by `tpv train`."""
    runner = CliRunner()
    out = tmp_path / "runs"
    result = runner.invoke(
        app,
        ["train", "toy_a", "toy_b", "--origins", "0,1", "--pack-size", "3", "--out", str(out), *_options(toy_tasks)],
    )
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    expected = [("toy_a", 0), ("toy_a", 1), ("toy_b", 0), ("toy_b", 1)]
    assert [(line["task"], line["origin_seed"]) for line in lines] == expected
    for line, (task, seed) in zip(lines, expected):
        run = out / task / f"o{seed}"
        assert set(line) == SUMMARY_KEYS | {"origin_seed"} and line["out"] == str(run) and line["steps"] == 2
        for name in (ADAPTER_DIR, ORIGIN_FILE, RUN_VECTOR_FILE, RUN_FILE):
            assert (run / name).exists(), (run, name)
        vector = tpv.from_adapter(run / ADAPTER_DIR, task=task)
        assert torch.equal(vector.tensor, tpv.load_vector(run / RUN_VECTOR_FILE).tensor)
        assert vector.origin_id == tpv.load_origin(run / ORIGIN_FILE).id
    assert tpv.load_origin(out / "toy_a/o0" / ORIGIN_FILE) == tpv.load_origin(out / "toy_b/o0" / ORIGIN_FILE)
    assert tpv.load_origin(out / "toy_a/o0" / ORIGIN_FILE) != tpv.load_origin(out / "toy_a/o1" / ORIGIN_FILE)
    scored = runner.invoke(app, ["eval", str(out / "toy_b/o1"), "--json", "--precision", "fp32"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["task"] == "toy_b" and json.loads(scored.stdout)["examples"] == 10

    from tpv.engine import many

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a single task without --origins must train with tpv.train, not train_many")

    monkeypatch.setattr(many, "train_many", refuse)
    single = tmp_path / "single"
    result = runner.invoke(app, ["train", "toy_a", "--origin-seed", "0", "--out", str(single), *_options(toy_tasks)])
    assert result.exit_code == 0, result.output
    (line,) = _lines(result.stdout)
    assert set(line) == SUMMARY_KEYS and line["out"] == str(single)  # the single-run layout: the run in --out itself
    assert (single / RUN_FILE).is_file() and (single / ADAPTER_DIR).is_dir()
    alone = tpv.load_vector(single / RUN_VECTOR_FILE)
    packed = tpv.load_vector(out / "toy_a/o0" / RUN_VECTOR_FILE)
    assert alone.origin_id == packed.origin_id
    assert float((alone.tensor - packed.tensor).norm() / alone.tensor.norm()) < 1e-4
    assert (line["best_step"], line["best_score"]) == (lines[0]["best_step"], lines[0]["best_score"])


def test_grid_of_tasks_shares_one_origin_file(toy_tasks: Path, tmp_path: Path) -> None:
    """Several tasks without --origins: one run per task in --out/TASK/, all from the --origin file given."""
    origin = tpv.save(tpv.Origin.gaussian(4, 32, seed=7), tmp_path / "origin.safetensors")
    out = tmp_path / "runs"
    args = ["train", "toy_a", "toy_b", "--origin", str(origin), "--out", str(out), *_options(toy_tasks)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [line["out"] for line in _lines(result.stdout)] == [str(out / "toy_a"), str(out / "toy_b")]
    for task in ("toy_a", "toy_b"):
        assert tpv.load_origin(out / task / ORIGIN_FILE) == tpv.load_origin(origin)
    again = CliRunner().invoke(app, args)  # the runs are there: refused before any model loads, without --overwrite
    assert isinstance(again.exception, ConfigError) and "already holds a run" in str(again.exception)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["a", "b", "--resume"], "--resume"),
        (["a", "--origins", "0,1", "--launcher", "accelerate"], "--launcher accelerate"),
        (["a", "--origins", "0,1", "--origin-seed", "0"], "--origin-seed and --origins"),
        (["a", "--origins", "0,1", "--origin", "{tmp}/o.safetensors"], "--origin and --origins"),
        (["a", "b", "--task-type", "seq2seq"], "--task-type seq2seq"),
        (["a", "--origins", "0,x"], "--origins '0,x'"),
        (["a", "--origins", "1,1"], "given twice"),
        (["a", "a"], "'a' is given twice"),
        (["a", "--pack-size", "2"], "--pack-size 2"),
        (["a", "b", "--pack-size", "0"], "--pack-size 0"),
    ],
)
def test_grid_refusals_name_the_option(tmp_path: Path, args: list[str], needle: str) -> None:
    """What a grid cannot honour is one ConfigError naming the option, before any model loads or folder is made."""
    out = tmp_path / "runs"
    argv = ["train", *(a.format(tmp=tmp_path) for a in args), "--out", str(out), "--model", str(tmp_path / "none")]
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, ConfigError), result.output
    assert needle in str(result.exception) and not out.exists()
