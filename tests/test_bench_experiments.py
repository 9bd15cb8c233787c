"""End-to-end tests of the ``tasks`` and ``transfer`` benchmark experiments on tiny random models (seconds each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tpv.bench import config as bench_config
from tpv.bench.api import run
from tpv.bench.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks" / "configs"


@pytest.fixture(autouse=True)
def _shipped_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bench_config.CONFIGS_ENV, str(CONFIGS))


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random Llama and a tiny random Gemma-3, each saved with its tokenizer as a plain folder."""
    from tiny_models import build_tiny

    home = tmp_path_factory.mktemp("tiny")
    folders = {}
    for kind in ("llama", "gemma3"):
        model, tokenizer = build_tiny(kind, seed=0)  # type: ignore[arg-type]
        folders[kind] = home / f"tiny-{kind}"
        model.save_pretrained(folders[kind])
        tokenizer.save_pretrained(folders[kind])
    return folders


def _report(out: Path, name: str) -> tuple[dict[str, Any], str]:
    data = json.loads((out / name / "results.json").read_text())
    assert data["complete"] and not data["failed_cells"]
    return data, (out / name / "results.md").read_text()


def test_tasks_reuses_sources_reports_and_resumes(
    tiny_dirs: dict[str, Path], tmp_path: Path, counting: dict[str, int]
) -> None:
    """tasks shares the source tunings of sources, adds the untuned and instruction cells; a rerun runs nothing."""
    model = f"model.name={tiny_dirs['llama']}"
    first, first_layers = load_config("sources", "tiny", overrides=[model])
    assert run(first, tmp_path, layers=first_layers).ok
    config, layers = load_config("tasks", "tiny", overrides=[model])
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    # 2 tasks x 2 origins: source (already run by sources) and untuned; one instruction cell per task
    assert counting == {"source": 4, "calib_untuned": 4, "task_instruction": 2}
    assert len(summary.executed) == 6
    data, md = _report(tmp_path, "tasks-tiny")
    assert data["config"]["zeroshot"]["tasks"] == ["rotten_tomatoes", "vader_words"]
    assert "transfer" not in data["config"]
    rows = data["summary"]["tasks"]
    assert set(rows) == {"rotten_tomatoes", "vader_words"}
    for row in rows.values():
        assert row["origins"]["tuned"]["n"] == 2 and row["origins"]["zero_shot"]["n"] == 2
        assert 0.0 <= row["instruction"]["zero_shot"] <= 1.0 and row["instruction"]["virtual_tokens"] > 0
        assert 0.0 <= row["majority_share"] <= 1.0 and row["n_test"] == 8
    table = data["tables"][0]
    assert table["columns"][:4] == ["task", "metric", "test n", "majority"] and len(table["rows"]) == 2
    assert "| rotten_tomatoes |" in md and "tuned from instruction" in md

    again = run(config, tmp_path, layers=layers)
    assert again.executed == [] and len(again.finished) == 10
    assert counting == {"source": 4, "calib_untuned": 4, "task_instruction": 2}


def test_transfer_runs_every_method_and_resumes(
    tiny_dirs: dict[str, Path], tmp_path: Path, counting: dict[str, int]
) -> None:
    """transfer tunes on both models, moves the source prompt with every method, reports the gaps; resumes."""
    from tpv.bench.experiments.transfer import COLUMNS

    llama, gemma = tiny_dirs["llama"], tiny_dirs["gemma3"]
    overrides = [f"model.name={llama}", f"transfer.directions=[[{llama}, {gemma}]]"]
    config, layers = load_config("transfer", "tiny", overrides=overrides)
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    # tunings: source seeds 0 and 1 (multi-source), target seed 0; references random and manual; 7 moves
    assert counting == {"xfer_tune": 3, "xfer_ref": 2, "xfer_move": 7}
    data, md = _report(tmp_path, "transfer-tiny")
    row = data["summary"]["transfer"]["rotten_tomatoes"][f"{llama}->{gemma}"]
    assert set(row) == set(COLUMNS)
    assert all(0.0 <= v["test"] <= 1.0 for v in row.values())
    assert row["random"]["gap_recovered"] in (0.0, None)
    table = data["tables"][0]
    assert table["columns"] == ["task", "source -> target", *COLUMNS.values()]
    assert table["rows"][0][:2] == ["rotten_tomatoes", "tiny-llama -> tiny-gemma3"]
    moves = [c for c in data["cells"].values() if c["kind"] == "xfer_move"]
    relative = next(c for c in moves if c["params"]["method"] == "relative")
    assert relative["metrics"]["record"]["uses_target_dev_data"] is True
    assert {c["metrics"]["target"] for c in moves} == {str(gemma)}
    assert "(f) FUSE map" in md and "Tuned prompts" in md

    again = run(config, tmp_path, layers=layers)
    assert again.executed == [] and len(again.finished) == 12
    assert counting == {"xfer_tune": 3, "xfer_ref": 2, "xfer_move": 7}


def test_perf_table_of_the_many_benchmark_reads_every_k_and_target() -> None:
    """perf's table of bench_many's JSON has, per K, the packed rate and speed-ups the JSON holds, and the targets."""
    from tpv.bench.experiments.perf import _many_rows

    doc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/many-bf16.json").read_text())
    rows = _many_rows(doc)
    for r in doc["rows"]:
        got = {measure: value for setup, measure, value in rows if setup == f"K={r['k']}"}
        assert got["packed job-steps/s"] == r["packed"]["job_steps_per_s"]
        assert got["speed-up vs sequential"] == r["speedup_vs_sequential"]
        assert got["packed peak rise (MiB)"] == r["packed"]["peak_rise_bytes"] / 2**20
    assert sum(1 for setup, _m, _v in rows if setup == "target") == len(doc["targets"])
