"""The PEFT layer: start prompt tuning from any prompt, read tuned adapters into vectors, write vectors back.

The workflow (see ``docs/peft.md``)::

    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=50, seed=0)   # record the init
    peft_model = init_prompt_tuning(model, origin)        # trainable PEFT model, prompt == origin
    ...train...; tpv.save_pretrained(peft_model, "sst2")  # PEFT's folder + origin.safetensors (tpv.peft_save)
    tau = from_adapter("sst2", task="sst2")               # tuned - origin
    peft_model = init_prompt_tuning(fresh_model, tau_a + tau_b, origin=origin)   # origin + sum of vectors
    save_adapter(tau_a + tau_b, "combo", origin=origin)   # a PEFT adapter loadable without tpv

PEFT refuses ``is_trainable=True`` for prompt adapters loaded from disk, so tpv never trains through
``PeftModel.from_pretrained``: :func:`init_prompt_tuning` builds a fresh adapter with ``get_peft_model`` and
writes the requested prompt into it with ``set_peft_model_state_dict`` (PEFT's public state-dict function),
then checks it reads back bit for bit.

An adapter folder holds ``adapter_config.json`` (a ``PromptTuningConfig``) and ``adapter_model.safetensors``
with one tensor, ``prompt_embeddings``, of shape ``(num_virtual_tokens * num_transformer_submodules,
token_dim)``; encoder-decoder models have ``num_transformer_submodules = 2``. PEFT never saves the init, so
:func:`save_adapter` writes ``origin.safetensors`` (and ``tpv_vector.safetensors`` for a vector) beside them;
PEFT ignores both files. Pickle weights (``adapter_model.bin``) are refused, never unpickled.

:func:`init_prompt_tuning` records its origin on the PEFT model (:func:`origin_of` reads it) for
:func:`tpv.save_pretrained` and :class:`tpv.OriginCallback` (:mod:`tpv.peft_save`). Folders are read and written by
:mod:`tpv.adapter_io` (re-exported here); origins of adapters made without tpv by :mod:`tpv.adapter_origin`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from tpv._adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ORIGIN_FILE,
    PEFT_TASK,
    PROMPT_KEY,
    VECTOR_FILE,
    peft_task_name,
)
from tpv._tensor import check_prompt_tensor
from tpv.adapter_io import from_adapter, read_adapter, save_adapter
from tpv.errors import AdapterError, ConfigError, ModelError
from tpv.model_origin import OriginInit, _embedding_width, _is_encoder_decoder, make_origin
from tpv.models import TaskType, model_name, unwrap_model
from tpv.origin import Origin
from tpv.vector import UNKNOWN_MODEL, TaskPromptVector

if TYPE_CHECKING:
    from peft import PeftModel

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ORIGIN_FILE",
    "PROMPT_KEY",
    "VECTOR_FILE",
    "OriginInit",
    "from_adapter",
    "init_prompt_tuning",
    "make_origin",
    "origin_of",
    "prompt_of",
    "read_adapter",
    "save_adapter",
]

logger = logging.getLogger(__name__)


# -- helpers ----------------------------------------------------------------------------------------------------


def _infer_task_type(model: Any) -> str:
    base = unwrap_model(model)
    if _is_encoder_decoder(base):
        return "SEQ_2_SEQ_LM"
    cls = type(base).__name__
    if cls.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if cls.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
        return "CAUSAL_LM"
    raise ConfigError(
        f"cannot tell the task type of a {cls}; pass task_type= one of {', '.join(PEFT_TASK)} "
        "(or a PEFT TaskType such as 'CAUSAL_LM')"
    )


def _peft_task_type(task_type: str | None, model: Any | None = None) -> str:
    if task_type is None:
        return _infer_task_type(model) if model is not None else "CAUSAL_LM"
    return peft_task_name(task_type)


def _check_width(model: Any, dim: int, what: str) -> None:
    width = _embedding_width(model)
    if width != dim:
        raise ModelError(
            f"{what} has rows of width {dim}, but the model {model_name(model)!r} embeds tokens in width {width}. "
            "Fix: use the model the prompt was made for (its base_model), or move the vector to this model "
            "with tpv.transfer"
        )


def _check_submodules(model: Any, subs: int, peft_task: str) -> None:
    enc_dec = _is_encoder_decoder(model)
    if subs == 2 and not enc_dec:
        raise ModelError(
            f"the prompt has 2 transformer submodules (an encoder-decoder prompt, 2x rows), but the model "
            f"{model_name(model)!r} is not an encoder-decoder. Fix: use the encoder-decoder model it was made for"
        )
    if enc_dec and peft_task == "SEQ_2_SEQ_LM" and subs != 2:
        logger.info("prompt has 1 submodule on an encoder-decoder: PEFT prepends it to the encoder input only")


def _lossless(prompt: torch.Tensor, dtype: torch.dtype, what: str) -> torch.Tensor:
    value = prompt.to(dtype)
    if prompt.dtype != dtype and not torch.equal(value.to(prompt.dtype), prompt):
        raise ConfigError(
            f"{what} has dtype {prompt.dtype} but PEFT stores the prompt in {dtype}; the cast would round it, so "
            f"the prompt would not equal the init exactly. Fix: pass init.to({dtype})"
        )
    return value


def _warn_model(model: Any, recorded: str, what: str) -> None:
    here = model_name(model)
    if UNKNOWN_MODEL not in (recorded, here) and recorded != here:
        logger.warning("%s was made for model %r, but is used on %r (same embedding width)", what, recorded, here)


# -- PEFT models ------------------------------------------------------------------------------------------------


def _resolve_init(
    init: torch.Tensor | Origin | TaskPromptVector,
    origin: Origin | None,
    num_virtual_tokens: int | None,
    model: Any,
    peft_task: str,
) -> tuple[torch.Tensor, int, int, str]:
    """``(prompt, num_virtual_tokens, num_transformer_submodules, description)`` of an init."""
    if isinstance(init, TaskPromptVector):
        if not isinstance(origin, Origin):
            raise ConfigError(
                "init is a TaskPromptVector, a difference: pass origin= (the Origin it was tuned from, e.g. "
                "tpv.load_origin('origin.safetensors')) so the prompt origin + vector can be built"
            )
        prompt = init.apply_to(origin, strict=True)
        nvt, subs, what = init.num_virtual_tokens, init.num_transformer_submodules, init.describe()
        _warn_model(model, init.base_model, what)
    elif isinstance(init, Origin):
        if origin is not None and origin.id != init.id:
            raise ConfigError(f"init is {init.describe()} but origin= is another one ({origin.id}); pass one of them")
        prompt, nvt, subs, what = init.tensor, init.num_virtual_tokens, init.num_transformer_submodules, init.describe()
        _warn_model(model, init.base_model, what)
    elif isinstance(init, torch.Tensor):
        prompt = check_prompt_tensor(init, what="init prompt")
        rows = int(prompt.shape[0])
        subs = 2 if peft_task == "SEQ_2_SEQ_LM" and _is_encoder_decoder(model) else 1
        if rows % subs:
            raise ConfigError(
                f"an encoder-decoder prompt has 2 transformer submodules, so its rows must be even; got {rows} rows"
            )
        nvt, what = rows // subs, f"the init tensor of shape {tuple(prompt.shape)}"
    else:
        raise ConfigError(
            f"init must be a tensor (rows, dim), an Origin or a TaskPromptVector; got {type(init).__name__}"
        )
    if num_virtual_tokens is not None and num_virtual_tokens != nvt:
        raise ConfigError(
            f"num_virtual_tokens={num_virtual_tokens} but {what} has {nvt} virtual tokens "
            f"({nvt * subs} rows, {subs} submodule(s)); drop num_virtual_tokens or pass a matching init"
        )
    return prompt, nvt, subs, what


def init_prompt_tuning(
    model: Any,
    init: torch.Tensor | Origin | TaskPromptVector,
    *,
    num_virtual_tokens: int | None = None,
    task_type: TaskType | str | None = None,
    origin: Origin | None = None,
    adapter_name: str = "default",
) -> PeftModel:
    """A trainable PEFT prompt-tuning model whose soft prompt equals ``init`` bit for bit.

    The base model's weights are frozen by PEFT (in place); only the prompt (and, for sequence
    classification, PEFT's copy of the classifier head) is trainable. Combinations are vectors, so
    ``init=0.5 * tau_a + tau_b, origin=origin`` starts from ``origin + 0.5 tau_a + tau_b``.

    Args:
        model: a ``transformers`` model (not already a ``PeftModel``).
        init: the starting prompt: a tensor of shape ``(rows, dim)``, an :class:`~tpv.Origin`, or a
            :class:`~tpv.TaskPromptVector` (applied to ``origin``).
        num_virtual_tokens: optional check of the prompt length (virtual tokens per submodule).
        task_type: ``"causal-lm"``, ``"seq2seq"``, ``"seq-cls"`` or a PEFT TaskType; inferred from the model's
            class by default.
        origin: the origin a vector ``init`` was tuned from (required then; checked by content hash).
        adapter_name: PEFT adapter name.

    Returns:
        The ``peft.PeftModel``; :func:`prompt_of` reads its prompt.

    Raises:
        ConfigError: bad ``init``/``task_type``, a vector without ``origin``, a length mismatch, a lossy dtype.
        IncompatibleVectorsError: the vector was tuned from another origin.
        ModelError: the model's embedding width differs from the prompt's, or the submodule layout does not fit.
    """
    from peft import (
        PeftModel,
        PromptTuningConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

    if isinstance(model, PeftModel):
        raise ConfigError(
            "model is already a PeftModel; pass the plain transformers model (peft_model.get_base_model(), or a "
            "freshly loaded one)"
        )
    peft_task = _peft_task_type(task_type, model)
    prompt, nvt, subs, what = _resolve_init(init, origin, num_virtual_tokens, model, peft_task)
    dim = int(prompt.shape[1])
    _check_width(model, dim, what)
    _check_submodules(model, subs, peft_task)
    config = PromptTuningConfig(
        task_type=peft_task,
        num_virtual_tokens=nvt,
        token_dim=dim,
        num_transformer_submodules=subs,
        prompt_tuning_init="RANDOM",  # overwritten below; RANDOM needs no tokenizer and no vocabulary
    )
    from tpv._quiet import quiet_loading

    # PEFT's RANDOM init draws from the global RNG: leave it untouched; PEFT also reads a deprecated transformers
    # alias while wrapping the model (quiet_loading hides that warning, nothing else)
    with torch.random.fork_rng(devices=[]), quiet_loading():
        peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    weight: torch.Tensor = _prompt_encoder(peft_model, adapter_name)[0].embedding.weight
    value = _lossless(prompt, weight.dtype, what).to(weight.device)
    # Start from the adapter's own state (it may hold more than the prompt, e.g. a classifier head copy for
    # SEQ_CLS, which set_peft_model_state_dict expects) and replace only the prompt.
    state = get_peft_model_state_dict(peft_model, adapter_name=adapter_name, save_embedding_layers=False)
    state[PROMPT_KEY] = value
    set_peft_model_state_dict(peft_model, state, adapter_name=adapter_name)
    if not torch.equal(weight.detach(), value):  # pragma: no cover - guards against PEFT behaviour changes
        raise AdapterError("PEFT did not take the prompt exactly (set_peft_model_state_dict changed it)")
    _attach_origin(peft_model, _start_origin(init, origin, prompt, nvt, subs, model), adapter_name)
    return peft_model


def _start_origin(
    init: torch.Tensor | Origin | TaskPromptVector, origin: Origin | None, prompt: torch.Tensor, nvt: int, subs: int,
    model: Any,
) -> Origin:  # fmt: skip
    """The origin vectors of this tuning are measured from: the init origin, a vector's origin, else the tensor."""
    if isinstance(init, Origin):
        return init
    if origin is not None and (isinstance(init, TaskPromptVector) or origin.shape == tuple(prompt.shape)):
        return origin
    return Origin(prompt, base_model=model_name(model), num_virtual_tokens=nvt, num_transformer_submodules=subs)


