"""Coefficient search and the prompt scorers: search laws, batched == sequential == reference, errors, CLI.

The packed path against tpv.evaluate of each prompt alone, and the few-shot and cross-origin callers, are in
``tests/test_search_many.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

import tpv
from tpv.cli.merge import register
from tpv.merge import merge
from tpv.search import (
    PAPER_GRID,
    BatchedPromptScorer,
    SequentialPromptScorer,
    candidate_prompts,
    search_per_task,
    search_scalar,
)

ORIGIN = tpv.Origin.from_tensor(torch.zeros(2, 3, dtype=torch.float64))


def _vec(fill: float, task: str) -> tpv.TaskPromptVector:
    return tpv.TaskPromptVector.from_prompts(torch.full((2, 3), fill, dtype=torch.float64), ORIGIN, task=task)


A, B, C = _vec(1.0, "a"), _vec(2.0, "b"), _vec(-1.0, "c")


class Recorder:
    """A scorer that scores a prompt by closeness of its row sums to a target, and records every call."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.calls: list[torch.Tensor] = []

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        self.calls.append(prompts.clone())
        return -(prompts.sum(dim=(1, 2)) - self.target).abs()


def _separable(targets: tuple[float, ...]) -> Any:
    """Score = -sum_i (lambda_i - t_i)^2, read back from prompts built over one-hot vectors."""

    def score(prompts: torch.Tensor) -> torch.Tensor:
        lambdas = prompts[:, 0, : len(targets)]  # (c, n)
        return -((lambdas - torch.tensor(targets, dtype=prompts.dtype)) ** 2).sum(dim=1)

    return score


def _one_hot_vectors(n: int) -> tuple[tpv.Origin, list[tpv.TaskPromptVector]]:
    origin = tpv.Origin.from_tensor(torch.zeros(1, n, dtype=torch.float64))
    out = []
    for i in range(n):
        t = torch.zeros(1, n, dtype=torch.float64)
        t[0, i] = 1.0
        out.append(tpv.TaskPromptVector.from_prompts(t, origin, task=f"t{i}"))
    return origin, out


# -- search laws ----------------------------------------------------------------------------------------------


def test_paper_grid() -> None:
    """The paper's grid is 0, 0.05, ..., 1: 21 values."""
    assert len(PAPER_GRID) == 21 and PAPER_GRID[0] == 0.0 and PAPER_GRID[-1] == 1.0 and PAPER_GRID[1] == 0.05


def test_scalar_search_picks_the_best_lambda_and_records_every_candidate() -> None:
    """search_scalar scores each grid lambda once, in one call, and returns the argmax."""
    scorer = Recorder(target=0.5 * 6 * 3)  # sum over (a + b) * lambda = 18 * lambda -> best at 0.5
    result = search_scalar([A, B], ORIGIN, scorer)
    assert result.mode == "scalar" and result.coefficients == (0.5, 0.5) and result.scalar == 0.5
    assert result.score == 0.0 and len(scorer.calls) == 1 and scorer.calls[0].shape == (21, 2, 3)
    assert [c.coefficients[0] for c in result.candidates] == list(PAPER_GRID)
    assert result.table()[10] == {"a": 0.5, "b": 0.5, "score": 0.0}


def test_scalar_search_ties_go_to_the_first_grid_value() -> None:
    """Equal scores: the first lambda in grid order wins."""
    result = search_scalar([A], ORIGIN, lambda p: torch.zeros(p.shape[0]), grid=[0.3, 0.1, 0.2])
    assert result.coefficients == (0.3,)


def test_best_vector_reproduces_the_scored_prompt() -> None:
    """result.vector(vs).apply_to(origin) is exactly the best prompt the scorer saw."""
    scorer = Recorder(target=4.2)
    result = search_scalar([A, C], ORIGIN, scorer, grid=[0.1, 0.35, 0.7])
    best = result.vector([A, C])
    assert best == merge([A, C], weights=list(result.coefficients))
    i = [c.coefficients for c in result.candidates].index(result.coefficients)
    assert torch.equal(best.apply_to(ORIGIN), scorer.calls[0][i])


