"""The PEFT layer: start prompt tuning from any prompt, read tuned adapters into vectors, write vectors back.

The workflow (see ``docs/peft.md``)::

    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=50, seed=0)   # record the init
    peft_model = init_prompt_tuning(model, origin)        # trainable PEFT model, prompt == origin
    ...train...; peft_model.save_pretrained("sst2")       # a standard PEFT adapter folder
    tau = from_adapter("sst2", origin=origin, task="sst2")            # tuned - origin
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
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

import torch

from tpv._fs import atomic_dir, check_output
from tpv._tensor import check_prompt_tensor
from tpv.errors import AdapterError, ConfigError, FormatError, IncompatibleVectorsError, ModelError
from tpv.files import load_origin, load_vector, save
from tpv.models import TaskType, input_embeddings, model_name, unwrap_model
from tpv.origin import Origin
from tpv.vector import UNKNOWN_MODEL, TaskPromptVector

if TYPE_CHECKING:
    from peft import PeftModel

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ORIGIN_FILE",
    "VECTOR_FILE",
    "OriginInit",
    "from_adapter",
    "init_prompt_tuning",
    "make_origin",
    "prompt_of",
    "read_adapter",
    "save_adapter",
]

logger = logging.getLogger(__name__)

OriginInit = Literal["first-n-vocab", "sample-vocab", "gaussian", "text"]
ORIGIN_INITS: tuple[str, ...] = get_args(OriginInit)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ORIGIN_FILE = "origin.safetensors"
VECTOR_FILE = "tpv_vector.safetensors"
PROMPT_KEY = "prompt_embeddings"
_PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth", "pytorch_model.bin")

# tpv task types -> PEFT TaskType values; PEFT's own values are accepted too.
_PEFT_TASK: dict[str, str] = {"causal-lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "seq-cls": "SEQ_CLS"}
_PEFT_TASKS = ("CAUSAL_LM", "SEQ_2_SEQ_LM", "SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")


# -- helpers ----------------------------------------------------------------------------------------------------


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
        f"cannot tell the task type of a {cls}; pass task_type= one of {', '.join(_PEFT_TASK)} "
        "(or a PEFT TaskType such as 'CAUSAL_LM')"
    )


def _peft_task_type(task_type: str | None, model: Any | None = None) -> str:
    if task_type is None:
        return _infer_task_type(model) if model is not None else "CAUSAL_LM"
    if task_type in _PEFT_TASK:
        return _PEFT_TASK[task_type]
    if isinstance(task_type, str) and task_type.upper() in _PEFT_TASKS:
        return task_type.upper()
    raise ConfigError(
        f"task_type must be one of {', '.join(_PEFT_TASK)} or a PEFT TaskType ({', '.join(_PEFT_TASKS)}); "
        f"got {task_type!r}"
    )


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


# -- origins ----------------------------------------------------------------------------------------------------


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
    with torch.random.fork_rng(devices=[]):  # PEFT's RANDOM init draws from the global RNG: leave it untouched
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
    return peft_model


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


# -- adapter folders --------------------------------------------------------------------------------------------


def _adapter_folder(adapter_dir: str | os.PathLike[str]) -> Path:
    """``adapter_dir``, or the downloaded snapshot of a Hub adapter (``owner/repo``, ``hf://owner/repo[@rev][/sub]``)."""
    from tpv.hub import resolve_adapter_dir

    return resolve_adapter_dir(adapter_dir)


def read_adapter(adapter_dir: str | os.PathLike[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a PEFT prompt-tuning adapter folder without PEFT: its prompt and its config.

    Args:
        adapter_dir: folder holding ``adapter_config.json`` and ``adapter_model.safetensors``, or a Hub adapter
            (``"owner/repo"`` when no local folder has that name, or ``hf://owner/repo[@revision][/subfolder]``),
            downloaded into the Hugging Face cache first (see :mod:`tpv.hub`).

    Returns:
        ``(prompt, config)``: the ``prompt_embeddings`` tensor, shape ``(rows, token_dim)``, and the parsed
        ``adapter_config.json``.

    Raises:
        AdapterError: missing folder or files, pickle weights, not prompt tuning, malformed files or shapes; a Hub
            adapter that is missing or not cached while ``HF_HUB_OFFLINE`` is set.
    """
    from safetensors import SafetensorError, safe_open

    folder = _adapter_folder(adapter_dir)
    if not folder.is_dir():
        raise AdapterError(f"no adapter folder at {str(folder)!r}")
    cfg_path = folder / ADAPTER_CONFIG
    if not cfg_path.is_file():
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise AdapterError(
            f"{str(folder)!r} is not a PEFT adapter folder: it has no {ADAPTER_CONFIG} (it holds {present})"
        )
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{cfg_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{cfg_path} must hold a JSON object, got {type(config).__name__}")
    kind = config.get("peft_type")
    if kind != "PROMPT_TUNING":
        raise AdapterError(
            f"{str(folder)!r} is a {kind or 'untyped'} adapter, not prompt tuning (peft_type PROMPT_TUNING): task "
            "prompt vectors exist only for soft prompts. Fix: tune with PromptTuningConfig / tpv.init_prompt_tuning"
        )
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickled = [name for name in _PICKLE_WEIGHTS if (folder / name).is_file()]
        if pickled:
            raise AdapterError(
                f"{str(folder)!r} holds its weights only as {pickled[0]}, a pickle file, which can run arbitrary "
                "code when loaded; tpv never unpickles. Fix: re-save the adapter with "
                "save_pretrained(..., safe_serialization=True) (PEFT's default) in an environment you trust"
            )
        raise AdapterError(f"{str(folder)!r} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}: the adapter is incomplete")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            keys = list(fh.keys())
            if PROMPT_KEY not in keys:
                raise AdapterError(
                    f"{weights} has no {PROMPT_KEY!r} tensor (it holds {', '.join(keys) or 'nothing'}): not a "
                    "prompt-tuning adapter"
                )
            prompt = fh.get_tensor(PROMPT_KEY)
    except SafetensorError as exc:
        raise AdapterError(f"{weights} is not a valid safetensors file: {exc}") from None
    extra = [k for k in keys if k != PROMPT_KEY]
    if extra:
        logger.info("%s: ignoring %d tensor(s) beside the prompt (%s)", weights, len(extra), ", ".join(extra[:5]))
    if prompt.ndim != 2:
        raise AdapterError(f"{weights}: {PROMPT_KEY} must have shape (rows, dim), got {tuple(prompt.shape)}")
    for field_name in ("num_virtual_tokens", "num_transformer_submodules", "token_dim"):
        value = config.get(field_name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise AdapterError(
                f"{cfg_path}: {field_name} must be a positive integer (as PEFT writes it), got {value!r} "
                f"({type(value).__name__}); fix the file or re-save the adapter with save_pretrained"
            )
    nvt, subs = config.get("num_virtual_tokens"), config.get("num_transformer_submodules") or 1
    if isinstance(nvt, int) and isinstance(subs, int) and nvt * subs != prompt.shape[0]:
        raise AdapterError(
            f"{str(folder)!r}: num_virtual_tokens={nvt} x num_transformer_submodules={subs} = {nvt * subs} rows in "
            f"{ADAPTER_CONFIG}, but {PROMPT_KEY} has {prompt.shape[0]} rows"
        )
    token_dim = config.get("token_dim")
    if isinstance(token_dim, int) and token_dim != prompt.shape[1]:
        raise AdapterError(
            f"{str(folder)!r}: token_dim={token_dim} in {ADAPTER_CONFIG}, but {PROMPT_KEY} has width {prompt.shape[1]}"
        )
    return prompt, config


def _origin_arg(origin: Origin | str | os.PathLike[str] | None, folder: Path) -> Origin:
    if isinstance(origin, Origin):
        return origin
    path = Path(origin) if origin is not None else folder / ORIGIN_FILE
    if origin is None and not path.is_file():
        raise AdapterError(
            f"{str(folder)!r} holds no {ORIGIN_FILE}, and PEFT never saves the init a prompt was tuned from. "
            "Fix: pass origin= (the Origin, or the path of its .safetensors file)"
        )
    try:
        return load_origin(path)
    except (FormatError, OSError) as exc:
        raise AdapterError(f"cannot read the origin {str(path)!r}: {exc}") from exc


def from_adapter(
    adapter_dir: str | os.PathLike[str],
    *,
    origin: Origin | str | os.PathLike[str] | None = None,
    task: str | None = None,
    base_model: str | None = None,
) -> TaskPromptVector:
    """Read a PEFT prompt-tuning adapter folder into its task prompt vector ``tuned - origin``.

    Args:
        adapter_dir: folder with ``adapter_config.json`` and ``adapter_model.safetensors``, or a Hub adapter
            (``"owner/repo"`` when no local folder has that name, or ``hf://owner/repo[@revision][/subfolder]``).
        origin: the :class:`~tpv.Origin` the prompt was tuned from, or the path of its file; by default the
            folder's ``origin.safetensors``. When the folder holds one, a different ``origin`` is refused.
        task: the task's name (terms ``{task: 1.0}``); by default the folder's ``tpv_vector.safetensors``
            decides: when it gives back the adapter's prompt from this origin exactly, it is returned as saved
            (full precision), else its terms are used.
        base_model: model id to record; default the origin's (else the adapter's ``base_model_name_or_path``).

    Returns:
        The vector (float64 differences; ``vector.apply_to(origin)`` is the tuned prompt bit for bit).

    Raises:
        AdapterError: not a prompt-tuning adapter, pickle weights, missing files, another origin, a shape or
            submodule mismatch.
        ConfigError: no ``task`` given and no ``tpv_vector.safetensors`` to take the terms from.
    """
    folder = _adapter_folder(adapter_dir)
    prompt, config = read_adapter(folder)
    org = _origin_arg(origin, folder)
    beside = folder / ORIGIN_FILE
    if origin is not None and beside.is_file():
        try:
            recorded = load_origin(beside)
        except FormatError as exc:
            raise AdapterError(f"cannot read {beside}: {exc}") from exc
        if recorded.id != org.id:
            raise AdapterError(
                f"{str(folder)!r} was tuned from origin {recorded.id} (its {ORIGIN_FILE}), but the origin given is "
                f"{org.id}: a vector from another origin would be meaningless. Fix: pass the folder's origin "
                "(or origin=None to use it)"
            )
    if tuple(prompt.shape) != org.shape:
        raise AdapterError(
            f"the adapter's prompt has shape {tuple(prompt.shape)} but {org.describe()} has shape {org.shape}: "
            "pass the origin this adapter was tuned from"
        )
    subs = config.get("num_transformer_submodules") or 1
    if subs != org.num_transformer_submodules:
        raise AdapterError(
            f"the adapter has {subs} transformer submodule(s) but {org.describe()} has "
            f"{org.num_transformer_submodules}: pass the origin this adapter was tuned from"
        )
    terms: Mapping[str, float] | None = None
    if task is None:
        vec_path = folder / VECTOR_FILE
        if not vec_path.is_file():
            raise ConfigError(f"pass task='name' (the task {str(folder)!r} was tuned on); it holds no {VECTOR_FILE}")
        try:
            stored = load_vector(vec_path)
        except FormatError as exc:
            raise AdapterError(f"cannot read {vec_path}: {exc}") from exc
        if (
            stored.origin_id == org.id
            and stored.shape == org.shape
            and base_model in (None, stored.base_model)
            and torch.equal(stored.apply_to(org), prompt.to(org.dtype))
        ):
            return stored  # the vector as saved, at full precision (the adapter holds its rounded prompt)
        terms = dict(stored.terms)
    recorded_model = org.base_model if org.base_model != UNKNOWN_MODEL else None
    model_id = base_model or recorded_model or config.get("base_model_name_or_path") or UNKNOWN_MODEL
    try:
        return TaskPromptVector.from_prompts(
            prompt,
            org,
            task=task,
            terms=terms,
            base_model=str(model_id),
            num_virtual_tokens=org.num_virtual_tokens,
            num_transformer_submodules=org.num_transformer_submodules,
        )
    except IncompatibleVectorsError as exc:  # pragma: no cover - shapes were checked above
        raise AdapterError(str(exc)) from exc


def save_adapter(
    prompt_or_vector: torch.Tensor | TaskPromptVector | Origin,
    out_dir: str | os.PathLike[str],
    *,
    origin: Origin | None = None,
    base_model: str | None = None,
    task_type: TaskType | str | None = None,
    num_transformer_submodules: int | None = None,
    tokenizer_name_or_path: str | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a prompt, an origin or ``origin + vector`` as a standard PEFT prompt-tuning adapter folder.

    ``PeftModel.from_pretrained(base_model, out_dir)`` loads the folder with no tpv installed. Files:

    * ``adapter_config.json``: a ``PromptTuningConfig`` (``inference_mode`` true), written by its
      ``save_pretrained``;
    * ``adapter_model.safetensors``: ``prompt_embeddings``, shape ``(rows, token_dim)`` (plus ``extra_tensors``);
    * ``origin.safetensors``: the origin (tpv file), when one is known;
    * ``tpv_vector.safetensors``: the vector (tpv file), when a vector is given.

    The folder is built in a temp sibling and moved into place only when complete.

    Args:
        prompt_or_vector: a prompt tensor ``(rows, dim)``, an Origin (its own prompt) or a TaskPromptVector
            (written as ``origin + vector``; needs ``origin``).
        out_dir: the folder to write.
        origin: the origin; required for a vector, optional for a tensor (then saved beside it).
        base_model: recorded as ``base_model_name_or_path``; default the vector's or origin's base model.
        task_type: ``"causal-lm"``, ``"seq2seq"``, ``"seq-cls"`` or a PEFT TaskType; default ``SEQ_2_SEQ_LM``
            for 2-submodule prompts, else ``CAUSAL_LM``.
        num_transformer_submodules: default the vector's or origin's, else 2 for ``SEQ_2_SEQ_LM`` and 1 otherwise.
        tokenizer_name_or_path: recorded in the config (informative only).
        extra_tensors: more tensors for ``adapter_model.safetensors`` in PEFT's key format, e.g. a
            sequence-classification head (``base_model.classifier.weight``); a vector never includes them.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        The folder written.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty, and ``overwrite`` is false.
        AdapterError: a vector without its origin or with another origin, a layout mismatch.
        ConfigError: bad ``task_type`` or ``extra_tensors``.
    """
    from peft import PromptTuningConfig
    from safetensors.torch import save_file

    out = check_output(out_dir, overwrite=overwrite, folder=True)
    source = _adapter_source(prompt_or_vector, origin)
    rows, dim = (int(s) for s in source.prompt.shape)
    peft_task, subs = _adapter_layout(rows, source.layout, task_type, num_transformer_submodules)
    tensors = _adapter_tensors(source.prompt, extra_tensors)
    model_id = base_model or (source.recorded_model if source.recorded_model != UNKNOWN_MODEL else None)
    config = PromptTuningConfig(
        task_type=peft_task,
        num_virtual_tokens=rows // subs,
        token_dim=dim,
        num_transformer_submodules=subs,
        base_model_name_or_path=model_id,
        tokenizer_name_or_path=tokenizer_name_or_path,
        inference_mode=True,
    )
    with atomic_dir(out) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        if source.origin is not None:
            save(source.origin, tmp / ORIGIN_FILE)
        if source.vector is not None:
            save(source.vector, tmp / VECTOR_FILE)
    return out


class _AdapterSource(NamedTuple):
    """What :func:`save_adapter` writes, resolved from its first argument."""

    prompt: torch.Tensor  # (rows, dim)
    origin: Origin | None  # saved beside the prompt when known
    vector: TaskPromptVector | None  # saved beside the prompt when one was given
    layout: tuple[int, int] | None  # (num_virtual_tokens, num_transformer_submodules) when known
    recorded_model: str  # the base model the vector or origin names


def _adapter_source(
    prompt_or_vector: torch.Tensor | TaskPromptVector | Origin, origin: Origin | None
) -> _AdapterSource:
    """The prompt to write (``origin + vector`` for a vector), checked against ``origin``."""
    if isinstance(prompt_or_vector, TaskPromptVector):
        vector = prompt_or_vector
        if origin is None:
            raise AdapterError(
                f"{vector.describe()} is a difference; writing an adapter needs the origin it was tuned from: "
                "pass origin="
            )
        if origin.id != vector.origin_id:
            raise AdapterError(
                f"{vector.describe()} was tuned from origin {vector.origin_id}, but origin= is {origin.id}: "
                "pass the origin it was tuned from"
            )
        prompt = vector.apply_to(origin, strict=True)
        layout = (vector.num_virtual_tokens, vector.num_transformer_submodules)
        return _AdapterSource(prompt, origin, vector, layout, vector.base_model)
    if isinstance(prompt_or_vector, Origin):
        if origin is not None and origin.id != prompt_or_vector.id:
            raise AdapterError(f"the prompt is {prompt_or_vector.describe()} but origin= is another ({origin.id})")
        origin = prompt_or_vector
        layout = (origin.num_virtual_tokens, origin.num_transformer_submodules)
        return _AdapterSource(origin.tensor, origin, None, layout, origin.base_model)
    if isinstance(prompt_or_vector, torch.Tensor):
        prompt = check_prompt_tensor(prompt_or_vector, what="prompt")
        if origin is not None and origin.shape != tuple(prompt.shape):
            raise AdapterError(f"the prompt has shape {tuple(prompt.shape)} but {origin.describe()} has {origin.shape}")
        if origin is None:
            return _AdapterSource(prompt, None, None, None, UNKNOWN_MODEL)
        layout = (origin.num_virtual_tokens, origin.num_transformer_submodules)
        return _AdapterSource(prompt, origin, None, layout, origin.base_model)
    raise ConfigError(
        f"save_adapter writes a prompt tensor, an Origin or a TaskPromptVector; got {type(prompt_or_vector).__name__}"
    )


def _adapter_layout(
    rows: int,
    layout: tuple[int, int] | None,
    task_type: TaskType | str | None,
    num_transformer_submodules: int | None,
) -> tuple[str, int]:
    """``(PEFT task type, num_transformer_submodules)`` of the adapter, checked against the prompt's rows."""
    if layout is not None and num_transformer_submodules is not None and num_transformer_submodules != layout[1]:
        raise AdapterError(
            f"num_transformer_submodules={num_transformer_submodules} but the prompt was made with {layout[1]}"
        )
    if task_type is None:
        subs_hint = layout[1] if layout is not None else num_transformer_submodules
        peft_task = "SEQ_2_SEQ_LM" if subs_hint == 2 else "CAUSAL_LM"
    else:
        peft_task = _peft_task_type(task_type)
    subs = (
        layout[1] if layout is not None else (num_transformer_submodules or (2 if peft_task == "SEQ_2_SEQ_LM" else 1))
    )
    if subs not in (1, 2) or rows % subs:
        raise AdapterError(
            f"a prompt of {rows} rows cannot have num_transformer_submodules={subs} (1, or 2 with even rows)"
        )
    if subs == 2 and peft_task != "SEQ_2_SEQ_LM":
        raise AdapterError(
            f"a 2-submodule (encoder-decoder) prompt needs task_type 'seq2seq' (SEQ_2_SEQ_LM), got {peft_task}"
        )
    return peft_task, subs


def _adapter_tensors(prompt: torch.Tensor, extra_tensors: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors``: the prompt under PEFT's key, then ``extra_tensors``."""
    tensors = {PROMPT_KEY: prompt.contiguous()}
    for key, value in (extra_tensors or {}).items():
        if key == PROMPT_KEY or not isinstance(value, torch.Tensor):
            raise ConfigError(f"extra_tensors must map PEFT keys other than {PROMPT_KEY!r} to tensors; got {key!r}")
        tensors[key] = value.detach().to("cpu").contiguous()
    return tensors