def _attach_origin(peft_model: Any, origin: Origin, adapter_name: str) -> None:
    """Record ``origin`` on the PEFT model (for :func:`tpv.save_pretrained` and :class:`tpv.OriginCallback`)."""
    origins = peft_model.__dict__.setdefault(_ORIGINS_ATTR, {})
    origins[adapter_name] = origin


def origin_of(peft_model: Any, *, adapter_name: str | None = None) -> Origin | None:
    """The origin recorded on a PEFT model by :func:`init_prompt_tuning` or :func:`tpv.capture_origin`, if any.

    Args:
        peft_model: a ``peft.PeftModel`` (or a wrapper with ``.module``, e.g. from ``accelerate``).
        adapter_name: which adapter (default: the active one).

    Returns:
        The origin, or ``None`` when none was recorded for that adapter.
    """
    for model in (peft_model, getattr(peft_model, "module", None)):  # accelerate/DDP wrap the model in .module
        origins = getattr(model, "__dict__", {}).get(_ORIGINS_ATTR)
        if origins:
            found = origins.get(adapter_name or getattr(model, "active_adapter", None) or "default")
            return found if isinstance(found, Origin) else None
    return None


_ORIGINS_ATTR = "_tpv_origins"
"""Attribute of a PEFT model holding ``{adapter_name: Origin}`` (set by init_prompt_tuning / capture_origin)."""


