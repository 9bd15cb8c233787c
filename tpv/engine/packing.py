"""Rows that each carry their own soft prompt, scored in one forward pass over a frozen model (internal).

The primitive of :func:`tpv.engine.many.train_many` and :func:`tpv.engine.many.evaluate_many`. A packed batch is a
list of **groups**: a soft prompt ``(P_k, D)`` (the rows of a job's prompt that go in front of its input), the
right-padded token rows ``(b_k, T_k)`` it is prepended to, and what turns a row's output into class logits (the
label words' token ids ``(C_k,)`` of a language model, or the group's own classification head). Every row is laid
out exactly as :class:`tpv.engine.scoring.Scorer` (that is, PEFT's prompt-tuning forward) lays out a row of a
single-prompt batch, by model kind:

* **causal LM**: ``[prompt_k, text, right padding]`` at positions ``0 .. P_k + T - 1``, attention mask 1 on prompt
  and text; the answer is read at the row's last real token (the label words' rows of the LM head, or the whole
  vocabulary for the ``full-vocab`` loss).
* **seq2seq** (T5): the prompt has ``2 * P_k`` rows (PEFT's ``num_transformer_submodules=2``: an encoder block,
  then a decoder block). PEFT's prompt-tuning forward prepends only the first block to the encoder input
  (``[prompt_k[:P_k], text, right padding]``, mask 1 on prompt and text; the second block takes no part and gets a
  zero gradient, alone as in a pack), so a group's ``prompt`` is that first block (:func:`input_prompt`). The
  decoder reads one token, the decoder start token, and the label words' logits are read there: ``(N, 1)`` decoder
  positions for the whole pack.
* **seq-cls** (BERT): ``[prompt_k, text, right padding]`` through the encoder, which pools the first position; the
  classification head is each group's own (a job's PEFT copy of the classifier, trained with its prompt): the pass
  runs a view of the model whose head slot holds a router applying each group's head to that group's rows (every
  job, as every :func:`tpv.train` run, has such a head of its own: :func:`tpv.engine.heads.with_own_head`). Models
  whose head reads the last position (decoder classifiers, whose head PEFT calls ``score``) are refused: in a pack
  that position is moved by padding.

Rows never attend to each other, so each row's result depends only on its own prompt, text and head (up to float
rounding of the shared matrix products). Two layouts for causal LMs, as in :class:`~tpv.engine.scoring.Scorer`:

* **prompt per row** (``share_prefix=False``, the default on a GPU, and the only layout of seq2seq and seq-cls
  models, whose encoders attend both ways so a prompt's states depend on the text): each group's prompt is
  concatenated in front of its rows' embeddings and the groups are right-padded to one width:
  ``sum_k b_k * (P_k + T_k)`` positions.
* **shared prefixes** (the default on a CPU, when every prompt of the pass has the same length ``P``): the ``K``
  prompts run once, as a batch of ``K``, into a key/value cache; the rows of all groups are sorted by length and
  run in buckets of the largest group's size, each row attending to its own prompt's keys and values (selected
  with ``index_select``, differentiable): ``K * P + sum of the buckets' b * t`` positions, so groups of different
  lengths share no padding (a CPU step is bound by FLOPs, so padding costs as much as real tokens).

Gradients reach each prompt (and head) only through its own rows, so one backward pass of the sum of the groups'
losses leaves every prompt the gradient of its own loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tpv.engine.data import Encoded, collate
from tpv.engine.heads import _replaced, head_path
from tpv.engine.precision import autocast as _autocast
from tpv.engine.scoring import cache_kwargs, infer_kind
from tpv.errors import ConfigError
from tpv.models import unwrap_model

__all__ = ["Group", "PackedScorer", "ScoreSet", "input_prompt", "job_head", "score_sets"]

SUPPORTED_KINDS = ("causal-lm", "seq2seq", "seq-cls")
"""Model kinds :class:`PackedScorer` packs (seq-cls: models whose head reads the first position, see
:func:`tpv.engine.heads.head_path`)."""

Logits = tuple[torch.Tensor, torch.Tensor | None]
"""``(class_logits, vocab_logits)`` of a group, shapes ``(b, C)`` and ``(b, V)`` (or ``None``), as
:meth:`tpv.engine.scoring.Scorer.forward` returns them."""


@dataclass(frozen=True)
class Group:
    """One prompt, the rows it is prepended to, and how their class logits are read.

    Attributes:
        prompt: the rows prepended to the input, shape ``(P, D)`` (may require grad; a seq2seq prompt's encoder
            block, see :func:`input_prompt`).
        input_ids: right-padded token ids, shape ``(b, T)``.
        attention_mask: shape ``(b, T)``, 1 on real tokens (each row's real tokens come first).
        label_ids: language models: first token id of each label word, shape ``(C,)``, on the model's device.
        head: seq-cls models: the group's own classification head (see :func:`job_head`).
        full_vocab: language models: also return the logits over the whole vocabulary (the ``full-vocab`` loss).
    """

    prompt: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    label_ids: torch.Tensor | None = None
    head: nn.Module | None = None
    full_vocab: bool = False


@dataclass(frozen=True)
class ScoreSet:
    """A prompt and the examples to score it on (for :func:`score_sets`).

    Attributes:
        prompt: the rows prepended to the input, shape ``(P, D)``.
        encoded: the tokenized examples.
        label_ids: first token id of each label word, shape ``(C,)``, on the model's device (empty for seq-cls).
        head: seq-cls models: the prompt's classification head.
    """

    prompt: torch.Tensor
    encoded: Sequence[Encoded]
    label_ids: torch.Tensor
    head: nn.Module | None = None


# -- sequence classification: one head per job ---------------------------------------------------------------------


def job_head(peft_model: Any) -> nn.Module | None:
    """A seq-cls PEFT model's classification head (its trained copy, under PEFT's wrapper); ``None`` for others."""
    base = unwrap_model(peft_model)
    if infer_kind(base) != "seq-cls":
        return None
    return base.get_submodule(head_path(base))  # type: ignore[no-any-return]


def input_prompt(peft_model: Any) -> torch.Tensor:
    """The rows of a PEFT prompt-tuning model's prompt put in front of the input, ``(P, D)``, differentiable.

    All rows, except for a seq2seq prompt of two blocks (``2P`` rows), whose first block only enters PEFT's forward.
    """
    nvt = int(peft_model.active_peft_config.num_virtual_tokens)
    return peft_model.get_prompt(batch_size=1)[0, :nvt]  # type: ignore[no-any-return]


class _Router(nn.Module):
    """The head slot of a packed seq-cls pass: each group's own head applied to its rows (dim 0 of the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.plan: list[tuple[nn.Module, int]] = []  # (head, rows), groups in order; not submodules

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        parts, row = [], 0
        for head, n in self.plan:
            parts.append(head(x[row : row + n], *args, **kwargs))  # (n, ..., C)
            row += n
        return torch.cat(parts)