def test_candidate_prompts_equal_merge_then_apply() -> None:
    """candidate_prompts(vs, o, cs)[j] == merge(vs, weights=cs[j]).apply_to(o), bit for bit."""
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=3, seed=3)
    vs = [tpv.TaskPromptVector.from_prompts(o.tensor * k, o, task=f"t{k}") for k in (2, 3)]
    coefs = [(0.05, 0.95), (0.3, -0.7)]
    prompts = candidate_prompts(vs, o, coefs)
    for j, c in enumerate(coefs):
        assert torch.equal(prompts[j], merge(vs, weights=list(c)).apply_to(o))
    assert prompts.dtype == o.dtype


def test_search_chunks_the_candidates() -> None:
    """chunk bounds the candidates per scorer call."""
    scorer = Recorder(target=1.0)
    search_scalar([A], ORIGIN, scorer, chunk=5)
    assert [c.shape[0] for c in scorer.calls] == [5, 5, 5, 5, 1]


def test_per_task_grid_finds_the_exact_optimum() -> None:
    """strategy='grid' scores the whole product and finds the separable optimum."""
    origin, vs = _one_hot_vectors(2)
    result = search_per_task(vs, origin, _separable((0.25, 0.8)), strategy="grid")
    assert result.coefficients == (0.25, 0.8) and len(result.candidates) == 21**2


def test_per_task_coordinate_ascent_finds_a_separable_optimum() -> None:
    """Coordinate ascent finds the optimum of a separable score, with far fewer evaluations, none twice."""
    origin, vs = _one_hot_vectors(3)
    calls: list[torch.Tensor] = []
    inner = _separable((0.1, 0.9, 0.55))

    def scorer(p: torch.Tensor) -> torch.Tensor:
        calls.append(p)
        return inner(p)

    result = search_per_task(vs, origin, scorer)
    assert result.coefficients == (0.1, 0.9, 0.55) and result.strategy == "coordinate"
    scored = torch.cat(calls).reshape(-1, 3)
    assert len(result.candidates) == scored.shape[0] == torch.unique(scored, dim=0).shape[0] < 21**3


def test_per_task_is_never_worse_than_scalar() -> None:
    """Coordinate ascent starts at the best scalar lambda, so its score is at least the scalar search's."""
    origin, vs = _one_hot_vectors(2)
    score = _separable((0.2, 0.6))
    assert search_per_task(vs, origin, score).score >= search_scalar(vs, origin, score).score


def test_per_task_from_a_start() -> None:
    """An explicit start is scored first and moves only on strict improvements."""
    origin, vs = _one_hot_vectors(2)
    result = search_per_task(vs, origin, lambda p: torch.zeros(p.shape[0]), start=[0.5, 0.5])
    assert result.coefficients == (0.5, 0.5)


