"""Class scores from one forward pass: rank classification over the label words (internal).

:class:`Scorer` wraps a PEFT prompt-tuning model (or a plain model, scored with no prompt) and returns, for each
row of a batch, one logit per class:

* **causal LM**: the soft prompt comes first and attention is causal, so the prompt's hidden states, keys and
  values are the same for every row: the backbone (``model.base_model``, without its LM head) runs the prompt
  **once per batch** (batch size 1) into a key/value cache, then the rows' tokens attend to it, at the positions
  they would have after the prompt. Gradients flow back through the cache into the prompt. The result equals
  PEFT's forward (prompt prepended to every row's embeddings) up to float rounding, for a fraction of the work:
  ``P + B*T`` positions instead of ``B*(P + T)``. That pays on CPUs, where a step is bound by FLOPs; on a GPU the
  step of a small model is bound by kernel launches and two backbone passes cost more than one, so there the
  prompt is prepended to every row (``share_prefix=None`` picks by device). The hidden state at each row's
  **last real token** is gathered and only the label words' rows of the LM head are applied:
  ``(B, D) @ (D, C)``. No logits are computed at any other position or for any other token. Padding is on the
  right, so a row's positions do not depend on its batch.
* **seq2seq** (T5): PEFT's forward with a one-token decoder input (the decoder start token); the label words'
  first tokens are read from the decoder's first position.
* **seq-cls** (BERT): PEFT's forward; the classification head's logits are the class logits.

Multi-token label words are scored by their **first token** (one forward pass); :func:`label_token_ids` refuses
label words whose first tokens coincide. Ranking the label-word logits equals ranking their log-likelihoods, since
``log_softmax`` over the vocabulary shifts every logit of a row by the same constant.

Two primitives score rows that a caller lays out itself with a *plain* causal LM (no PEFT wrapper):
:func:`left_pad` pads token rows on the left, so the last position is every row's last real token, and
:func:`last_label_logits` reads the label words' logits at that position in one forward pass (differentiable in
``inputs_embeds``). FUSE's label-word loss (:class:`tpv.engine.prompt_scoring.LabelWordLoss`: a discrete prompt
placed after the tokenizer's leading special tokens) is built on them. Soft prompts placed first, as PEFT places
them, are scored by :class:`Scorer` or, many at once, by :func:`tpv.engine.packing.score_sets`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tpv.models import TaskType, unwrap_model

__all__ = ["Scorer", "TaskType", "infer_kind", "last_label_logits", "left_pad"]


def is_peft(model: Any) -> bool:
    """Whether ``model`` is a ``peft.PeftModel`` (checked without importing PEFT eagerly)."""
    return callable(getattr(model, "get_prompt", None)) and hasattr(model, "peft_config")


@functools.cache
def _cache_name(cls: Any) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(module: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for ``module``'s forward.

    The name is ``cache`` on transformers releases that renamed it, else ``past_key_values`` (deprecated there,
    and removed in a later release).
    """
    return {_cache_name(type(module)): cache}  # type: ignore[arg-type]


def has_prompt(model: Any) -> bool:
    """Whether ``model`` is a PEFT prompt-learning model (a soft prompt to prepend), not e.g. a LoRA one."""
    return is_peft(model) and bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def infer_kind(model: Any) -> TaskType:
    """The task type of a model from its class: encoder-decoder, ``*ForSequenceClassification`` or causal LM."""
    base = unwrap_model(model)
    if getattr(getattr(base, "config", None), "is_encoder_decoder", False):
        return "seq2seq"
    if type(base).__name__.endswith("ForSequenceClassification"):
        return "seq-cls"
    return "causal-lm"


