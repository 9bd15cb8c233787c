"""Tests of the `tpv train` grid: several tasks x origin seeds trained in one process by ``tpv.train_many``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from typer.testing import CliRunner

import tpv
from tpv.cli import app
from tpv.engine.runfolder import ADAPTER_DIR, ORIGIN_FILE, RUN_FILE, RUN_VECTOR_FILE
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.tasks import TaskData

WORDS = (" negative", " positive")
POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")
SUMMARY_KEYS = {"task", "steps", "best_step", "best_score", "stopped_early", "lr", "lr_rule", "norm_ratio",
                "warnings", "seconds", "out"}  # fmt: skip
"""The keys of the single-run JSON summary line (the grid adds ``origin_seed``)."""


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


def _toy_data(name: str, seed: int) -> TaskData:
    """``toy_a``, ``toy_b`` (ten sentiment sentences, b's labels flipped) and ``toy_c`` (three label words)."""
    from tpv.tasks import Example, TaskData, TaskSpec

    words = (*WORDS, " neutral") if name == "toy_c" else WORDS
    names = ("neg", "pos", "neutral")[: len(words)]
    spec = TaskSpec(name=name, group="test", source="local", text_fields=("text",), template="{text}",
                    label_words=words, label_names=names, metric="accuracy")  # fmt: skip
    flip = name == "toy_b"
    rows = [(f"the movie was {w} . sentiment :", 1) for w in POS]
    rows += [(f"the movie was {w} . sentiment :", 0) for w in NEG]
    examples = [Example(t, 1 - y if flip else y) for t, y in rows]
    return TaskData(spec, examples, examples, examples)


def _saved(tiny: Any, kind: str, folder: Path) -> Path:
    """The tiny model of ``kind`` and its tokenizer saved in ``folder``, dropout off (a pack shares one RNG stream)."""
    model, tok = tiny(kind)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout_rate"):  # BERT's and T5's
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def toy_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve the tasks of :func:`_toy_data` through the engine's task loader."""
    from tpv.engine import setup

    monkeypatch.setattr(setup, "_load_task_data", _toy_data)


@pytest.fixture
def toy_tasks(tiny: Any, tmp_path: Path, toy_data: None) -> Path:
    """The toy tasks; the tiny Llama's folder."""
    return _saved(tiny, "llama", tmp_path / "model")


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


@pytest.mark.parametrize(("kind", "task_type"), [("t5", "seq2seq"), ("bert", "seq-cls")])
def test_grid_trains_seq2seq_and_seq_cls_models(
    tiny: Any, tmp_path: Path, toy_data: None, kind: str, task_type: str
) -> None:
    """--task-type seq2seq / seq-cls: the grid loads --model as such, and a run equals the same run trained alone."""
    from safetensors.torch import load_file

    folder = _saved(tiny, kind, tmp_path / "model")
    runner = CliRunner()
    out, single = tmp_path / "runs", tmp_path / "single"
    options = [*_options(folder), "--task-type", task_type]
    result = runner.invoke(app, ["train", "toy_a", "toy_b", "--origins", "0,1", "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert [(line["task"], line["origin_seed"]) for line in lines] == [
        (t, s) for t in ("toy_a", "toy_b") for s in (0, 1)
    ]
    alone = runner.invoke(app, ["train", "toy_b", "--origin-seed", "1", "--out", str(single), *options])
    assert alone.exit_code == 0, alone.output
    (line,) = _lines(alone.stdout)
    assert (line["best_step"], line["best_score"]) == (lines[3]["best_step"], lines[3]["best_score"])
    got, want = (load_file(str(run / ADAPTER_DIR / "adapter_model.safetensors")) for run in (out / "toy_b/o1", single))
    assert got.keys() == want.keys()  # BERT: the prompt and the run's own head; T5: the prompt (2 blocks)
    assert ("base_model.classifier.weight" in got) == (task_type == "seq-cls")
    for key in want:
        assert float((got[key] - want[key]).norm() / want[key].norm()) < 1e-4, key
    run = json.loads((out / "toy_a/o0" / RUN_FILE).read_text())
    assert run["kind"] == task_type
    scored = runner.invoke(app, ["eval", str(out / "toy_b/o1"), "--json", "--precision", "fp32"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["score"] == pytest.approx(lines[3]["best_score"])
    if task_type == "seq-cls":  # one model, one head: tasks of two class counts cannot share it
        mixed = runner.invoke(app, ["train", "toy_a", "toy_c", "--out", str(tmp_path / "mixed"), *options])
        assert isinstance(mixed.exception, ConfigError), mixed.output
        assert "toy_a has 2, toy_c has 3" in str(mixed.exception) and not (tmp_path / "mixed").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["a", "b", "--resume"], "--resume"),
        (["a", "--origins", "0,1", "--launcher", "accelerate"], "--launcher accelerate"),
        (["a", "--origins", "0,1", "--origin-seed", "0"], "--origin-seed and --origins"),
        (["a", "--origins", "0,1", "--origin", "{tmp}/o.safetensors"], "--origin and --origins"),
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
