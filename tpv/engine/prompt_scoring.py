"""Rank classification of candidate prompts with a plain causal LM: the scorers of search, transfer and FUSE.

One implementation serves three callers, all PEFT-free (a prompt is spliced into the input embeddings):

* :class:`BatchedPromptScorer` / :class:`SequentialPromptScorer` score ``c`` candidate soft prompts (``(c, rows,
  dim)``, prepended to every example) by validation accuracy: the scorers of the coefficient search
  (:mod:`tpv.search`) and of transfer's target search (:func:`tpv.transfer.validation_scorer`);
* :class:`LabelWordLoss` is FUSE's objective (:mod:`tpv.fuse`): a discrete prompt (token ids) or its embeddings,
  placed after the tokenizer's leading special tokens, scored by the cross-entropy over the label words.

Both predict, for each example, the label word whose first token has the highest next-token logit at the last input
position (equivalently the highest log-likelihood), from :func:`tpv.engine.scoring.last_label_logits` on rows that
:func:`tpv.engine.scoring.left_pad` pads on the left, with position ids that count real tokens only, so padding does
not change a prediction. Label words are resolved by :func:`tpv.engine.data.label_token_ids`, as in training. For a
PEFT prompt-tuning model (the prompt inside the model) the same scores come from :class:`tpv.engine.scoring.Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tpv.engine.data import label_token_ids
from tpv.engine.scoring import expand_cache, last_label_logits, left_pad, prefix_cache
from tpv.errors import ConfigError

__all__ = ["BatchedPromptScorer", "LabelWordLoss", "RankClassifier", "SequentialPromptScorer"]


def _check_examples(texts: Sequence[str], labels: Sequence[int], num_words: int, what: str) -> list[int]:
    """The labels as ints, after checking there is one per text and each names a label word."""
    label_list = [int(x) for x in labels]
    if not texts:
        raise ConfigError(f"{what} needs at least one validation example, got none")
    if len(texts) != len(label_list):
        raise ConfigError(f"got {len(texts)} texts but {len(label_list)} labels: give one label per text")
    bad = sorted({y for y in label_list if not 0 <= y < num_words})
    if bad:
        raise ConfigError(f"labels {bad} have no label word (there are {num_words})")
    return label_list


def _positive(value: Any, name: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")


# -- soft prompts prepended: the search's and transfer's scorers ---------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    input_ids: torch.Tensor  # (b, L), left-padded
    attention_mask: torch.Tensor  # (b, L)
    labels: torch.Tensor  # (b,)
    index: torch.Tensor  # (b,) positions of the rows' examples in the given order


class RankClassifier:
    """Validation examples tokenized once, sorted by length and left-padded; scores candidate soft prompts.

    The base of :class:`BatchedPromptScorer` and :class:`SequentialPromptScorer` (see there for the arguments).
    :meth:`label_logits` gives the per-example class logits both scorers rank.
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
    ) -> None:
        texts = list(texts)
        words = list(label_words)
        label_list = _check_examples(texts, labels, len(words), "a prompt scorer")
        _positive(batch_size, "batch_size")
        _positive(max_length, "max_length", optional=True)
        self.model = model
        self.batch_size = batch_size
        embed = model.get_input_embeddings()
        self._embed = embed
        self.token_dim = int(embed.weight.shape[1])
        self._device = embed.weight.device
        self._dtype = embed.weight.dtype
        self.label_ids = torch.tensor(label_token_ids(tokenizer, words), device=self._device)  # (K,)
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
            batch_ids, batch_mask, _ = left_pad([encoded[i] for i in idx], pad_id=0)  # (b, L) each
            y = torch.tensor([label_list[i] for i in idx])  # (b,)
            self._batches.append(
                _Batch(batch_ids.to(self._device), batch_mask.to(self._device), y.to(self._device), torch.tensor(idx))
            )

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

    def _batch_logits(self, prompts: torch.Tensor, batch: _Batch, reuse: Any | None) -> torch.Tensor:
        """Label-word logits of every candidate on one batch, in one forward pass over ``c * b`` rows.

        Args:
            prompts: the candidates, shape ``(c, P, d)``.
            batch: left-padded examples.
            reuse: the candidates' prefix key/value cache (:func:`~tpv.engine.scoring.prefix_cache`), or ``None``
                to run the prompts with the text.

        Returns:
            Logits, shape ``(c * b, K)``: row ``j * b + i`` is candidate ``j`` on example ``i``.
        """
        c, p = int(prompts.shape[0]), int(prompts.shape[1])
        b = int(batch.input_ids.shape[0])
        text = self._embed(batch.input_ids)  # (b, L, d)
        text = text.repeat(c, 1, 1)  # (c * b, L, d)
        mask = batch.attention_mask.repeat(c, 1)  # (c * b, L)
        ones = torch.ones(c * b, p, dtype=mask.dtype, device=mask.device)  # (c * b, P)
        full_mask = torch.cat([ones, mask], dim=1)  # (c * b, P + L)
        # Positions count real tokens only, so left padding between prompt and text changes nothing.
        positions = (full_mask.cumsum(dim=1) - 1).clamp(min=0)  # (c * b, P + L)
        if reuse is None:
            embeds = torch.cat([prompts.repeat_interleave(b, dim=0), text], dim=1)  # (c * b, P + L, d)
            return last_label_logits(self.model, self.label_ids, full_mask, positions, inputs_embeds=embeds)
        cache = expand_cache(reuse, b, self.model.config)
        return last_label_logits(
            self.model, self.label_ids, full_mask, positions[:, p:], inputs_embeds=text, cache=cache
        )  # (c * b, K)

    def _run(self, prompts: torch.Tensor, reuse_prefix: bool, each: Any) -> None:
        """Call ``each(batch, logits (c * b, K))`` for every batch, in eval mode and inference mode."""
        was_training = bool(self.model.training)
        self.model.eval()
        try:
            with torch.inference_mode():
                cache = prefix_cache(self.model, prompts) if reuse_prefix else None
                for batch in self._batches:
                    each(batch, self._batch_logits(prompts, batch, cache))
        finally:
            self.model.train(was_training)

    def _accuracy(self, prompts: torch.Tensor, reuse_prefix: bool) -> torch.Tensor:
        c = int(prompts.shape[0])
        correct = torch.zeros(c, dtype=torch.long, device=self._device)  # (c,)

        def count(batch: _Batch, logits: torch.Tensor) -> None:
            hits = logits.argmax(dim=1) == batch.labels.repeat(c)  # (c * b,)
            correct.add_(hits.view(c, -1).sum(dim=1))

        self._run(prompts, reuse_prefix, count)
        return correct.to("cpu", torch.float64) / self.num_examples  # (c,)

    def label_logits(self, prompts: torch.Tensor, *, reuse_prefix: bool = False) -> torch.Tensor:
        """Every candidate's label-word logits on every example, in the order the examples were given.

        Args:
            prompts: candidate soft prompts, shape ``(c, rows, dim)``.
            reuse_prefix: compute each prompt's keys and values once (see :class:`BatchedPromptScorer`).

        Returns:
            Float32 logits on the CPU, shape ``(c, N, K)``; the prediction is their argmax over ``K``.
        """
        p = self._check_prompts(prompts)  # (c, P, d)
        c = int(p.shape[0])
        out = torch.zeros(c, self.num_examples, int(self.label_ids.shape[0]))  # (c, N, K)

        def keep(batch: _Batch, logits: torch.Tensor) -> None:
            out[:, batch.index] = logits.float().cpu().view(c, -1, logits.shape[1])

        self._run(p, reuse_prefix, keep)
        return out


