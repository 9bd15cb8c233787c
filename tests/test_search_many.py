"""The search, the few-shot selection and cross-origin scoring through the packed primitive: equal to each alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tiny_models import learnable

import tpv
from tpv.engine import evaluate, evaluate_many
from tpv.engine.prompt_scoring import BatchedPromptScorer, SequentialPromptScorer
from tpv.search import candidate_prompts, search_per_task, search_scalar

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

WORDS = (" negative", " positive")
POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")
DATA = [
    *((f"the movie was {w} . sentiment :", 1) for w in POS),
    *((f"the film was not {w} . sentiment :", 0) for w in POS[:2]),
    *((f"the movie was {w} . sentiment :", 0) for w in NEG),
    ("it was really very good and fun . the story was great and the acting was fine , i loved it . sentiment :", 1),
    ("bad", 0),
]  # one text longer than Gemma 3's sliding window of 16
TEXTS = [t for t, _ in DATA]
LABELS = [y for _, y in DATA]
FP32 = {"eval_batch_size": 3, "max_length": 64, "precision": "fp32"}


def _setup(tiny: Any, kind: str) -> tuple[Any, Any, tpv.Origin, list[tpv.TaskPromptVector]]:
    """A tiny model whose predictions depend on the prompt, an origin and two vectors from it."""
    model, tok = learnable(tiny, kind)
    dim = model.get_input_embeddings().weight.shape[1]
    origin = tpv.Origin.gaussian(4, dim, seed=1, std=0.5)
    gen = torch.Generator().manual_seed(0)
    vectors = [
        tpv.TaskPromptVector.from_prompts(origin.tensor + 1.5 * torch.randn(4, dim, generator=gen), origin, task=t)
        for t in ("a", "b")
    ]
    return model, tok, origin, vectors


def _alone(model: Any, tok: Any, prompt: torch.Tensor, metric: str = "accuracy") -> dict[str, Any]:
    """tpv.evaluate of one prompt in a PEFT model of its own (the unpacked definition of the score)."""
    from tpv.adapters import init_prompt_tuning

    peft_model = init_prompt_tuning(model, tpv.Origin.from_tensor(prompt.float()))  # wraps, leaves model as it is
    return evaluate(peft_model, tok, DATA, label_words=WORDS, metric=metric, batch_size=4, precision="fp32",
                    return_predictions=True)  # fmt: skip


class _EachAlone:
    """A search scorer that scores every candidate by itself with :func:`tpv.evaluate` (the reference)."""

    def __init__(self, model: Any, tok: Any) -> None:
        self.model, self.tok = model, tok

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        scores = [_alone(self.model, self.tok, p)["accuracy"] for p in prompts]
        return torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_search_scores_equal_each_prompt_evaluated_alone(tiny: Any, kind: str) -> None:
    """The search's scorer (packed) gives every candidate tpv.evaluate's accuracy and predictions, its loss to 1e-5."""
    model, tok, origin, vectors = _setup(tiny, kind)
    coefs = [(a, b) for a in (0.0, 0.5, 1.0) for b in (0.0, 1.0)]
    prompts = candidate_prompts(vectors, origin, coefs)  # (6, rows, dim)
    alone = [_alone(model, tok, p) for p in prompts]
    expected = torch.tensor([r["accuracy"] for r in alone], dtype=torch.float64)
    assert len(set(expected.tolist())) > 1  # the candidates are told apart
    labels = torch.tensor(LABELS)
    for share in (None, True, False):
        scorer = BatchedPromptScorer(model, tok, TEXTS, LABELS, WORDS, batch_size=3, reuse_prefix=share)
        assert torch.equal(scorer(prompts), expected), share
        logits = scorer.label_logits(prompts)  # (c, N, K)
        for j, ref in enumerate(alone):
            assert logits[j].argmax(1).tolist() == ref["predictions"]
            loss = float(torch.nn.functional.cross_entropy(logits[j], labels))
            assert loss == pytest.approx(ref["loss"], abs=1e-5)
    assert torch.equal(SequentialPromptScorer(model, tok, TEXTS, LABELS, WORDS, batch_size=3)(prompts), expected)
    many = evaluate_many(model, tok, list(prompts), DATA, label_words=WORDS, precision="fp32", batch_size=5)
    assert [r["accuracy"] for r in many] == expected.tolist()


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_search_chooses_what_scoring_each_alone_chooses(tiny: Any, kind: str) -> None:
    """Scalar and per-task searches through the packed scorer pick the coefficients, and table, of the reference."""
    model, tok, origin, vectors = _setup(tiny, kind)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    packed = BatchedPromptScorer(model, tok, TEXTS, LABELS, WORDS, batch_size=4, max_candidates=4)
    reference = _EachAlone(model, tok)
    got, want = search_scalar(vectors, origin, packed, grid), search_scalar(vectors, origin, reference, grid)
    assert len({c.score for c in want.candidates}) > 1  # not a flat grid
    assert got.coefficients == want.coefficients and got.candidates == want.candidates
    got_pt = search_per_task(vectors, origin, packed, grid, strategy="coordinate")
    want_pt = search_per_task(vectors, origin, reference, grid, strategy="coordinate")
    assert got_pt.coefficients == want_pt.coefficients and got_pt.candidates == want_pt.candidates


def test_selection_scorer_equals_each_alone(tiny: Any) -> None:
    """The few-shot selection scores all its candidates in one call, each as score_prompt scores it alone."""
    from tpv.bench.experiments._common import score_prompt
    from tpv.bench.experiments.fewshot_cells import _selection_scorer

    model, tok, origin, vectors = _setup(tiny, "llama")
    examples = [SimpleNamespace(text=t, label=y) for t, y in DATA]
    spec = SimpleNamespace(label_words=WORDS, metric="accuracy")
    prompts = torch.stack([origin.tensor, *(v.apply_to(origin) for v in vectors), sum(vectors).apply_to(origin)])
    got = _selection_scorer(model, tok, examples, spec, FP32, {"task_type": "causal-lm"})(prompts)  # type: ignore[arg-type]
    want = [_score_alone(tiny, "llama", p, examples, spec, score_prompt) for p in prompts]
    assert got.dtype == torch.float64 and got.tolist() == want
    assert len(set(want)) > 1


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_cross_origin_scores_equal_each_prompt_alone(tiny: Any, kind: str, metric: str) -> None:
    """Cross-origin's one evaluate_many call gives each prompt the score score_prompt gives it alone."""
    from tpv.bench.experiments._common import score_prompt, score_together

    model, tok, origin, vectors = _setup(tiny, kind)
    other = tpv.Origin.gaussian(4, origin.tensor.shape[1], seed=7, std=0.5)
    prompts = [v.apply_to(other, strict=False) for v in vectors] + [other.tensor]
    examples = [SimpleNamespace(text=t, label=y) for t, y in DATA]
    spec = SimpleNamespace(label_words=WORDS, metric=metric)
    got = score_together(model, tok, prompts, examples, spec, FP32, {"task_type": "causal-lm"})  # type: ignore[arg-type]
    want = [_score_alone(tiny, kind, p, examples, spec, score_prompt) for p in prompts]
    assert got == want
    assert len(set(want)) > 1


