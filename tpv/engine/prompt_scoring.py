"""Rank classification of candidate prompts with a causal LM: the scorers of search, transfer and FUSE.

* :class:`BatchedPromptScorer` / :class:`SequentialPromptScorer` score ``c`` candidate soft prompts (``(c, rows,
  dim)``, each prepended to every example) by accuracy on a fixed example set: the scorers of the coefficient search
  (:mod:`tpv.search`, ``tpv search``), of transfer's target search (:func:`tpv.transfer.validation_scorer`) and of
  the benchmark's few-shot selection. They are thin adapters over the packed primitive of
  :func:`tpv.evaluate_many`, :func:`tpv.engine.packing.score_sets`: the examples are tokenized once (as
  :func:`tpv.evaluate` tokenizes them), each call packs the candidates' ``(prompt, example)`` rows into shared
  forward passes, and the accuracy is read from the class logits. So a candidate's predictions are those
  :func:`tpv.evaluate` gives for a PEFT model holding it (up to float rounding of the logits; for texts under
  ``max_length``, which these scorers truncate from the left).
* :class:`LabelWordLoss` is FUSE's objective (:mod:`tpv.fuse`): a discrete prompt (token ids) or its embeddings,
  placed after the tokenizer's leading special tokens, scored by the cross-entropy over the label words. It keeps
  its own left-padded rows (:func:`tpv.engine.scoring.left_pad`, :func:`tpv.engine.scoring.last_label_logits`):
  its prompt sits after the special tokens, not first, and its loss needs gradients in the prompt embeddings,
  while the packed primitive puts a soft prompt first and scores in inference mode.

Both predict, for each example, the label word whose first token has the highest next-token logit at the last
input position (equivalently the highest log-likelihood). Label words are resolved by
:func:`tpv.engine.data.label_token_ids`, as in training.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from tpv.engine.data import Encoded, encode, label_token_ids
from tpv.engine.env import resolve_precision
from tpv.engine.packing import PackedScorer, ScoreSet, check_packable, score_sets
from tpv.engine.scoring import infer_kind, last_label_logits, left_pad
from tpv.engine.setup import _pad_id
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


# -- soft prompts prepended: adapters over the packed primitive --------------------------------------------------


class RankClassifier:
    """Examples tokenized once; class logits of candidate soft prompts through :func:`~tpv.engine.packing.score_sets`.

    The base of :class:`BatchedPromptScorer` and :class:`SequentialPromptScorer` (see there for the arguments).
    :meth:`label_logits` gives the per-example class logits both scorers rank.
    """

    default_share_prefix: bool | None = None
    """How prompts enter a pass unless ``label_logits`` says: ``None`` shares them as a prefix on a CPU only."""

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
        precision: str = "fp32",
    ) -> None:
        texts = list(texts)
        words = list(label_words)
        label_list = _check_examples(texts, labels, len(words), "a prompt scorer")
        _positive(batch_size, "batch_size")
        _positive(max_length, "max_length", optional=True)
        kind = infer_kind(model)
        if kind != "causal-lm":
            raise ConfigError(
                f"a prompt scorer ranks a causal LM's label words; this model is a {type(model).__name__} ({kind}). "
                "Fix: score its prompts with tpv.evaluate_many (or tpv.evaluate)"
            )
        check_packable(model)
        self.model = model
        self.batch_size = batch_size
        self.sort_by_length = bool(sort_by_length)
        self.share_prefix: bool | None = self.default_share_prefix
        embed = model.get_input_embeddings()
        self.token_dim = int(embed.weight.shape[1])
        self._device = embed.weight.device
        self.precision = resolve_precision(precision, self._device)
        self.label_ids = torch.tensor(label_token_ids(tokenizer, words), device=self._device)  # (K,)
        encoded = encode(tokenizer, texts, label_list, max_length=sys.maxsize)  # tpv.evaluate's tokenization
        if max_length is not None:  # keep the end, where a template's cue sits
            encoded = [Encoded(e.ids[-max_length:], e.label) for e in encoded]
        self._encoded = encoded
        self._pad_id = _pad_id(tokenizer)
        self.labels = torch.tensor(label_list)  # (N,)
        self.num_examples = len(texts)

    def _check_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        if not isinstance(prompts, torch.Tensor) or prompts.ndim != 3 or prompts.shape[0] == 0:
            shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts).__name__
            raise ConfigError(f"candidate prompts must have shape (c >= 1, rows, dim), got {shape}")
        if prompts.shape[2] != self.token_dim:
            raise ConfigError(
                f"candidate prompts are {prompts.shape[2]} wide but the model's embeddings are {self.token_dim}: "
                "the prompts belong to another model"
            )
        return prompts.detach().float().to(self._device)  # (c, P, d), float32 as tpv.evaluate_many takes them

    def _logits(self, prompts: torch.Tensor, share_prefix: bool | None, rows_per_pass: int) -> torch.Tensor:
        """Class logits ``(c, N, K)`` of checked candidates ``(c, P, d)``, all in one :func:`score_sets` call."""
        sets = [ScoreSet(prompt, self._encoded, self.label_ids) for prompt in prompts]
        scorer = PackedScorer(self.model, share_prefix=share_prefix)
        out = score_sets(scorer, sets, rows_per_pass=rows_per_pass, pad_id=self._pad_id, precision=self.precision)
        return torch.stack(out)  # (c, N, K)

    def _accuracy(self, logits: torch.Tensor) -> torch.Tensor:
        """Accuracy of each candidate, float64 ``(c,)``, from its class logits ``(c, N, K)``."""
        hits = logits.argmax(dim=2) == self.labels  # (c, N)
        return hits.sum(dim=1).to(torch.float64) / self.num_examples  # (c,)

    def label_logits(self, prompts: torch.Tensor, *, reuse_prefix: bool | None = None) -> torch.Tensor:
        """Every candidate's label-word logits on every example, in the order the examples were given.

        Args:
            prompts: candidate soft prompts, shape ``(c, rows, dim)``.
            reuse_prefix: run the prompts once into a key/value cache (``True``), prepend them to every row
                (``False``), or the scorer's own setting (``None``); the logits agree up to float rounding.

        Returns:
            Float32 logits on the CPU, shape ``(c, N, K)``; the prediction is their argmax over ``K``.
        """
        p = self._check_prompts(prompts)  # (c, P, d)
        share = self.share_prefix if reuse_prefix is None else bool(reuse_prefix)
        return self._logits(p, share, self.batch_size * int(p.shape[0]))


class BatchedPromptScorer(RankClassifier):
    """Scores many candidate soft prompts at once by rank classification with a causal LM (PEFT-free).

    A thin adapter over :func:`tpv.engine.packing.score_sets`, the packed primitive of :func:`tpv.evaluate_many`:
    each call scores ``c`` candidates (at most ``max_candidates`` per call of the primitive) on all examples, the
    ``c * N`` (candidate, example) rows sorted by length and cut into forward passes of ``c * batch_size`` rows,
    each row carrying its own candidate. The prediction is the label word whose first token has the highest
    next-token logit at the example's last token; the score is the accuracy. Examples are tokenized once, as
    :func:`tpv.evaluate` tokenizes them (special tokens included), and right-padded; a row's positions do not
    depend on its batch.

    With ``reuse_prefix=True`` the candidates of a pass run once into a key/value cache and every row attends to
    its own candidate's keys and values (the text tokens only run per row); ``False`` prepends the candidate to
    each row; ``None`` (the default) shares on a CPU and prepends on a GPU, like :func:`tpv.evaluate_many`. The
    accuracies agree up to float rounding of the logits.

    Causal LMs only (a PEFT wrapper is unwrapped; its own prompt is not used). The model is put in eval mode
    during a call and restored afterwards.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        texts: the validation inputs, already formatted for the model.
        labels: their labels, indices into ``label_words``.
        label_words: one word per label (e.g. ``(" negative", " positive")``); their first tokens must differ.
        batch_size: examples per candidate in a forward pass (a pass has ``c * batch_size`` rows).
        max_length: keep only the last ``max_length`` tokens of a text (default: no truncation; note that
            :func:`tpv.evaluate` truncates the middle instead).
        sort_by_length: accepted for compatibility; rows are always grouped by length, which changes no score.
        reuse_prefix: share each pass's candidate prompts as a key/value prefix (see above).
        max_candidates: most candidates per call of the packed primitive (bounds memory); default: all.
        precision: ``"fp32"`` (default: the model's dtype, no autocast), ``"bf16"`` or ``"auto"``.

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
        reuse_prefix: bool | None = None,
        max_candidates: int | None = None,
        precision: str = "fp32",
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
            precision=precision,
        )
        _positive(max_candidates, "max_candidates", optional=True)
        self.reuse_prefix = None if reuse_prefix is None else bool(reuse_prefix)
        self.share_prefix = self.reuse_prefix
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
        step = self.max_candidates or int(p.shape[0])
        parts = []
        for i in range(0, int(p.shape[0]), step):
            chunk = p[i : i + step]  # (c', P, d)
            parts.append(self._accuracy(self._logits(chunk, self.share_prefix, self.batch_size * int(chunk.shape[0]))))
        return torch.cat(parts)  # (c,)

    def score_prompt(self, prompt: torch.Tensor) -> float:
        """Accuracy of one prompt, shape ``(rows, dim)`` (a ``score_fn`` for :mod:`tpv.transfer`)."""
        return float(self(prompt[None])[0])


class SequentialPromptScorer(RankClassifier):
    """The baseline: scores candidate prompts one at a time, the prompt prepended to every row.

    Same inputs and predictions as :class:`BatchedPromptScorer`, through the same primitive, one candidate per
    call with ``batch_size`` rows per forward pass (a per-candidate evaluation loop), so the two return the same
    accuracies; only the work per forward pass differs.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        texts: the validation inputs, already formatted for the model.
        labels: their labels, indices into ``label_words``.
        label_words: one word per label; their first tokens must differ.
        batch_size: examples per forward pass.
        max_length: keep only the last ``max_length`` tokens of a text.
        sort_by_length: accepted for compatibility (rows are always grouped by length).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"auto"``.
    """

    default_share_prefix = False

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        """Accuracy of each candidate prompt, shape ``(c,)``, computed one candidate after the other."""
        p = self._check_prompts(prompts)  # (c, P, d)
        parts = [self._accuracy(self._logits(p[j : j + 1], False, self.batch_size)) for j in range(int(p.shape[0]))]
        return torch.cat(parts)  # (c,)


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
