"""Coefficient search: find the combination of task prompt vectors that scores best on validation data.

The task prompt vectors paper (Belanec et al., arXiv 2408.01119) applies a sum of vectors to their origin
with one scalar ``lambda`` picked from ``{0, 0.05, ..., 1}`` on validation data::

    prompt(lambda) = origin + sum_i lambda * tau_i

:func:`search_scalar` runs that protocol; :func:`search_per_task` searches one coefficient per vector
(``origin + sum_i lambda_i * tau_i``), over the full grid product or by coordinate ascent over the grid.

Scoring is abstract: a *scorer* is any callable ``score_prompts(prompts) -> scores`` taking ``c`` candidate
soft prompts at once, shape ``(c, rows, dim)``, and returning one score per candidate, shape ``(c,)``
(higher is better). Two scorers for rank classification with a causal LM are provided:

* :class:`BatchedPromptScorer` evaluates all candidates on a batch of examples in one forward pass (the
  batch dimension is expanded to ``c * b``), and by default computes each candidate prompt's keys and
  values once and reuses them for every example batch;
* :class:`SequentialPromptScorer`, the baseline, evaluates the candidates one after the other, with the
  prompt recomputed in every batch, as a per-candidate evaluation loop does.

Both predict, for each example, the label word with the highest next-token logit at the last input
position (equivalently the highest log-likelihood), and return accuracy. They are PEFT-free: the prompt is
prepended to the input embeddings (``inputs_embeds = cat(prompt, embed(input_ids))``). transformers is
never imported by this module; the scorers only call the model given.

Example:
    >>> import torch, tpv
    >>> from tpv.search import search_scalar
    >>> origin = tpv.Origin.from_tensor(torch.zeros(2, 3))
    >>> v = tpv.TaskPromptVector.from_prompts(torch.ones(2, 3), origin, task="a")
    >>> best = search_scalar([v], origin, lambda p: -(p.sum(dim=(1, 2)) - 3.0).abs())  # best at 0.5
    >>> best.coefficients, best.score
    ((0.5,), -0.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from tpv._tensor import check_prompt_tensor
from tpv.engine.scoring import cache_kwargs, output_cache
from tpv.errors import ConfigError, IncompatibleVectorsError
from tpv.merge import merge
from tpv.vector import TaskPromptVector

if TYPE_CHECKING:
    from tpv.origin import Origin

__all__ = [
    "PAPER_GRID",
    "BatchedPromptScorer",
    "Candidate",
    "PromptScorer",
    "SearchResult",
    "SequentialPromptScorer",
    "candidate_prompts",
    "search_per_task",
    "search_scalar",
]

PAPER_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
"""The paper's lambda grid: ``0, 0.05, ..., 1`` (21 values)."""