def _prompt_encoder(peft_model: Any, adapter_name: str | None) -> tuple[Any, str]:
    from peft import PeftModel

    if not isinstance(peft_model, PeftModel):
        raise AdapterError(f"expected a peft.PeftModel with a prompt-tuning adapter, got {type(peft_model).__name__}")
    name = adapter_name or peft_model.active_adapter
    config = peft_model.peft_config.get(name)
    if config is None:
        raise AdapterError(f"the PEFT model has no adapter {name!r} (it has {', '.join(peft_model.peft_config)})")
    kind = str(getattr(config.peft_type, "value", config.peft_type))
    if kind != "PROMPT_TUNING":
        raise AdapterError(
            f"adapter {name!r} is {kind}, not prompt tuning: task prompt vectors exist only for soft prompts"
        )
    return peft_model.prompt_encoder[name], name


def prompt_of(peft_model: Any, *, adapter_name: str | None = None) -> torch.Tensor:
    """The current soft prompt of a PEFT prompt-tuning model.

    Args:
        peft_model: a ``peft.PeftModel`` with a prompt-tuning adapter.
        adapter_name: which adapter (default: the active one).

    Returns:
        A detached CPU copy, shape ``(num_virtual_tokens * num_transformer_submodules, token_dim)``.

    Raises:
        AdapterError: not a PEFT model, or the adapter is not prompt tuning.
    """
    encoder, _ = _prompt_encoder(peft_model, adapter_name)
    return encoder.embedding.weight.detach().to("cpu", copy=True)  # (rows, dim)
