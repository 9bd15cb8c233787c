"""Origins drawn from a model's input embeddings: :func:`make_origin` (the PEFT layer's first step).

Kept below :mod:`tpv.adapters` and :mod:`tpv.adapter_origin` (which rebuilds the origin of a PEFT ``TEXT`` adapter
with it), so neither imports the other's layer; :mod:`tpv.adapters` re-exports it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch

from tpv.errors import ConfigError, ModelError
from tpv.models import input_embeddings, model_name, unwrap_model
from tpv.origin import Origin

__all__ = ["ORIGIN_INITS", "OriginInit", "make_origin"]

OriginInit = Literal["first-n-vocab", "sample-vocab", "gaussian", "text"]
ORIGIN_INITS: tuple[str, ...] = get_args(OriginInit)


def _embedding_width(model: Any) -> int:
    base = unwrap_model(model)
    get = getattr(base, "get_input_embeddings", None)
    module = get() if callable(get) else None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ModelError(
            f"{type(base).__name__} has no input embedding matrix (get_input_embeddings()); "
            "prompt tuning needs a transformers model with token embeddings"
        )
    return int(weight.shape[1])


def _is_encoder_decoder(model: Any) -> bool:
    return bool(getattr(getattr(unwrap_model(model), "config", None), "is_encoder_decoder", False))


def make_origin(
    model: Any,
    init: OriginInit = "first-n-vocab",
    *,
    num_virtual_tokens: int = 50,
    seed: int = 0,
    text: str | None = None,
    tokenizer: Any | None = None,
    num_transformer_submodules: int | None = None,
    n: int = 5000,
    std: float = 1.0,
) -> Origin:
    """Draw a reproducible origin from a model's input embeddings.

    Origins are float32 (the dtype PEFT keeps prompts in) and record the model's id (:func:`tpv.models.model_name`)
    as ``base_model``. Embeddings are taken as the model feeds them (Gemma's ``sqrt(hidden)`` scale applied).

    Args:
        model: a ``transformers`` model (or a PEFT model wrapping one).
        init: ``"first-n-vocab"`` (distinct ids among the first ``n``, the paper's init), ``"sample-vocab"``
            (ids over the whole vocabulary, PEFT's ``SAMPLE_VOCAB``), ``"gaussian"`` (N(0, std²), PEFT's
            ``RANDOM``) or ``"text"`` (the embeddings of ``text``, tiled; PEFT's ``TEXT``).
        num_virtual_tokens: virtual tokens per transformer submodule.
        seed: RNG seed (private generator; the global RNG is untouched).
        text: the init text, for ``init="text"``.
        tokenizer: the model's tokenizer, for ``init="text"``; the text is tokenized as PEFT's ``TEXT`` init does,
            with the special tokens the tokenizer adds by default (a BOS token, for many models).
        num_transformer_submodules: default 2 for encoder-decoder models, else 1.
        n: vocabulary prefix size for ``"first-n-vocab"``.
        std: standard deviation for ``"gaussian"``.

    Returns:
        The origin, shape ``(num_virtual_tokens * num_transformer_submodules, dim)``, float32.

    Raises:
        ConfigError: unknown ``init``, or ``"text"`` without ``text``/``tokenizer``.
        ModelError: the model has no input embeddings.
    """
    if init not in ORIGIN_INITS:
        raise ConfigError(f"init must be one of {', '.join(ORIGIN_INITS)}; got {init!r}")
    subs = num_transformer_submodules or (2 if _is_encoder_decoder(model) else 1)
    base_model = model_name(model)
    if init == "gaussian":
        return Origin.gaussian(
            num_virtual_tokens,
            _embedding_width(model),
            seed=seed,
            std=std,
            num_transformer_submodules=subs,
            base_model=base_model,
        )
    emb = input_embeddings(model, copy=False)  # (vocab, dim) float32, as the model feeds it
    if init == "sample-vocab":
        return Origin.sample_vocab(
            emb, num_virtual_tokens, seed=seed, num_transformer_submodules=subs, base_model=base_model
        )
    if init == "first-n-vocab":
        return Origin.first_n_vocab(
            emb, num_virtual_tokens, seed=seed, n=n, num_transformer_submodules=subs, base_model=base_model
        )
    if not isinstance(text, str) or not text.strip() or tokenizer is None:
        raise ConfigError("init='text' needs text='...' (a non-empty string) and tokenizer= (the model's tokenizer)")
    ids = tokenizer(text)["input_ids"]  # as PEFT's TEXT init: the special tokens the tokenizer adds (e.g. BOS) included
    return Origin.from_text(
        emb, ids, num_virtual_tokens, text=text, num_transformer_submodules=subs, base_model=base_model
    )