def test_search_errors() -> None:
    """Empty grid, non-finite grid, wrong origin, bad scorer output, huge products: one clear error each."""
    with pytest.raises(tpv.ConfigError, match="grid is empty"):
        search_scalar([A], ORIGIN, Recorder(0), grid=[])
    with pytest.raises(tpv.ConfigError, match="finite"):
        search_scalar([A], ORIGIN, Recorder(0), grid=[0.0, math.nan])
    with pytest.raises(tpv.ConfigError, match="at least one vector"):
        search_scalar([], ORIGIN, Recorder(0))
    other = tpv.Origin.from_tensor(torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(tpv.IncompatibleVectorsError, match="was tuned from origin"):
        search_scalar([A], other, Recorder(0))
    with pytest.raises(tpv.ConfigError, match="one score per candidate"):
        search_scalar([A], ORIGIN, lambda p: torch.zeros(3))
    with pytest.raises(tpv.ConfigError, match="non-finite"):
        search_scalar([A], ORIGIN, lambda p: torch.full((p.shape[0],), math.nan))
    origin, vs = _one_hot_vectors(4)
    with pytest.raises(tpv.ConfigError, match="over max_candidates"):
        search_per_task(vs, origin, _separable((0, 0, 0, 0)), strategy="grid")
    with pytest.raises(tpv.ConfigError, match="strategy"):
        search_per_task(vs, origin, _separable((0, 0, 0, 0)), strategy="random")  # type: ignore[arg-type]
    with pytest.raises(tpv.ConfigError, match="start must hold 4"):
        search_per_task(vs, origin, _separable((0, 0, 0, 0)), start=[0.0])


# -- scorers on a tiny Llama ----------------------------------------------------------------------------------

TEXTS = [
    "review : the movie was great . sentiment :",
    "review : boring plot . sentiment :",
    "review : i loved it and the acting was really good . sentiment :",
    "review : awful . sentiment :",
    "review : this film is not fun but the story is good . sentiment :",
    "review : i hated the acting . sentiment :",
    "review : very very bad movie , boring and awful . sentiment :",
    "review : great fun . sentiment :",
    "review : the plot was not good but i loved the film . sentiment :",
    "review : it is a movie . sentiment :",
    "review : really boring story . sentiment :",
]
LABELS = [1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0]
LABEL_WORDS = (" negative", " positive")
WORDS = sorted({w for t in TEXTS for w in t.split()})


def _tiny_llama() -> tuple[Any, Any]:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "negative", "positive", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", unk_token="[UNK]", pad_token="[PAD]")
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,
        initializer_range=0.5,  # large weights: different prompts give different predictions
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="module")
def llama() -> tuple[Any, Any]:
    return _tiny_llama()


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    # Tiny models gain nothing from threads, and a busy machine makes extra threads very slow.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _candidates(c: int = 6, rows: int = 4, dim: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(c, rows, dim, generator=gen) * 2.0  # (c, rows, dim)


def _reference_accuracy(model: Any, tokenizer: Any, prompt: torch.Tensor) -> float:
    """One example at a time, no padding, full logits, log-softmax: the definition of the score."""
    label_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in LABEL_WORDS]
    correct = 0
    with torch.no_grad():
        for text, label in zip(TEXTS, LABELS):
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            embeds = torch.cat([prompt[None], model.get_input_embeddings()(ids)], dim=1)
            logp = model(inputs_embeds=embeds).logits[0, -1].log_softmax(-1)
            correct += int(int(logp[label_ids].argmax()) == label)
    return correct / len(TEXTS)


def test_sequential_scorer_matches_the_reference(llama: tuple[Any, Any]) -> None:
    """The sequential scorer (padded batches, last-position logits) equals one-example-at-a-time scoring."""
    model, tokenizer = llama
    prompts = _candidates()
    got = SequentialPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=4)(prompts)
    expected = torch.tensor([_reference_accuracy(model, tokenizer, p) for p in prompts], dtype=torch.float64)
    assert torch.equal(got, expected)
    assert len(set(got.tolist())) > 1  # the candidates are told apart


@pytest.mark.parametrize("reuse_prefix", [True, False])
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_batched_scorer_equals_sequential(llama: tuple[Any, Any], reuse_prefix: bool, batch_size: int) -> None:
    """Batched scoring (all candidates in one pass, with or without a reused prefix) == sequential scoring."""
    model, tokenizer = llama
    prompts = _candidates()
    seq = SequentialPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=batch_size)(prompts)
    batched = BatchedPromptScorer(
        model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=batch_size, reuse_prefix=reuse_prefix
    )(prompts)
    assert torch.equal(batched, seq)


def test_batched_scorer_options_do_not_change_scores(llama: tuple[Any, Any]) -> None:
    """Chunking candidates, keeping input order, or truncating nothing leave the accuracies unchanged."""
    model, tokenizer = llama
    prompts = _candidates()
    base = BatchedPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=3)(prompts)
    for kwargs in ({"max_candidates": 2}, {"sort_by_length": False}, {"max_length": 100}):
        scorer = BatchedPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=3, **kwargs)
        assert torch.equal(scorer(prompts), base), kwargs