class Scorer(nn.Module):
    """One logit per class for every row of a batch (see the module docstring).

    Args:
        model: a ``peft.PeftModel`` (prompt tuning; other PEFT methods such as LoRA are scored as plain models) or a
            plain ``transformers`` model.
        kind: ``"causal-lm"``, ``"seq2seq"`` or ``"seq-cls"``.
        label_ids: first token id of each label word, shape ``(C,)`` (unused for ``"seq-cls"``).
        share_prefix: causal LMs: compute the prompt's keys and values once per batch (see the module docstring);
            ``False`` runs the prompt with every row, as PEFT does. ``None`` (the default) shares on CPU, where the
            step is bound by FLOPs, and not on a GPU, where it is bound by kernel launches and one backbone pass
            beats two (measured on an H100: see ``benchmarks/results/gpu/``).
    """

    label_ids: torch.Tensor

    def __init__(
        self, model: Any, kind: TaskType, label_ids: list[int] | None, *, share_prefix: bool | None = None
    ) -> None:
        super().__init__()
        self.share_prefix = share_prefix
        self.model = model
        self.kind = kind
        self.register_buffer("label_ids", torch.tensor(label_ids or [], dtype=torch.long), persistent=False)
        base = unwrap_model(model)
        self._peft = has_prompt(model)
        self._nvt = int(model.active_peft_config.num_virtual_tokens) if self._peft else 0
        cap = getattr(base.config, "final_logit_softcapping", None)
        self._softcap = float(cap) if cap else None
        if kind == "seq2seq":
            start = getattr(base.config, "decoder_start_token_id", None)
            self._decoder_start = int(start if start is not None else (base.config.pad_token_id or 0))

    # The full-vocabulary logits are only needed by the 'full-vocab' loss.
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, full_vocab: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score a right-padded batch.

        Args:
            input_ids: shape ``(B, T)``.
            attention_mask: shape ``(B, T)``, 1 on real tokens (each row's real tokens come first).
            full_vocab: also return the logits over the whole vocabulary at the answer position.

        Returns:
            ``(class_logits, vocab_logits)``: shapes ``(B, C)`` and ``(B, V)`` (``None`` unless ``full_vocab``).
        """
        if self.kind == "causal-lm":
            return self._causal(input_ids, attention_mask, full_vocab)
        if self.kind == "seq2seq":
            batch = input_ids.shape[0]
            start = torch.full((batch, 1), self._decoder_start, dtype=torch.long, device=input_ids.device)
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start, use_cache=False
            )
            logits = out.logits[:, -1]  # (B, V)
            return logits.index_select(1, self.label_ids), (logits if full_vocab else None)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits, None  # (B, C)

    def _causal(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, full_vocab: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        base = unwrap_model(self.model)
        backbone = base.base_model
        embeds = base.get_input_embeddings()(input_ids)  # (B, T, D), Gemma's sqrt(D) scale included
        batch = input_ids.shape[0]
        if self._peft and self.shares_prefix(input_ids.device):
            # The prompt comes first and attention is causal, so its keys and values do not depend on the text:
            # compute them once for the batch (batch 1) and let every row attend to them.
            from transformers import DynamicCache

            prompt = self.model.get_prompt(batch_size=1).to(embeds.dtype)  # (1, P, D)
            cache = DynamicCache(config=base.config)
            backbone(inputs_embeds=prompt, use_cache=True, **cache_kwargs(backbone, cache))
            cache.batch_repeat_interleave(batch)  # (B, heads, P, head_dim) per layer, differentiable
            ones = torch.ones((batch, self._nvt), dtype=attention_mask.dtype, device=attention_mask.device)
            mask = torch.cat((ones, attention_mask), dim=1)  # (B, P + T)
            out = backbone(inputs_embeds=embeds, attention_mask=mask, use_cache=True, **cache_kwargs(backbone, cache))
            hidden = out.last_hidden_state  # (B, T, D), text positions P .. P + T - 1
            last = attention_mask.sum(dim=1) - 1  # (B,) each row's last real token
        else:
            mask = attention_mask
            if self._peft:
                prompt = self.model.get_prompt(batch_size=batch).to(embeds.dtype)  # (B, P, D)
                embeds = torch.cat((prompt, embeds), dim=1)  # (B, P + T, D)
                ones = torch.ones((batch, self._nvt), dtype=mask.dtype, device=mask.device)
                mask = torch.cat((ones, mask), dim=1)  # (B, P + T)
            hidden = backbone(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
            last = mask.sum(dim=1) - 1  # (B,)
        h = hidden[torch.arange(batch, device=hidden.device), last]  # (B, D)
        head = base.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        if full_vocab:
            vocab = self._cap(nn.functional.linear(h, weight, bias))  # (B, V)
            return vocab.index_select(1, self.label_ids), vocab
        w = weight.index_select(0, self.label_ids)  # (C, D)
        b = bias.index_select(0, self.label_ids) if bias is not None else None
        return self._cap(nn.functional.linear(h, w, b)), None  # (B, C)

    def shares_prefix(self, device: torch.device) -> bool:
        """Whether a causal-LM batch on ``device`` runs the prompt once (CPU) or with every row (GPU)."""
        return self.share_prefix if self.share_prefix is not None else device.type == "cpu"

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        if self._softcap is None:
            return logits
        return torch.tanh(logits / self._softcap) * self._softcap


# -- primitives for plain causal LMs: rows laid out by the caller -----------------------------------------------


def left_pad(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows padded on the left, with position ids that count real tokens only.

    Args:
        rows: ``B`` non-empty lists of token ids.
        pad_id: the id written into padding.

    Returns:
        ``(input_ids, attention_mask, position_ids)``, each long of shape ``(B, T)`` with ``T`` the longest row;
        a row's positions are ``0 .. len - 1`` on its real tokens and ``0`` on padding.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for j, r in enumerate(rows):
        if len(r):
            ids[j, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[j, width - len(r) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    return ids, mask, positions


def last_label_logits(
    model: Any,
    label_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """The label words' next-token logits at the last position of a left-padded batch (one forward pass).

    Only the last position's logits are computed (``logits_to_keep=1``); with left padding that is every row's last
    real token. Give ``input_ids`` or ``inputs_embeds`` (the embedding layer's output, e.g. a prompt spliced in).

    Args:
        model: a plain ``transformers`` causal LM.
        label_ids: first token id of each label word, shape ``(K,)``, on the model's device.
        attention_mask: ``(B, T)``, 1 on real tokens (padding first).
        position_ids: ``(B, T)``.
        input_ids: ``(B, T)`` token ids.
        inputs_embeds: ``(B, T, d)`` input embeddings.

    Returns:
        Label-word logits, shape ``(B, K)``, in the model's dtype.
    """
    kwargs: dict[str, Any] = {
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "logits_to_keep": 1,
        "use_cache": False,
    }
    if inputs_embeds is not None:
        out = model(inputs_embeds=inputs_embeds, **kwargs)
    else:
        out = model(input_ids=input_ids, **kwargs)
    return out.logits[:, -1, :].index_select(1, label_ids)  # (B, K)