PromptScorer = Callable[[torch.Tensor], torch.Tensor]
"""``score_prompts(prompts (c, rows, dim)) -> scores (c,)``; higher is better."""


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One evaluated combination.

    Attributes:
        coefficients: one coefficient per vector, in the order the vectors were given.
        score: what the scorer returned for it.
    """

    coefficients: tuple[float, ...]
    score: float


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a coefficient search.

    Attributes:
        mode: ``"scalar"`` (one lambda for the whole sum) or ``"per_task"`` (one per vector).
        names: one label per vector (its task names joined by ``+``), in the order given.
        coefficients: the best coefficients, one per vector (all equal in scalar mode).
        score: the best score.
        candidates: every evaluated combination with its score, in evaluation order (no duplicates).
        strategy: ``"grid"`` or ``"coordinate"`` (scalar mode is always ``"grid"``).
    """

    mode: Literal["scalar", "per_task"]
    names: tuple[str, ...]
    coefficients: tuple[float, ...]
    score: float
    candidates: tuple[Candidate, ...]
    strategy: Literal["grid", "coordinate"] = "grid"

    @property
    def scalar(self) -> float | None:
        """The best lambda in scalar mode, else ``None``."""
        return self.coefficients[0] if self.mode == "scalar" else None

    def vector(self, vectors: Sequence[TaskPromptVector]) -> TaskPromptVector:
        """The best combination ``sum_i coefficient_i * tau_i`` of the vectors searched (task arithmetic).

        ``result.vector(vectors).apply_to(origin)`` is exactly the best candidate prompt that was scored.
        """
        return merge(vectors, "task_arithmetic", weights=list(self.coefficients))

    def table(self) -> list[dict[str, float]]:
        """One row per candidate: ``{name: coefficient, ..., "score": score}``."""
        return [{**dict(zip(self.names, c.coefficients)), "score": c.score} for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole result."""
        return {
            "mode": self.mode,
            "strategy": self.strategy,
            "names": list(self.names),
            "coefficients": list(self.coefficients),
            "score": self.score,
            "evaluations": len(self.candidates),
            "candidates": [{"coefficients": list(c.coefficients), "score": c.score} for c in self.candidates],
        }


# -- candidates -----------------------------------------------------------------------------------------------


def _check_inputs(
    vectors: Sequence[TaskPromptVector], origin: Origin | torch.Tensor, strict: bool
) -> tuple[list[TaskPromptVector], torch.Tensor]:
    items = list(vectors)
    if not items:
        raise ConfigError("coefficient search needs at least one vector, got none")
    for i, v in enumerate(items):
        if not isinstance(v, TaskPromptVector):
            raise IncompatibleVectorsError(f"item {i} to search over is a {type(v).__name__}, not a TaskPromptVector")
    for v in items[1:]:
        items[0].check_compatible(v, op="search over")
    items[0].apply_to(origin, strict=strict)  # checks the origin's shape and (strict) its content hash
    from tpv.origin import Origin

    o = origin.tensor if isinstance(origin, Origin) else check_prompt_tensor(origin, what="origin")
    return items, o


def _check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    try:
        values = [float(g) for g in grid]
    except (TypeError, ValueError):
        raise ConfigError(f"grid must be a sequence of numbers, got {grid!r}") from None
    if not values:
        raise ConfigError("grid is empty: give at least one coefficient to try, e.g. tpv.search.PAPER_GRID")
    bad = [g for g in values if not math.isfinite(g)]
    if bad:
        raise ConfigError(f"grid values must be finite, got {bad}")
    return tuple(dict.fromkeys(values))


def candidate_prompts(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    coefficients: Sequence[Sequence[float]],
    *,
    strict: bool = True,
) -> torch.Tensor:
    """The soft prompts ``origin + sum_i c_i * tau_i`` for many coefficient tuples.

    Each prompt is computed exactly as ``merge(vectors, weights=c).apply_to(origin)`` computes it.

    Args:
        vectors: ``n`` compatible vectors.
        origin: their origin (an :class:`~tpv.Origin` or its tensor, shape ``(rows, dim)``).
        coefficients: ``c`` tuples of ``n`` coefficients.
        strict: check that ``origin`` is the vectors' origin (content hash).

    Returns:
        The prompts, shape ``(c, rows, dim)``, in the origin's dtype.

    Raises:
        ConfigError: a tuple without one coefficient per vector.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    return _prompts(torch.stack([v.tensor for v in items]), o, coefficients)


def _prompts(stacked: torch.Tensor, origin: torch.Tensor, coefficients: Sequence[Sequence[float]]) -> torch.Tensor:
    """``origin + sum_i c_i * v_i`` per tuple; stacked ``(n, rows, dim)`` -> ``(c, rows, dim)``."""
    from tpv.merge import task_arithmetic

    n = stacked.shape[0]
    out = []
    for coefs in coefficients:
        if len(coefs) != n:
            raise ConfigError(f"got {len(coefs)} coefficient(s) for {n} vector(s): give one per vector")
        tau = task_arithmetic(stacked, torch.tensor(list(coefs), dtype=torch.float64))  # (rows, dim)
        out.append((origin.double() + tau.double()).to(origin.dtype))  # (rows, dim)
    return torch.stack(out)  # (c, rows, dim)


def _names(vectors: Sequence[TaskPromptVector]) -> tuple[str, ...]:
    names = ["+".join(v.terms) or f"vector{i}" for i, v in enumerate(vectors)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return tuple(out)


class _Evaluator:
    """Scores coefficient tuples through a scorer, in chunks, remembering every score."""

    def __init__(self, stacked: torch.Tensor, origin: torch.Tensor, scorer: PromptScorer, chunk: int) -> None:
        if not callable(scorer):
            raise ConfigError(f"scorer must be callable prompts (c, rows, dim) -> scores (c,), got {scorer!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk must be a positive integer (candidates per scorer call), got {chunk!r}")
        self.stacked = stacked
        self.origin = origin
        self.scorer = scorer
        self.chunk = chunk
        self.scores: dict[tuple[float, ...], float] = {}

    def evaluate(self, coefficients: Sequence[tuple[float, ...]]) -> list[float]:
        todo = [c for c in dict.fromkeys(coefficients) if c not in self.scores]
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            prompts = _prompts(self.stacked, self.origin, part)  # (c, rows, dim)
            scores = self.scorer(prompts)
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(part),):
                got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise ConfigError(f"the scorer must return one score per candidate, shape ({len(part)},); got {got}")
            values = scores.detach().to("cpu", torch.float64).tolist()
            if not all(math.isfinite(s) for s in values):
                raise ConfigError(f"the scorer returned non-finite scores {values}")
            self.scores.update(zip(part, values))
        return [self.scores[c] for c in coefficients]

    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(Candidate(c, s) for c, s in self.scores.items())


def _best(coefficients: Sequence[tuple[float, ...]], scores: Sequence[float]) -> tuple[tuple[float, ...], float]:
    """Highest score; ties go to the first in the given order."""
    i = max(range(len(scores)), key=lambda j: (scores[j], -j))
    return coefficients[i], scores[i]


# -- searches -------------------------------------------------------------------------------------------------


def search_scalar(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    scorer: PromptScorer,
    grid: Sequence[float] = PAPER_GRID,
    *,
    chunk: int = 64,
    strict: bool = True,
) -> SearchResult:
    """The paper's protocol: one lambda for the whole sum, ``origin + lambda * sum_i tau_i``, best on a grid.

    Args:
        vectors: one or more compatible vectors.
        origin: their origin (an :class:`~tpv.Origin` or its tensor).
        scorer: ``prompts (c, rows, dim) -> scores (c,)``, higher is better (e.g. a
            :class:`BatchedPromptScorer`).
        grid: lambdas to try, in order (default :data:`PAPER_GRID`); ties go to the first.
        chunk: most candidates per scorer call.
        strict: check that ``origin`` is the vectors' origin.

    Returns:
        The result; ``result.coefficients`` repeats the best lambda once per vector.

    Raises:
        ConfigError: no vectors, an empty or non-finite grid, or a scorer returning the wrong shape.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    lambdas = _check_grid(grid)
    ev = _Evaluator(torch.stack([v.tensor for v in items]), o, scorer, chunk)
    coefs = [(lam,) * len(items) for lam in lambdas]
    best, score = _best(coefs, ev.evaluate(coefs))
    return SearchResult("scalar", _names(items), best, score, ev.candidates(), "grid")


def search_per_task(
    vectors: Sequence[TaskPromptVector],
    origin: Origin | torch.Tensor,
    scorer: PromptScorer,
    grid: Sequence[float] = PAPER_GRID,
    *,
    strategy: Literal["coordinate", "grid"] = "coordinate",
    start: Sequence[float] | None = None,
    max_rounds: int = 5,
    max_candidates: int = 10_000,
    chunk: int = 64,
    strict: bool = True,
) -> SearchResult:
    """One coefficient per vector: ``origin + sum_i lambda_i * tau_i``.

    ``strategy="grid"`` scores every tuple of the grid product (``len(grid) ** n`` candidates, at most
    ``max_candidates``). ``strategy="coordinate"`` runs coordinate ascent over the grid: from ``start``
    (default: the best scalar lambda, found with :func:`search_scalar`'s candidates, so the result is never
    worse than the scalar search), it tries every grid value for one coefficient at a time (all scored in one
    scorer call), moves only on a strict improvement, and stops after a round without one or after
    ``max_rounds`` rounds. Each round costs at most ``n * len(grid)`` evaluations, and none is repeated.

    Args:
        vectors: one or more compatible vectors.
        origin: their origin.
        scorer: ``prompts (c, rows, dim) -> scores (c,)``, higher is better.
        grid: the values each coefficient may take, in order; ties go to the first.
        strategy: ``"coordinate"`` or ``"grid"``.
        start: starting coefficients for coordinate ascent (one per vector).
        max_rounds: most rounds of coordinate ascent.
        max_candidates: refuse a grid product larger than this.
        chunk: most candidates per scorer call.
        strict: check that ``origin`` is the vectors' origin.

    Returns:
        The result, in per-task mode.

    Raises:
        ConfigError: bad grid, strategy, start or limits, or a grid product over ``max_candidates``.
        IncompatibleVectorsError: incompatible vectors or the wrong origin.
    """
    items, o = _check_inputs(vectors, origin, strict)
    values = _check_grid(grid)
    n = len(items)
    ev = _Evaluator(torch.stack([v.tensor for v in items]), o, scorer, chunk)
    names = _names(items)
    if strategy == "grid":
        total = len(values) ** n
        if total > max_candidates:
            raise ConfigError(
                f"the grid product has {len(values)}^{n} = {total} candidates, over max_candidates={max_candidates}; "
                "use strategy='coordinate', a coarser grid, or raise max_candidates"
            )
        coefs = list(itertools.product(values, repeat=n))
        best, score = _best(coefs, ev.evaluate(coefs))
        return SearchResult("per_task", names, best, score, ev.candidates(), "grid")
    if strategy != "coordinate":
        raise ConfigError(f"strategy must be 'coordinate' or 'grid', got {strategy!r}")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ConfigError(f"max_rounds must be a positive integer, got {max_rounds!r}")
    if start is None:
        scalar = [(lam,) * n for lam in values]
        current, current_score = _best(scalar, ev.evaluate(scalar))
    else:
        current = tuple(float(x) for x in start)
        if len(current) != n or not all(math.isfinite(x) for x in current):
            raise ConfigError(f"start must hold {n} finite coefficient(s) (one per vector), got {list(start)}")
        current_score = ev.evaluate([current])[0]
    for _ in range(max_rounds):
        moved = False
        for i in range(n):
            options = [(*current[:i], g, *current[i + 1 :]) for g in values]
            best, score = _best(options, ev.evaluate(options))
            if score > current_score:
                current, current_score, moved = best, score, True
        if not moved:
            break
    return SearchResult("per_task", names, current, current_score, ev.candidates(), "coordinate")


# -- scorers for causal LMs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    input_ids: torch.Tensor  # (b, L), left-padded
    attention_mask: torch.Tensor  # (b, L)
    labels: torch.Tensor  # (b,)


class _RankClassifier:
    """Shared set-up of the two scorers: tokenized, length-sorted, left-padded example batches."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        texts: Sequence[str],
        labels: Sequence[int],
        label_words: Sequence[str],
        batch_size: int = 8,
        *,
        max_length: int | None = None,
        sort_by_length: bool = True,
    ) -> None:
        texts = list(texts)
        label_list = [int(x) for x in labels]
        words = list(label_words)
        if not texts:
            raise ConfigError("a prompt scorer needs at least one validation example, got none")
        if len(texts) != len(label_list):
            raise ConfigError(f"got {len(texts)} texts but {len(label_list)} labels: give one label per text")
        if len(words) < 2:
            raise ConfigError(f"rank classification needs at least two label words, got {words}")
        bad = sorted({y for y in label_list if not 0 <= y < len(words)})
        if bad:
            raise ConfigError(f"labels {bad} have no label word (there are {len(words)}: {words})")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
        self.model = model
        self.batch_size = batch_size
        embed = model.get_input_embeddings()
        self._embed = embed
        self.token_dim = int(embed.weight.shape[1])
        self._device = embed.weight.device
        self._dtype = embed.weight.dtype
        first_ids = []
        for word in words:
            ids = list(tokenizer(word, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ConfigError(f"label word {word!r} tokenizes to nothing")
            first_ids.append(int(ids[0]))
        if len(set(first_ids)) != len(first_ids):
            raise ConfigError(
                f"label words {words} do not all start with different tokens ({first_ids}); "
                "rank classification scores each word's first token: pick words whose first tokens differ"
            )
        self.label_ids = torch.tensor(first_ids, device=self._device)  # (K,)
        encoded = [list(tokenizer(t)["input_ids"]) for t in texts]
        if max_length is not None:
            encoded = [ids[-max_length:] for ids in encoded]  # keep the end, where a template's cue sits
        if any(len(ids) == 0 for ids in encoded):
            raise ConfigError("a validation text tokenizes to nothing")
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i])) if sort_by_length else range(len(texts))
        order = list(order)
        self.num_examples = len(texts)
        self._batches: list[_Batch] = []
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            batch_ids = torch.zeros(len(idx), width, dtype=torch.long)  # (b, L)
            batch_mask = torch.zeros(len(idx), width, dtype=torch.long)  # (b, L)
            for row, i in enumerate(idx):
                n = len(encoded[i])
                batch_ids[row, width - n :] = torch.tensor(encoded[i])
                batch_mask[row, width - n :] = 1
            y = torch.tensor([label_list[i] for i in idx])  # (b,)
            self._batches.append(_Batch(batch_ids.to(self._device), batch_mask.to(self._device), y.to(self._device)))

    def _check_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        if not isinstance(prompts, torch.Tensor) or prompts.ndim != 3 or prompts.shape[0] == 0:
            shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts).__name__
            raise ConfigError(f"candidate prompts must have shape (c >= 1, rows, dim), got {shape}")
        if prompts.shape[2] != self.token_dim:
            raise ConfigError(
                f"candidate prompts are {prompts.shape[2]} wide but the model's embeddings are {self.token_dim}: "
                "the prompts belong to another model"
            )
        return prompts.detach().to(self._device, self._dtype)  # (c, P, d)

    def _count_correct(self, prompts: torch.Tensor, batch: _Batch, reuse: Any | None) -> torch.Tensor:
        """Correct predictions per candidate on one batch, in one forward pass over ``c * b`` rows.

        Args:
            prompts: the candidates, shape ``(c, P, d)``.
            batch: left-padded examples.
            reuse: the candidates' prefix key/value cache (from :meth:`_prefix`), or ``None`` to recompute it.

        Returns:
            Correct counts, shape ``(c,)``.
        """
        c, p = int(prompts.shape[0]), int(prompts.shape[1])
        b = int(batch.input_ids.shape[0])
        text = self._embed(batch.input_ids)  # (b, L, d)
        text = text.repeat(c, 1, 1)  # (c * b, L, d): row j * b + i is candidate j, example i
        mask = batch.attention_mask.repeat(c, 1)  # (c * b, L)
        ones = torch.ones(c * b, p, dtype=mask.dtype, device=mask.device)  # (c * b, P)
        full_mask = torch.cat([ones, mask], dim=1)  # (c * b, P + L)
        # Positions count real tokens only, so left padding between prompt and text changes nothing.
        positions = (full_mask.cumsum(dim=1) - 1).clamp(min=0)  # (c * b, P + L)
        if reuse is None:
            embeds = torch.cat([prompts.repeat_interleave(b, dim=0), text], dim=1)  # (c * b, P + L, d)
            out = self.model(
                inputs_embeds=embeds,
                attention_mask=full_mask,
                position_ids=positions,
                use_cache=False,
                logits_to_keep=1,
            )
        else:
            out = self.model(
                inputs_embeds=text,
                attention_mask=full_mask,
                position_ids=positions[:, p:],
                use_cache=True,
                **cache_kwargs(self.model, _expand_cache(reuse, b, self.model.config)),
                logits_to_keep=1,
            )
        scores = out.logits[:, -1, :].index_select(1, self.label_ids)  # (c * b, K)
        correct = scores.argmax(dim=1) == batch.labels.repeat(c)  # (c * b,)
        return correct.view(c, b).sum(dim=1)  # (c,)

    def _prefix(self, prompts: torch.Tensor) -> Any:
        """Keys and values of the candidate prompts alone (a prompt attends to nothing after it)."""
        out = self.model(inputs_embeds=prompts, use_cache=True, logits_to_keep=1)  # prompts (c, P, d)
        return output_cache(out)

    def _accuracy(self, prompts: torch.Tensor, reuse_prefix: bool) -> torch.Tensor:
        was_training = bool(self.model.training)
        self.model.eval()
        try:
            with torch.inference_mode():
                cache = self._prefix(prompts) if reuse_prefix else None
                correct = torch.zeros(prompts.shape[0], dtype=torch.long, device=self._device)  # (c,)
                for batch in self._batches:
                    correct += self._count_correct(prompts, batch, cache)
        finally:
            self.model.train(was_training)
        return correct.to("cpu", torch.float64) / self.num_examples  # (c,)