@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_prompt_scorers_match_the_training_scorer_per_example(reuse_prefix: bool) -> None:
    """The search's scorer and tpv.engine.scoring.Scorer (the prompt in a PEFT model) give the same class logits."""
    from tpv.adapters import init_prompt_tuning
    from tpv.engine.data import collate, encode, label_token_ids
    from tpv.engine.prompt_scoring import BatchedPromptScorer as EngineBatched
    from tpv.engine.scoring import Scorer

    assert EngineBatched is BatchedPromptScorer  # the old import path serves the engine's class
    model, tokenizer = _tiny_llama()  # a fresh model: PEFT wraps it
    prompt = _candidates(1)[0]  # (rows, dim)
    scorer = BatchedPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS, batch_size=4, reuse_prefix=reuse_prefix)
    ours = scorer.label_logits(prompt[None], reuse_prefix=reuse_prefix)[0]  # (N, K), examples in the given order
    peft_model = init_prompt_tuning(model, tpv.Origin.from_tensor(prompt))
    batch = collate(encode(tokenizer, TEXTS, LABELS, max_length=128), list(range(len(TEXTS))), pad_id=0)
    for share in (True, False):
        reference = Scorer(peft_model, "causal-lm", label_token_ids(tokenizer, LABEL_WORDS), share_prefix=share)
        with torch.no_grad():
            theirs, _ = reference(batch.input_ids, batch.attention_mask)  # (N, K)
        torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-5)
        assert torch.equal(ours.argmax(1), theirs.argmax(1))
    accuracy = float((ours.argmax(1) == torch.tensor(LABELS)).double().mean())
    assert scorer(prompt[None]).tolist() == [accuracy]


def test_search_with_batched_and_sequential_scorers_agree(llama: tuple[Any, Any]) -> None:
    """Scalar search through either scorer picks the same lambda with the same table."""
    model, tokenizer = llama
    origin = tpv.Origin.from_tensor(_candidates(1)[0])
    vs = [tpv.TaskPromptVector.from_prompts(p, origin, task=f"t{i}") for i, p in enumerate(_candidates(3)[1:])]
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    seq = search_scalar(vs, origin, SequentialPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS), grid)
    bat = search_scalar(vs, origin, BatchedPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS), grid)
    assert seq.coefficients == bat.coefficients and seq.candidates == bat.candidates


def test_scorer_restores_training_mode(llama: tuple[Any, Any]) -> None:
    """A scorer evaluates in eval mode and gives the model back in the mode it found it."""
    model, tokenizer = llama
    model.train()
    try:
        BatchedPromptScorer(model, tokenizer, TEXTS[:2], LABELS[:2], LABEL_WORDS)(_candidates(2))
        assert model.training
    finally:
        model.eval()


def test_scorer_errors(llama: tuple[Any, Any]) -> None:
    """Mismatched labels, unknown labels, shared first tokens, wrong widths: one clear ConfigError each."""
    model, tokenizer = llama
    with pytest.raises(tpv.ConfigError, match="2 texts but 1 labels"):
        BatchedPromptScorer(model, tokenizer, TEXTS[:2], [0], LABEL_WORDS)
    with pytest.raises(tpv.ConfigError, match="labels \\[2\\] have no label word"):
        BatchedPromptScorer(model, tokenizer, TEXTS[:2], [0, 2], LABEL_WORDS)
    with pytest.raises(tpv.ConfigError, match="first tokens differ"):
        BatchedPromptScorer(model, tokenizer, TEXTS[:2], [0, 1], (" good", " good"))
    with pytest.raises(tpv.ConfigError, match="at least one validation example"):
        SequentialPromptScorer(model, tokenizer, [], [], LABEL_WORDS)
    scorer = BatchedPromptScorer(model, tokenizer, TEXTS[:2], [0, 1], LABEL_WORDS)
    with pytest.raises(tpv.ConfigError, match="another model"):
        scorer(torch.zeros(2, 4, 16))
    with pytest.raises(tpv.ConfigError, match="shape"):
        scorer(torch.zeros(4, 32))