def check_packable(model: Any) -> None:
    """Raise :class:`ConfigError` unless ``model`` is of a kind :class:`PackedScorer` packs (see the module doc)."""
    kind = infer_kind(model)
    if kind not in SUPPORTED_KINDS:
        raise ConfigError(
            f"packing many prompts into one batch supports {', '.join(SUPPORTED_KINDS)} models only; this model is a "
            f"{type(unwrap_model(model)).__name__} ({kind}). Fix: train or score its prompts one at a time with "
            "tpv.train / tpv.evaluate"
        )
    if kind == "seq-cls":
        head_path(model)


class PackedScorer:
    """Class logits of rows with per-group soft prompts (and heads), in one pass (see the module docstring).

    Args:
        model: a plain ``transformers`` model (causal LM, seq2seq or sequence classification), or a PEFT model
            wrapping one (its own prompt is not used).
        share_prefix: causal LMs: run the prompts once into a key/value cache (``True``), prepend them to every row
            (``False``), or pick by device like :class:`~tpv.engine.scoring.Scorer` (``None``: share on a CPU).
            Other kinds always prepend.
    """

    def __init__(self, model: Any, *, share_prefix: bool | None = None) -> None:
        check_packable(model)
        base = unwrap_model(model)
        self.base = base
        self.kind = infer_kind(base)
        self.backbone = base.base_model
        self.embed = base.get_input_embeddings()
        self.head = base.get_output_embeddings()
        cap = getattr(base.config, "final_logit_softcapping", None)
        self._softcap = float(cap) if cap else None
        self.share_prefix = share_prefix
        if self.kind == "seq2seq":  # as Scorer: the decoder reads the start token
            start = getattr(base.config, "decoder_start_token_id", None)
            self._decoder_start = int(start if start is not None else (base.config.pad_token_id or 0))
        self._router = _Router()
        self._routed = _replaced(base, head_path(base), self._router) if self.kind == "seq-cls" else base

    @property
    def device(self) -> torch.device:
        """Where the model's input embeddings are."""
        return self.embed.weight.device  # type: ignore[no-any-return]

    def shares_prefix(self, groups: Sequence[Group]) -> bool:
        """Whether a pass over ``groups`` runs the prompts once: a causal LM, asked for (or on a CPU), one length."""
        wanted = self.share_prefix if self.share_prefix is not None else self.device.type == "cpu"
        return self.kind == "causal-lm" and wanted and len({int(g.prompt.shape[0]) for g in groups}) == 1

    def logits(self, groups: Sequence[Group]) -> list[Logits]:
        """Every group's class logits (and vocabulary logits where asked), from one packed pass.

        Args:
            groups: the packed batch (non-empty); language models need each group's ``label_ids``, seq-cls models
                its ``head``.

        Returns:
            Per group, in order: ``(class_logits, vocab_logits)``, shapes ``(b_k, C_k)`` and ``(b_k, V)`` (``None``
            unless the group asks for ``full_vocab``; always ``None`` for seq-cls), in the model's dtype.
        """
        if not groups:
            raise ConfigError("a packed batch needs at least one group of rows")
        sizes = [int(g.input_ids.shape[0]) for g in groups]
        if self.kind == "causal-lm":
            h = self.hidden(groups)  # (N, D)
            return [self._from_hidden(g, x) for g, x in zip(groups, h.split(sizes))]
        embed, mask = _prepend(groups, [self.embed(g.input_ids) for g in groups])  # (N, L, D), (N, L)
        if self.kind == "seq2seq":
            start = torch.full((len(embed), 1), self._decoder_start, dtype=torch.long, device=embed.device)  # (N, 1)
            out = self.base(inputs_embeds=embed, attention_mask=mask, decoder_input_ids=start, use_cache=False)
            vocab = out.logits[:, -1]  # (N, V), the decoder's one position
            return [
                (v.index_select(1, _label_ids(g)), v if g.full_vocab else None)
                for g, v in zip(groups, vocab.split(sizes))
            ]
        heads = [g.head for g in groups]
        if any(h is None for h in heads):
            raise ConfigError("a packed sequence-classification batch needs each group's head (Group.head)")
        self._router.plan = [(h, n) for h, n in zip(heads, sizes) if h is not None]
        self._routed.training = self.base.training
        try:
            scores = self._routed(inputs_embeds=embed, attention_mask=mask).logits  # (N, C)
        finally:
            self._router.plan = []
        return [(s, None) for s in scores.split(sizes)]

    def _from_hidden(self, g: Group, h: torch.Tensor) -> Logits:
        """A causal-LM group's logits from its rows' hidden states ``(b, D)``, as :class:`Scorer` reads them."""
        if g.full_vocab:
            vocab = self.vocab_logits(h)  # (b, V)
            return vocab.index_select(1, _label_ids(g)), vocab
        return self.class_logits(h, _label_ids(g)), None

    def hidden(self, groups: Sequence[Group]) -> torch.Tensor:
        """Causal LMs: the last real token's hidden state of every row, groups in order.

        Args:
            groups: the packed batch (non-empty).

        Returns:
            Shape ``(N, D)`` with ``N = sum_k b_k``, in the model's dtype.
        """
        if not groups:
            raise ConfigError("a packed batch needs at least one group of rows")
        if self.kind != "causal-lm":
            raise ConfigError(f"PackedScorer.hidden reads a causal LM's last token; this model is {self.kind}")
        texts = [self.embed(g.input_ids) for g in groups]  # (b_k, T_k, D), Gemma's sqrt(D) scale included
        if self.shares_prefix(groups):
            return self._shared(groups, texts)
        embed, mask = _prepend(groups, texts)  # (N, L, D), (N, L)
        hidden = self.backbone(inputs_embeds=embed, attention_mask=mask, use_cache=False).last_hidden_state
        last = mask.sum(dim=1) - 1  # (N,) each row's last real position
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (N, D)

    def _shared(self, groups: Sequence[Group], texts: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`hidden` with the prompts (all ``P`` long) run once into a key/value cache.

        The rows of all groups are then sorted by length and run in buckets of the largest group's size, each row
        attending to its own prompt's keys and values: jobs' batches of different lengths share no padding.
        """
        from transformers import DynamicCache

        prompts = torch.stack([g.prompt.to(texts[0].dtype) for g in groups])  # (K, P, D)
        p = int(prompts.shape[1])
        cache: Any = DynamicCache(config=self.base.config)
        self.backbone(inputs_embeds=prompts, use_cache=True, **cache_kwargs(self.backbone, cache))
        layers = [(layer.keys, layer.values) for layer in cache.layers]  # (K, heads, P, head_dim) each
        owner = torch.cat([torch.full((int(t.shape[0]),), k, dtype=torch.long) for k, t in enumerate(texts)])
        width = max(int(t.shape[1]) for t in texts)
        text = torch.cat([nn.functional.pad(t, (0, 0, 0, width - t.shape[1])) for t in texts])  # (N, T, D)
        mask = torch.cat([nn.functional.pad(g.attention_mask, (0, width - g.attention_mask.shape[1])) for g in groups])
        lengths = mask.sum(dim=1)  # (N,)
        order = torch.argsort(lengths.cpu(), descending=True, stable=True)  # (N,) longest rows first
        size = max(int(t.shape[0]) for t in texts)
        parts = []
        for start in range(0, len(order), size):
            rows = order[start : start + size].to(self.device)  # (b,)
            who = owner.to(self.device).index_select(0, rows)  # (b,) each row's prompt
            sub = DynamicCache(
                [(k.index_select(0, who), v.index_select(0, who)) for k, v in layers], config=self.base.config
            )
            t = int(lengths.index_select(0, rows).max())
            m = mask.index_select(0, rows)[:, :t]  # (b, t)
            ones = torch.ones((int(rows.shape[0]), p), dtype=m.dtype, device=m.device)
            out = self.backbone(
                inputs_embeds=text.index_select(0, rows)[:, :t],
                attention_mask=torch.cat((ones, m), dim=1),  # (b, P + t)
                use_cache=True,
                **cache_kwargs(self.backbone, sub),
            )
            hidden = out.last_hidden_state  # (b, t, D), text positions P .. P + t - 1
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), m.sum(dim=1) - 1])  # (b, D)
        inverse = torch.argsort(order).to(self.device)  # (N,) back to group order
        return torch.cat(parts).index_select(0, inverse)  # (N, D)

    def class_logits(self, h: torch.Tensor, label_ids: torch.Tensor) -> torch.Tensor:
        """The label words' logits, ``(n, D) -> (n, C)`` (only those rows of the LM head are applied)."""
        weight, bias = self.head.weight, getattr(self.head, "bias", None)
        w = weight.index_select(0, label_ids)  # (C, D)
        b = bias.index_select(0, label_ids) if bias is not None else None
        return self._cap(nn.functional.linear(h, w, b))

    def vocab_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary, ``(n, D) -> (n, V)`` (the ``full-vocab`` loss)."""
        return self._cap(nn.functional.linear(h, self.head.weight, getattr(self.head, "bias", None)))

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        if self._softcap is None:
            return logits
        return torch.tanh(logits / self._softcap) * self._softcap


def _label_ids(g: Group) -> torch.Tensor:
    if g.label_ids is None:
        raise ConfigError("a packed language-model batch needs each group's label_ids (Group.label_ids)")
    return g.label_ids


def _prepend(groups: Sequence[Group], texts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each group's prompt in front of its rows' embeddings, right-padded to one width (the prompt-per-row layout).

    Args:
        groups: the packed batch.
        texts: each group's token embeddings, ``(b_k, T_k, D)``.

    Returns:
        ``(inputs_embeds, attention_mask)``, shapes ``(N, L, D)`` and ``(N, L)`` with ``L = max_k (P_k + T_k)``.
    """
    embeds, masks = [], []
    for g, text in zip(groups, texts):
        b, p = int(text.shape[0]), int(g.prompt.shape[0])
        prompt = g.prompt.to(text.dtype).unsqueeze(0).expand(b, p, -1)  # (b_k, P_k, D)
        embeds.append(torch.cat((prompt, text), dim=1))  # (b_k, P_k + T_k, D)
        ones = torch.ones((b, p), dtype=g.attention_mask.dtype, device=g.attention_mask.device)
        masks.append(torch.cat((ones, g.attention_mask), dim=1))  # (b_k, P_k + T_k)
    width = max(int(e.shape[1]) for e in embeds)
    embed = torch.cat([nn.functional.pad(e, (0, 0, 0, width - e.shape[1])) for e in embeds])  # (N, L, D)
    mask = torch.cat([nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])  # (N, L)
    return embed, mask


def score_sets(
    scorer: PackedScorer,
    sets: Sequence[ScoreSet],
    *,
    rows_per_pass: int,
    pad_id: int,
    precision: str,
) -> list[torch.Tensor]:
    """Class logits of every set's prompt on its examples, many prompts per forward pass.

    All ``(set, example)`` pairs are sorted by length (longest first) and cut into passes of ``rows_per_pass``
    rows, so a pass mixes prompts and holds rows of similar length. Runs in eval mode (the model and the sets'
    heads; their modes are restored after) and inference mode.

    Args:
        scorer: the packed scorer.
        sets: the prompts and their examples (seq-cls models: each with its head).
        rows_per_pass: rows per forward pass.
        pad_id: the pad token id.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).

    Returns:
        One float32 CPU tensor per set, shape ``(N_k, C_k)``, in the set's example order.
    """
    pairs = [(k, i) for k, s in enumerate(sets) for i in range(len(s.encoded))]
    pairs.sort(key=lambda ki: (-len(sets[ki[0]].encoded[ki[1]].ids), ki[0], ki[1]))
    out: list[torch.Tensor | None] = [None] * len(sets)
    device = scorer.device
    modules = list({id(m): m for m in [scorer.base, *(s.head for s in sets if s.head is not None)]}.values())
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.inference_mode(), _autocast(device, precision):
            for start in range(0, len(pairs), rows_per_pass):
                chunk: dict[int, list[int]] = {}
                for k, i in pairs[start : start + rows_per_pass]:
                    chunk.setdefault(k, []).append(i)
                batches = {k: collate(sets[k].encoded, idx, pad_id=pad_id).to(device) for k, idx in chunk.items()}
                groups = [
                    Group(sets[k].prompt.to(device), b.input_ids, b.attention_mask, sets[k].label_ids, sets[k].head)
                    for k, b in batches.items()
                ]
                for (k, b), (logits, _) in zip(batches.items(), scorer.logits(groups)):  # (n, C_k) each
                    scores = out[k]
                    if scores is None:
                        scores = out[k] = torch.empty((len(sets[k].encoded), int(logits.shape[1])), dtype=torch.float32)
                    scores[b.index] = logits.float().cpu()
    finally:
        for m, mode in reversed(list(zip(modules, modes))):
            m.train(mode)
    return [s if s is not None else torch.empty((0, int(sets[k].label_ids.shape[0]))) for k, s in enumerate(out)]