class BatchedPromptScorer(RankClassifier):
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
        _positive(max_candidates, "max_candidates", optional=True)
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

    def score_prompt(self, prompt: torch.Tensor) -> float:
        """Accuracy of one prompt, shape ``(rows, dim)`` (a ``score_fn`` for :mod:`tpv.transfer`)."""
        return float(self(prompt[None])[0])


class SequentialPromptScorer(RankClassifier):
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


# -- discrete prompts after the special tokens: FUSE's objective ---------------------------------------------------


def _special_prefix(tokenizer: Any) -> list[int]:
    with_sp = list(tokenizer("a")["input_ids"])
    without = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    if without and with_sp[len(with_sp) - len(without) :] == without:
        return with_sp[: len(with_sp) - len(without)]
    return []


class LabelWordLoss:
    """Rank classification by label words for a decoder-only LM: ``[specials] prompt template(text)`` -> label.

    The loss is the cross-entropy of the true label among the label words' logits at the last position; the
    prediction is the label word with the highest logit. Rows are left-padded, with position ids counted from
    each row's first real token, so padding does not shift positions. FUSE's :class:`~tpv.fuse.PromptLoss`.

    Args:
        model: a ``transformers`` causal LM (eval mode).
        tokenizer: its tokenizer.
        texts: the examples' texts.
        labels: their class indices into ``label_words``.
        label_words: one word per class, each a single token (e.g. ``(" negative", " positive")``).
        template: the text after the prompt, with ``{text}``.
        batch_size: rows per forward pass.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        texts: Sequence[str],
        labels: Sequence[int],
        *,
        label_words: Sequence[str] = (" negative", " positive"),
        template: str = "\nReview: {text}\nSentiment:",
        batch_size: int = 16,
    ) -> None:
        label_list = _check_examples(list(texts), labels, len(label_words), "a label-word loss")
        _positive(batch_size, "batch_size")
        for w in label_words:
            n = len(tokenizer(w, add_special_tokens=False)["input_ids"])
            if n != 1:
                raise ConfigError(f"label word {w!r} is {n} tokens for this tokenizer; it must be one")
        self.model = model
        self.tokenizer = tokenizer
        self.label_ids: list[int] = label_token_ids(tokenizer, label_words)
        self.labels = torch.tensor(label_list)  # (N,)
        self.prefix = _special_prefix(tokenizer)
        self.bodies = [list(tokenizer(template.format(text=t), add_special_tokens=False)["input_ids"]) for t in texts]
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self.embed = model.get_input_embeddings()
        self._label_index = torch.tensor(self.label_ids, device=self.embed.weight.device)  # (L,)

    def _rows(self, prompts: Sequence[Sequence[int]], example_idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """``(ids, mask, positions)``, each ``(len(prompts) * len(example_idx), T)``: prompt-major rows."""
        return left_pad([[*self.prefix, *p, *self.bodies[i]] for p in prompts for i in example_idx], self.pad_id)

    def _label_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        dev = self.embed.weight.device
        ids_in = ids.to(dev) if embeds is None else None
        logits = last_label_logits(
            self.model, self._label_index, mask.to(dev), pos.to(dev), input_ids=ids_in, inputs_embeds=embeds
        )
        return logits.float()  # (B, L)

    def _embeds_logits(self, prompt_embeds: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
        """Label-word logits ``(len(idx), L)`` of examples ``idx`` with prompt embeddings ``(P, d)`` spliced in."""
        p_len = prompt_embeds.shape[0]
        ids, mask, pos = self._rows([[self.pad_id] * p_len], idx)  # placeholder prompt ids
        base = self.embed(ids.to(self.embed.weight.device)).detach()  # (B, T, d)
        where = torch.full(ids.shape, -1, dtype=torch.long)  # (B, T): prompt row index or -1
        for j, i in enumerate(idx):
            a = ids.shape[1] - (len(self.prefix) + p_len + len(self.bodies[i])) + len(self.prefix)
            where[j, a : a + p_len] = torch.arange(p_len)
        gathered = prompt_embeds.to(base.dtype)[where.clamp(min=0).to(base.device)]  # (B, T, d)
        embeds = torch.where((where >= 0).to(base.device)[..., None], gathered, base)  # (B, T, d)
        return self._label_logits(ids, mask, pos, embeds)  # (B, L)

    def loss_from_embeds(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over all examples; differentiable in ``prompt_embeds`` ``(P, d)``."""
        total = prompt_embeds.new_zeros(())
        n = len(self.bodies)
        for start in range(0, n, self.batch_size):
            idx = list(range(start, min(n, start + self.batch_size)))
            logits = self._embeds_logits(prompt_embeds, idx)  # (B, L)
            labels = self.labels[idx].to(logits.device)
            total = total + torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        return total / n

    @torch.no_grad()
    def accuracy_from_embeds(self, prompt_embeds: torch.Tensor) -> float:
        """Accuracy with a soft prompt ``(P, d)`` (as the embedding layer outputs them) prepended."""
        n = len(self.bodies)
        correct = 0
        for start in range(0, n, self.batch_size):
            idx = list(range(start, min(n, start + self.batch_size)))
            preds = self._embeds_logits(prompt_embeds, idx).argmax(-1).cpu()
            correct += int((preds == self.labels[idx]).sum())
        return correct / n

    @torch.no_grad()
    def losses(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mean cross-entropy of each prompt (token ids), shape ``(C,)``."""
        n = len(self.bodies)
        per = max(1, self.batch_size // n) if n < self.batch_size else 1
        out = []
        for c0 in range(0, len(prompts), per):
            chunk = prompts[c0 : c0 + per]
            if n <= self.batch_size:
                ids, mask, pos = self._rows(chunk, range(n))
                logits = self._label_logits(ids, mask, pos)  # (len(chunk) * n, L)
                ce = torch.nn.functional.cross_entropy(logits, self.labels.repeat(len(chunk)), reduction="none")
                out.append(ce.view(len(chunk), n).mean(1).cpu())
            else:
                for p in chunk:
                    ce_sum = 0.0
                    for s in range(0, n, self.batch_size):
                        idx = list(range(s, min(n, s + self.batch_size)))
                        ids, mask, pos = self._rows([p], idx)
                        logits = self._label_logits(ids, mask, pos)
                        ce_sum += float(torch.nn.functional.cross_entropy(logits, self.labels[idx], reduction="sum"))
                    out.append(torch.tensor([ce_sum / n]))
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, prompt: Sequence[int]) -> list[int]:
        """Predicted class of every example under one prompt (token ids)."""
        preds: list[int] = []
        n = len(self.bodies)
        for s in range(0, n, self.batch_size):
            ids, mask, pos = self._rows([prompt], range(s, min(n, s + self.batch_size)))
            preds.extend(self._label_logits(ids, mask, pos).argmax(-1).tolist())
        return preds

    def accuracy(self, prompt: Sequence[int]) -> float:
        """Accuracy of one prompt (token ids) over the examples."""
        preds = self.predict(prompt)
        return sum(int(p == int(y)) for p, y in zip(preds, self.labels)) / len(preds)
