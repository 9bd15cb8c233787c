"""Tiny random models and offline tokenizers built from configs, for tests (helpers, not tests).

Every builder runs in well under a second, touches no network and no global RNG state::

    model, tokenizer = build_tiny("llama", seed=0)

Kinds (see :data:`KINDS`):

* ``llama``: ``LlamaForCausalLM``, hidden 32 (decoder-only; SmolLM2's architecture).
* ``gemma3``: ``Gemma3ForCausalLM``, hidden 24 (decoder-only; scales input embeddings by ``sqrt(hidden)``).
* ``t5``: ``T5ForConditionalGeneration``, hidden 16 (encoder-decoder: PEFT prompts have 2x rows).
* ``bert``: ``BertForSequenceClassification`` with 2 labels, hidden 16 (encoder-only).

Widths differ on purpose so that embedding-width mismatches can be provoked. All models share one small word
vocabulary (:data:`WORDS`) in which ``" negative"``, ``" positive"`` and the other label words are single
tokens, so sentiment-style data can be tokenized and scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["KINDS", "LABEL_WORDS", "WORDS", "TinyKind", "build_tiny", "build_tokenizer"]

TinyKind = Literal["llama", "gemma3", "t5", "bert"]
KINDS: tuple[TinyKind, ...] = ("llama", "gemma3", "t5", "bert")

LABEL_WORDS = ("negative", "positive", "neutral", "yes", "no", "true", "false")
WORDS: tuple[str, ...] = (
    *LABEL_WORDS,
    "the", "a", "an", "this", "that", "it", "i", "we", "you", "is", "was", "are", "not", "very", "really",
    "movie", "film", "story", "acting", "plot", "review", "sentiment", "question", "answer", "text", "label",
    "good", "great", "fine", "loved", "fun", "bad", "awful", "boring", "hated", "dull", "and", "but", "of",
    "to", "in", "with", "for", "on", "at", "as", "what", "which", "one", "two", "three",
    ".", ",", "!", "?", ":", "'", "-",
)  # fmt: skip

_SPECIALS: dict[TinyKind, dict[str, str]] = {
    "llama": {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"},
    "gemma3": {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"},
    "t5": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
    "bert": {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    },
}
VOCAB_SIZE = 80  # >= specials + words; a round size like real models (unused ids are never produced)


def build_tokenizer(kind: TinyKind) -> Any:
    """A fast word-level tokenizer over :data:`WORDS`, with the special tokens and template of ``kind``.

    Text is lower-cased and split on whitespace and punctuation, so ``" positive"`` is one token. Padding side
    follows tpv's convention: left for decoder-only models, right otherwise.

    Args:
        kind: one of :data:`KINDS`.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = _SPECIALS[kind]
    ordered = list(dict.fromkeys(specials.values()))
    vocab = {tok: i for i, tok in enumerate([*ordered, *WORDS])}
    assert len(vocab) <= VOCAB_SIZE
    tok = Tokenizer(WordLevel(vocab, unk_token=specials["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    elif kind == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
    elif kind == "gemma3":
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
        )
    padding_side = "left" if kind in ("llama", "gemma3") else "right"
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side=padding_side, **specials)


def _config(kind: TinyKind, tokenizer: Any) -> Any:
    common: dict[str, Any] = {"vocab_size": VOCAB_SIZE, "pad_token_id": tokenizer.pad_token_id}
    if kind == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if kind == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=12,
            max_position_embeddings=128,
            sliding_window=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if kind == "t5":
        from transformers import T5Config

        return T5Config(
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            **common,
        )
    if kind == "bert":
        from transformers import BertConfig

        return BertConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=128,
            num_labels=2,
            **common,
        )
    raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")


def build_tiny(kind: TinyKind, seed: int = 0) -> tuple[Any, Any]:
    """Build a tiny random model and its tokenizer; the same ``(kind, seed)`` always gives the same weights.

    The weights are drawn under a forked RNG, so the caller's global torch RNG state is left as it was. The
    model is in eval mode (dropout off), float32, on CPU, and its ``config._name_or_path`` is ``tiny-<kind>``.

    Args:
        kind: ``"llama"``, ``"gemma3"``, ``"t5"`` or ``"bert"``.
        seed: seed of the weights.

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import (
        BertForSequenceClassification,
        Gemma3ForCausalLM,
        LlamaForCausalLM,
        T5ForConditionalGeneration,
    )

    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")
    tokenizer = build_tokenizer(kind)
    config = _config(kind, tokenizer)
    classes = {
        "llama": LlamaForCausalLM,
        "gemma3": Gemma3ForCausalLM,
        "t5": T5ForConditionalGeneration,
        "bert": BertForSequenceClassification,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = classes[kind](config)
    model.config._name_or_path = f"tiny-{kind}"
    model.name_or_path = f"tiny-{kind}"
    model.eval()
    return model, tokenizer


def learnable(tiny: Any, kind: str = "llama") -> tuple[Any, Any]:
    """A tiny model with weights of std 0.3, whose last-token outputs depend on the input enough to learn from."""
    model, tokenizer = tiny(kind)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model, tokenizer


def save_tiny(kind: TinyKind, folder: Path, seed: int = 0) -> Path:
    """``build_tiny(kind, seed)`` saved as a plain Hugging Face folder (model and tokenizer), loadable by path."""
    model, tokenizer = build_tiny(kind, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
