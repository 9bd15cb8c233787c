"""Tests of the tpv command line: commands, one-line errors with exit status 2, help examples."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import tpv
from tpv.cli import app, main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    origin = tpv.Origin.gaussian(3, 4, seed=0)
    paths = {"origin": tpv.save(origin, tmp_path / "origin.safetensors")}
    for i, task in enumerate(("sst2", "imdb", "trec")):
        tuned = origin.tensor + torch.arange(12.0).reshape(3, 4) * (i + 1) * (-1) ** i
        paths[task] = tpv.save(tpv.TaskPromptVector.from_prompts(tuned, origin, task=task), tmp_path / f"{task}.st")
    return paths


def test_inspect_prints_the_header(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    """`tpv inspect --json` prints the metadata of a vector file."""
    code, out, _ = run(capsys, "inspect", files["sst2"], "--json")
    assert code == 0
    info = json.loads(out)
    assert info["kind"] == "vector" and info["terms"] == {"sst2": 1.0} and info["shape"] == [3, 4]
    code, out, _ = run(capsys, "inspect", files["origin"])
    assert code == 0 and "gaussian" in out


def test_similarity_prints_a_matrix(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    """`tpv similarity --json` prints a symmetric matrix with a unit diagonal."""
    code, out, _ = run(capsys, "similarity", files["sst2"], files["imdb"], files["trec"], "--json")
    assert code == 0
    m = torch.tensor(json.loads(out)["matrix"])
    assert m.shape == (3, 3) and torch.allclose(m, m.T) and torch.allclose(m.diag(), torch.ones(3, dtype=m.dtype))
    assert m[0, 1] < 0 < m[0, 2]


def test_origin_new_writes_a_reproducible_origin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`tpv origin new` writes the same origin as Origin.gaussian with the same seed."""
    out_path = tmp_path / "o.safetensors"
    code, out, _ = run(capsys, "origin", "new", "--dim", "8", "--tokens", "5", "--seed", "3", "-o", out_path)
    assert code == 0 and "wrote origin" in out
    assert tpv.load(out_path) == tpv.Origin.gaussian(5, 8, seed=3)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", "missing.safetensors"], "no such file"),
        (["origin", "new", "--init", "gaussian", "-o", "x.safetensors"], "needs --dim"),
        (["origin", "new", "--init", "first-n-vocab", "-o", "x.safetensors"], "give --model"),
        (["origin", "new", "--init", "bogus", "-o", "x.safetensors"], "--init must be one of"),
    ],
)
def test_known_errors_print_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], needle: str
) -> None:
    """A user error prints one line on stderr, no traceback, and exits with status 2."""
    code, _, err = run(capsys, *[str(tmp_path / a) if a.endswith(".safetensors") else a for a in args])
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_incompatible_files_error_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Comparing files of different shapes is one line, exit 2."""
    a = tpv.save(tpv.Origin.gaussian(3, 4), tmp_path / "a.safetensors")
    b = tpv.save(tpv.Origin.gaussian(2, 4), tmp_path / "b.safetensors")
    code, _, err = run(capsys, "similarity", a, b)
    assert code == 2 and "equal shapes" in err and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing argument is a usage error with exit status 2."""
    code, _, err = run(capsys, "inspect")
    assert code == 2 and "Missing argument" in err