def _score_alone(tiny: Any, kind: str, prompt: torch.Tensor, examples: Any, spec: Any, score_prompt: Any) -> float:
    """score_prompt on a fresh copy of the model (it wraps the model it is given), as the cell did before."""
    model, tok = learnable(tiny, kind)
    return float(score_prompt(model, tok, prompt, examples, spec, FP32))


def _saved(model: Any, tok: Any, folder: Path, task_type: str) -> dict[str, Any]:
    """The model saved to ``folder``, as a cell's model parameters."""
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"name": str(folder), "task_type": task_type, "dtype": "float32", "device": "cpu"}


def test_cross_origin_and_selection_on_seq2seq_equal_each_alone(tiny: Any, tmp_path: Path) -> None:
    """On T5 (two prompt blocks) score_together and the selection's scorer give each prompt its score alone."""
    from tpv.bench.experiments._common import score_prompt, score_together
    from tpv.bench.experiments.fewshot_cells import _selection_scorer
    from tpv.tasks import get_task

    model, tok = learnable(tiny, "t5")
    params = _saved(model, tok, tmp_path / "t5", "seq2seq")
    dim = model.get_input_embeddings().weight.shape[1]
    prompts = [tpv.Origin.gaussian(4, dim, seed=s, std=1.0).tensor for s in (0, 1, 2)]  # 2 blocks of 2 rows
    examples = [SimpleNamespace(text=t, label=y) for t, y in DATA]
    spec = get_task("rotten_tomatoes")
    want = [float(score_prompt(learnable(tiny, "t5")[0], tok, p, examples, spec, FP32)) for p in prompts]
    assert len(set(want)) > 1
    assert score_together(model, tok, prompts, examples, spec, FP32, params) == want
    accuracy = _selection_scorer(model, tok, examples, spec, FP32, params)(torch.stack(prompts))
    assert accuracy.dtype == torch.float64 and accuracy.tolist() == want  # rotten_tomatoes is scored by accuracy


def test_cross_origin_scores_unpackable_models_one_at_a_time(tiny: Any, tmp_path: Path) -> None:
    """A model evaluate_many does not pack (a decoder classifier) is scored prompt by prompt, each alone."""
    from transformers import LlamaForSequenceClassification

    from tpv.bench.experiments._common import score_prompt, score_together

    lm, tok = tiny("llama")
    config = lm.config
    config.num_labels, config.pad_token_id = 2, tok.pad_token_id
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    params = _saved(model, tok, tmp_path / "cls", "seq-cls")
    dim = model.get_input_embeddings().weight.shape[1]
    prompts = [tpv.Origin.gaussian(4, dim, seed=s, std=1.0).tensor for s in (0, 1)]
    examples = [SimpleNamespace(text=t, label=y) for t, y in DATA]
    spec = SimpleNamespace(label_words=WORDS, metric="accuracy")
    got = score_together(model, tok, prompts, examples, spec, FP32, params)  # type: ignore[arg-type]
    want = [float(score_prompt(LlamaForSequenceClassification.from_pretrained(params["name"]).eval(), tok, p,
                               examples, spec, FP32)) for p in prompts]  # type: ignore[arg-type]  # fmt: skip
    assert got == want
