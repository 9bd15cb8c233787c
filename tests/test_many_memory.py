"""Tests of train_many's pack size from a memory budget, its peak-memory report and its out-of-memory error."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny_models import learnable

from tpv.engine import Job, train_many
from tpv.engine import many_memory as mm
from tpv.engine.packing import PackedScorer
from tpv.errors import TrainingError

WORDS = (" negative", " positive")
DATA = [(f"the movie was {w} . sentiment :", y) for w, y in [("good", 1), ("bad", 0), ("fun", 1), ("dull", 0)]]
OPTIONS = {"steps": 3, "lr": 0.05, "eval_every": 0, "batch_size": 2, "num_virtual_tokens": 4, "precision": "fp32"}

pytestmark = pytest.mark.usefixtures("one_thread")


def five_jobs() -> list[Job]:
    """Five jobs that differ by seed only."""
    return [Job(train_examples=DATA, label_words=WORDS, seed=s, options=OPTIONS) for s in range(5)]


def test_job_bytes_grows_with_rows_tokens_and_model_size(tiny: Any) -> None:
    """A job's estimate is linear in its rows and tokens and counts every layer (a T5's decoder too)."""
    llama, _ = tiny("llama")
    t5, _ = tiny("t5")
    one = mm.job_bytes(llama.config, 1, 10)
    assert mm.job_bytes(llama.config, 4, 10) == 4 * one
    assert mm.job_bytes(llama.config, 1, 30) == 3 * one
    cfg = llama.config
    a, b = mm.ACTIVATION_FLOATS
    per_token = cfg.num_hidden_layers * (a * cfg.hidden_size + b * cfg.intermediate_size) * 4
    assert one == 10 * per_token
    layers = t5.config.num_layers + t5.config.num_decoder_layers
    assert mm.job_bytes(t5.config, 1, 1) == layers * (a * t5.config.d_model + b * t5.config.d_ff) * 4


def test_pack_size_from_the_budget_and_results_as_given(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pack_size=None fits the budget (here 2 jobs of 5), is recorded, and trains what pack_size=2 trains."""
    model, tok = learnable(tiny)
    longest = max(len(tok(t)["input_ids"]) for t, _ in DATA)
    need = mm.job_bytes(model.config, OPTIONS["batch_size"], OPTIONS["num_virtual_tokens"] + longest)
    monkeypatch.setattr(mm, "memory_budget", lambda device: int(2.5 * need))
    auto = train_many(model, tok, five_jobs(), progress=False)
    assert [r.pack["pack_size"] for r in auto] == [2] * 5
    assert auto[0].pack["chosen"] == "memory budget" and auto[0].pack["budget_bytes"] == int(2.5 * need)
    assert auto[0].pack["jobs"] == 5 and auto[0].pack["peak_memory_bytes"] > 0
    given = train_many(model, tok, five_jobs(), pack_size=2, progress=False)
    assert given[0].pack["chosen"] == "given" and given[0].pack["budget_bytes"] is None
    for a, g in zip(auto, given):
        torch.testing.assert_close(a.prompt, g.prompt, rtol=1e-6, atol=1e-7)


def test_a_budget_smaller_than_one_job_still_trains_one_at_a_time(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget never stops training: at least one job runs at a time."""
    model, tok = learnable(tiny)
    monkeypatch.setattr(mm, "memory_budget", lambda device: 1)
    results = train_many(model, tok, five_jobs()[:2], progress=False)
    assert [r.pack["pack_size"] for r in results] == [1, 1]
    assert all(r.steps == OPTIONS["steps"] for r in results)


def test_an_unreadable_budget_packs_every_job(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where free memory cannot be read, every job trains in one pack."""
    model, tok = learnable(tiny)
    monkeypatch.setattr(mm, "memory_budget", lambda device: None)
    results = train_many(model, tok, five_jobs()[:3], progress=False)
    assert [r.pack["pack_size"] for r in results] == [3, 3, 3]


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory."), RuntimeError("DefaultCPUAllocator: can't allocate memory")],
)
def test_out_of_memory_names_pack_size(tiny: Any, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Running out of memory in a pack is one TrainingError that names pack_size and a smaller value."""
    model, tok = learnable(tiny)

    def fail(self: Any, groups: Any) -> Any:
        raise error

    monkeypatch.setattr(PackedScorer, "hidden", fail)
    with pytest.raises(TrainingError, match=r"out of memory training 4 jobs.*pack_size=4, given.*pack_size=2") as info:
        train_many(model, tok, five_jobs()[:4], pack_size=4, progress=False)
    assert info.value.__cause__ is error


def test_other_errors_pass_through(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not about memory is not reworded."""
    model, tok = learnable(tiny)

    def fail(self: Any, groups: Any) -> Any:
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(PackedScorer, "hidden", fail)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        train_many(model, tok, five_jobs()[:2], progress=False)


def test_budget_and_peak_are_read_on_this_machine() -> None:
    """On a Linux CPU the budget is half of MemAvailable and the peak is the process's high-water mark."""
    budget = mm.memory_budget(torch.device("cpu"))
    peak = mm.peak_memory(torch.device("cpu"))
    assert budget is not None and budget > 0
    assert peak is not None and peak > 0
    assert mm.is_out_of_memory(MemoryError()) and not mm.is_out_of_memory(ValueError("out of memory"))