def _commands(group: object, prefix: str = "") -> list[tuple[str, object]]:
    import typer

    cmd = typer.main.get_command(group) if isinstance(group, typer.Typer) else group
    found: list[tuple[str, object]] = []
    for name, sub in getattr(cmd, "commands", {}).items():
        if getattr(sub, "commands", None):
            found += _commands(sub, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", sub))
    return found


def test_every_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command's --help runs and shows an 'Example:' line."""
    commands = _commands(app)
    assert len(commands) >= 3
    for name, _ in commands:
        code, out, _ = run(capsys, *name.split(), "--help")
        assert code == 0, name
        assert "Example" in out, f"tpv {name} --help has no example"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`tpv --version` prints the package version."""
    code, out, _ = run(capsys, "--version")
    assert code == 0 and tpv.__version__ in out


def test_train_options_come_from_train_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tpv train`'s TrainConfig options take name, default and help from the fields; --help lists every one."""
    import dataclasses

    import typer.main

    from tpv.cli.train import CONFIG_OPTIONS, _to_config
    from tpv.engine.config import TrainConfig

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in CONFIG_OPTIONS:
        option = params[name]
        assert option.opts == [f"--{name.replace('_', '-')}"], name
        assert option.default == defaults[name], name
        assert option.show_default and option.help.startswith(TrainConfig.help(name)), name
    assert "0 scores all" in params["eval_examples"].help
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no option name is cut
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    for name in (*CONFIG_OPTIONS, "out", "model", "origin", "vector", "task_type", "resume", "launcher", "threads"):
        assert f"--{name.replace('_', '-')}" in out, name
    assert _to_config({"lr": "0.3", "eval_examples": 0, "optimizer": "sgd"}) == TrainConfig(
        lr=0.3, eval_examples=None, optimizer="sgd"
    )
    assert _to_config({"lr": "range-test"}).lr == "range-test"


def _tree(group: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of the app (the root first), with its argument path."""
    import typer

    cmd = typer.main.get_command(group) if isinstance(group, typer.Typer) else group
    found: list[tuple[tuple[str, ...], Any]] = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        found += _tree(sub, (*path, name))
    return found


def test_every_help_is_whole_at_80_columns() -> None:
    """At 80 columns each --help fits the width and shows every option and subcommand name in full (none cut)."""
    from typer.testing import CliRunner

    runner = CliRunner()
    tree = _tree(app)
    assert len(tree) > 20
    for path, cmd in tree:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        where = f"tpv {' '.join(path)} --help"
        assert result.exit_code == 0, (where, result.output)
        out = result.output
        assert max(len(line) for line in out.splitlines()) <= 80, where
        assert not re.search(r"-[\w-]*…", out), f"{where}: an option name is cut"
        names = [o for p in cmd.params if not p.hidden for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
        for name in [*names, *getattr(cmd, "commands", {})]:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), f"{where}: {name} is not shown whole"


@pytest.mark.parametrize(
    ("metric", "line"),
    [("accuracy", "accuracy 0.7500, 3.0 examples/s"), ("f1", "f1 0.5000, accuracy 0.7500, 3.0 examples/s")],
)
def test_eval_prints_each_score_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, files: dict[str, Path], metric: str, line: str
) -> None:
    """`tpv eval` prints one line: the task's metric, and accuracy beside it only when the metric is another."""
    import tpv.adapters
    import tpv.engine.evaluation
    import tpv.models

    scores = {"accuracy": 0.75, "f1": 0.5}
    result = {"metric": metric, "score": scores[metric], **scores, "examples": 8, "examples_per_s": 3.0}
    monkeypatch.setattr(tpv.models, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(tpv.models, "load_tokenizer", lambda *a, **k: object())
    monkeypatch.setattr(tpv.adapters, "init_prompt_tuning", lambda *a, **k: object())
    monkeypatch.setattr(tpv.engine.evaluation, "evaluate", lambda *a, **k: dict(result))
    code, out, _ = run(capsys, "eval", "--origin", files["origin"], "--task", "rotten_tomatoes")
    assert code == 0 and out.strip() == f"rotten_tomatoes (test, 8 examples): {line}", out


def test_tasks_list_keeps_every_name_whole_at_80_columns() -> None:
    """`tpv tasks list` in an 80-column terminal: every task and group name whole, no line wider than 80."""
    from typer.testing import CliRunner

    from tpv.cli import app
    from tpv.tasks import list_tasks

    result = CliRunner().invoke(app, ["tasks", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output
    words = set(result.output.split())
    assert all(spec.name in words and spec.group in words for spec in list_tasks())
