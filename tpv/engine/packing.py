"""Rows that each carry their own soft prompt, scored in one forward pass over a frozen causal LM (internal).

The primitive of :func:`tpv.engine.many.train_many` and :func:`tpv.engine.many.evaluate_many`. A packed batch is a
list of **groups**: one soft prompt ``(P_k, D)`` and the right-padded token rows ``(b_k, T_k)`` it is prepended to.
Every row is laid out exactly as :class:`tpv.engine.scoring.Scorer` lays out a row of a single-prompt batch:
``[prompt_k, text, right padding]`` at positions ``0 .. P_k + T - 1``, attention mask 1 on prompt and text, and the
answer read at the row's last real token. Rows never attend to each other, so each row's result depends only on its
own prompt and text (up to float rounding of the shared matrix products).

Two layouts, as in :class:`~tpv.engine.scoring.Scorer`:

* **prompt per row** (``share_prefix=False``, the default on a GPU): each group's prompt is concatenated in front of
  its rows' embeddings and the groups are right-padded to one width: ``sum_k b_k * (P_k + T_k)`` positions.
* **shared prefixes** (the default on a CPU, when every prompt of the pass has the same length ``P``): the ``K``
  prompts run once, as a batch of ``K``, into a key/value cache; the rows of all groups are sorted by length and
  run in buckets of the largest group's size, each row attending to its own prompt's keys and values (selected
  with ``index_select``, differentiable): ``K * P + sum of the buckets' b * t`` positions, so groups of different
  lengths share no padding (a CPU step is bound by FLOPs, so padding costs as much as real tokens).

Gradients reach each prompt only through its own rows, so one backward pass of the sum of the groups' losses
leaves every prompt the gradient of its own loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tpv.engine.data import Encoded, collate
from tpv.engine.evaluation import _autocast
from tpv.engine.scoring import cache_kwargs, infer_kind
from tpv.errors import ConfigError
from tpv.models import unwrap_model

__all__ = ["Group", "PackedScorer", "ScoreSet", "score_sets"]

SUPPORTED_KINDS = ("causal-lm",)
"""Model kinds :class:`PackedScorer` packs (seq2seq and seq-cls models train one prompt at a time with ``train``)."""


@dataclass(frozen=True)
class Group:
    """One prompt and the rows it is prepended to.

    Attributes:
        prompt: the soft prompt, shape ``(P, D)`` (may require grad).
        input_ids: right-padded token ids, shape ``(b, T)``.
        attention_mask: shape ``(b, T)``, 1 on real tokens (each row's real tokens come first).
    """

    prompt: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True)
class ScoreSet:
    """A prompt and the examples to score it on (for :func:`score_sets`).

    Attributes:
        prompt: the soft prompt, shape ``(P, D)``.
        encoded: the tokenized examples.
        label_ids: first token id of each label word, shape ``(C,)``, on the model's device.
    """

    prompt: torch.Tensor
    encoded: Sequence[Encoded]
    label_ids: torch.Tensor


def check_packable(model: Any) -> None:
    """Raise :class:`ConfigError` unless ``model`` is of a kind :class:`PackedScorer` packs (a causal LM)."""
    kind = infer_kind(model)
    if kind not in SUPPORTED_KINDS:
        raise ConfigError(
            f"packing many prompts into one batch supports {', '.join(SUPPORTED_KINDS)} models only; this model is a "
            f"{type(unwrap_model(model)).__name__} ({kind}). Fix: train or score its prompts one at a time with "
            "tpv.train / tpv.evaluate"
        )


class PackedScorer:
    """Hidden states and label-word logits of rows with per-group soft prompts (see the module docstring).

    Args:
        model: a plain ``transformers`` causal LM, or a PEFT model wrapping one (its own prompt is not used).
        share_prefix: run the prompts once into a key/value cache (``True``), prepend them to every row
            (``False``), or pick by device like :class:`~tpv.engine.scoring.Scorer` (``None``: share on a CPU).
    """

    def __init__(self, model: Any, *, share_prefix: bool | None = None) -> None:
        check_packable(model)
        base = unwrap_model(model)
        self.base = base
        self.backbone = base.base_model
        self.embed = base.get_input_embeddings()
        self.head = base.get_output_embeddings()
        cap = getattr(base.config, "final_logit_softcapping", None)
        self._softcap = float(cap) if cap else None
        self.share_prefix = share_prefix

    @property
    def device(self) -> torch.device:
        """Where the model's input embeddings are."""
        return self.embed.weight.device  # type: ignore[no-any-return]

    def shares_prefix(self, groups: Sequence[Group]) -> bool:
        """Whether a pass over ``groups`` runs the prompts once: asked for (or on a CPU) and all of one length."""
        wanted = self.share_prefix if self.share_prefix is not None else self.device.type == "cpu"
        return wanted and len({int(g.prompt.shape[0]) for g in groups}) == 1

    def hidden(self, groups: Sequence[Group]) -> torch.Tensor:
        """The last real token's hidden state of every row, groups in order.

        Args:
            groups: the packed batch (non-empty).

        Returns:
            Shape ``(N, D)`` with ``N = sum_k b_k``, in the model's dtype.
        """
        if not groups:
            raise ConfigError("a packed batch needs at least one group of rows")
        texts = [self.embed(g.input_ids) for g in groups]  # (b_k, T_k, D), Gemma's sqrt(D) scale included
        if self.shares_prefix(groups):
            return self._shared(groups, texts)
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
    rows, so a pass mixes prompts and holds rows of similar length. Runs in eval mode and inference mode.

    Args:
        scorer: the packed scorer.
        sets: the prompts and their examples.
        rows_per_pass: rows per forward pass.
        pad_id: the pad token id.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).

    Returns:
        One float32 CPU tensor per set, shape ``(N_k, C_k)``, in the set's example order.
    """
    pairs = [(k, i) for k, s in enumerate(sets) for i in range(len(s.encoded))]
    pairs.sort(key=lambda ki: (-len(sets[ki[0]].encoded[ki[1]].ids), ki[0], ki[1]))
    out = [torch.empty((len(s.encoded), int(s.label_ids.shape[0])), dtype=torch.float32) for s in sets]
    device = scorer.device
    was_training = bool(scorer.base.training)
    scorer.base.eval()
    try:
        with torch.inference_mode(), _autocast(device, precision):
            for start in range(0, len(pairs), rows_per_pass):
                chunk: dict[int, list[int]] = {}
                for k, i in pairs[start : start + rows_per_pass]:
                    chunk.setdefault(k, []).append(i)
                batches = {k: collate(sets[k].encoded, idx, pad_id=pad_id).to(device) for k, idx in chunk.items()}
                groups = [Group(sets[k].prompt.to(device), b.input_ids, b.attention_mask) for k, b in batches.items()]
                h = scorer.hidden(groups)  # (n, D)
                row = 0
                for k, b in batches.items():
                    n = int(b.input_ids.shape[0])
                    logits = scorer.class_logits(h[row : row + n], sets[k].label_ids)  # (n, C_k)
                    out[k][b.index] = logits.float().cpu()
                    row += n
    finally:
        scorer.base.train(was_training)
    return out