# -- CLI ------------------------------------------------------------------------------------------------------


def test_cli_search_runs_the_paper_protocol(
    llama: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tpv search scores the grid on the task's validation split and saves the best combination."""
    import tpv.models
    import tpv.tasks

    model, tokenizer = llama
    examples = [SimpleNamespace(text=t, label=y) for t, y in zip(TEXTS, LABELS)]
    data = SimpleNamespace(validation=examples, spec=SimpleNamespace(label_words=LABEL_WORDS))
    monkeypatch.setattr(tpv.tasks, "load_task", lambda name, seed=0, max_examples=None: data)
    monkeypatch.setattr(tpv.models, "load_model", lambda name, task_type="causal-lm": model)
    monkeypatch.setattr(tpv.models, "load_tokenizer", lambda name: tokenizer)
    origin = tpv.Origin.from_tensor(_candidates(1)[0])
    vs = [tpv.TaskPromptVector.from_prompts(p, origin, task=f"t{i}") for i, p in enumerate(_candidates(3)[1:])]
    files = [tmp_path / f"t{i}.safetensors" for i in range(2)]
    for f, v in zip(files, vs):
        tpv.save(v, f)
    tpv.save(origin, tmp_path / "origin.safetensors")
    out = tmp_path / "best.safetensors"
    app = typer.Typer()
    register(app)
    args = ["search", *map(str, files), "--origin", str(tmp_path / "origin.safetensors"), "--task", "toy"]
    res = CliRunner().invoke(app, [*args, "--grid", "0,0.5,1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    expected = search_scalar(vs, origin, BatchedPromptScorer(model, tokenizer, TEXTS, LABELS, LABEL_WORDS), [0, 0.5, 1])
    assert tpv.load_vector(out) == expected.vector(vs)
    assert tpv.inspect(out).provenance["search"]["coefficients"] == list(expected.coefficients)


def test_batched_equals_sequential_on_gemma3(tiny_gemma3: tuple[Any, Any]) -> None:
    """Batched (shared prefix or not) == sequential == tpv.evaluate alone on Gemma 3, a text past its sliding window."""
    from tpv.adapters import init_prompt_tuning

    model, tokenizer = tiny_gemma3
    dim = model.get_input_embeddings().weight.shape[1]
    prompts = torch.randn(5, 4, dim, generator=torch.Generator().manual_seed(0)) * 2.0
    long = "the movie was really very good and fun . the story was great and the acting was fine , i loved it"
    texts = ["the movie was great", "bad film", "i loved it so much really", "no", long]  # long: > 16 tokens
    labels = [1, 0, 1, 0, 1]
    seq = SequentialPromptScorer(model, tokenizer, texts, labels, LABEL_WORDS, batch_size=3)(prompts)
    for reuse in (True, False):
        scorer = BatchedPromptScorer(model, tokenizer, texts, labels, LABEL_WORDS, batch_size=3, reuse_prefix=reuse)
        assert torch.equal(scorer(prompts), seq)
    data = list(zip(texts, labels))
    alone = [
        tpv.evaluate(init_prompt_tuning(model, tpv.Origin.from_tensor(p)), tokenizer, data, label_words=LABEL_WORDS,
                     precision="fp32")["accuracy"]
        for p in prompts
    ]  # fmt: skip
    assert seq.tolist() == alone


def test_scorers_refuse_other_model_kinds(tiny_t5: tuple[Any, Any]) -> None:
    """A prompt scorer ranks a causal LM's label words: a seq2seq model gets a ConfigError naming evaluate_many."""
    model, tokenizer = tiny_t5
    with pytest.raises(tpv.ConfigError, match="evaluate_many"):
        BatchedPromptScorer(model, tokenizer, TEXTS[:2], [0, 1], LABEL_WORDS)
