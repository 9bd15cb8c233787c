"""Shared fixtures: tiny random models built from configs (offline, well under a second each).

``tiny_llama``, ``tiny_gemma3``, ``tiny_t5`` and ``tiny_bert`` give a fresh ``(model, tokenizer)`` per test
(weights from seed 0, so two fixtures of one kind are identical); ``tiny`` is the builder itself for other
seeds. Nothing here reaches the Hugging Face Hub: the offline switches are set before transformers loads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch
from tiny_models import build_tiny

# Tiny models run fastest on one thread (thread start-up dominates), and one thread keeps the suite predictable on
# a shared 2-core machine; override with TPV_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("TPV_TEST_THREADS", "1")))

TinyPair = tuple[Any, Any]


@pytest.fixture
def tiny() -> Callable[..., TinyPair]:
    """The tiny-model builder: ``tiny("llama", seed=0) -> (model, tokenizer)``."""
    return build_tiny


@pytest.fixture
def tiny_llama() -> TinyPair:
    """A fresh tiny ``LlamaForCausalLM`` (hidden 32) and its tokenizer."""
    return build_tiny("llama")


@pytest.fixture
def tiny_gemma3() -> TinyPair:
    """A fresh tiny ``Gemma3ForCausalLM`` (hidden 24) and its tokenizer."""
    return build_tiny("gemma3")


@pytest.fixture
def tiny_t5() -> TinyPair:
    """A fresh tiny ``T5ForConditionalGeneration`` (hidden 16) and its tokenizer."""
    return build_tiny("t5")


@pytest.fixture
def tiny_bert() -> TinyPair:
    """A fresh tiny ``BertForSequenceClassification`` (hidden 16, 2 labels) and its tokenizer."""
    return build_tiny("bert")


@pytest.fixture
def tpv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private ``$TPV_CACHE`` for the test."""
    root = tmp_path / "tpv-cache"
    monkeypatch.setenv("TPV_CACHE", str(root))
    return root


@pytest.fixture
def counting() -> Iterator[dict[str, int]]:
    """Counts executions of every cell kind (wrapping the registered functions)."""
    import tpv.bench.experiments  # noqa: F401  (registers the kinds)
    from tpv.bench.cells import CELL_KINDS, CellKind

    counts: dict[str, int] = {}
    saved = dict(CELL_KINDS)
    for name, spec in saved.items():

        def wrapped(params: Any, inputs: Any, env: Any, _fn: Any = spec.fn, _name: str = name) -> Any:
            counts[_name] = counts.get(_name, 0) + 1
            return _fn(params, inputs, env)

        CELL_KINDS[name] = CellKind(name, wrapped, spec.version)
    yield counts
    CELL_KINDS.clear()
    CELL_KINDS.update(saved)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (no OpenMP hand-offs); the thread count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