def _expand_cache(cache: Any, repeats: int, config: Any) -> Any:
    """A fresh cache holding each candidate's prefix ``repeats`` times (candidate-major rows)."""
    from transformers import DynamicCache

    layers = []
    for layer in cache.layers:
        keys = layer.keys.repeat_interleave(repeats, dim=0)  # (c * b, heads, P, head_dim)
        values = layer.values.repeat_interleave(repeats, dim=0)  # (c * b, heads, P, head_dim)
        layers.append((keys, values))
    return DynamicCache(layers, config=config)


class BatchedPromptScorer(_RankClassifier):
    """Scores many candidate soft prompts at once by rank classification with a causal LM (PEFT-free).

    For each batch of ``b`` validation examples, all ``c`` candidates are evaluated in **one** forward pass:
    the batch dimension is expanded to ``c * b`` rows, row ``j * b + i`` holding candidate ``j`` prepended to
    example ``i``. The prediction is the label word whose first token has the highest next-token logit at the
    last input position (only that position's logits are computed, ``logits_to_keep=1``); the score is the
    accuracy. Examples are tokenized once, sorted by length (less padding) and left-padded, with position
    ids that count real tokens only, so padding does not change a prediction.

    With ``reuse_prefix=True`` (default), each candidate prompt's keys and values are computed once per call
    and reused for every example batch: a prompt attends only to itself, so its cache does not depend on the
    text. A batch then runs ``c * b`` rows over the text tokens only, instead of the prompt and the text.
    This needs a model that accepts ``past_key_values`` as a ``transformers.DynamicCache`` (Llama, Gemma,
    Qwen, Mistral ...); pass ``reuse_prefix=False`` otherwise.

    Causal LMs only (``model(inputs_embeds=..., attention_mask=..., position_ids=..., logits_to_keep=...)``);
    encoder-decoder models and PEFT-wrapped models are not supported. The model is put in eval mode during a
    call and restored afterwards.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer (``tokenizer(text)["input_ids"]``).
        texts: the validation inputs, already formatted for the model.
        labels: their labels, indices into ``label_words``.
        label_words: one word per label (e.g. ``(" negative", " positive")``); their first tokens must differ.
        batch_size: examples per batch ``b`` (each forward pass has ``c * b`` rows).
        max_length: keep only the last ``max_length`` tokens of a text (default: no truncation).
        sort_by_length: batch examples of similar length together.
        reuse_prefix: compute each prompt's keys and values once and reuse them for every batch.
        max_candidates: most candidates per forward pass (bounds memory); default: all.

    Example:
        >>> scorer = BatchedPromptScorer(model, tokenizer, texts, labels, (" negative", " positive"))  # doctest: +SKIP
        >>> scorer(prompts)  # prompts (c, rows, dim) -> accuracies (c,)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        texts: Sequence[str],
        labels: Sequence[int],
        label_words: Sequence[str],
        batch_size: int = 8,
        *,
        max_length: int | None = None,
        sort_by_length: bool = True,
        reuse_prefix: bool = True,
        max_candidates: int | None = None,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            texts,
            labels,
            label_words,
            batch_size,
            max_length=max_length,
            sort_by_length=sort_by_length,
        )
        if max_candidates is not None and (
            isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1
        ):
            raise ConfigError(f"max_candidates must be a positive integer or None, got {max_candidates!r}")
        self.reuse_prefix = bool(reuse_prefix)
        self.max_candidates = max_candidates

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        """Accuracy of each candidate prompt.

        Args:
            prompts: candidate soft prompts, shape ``(c, rows, dim)``.

        Returns:
            Accuracies in ``[0, 1]``, float64, shape ``(c,)``.

        Raises:
            ConfigError: prompts of the wrong shape or width.
        """
        p = self._check_prompts(prompts)  # (c, P, d)
        step = self.max_candidates or p.shape[0]
        parts = [self._accuracy(p[i : i + step], self.reuse_prefix) for i in range(0, p.shape[0], step)]
        return torch.cat(parts)  # (c,)


class SequentialPromptScorer(_RankClassifier):
    """The baseline: scores candidate prompts one at a time, recomputing the prompt in every batch.

    Same inputs, predictions and batches as :class:`BatchedPromptScorer` (a forward pass has ``b`` rows
    holding one candidate), so the two return the same accuracies; only the work per forward pass differs.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        texts: the validation inputs, already formatted for the model.
        labels: their labels, indices into ``label_words``.
        label_words: one word per label; their first tokens must differ.
        batch_size: examples per forward pass.
        max_length: keep only the last ``max_length`` tokens of a text.
        sort_by_length: batch examples of similar length together.
    """

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        """Accuracy of each candidate prompt, shape ``(c,)``, computed one candidate after the other."""
        p = self._check_prompts(prompts)  # (c, P, d)
        return torch.cat([self._accuracy(p[j : j + 1], reuse_prefix=False) for j in range(p.shape[0])])  # (c,)
