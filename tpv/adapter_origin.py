"""Origins of adapters made the ordinary PEFT way, and checks of a given origin against an adapter's config.

PEFT never saves the init a prompt was tuned from. Of its three inits only one can be rebuilt afterwards:

* ``TEXT`` (``prompt_tuning_init_text``, ``tokenizer_name_or_path``) is deterministic: the embeddings of the text's
  token ids (special tokens included), tiled to the prompt length. :func:`recover_origin` rebuilds it with
  :func:`tpv.adapters.make_origin` from the base model and tokenizer (given, or loaded with
  :func:`tpv.models.load_model` / :func:`tpv.models.load_tokenizer` from the names in ``adapter_config.json``) and
  records how in the origin's ``params["recovered"]``.
* ``RANDOM`` is ``nn.Embedding``'s N(0, 1) draw from the global RNG when ``get_peft_model`` ran, and
  ``SAMPLE_VOCAB`` copies vocabulary rows chosen at random then: neither can be rebuilt, and
  :func:`recover_origin` raises one :class:`~tpv.errors.AdapterError` saying so and how to capture the init next
  time (``tpv.capture_origin(peft_model)`` right after ``get_peft_model``, or build the model with
  ``tpv.init_prompt_tuning``).

:func:`check_origin` refuses an origin that contradicts the adapter's config (another init kind or init text,
another base model); ``tpv.from_adapter(..., check_origin=False)`` skips it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tpv._adapter_files import ADAPTER_CONFIG, TPV_TASK
from tpv._model_id import canonical_model_id
from tpv.errors import AdapterError, TPVError
from tpv.origin import Origin
from tpv.vector import UNKNOWN_MODEL

__all__ = ["check_origin", "model_identity", "peft_init_of", "rebuild_origin", "resolvable_model_path"]

logger = logging.getLogger("tpv.adapters")

_CAPTURE = (
    "Fix: capture the init when the PEFT model is made, before training: `origin = tpv.capture_origin(peft_model)` "
    "right after `get_peft_model` (or build the model with `tpv.init_prompt_tuning(model, origin)`, which records "
    "it), save with `tpv.save_pretrained(peft_model, dir)` (or pass `tpv.OriginCallback()` to Trainer) so the "
    "folder keeps it, or pass `origin=` to from_adapter"
)


def peft_init_of(config: Mapping[str, Any]) -> str:
    """The PEFT init kind an adapter config names: ``"TEXT"``, ``"RANDOM"`` (PEFT's default), ``"SAMPLE_VOCAB"``..."""
    value = config.get("prompt_tuning_init") or "RANDOM"
    return str(getattr(value, "value", value)).upper()


# -- model identity -------------------------------------------------------------------------------------------------


def _realpath(name: str) -> str | None:
    try:
        path = os.path.realpath(os.path.expanduser(name))
    except (OSError, ValueError):
        return None
    return path if os.path.isdir(path) else None


def _packaged_folders() -> dict[str, str]:
    """``{real path of a local packaged model folder: packaged name}`` for the packaged models available here."""
    from tpv.models import PACKAGED, _converted_dir, _is_converted

    folders: dict[str, str] = {}
    for spec in PACKAGED.values():
        try:
            if spec.source == "hf-folder":
                if spec.missing_modules():
                    continue
                folder = spec.package_dir() / spec.path
                if not (folder / "config.json").is_file():
                    continue
            elif _is_converted(spec):
                folder = _converted_dir(spec)
            else:
                continue
        except (TPVError, OSError):
            continue
        real = _realpath(str(folder))
        if real is not None:
            folders[real] = spec.name
    return folders


def model_identity(name: str) -> str:
    """The model id tpv records for a model named ``name`` (a packaged model's local folder -> its packaged name).

    Args:
        name: a ``base_model_name_or_path``: a packaged name, a Hub id or a local folder.

    Returns:
        The packaged name when ``name`` is a packaged model's converted folder (see
        :func:`tpv._model_id.canonical_model_id`) or its installed Hugging Face folder, else ``name``.
    """
    canonical = canonical_model_id(name)
    if canonical != name or ("/" not in name and os.sep not in name):
        return canonical
    real = _realpath(name)
    return _packaged_folders().get(real, name) if real is not None else name


def resolvable_model_path(name: str) -> str:
    """What an adapter should record as ``base_model_name_or_path`` for a model tpv calls ``name``.

    A packaged name (``smollm2-135m``...) is not something ``from_pretrained`` can load, so when the packaged model
    is available locally (already converted, or installed as a plain folder) its folder is returned:
    ``AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` then loads offline, and tpv maps the folder back to the
    packaged name (:func:`model_identity`). Anything else, and a packaged model not available here, is kept as is
    (nothing is converted or downloaded).

    Args:
        name: the model's id as tpv records it.

    Returns:
        A local folder path, or ``name``.
    """
    from tpv.models import PACKAGED

    if name not in PACKAGED:
        return name
    for folder, packaged in _packaged_folders().items():
        if packaged == name:
            return folder
    return name


def _same_model(a: str, b: str) -> bool:
    if a == b or model_identity(a) == model_identity(b):
        return True
    ra, rb = _realpath(a), _realpath(b)
    return ra is not None and ra == rb


# -- checks ---------------------------------------------------------------------------------------------------------


def _contradictions(origin: Origin, config: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    peft_init = peft_init_of(config)
    captured = origin.params.get("peft_init")
    if isinstance(captured, str) and captured.upper() != peft_init:
        problems.append(f"it was captured from a PEFT {captured.upper()} init, but the adapter's is {peft_init}")
    if peft_init == "TEXT":
        text = config.get("prompt_tuning_init_text")
        given = origin.params.get("text")
        if origin.init in ("gaussian", "sample-vocab", "first-n-vocab"):
            problems.append(f"it is a {origin.init} origin, but the adapter was initialized from the text {text!r}")
        elif isinstance(given, str) and isinstance(text, str) and given != text:
            problems.append(f"its init text is {given!r}, but the adapter's prompt_tuning_init_text is {text!r}")
    elif peft_init == "SAMPLE_VOCAB" and origin.init in ("gaussian", "text"):
        problems.append(f"it is a {origin.init} origin, but the adapter was initialized from sampled vocabulary rows")
    recorded = config.get("base_model_name_or_path")
    known = isinstance(recorded, str) and bool(recorded) and origin.base_model != UNKNOWN_MODEL
    if known and not _same_model(origin.base_model, str(recorded)):
        problems.append(
            f"it was made for the model {origin.base_model!r}, but the adapter's base_model_name_or_path is "
            f"{recorded!r}"
        )
    return problems


def check_origin(origin: Origin, config: Mapping[str, Any], folder: str | os.PathLike[str]) -> None:
    """Refuse an origin that contradicts an adapter's config.

    Contradictions: an origin of another init kind than the config's ``prompt_tuning_init`` (a gaussian or vocabulary
    origin for a ``TEXT`` adapter, a gaussian or text origin for a ``SAMPLE_VOCAB`` one; ``RANDOM``, PEFT's default
    and what tpv writes, accepts any), a text origin whose text differs from ``prompt_tuning_init_text``, an origin
    captured from another PEFT init, or an origin made for another model than ``base_model_name_or_path`` (when both
    are known; a packaged model's local folder counts as its packaged name).

    Args:
        origin: the origin given for the adapter.
        config: the adapter's parsed ``adapter_config.json``.
        folder: the adapter folder (for the message).

    Raises:
        AdapterError: naming each contradiction and the fix.
    """
    problems = _contradictions(origin, config)
    if problems:
        raise AdapterError(
            f"the origin given ({origin.describe()}) contradicts {str(Path(folder) / ADAPTER_CONFIG)!r}: "
            f"{'; '.join(problems)}. A vector against the wrong origin is meaningless. Fix: pass the origin this "
            "adapter was tuned from, or check_origin=False if you know this one is right"
        )


# -- recovery -------------------------------------------------------------------------------------------------------


def _load_for_text(
    config: Mapping[str, Any], model: Any | None, tokenizer: Any | None
) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, how)`` for rebuilding a TEXT init: the given ones, or loaded from the config's names."""
    from tpv.models import load_model, load_tokenizer, model_name

    how: dict[str, Any] = {}
    model_ref = config.get("base_model_name_or_path")
    tok_ref = config.get("tokenizer_name_or_path") or model_ref
    if model is None:
        if not isinstance(model_ref, str) or not model_ref:
            raise AdapterError(
                f"the adapter's {ADAPTER_CONFIG} names no base_model_name_or_path to rebuild its TEXT init from. "
                "Fix: pass model= (the base model) and tokenizer="
            )
        task = TPV_TASK.get(str(config.get("task_type")), "causal-lm")
        try:
            model = load_model(model_ref, task_type=task)  # type: ignore[arg-type]
        except TPVError as exc:
            raise AdapterError(f"cannot load the base model {model_ref!r} to rebuild the TEXT init: {exc}. "
                               "Fix: pass model= and tokenizer=") from exc  # fmt: skip
        how["model"] = model_ref
    else:
        how["model"] = model_name(model)
    if tokenizer is None:
        if not isinstance(tok_ref, str) or not tok_ref:
            raise AdapterError(f"the adapter's {ADAPTER_CONFIG} names no tokenizer_name_or_path; pass tokenizer=")
        kwargs = config.get("tokenizer_kwargs") or {}
        try:
            if kwargs:  # PEFT tokenizes with these; tpv's loader takes none
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(tok_ref, **kwargs)
            else:
                tokenizer = load_tokenizer(tok_ref)
        except (TPVError, OSError, ValueError) as exc:
            raise AdapterError(f"cannot load the tokenizer {tok_ref!r} to rebuild the TEXT init: {exc}. "
                               "Fix: pass tokenizer=") from exc  # fmt: skip
        how["tokenizer"] = tok_ref
    else:
        how["tokenizer"] = str(getattr(tokenizer, "name_or_path", "") or "given")
    return model, tokenizer, how


def rebuild_origin(
    folder: Path, config: Mapping[str, Any], *, model: Any | None = None, tokenizer: Any | None = None
) -> Origin:
    """The origin of an adapter folder without ``origin.safetensors``, rebuilt from its config (see module doc).

    Args:
        folder: the adapter folder (for messages and the record).
        config: its parsed ``adapter_config.json``.
        model: the base model (default: loaded from ``base_model_name_or_path``).
        tokenizer: its tokenizer (default: loaded from ``tokenizer_name_or_path``).

    Returns:
        The ``TEXT`` init, shape ``(num_virtual_tokens * num_transformer_submodules, dim)``, with
        ``params["recovered"]`` recording how it was rebuilt.

    Raises:
        AdapterError: a ``RANDOM`` or ``SAMPLE_VOCAB`` init (never recoverable), an unknown init, a ``TEXT`` init
            whose model or tokenizer cannot be loaded.
    """
    from tpv.model_origin import make_origin

    where = str(folder)
    peft_init = peft_init_of(config)
    if peft_init == "RANDOM":
        raise AdapterError(
            f"{where!r} holds no origin.safetensors, and its PEFT init is RANDOM (prompt_tuning_init, PEFT's "
            "default): the init was nn.Embedding's N(0, 1) draw from the global torch RNG at the moment "
            "get_peft_model ran, and PEFT never saves it, so it cannot be rebuilt. " + _CAPTURE
        )
    if peft_init == "SAMPLE_VOCAB":
        raise AdapterError(
            f"{where!r} holds no origin.safetensors, and its PEFT init is SAMPLE_VOCAB: the init copied vocabulary "
            "rows chosen at random (global torch RNG) when get_peft_model ran, and PEFT never saves which, so it "
            "cannot be rebuilt. " + _CAPTURE
        )
    if peft_init != "TEXT":
        raise AdapterError(f"{where!r} holds no origin.safetensors and its PEFT init {peft_init!r} is unknown to tpv. "
                           + _CAPTURE)  # fmt: skip
    text = config.get("prompt_tuning_init_text")
    if not isinstance(text, str) or not text:
        raise AdapterError(
            f"{where!r}: prompt_tuning_init is TEXT but prompt_tuning_init_text is {text!r}. " + _CAPTURE
        )
    model, tokenizer, how = _load_for_text(config, model, tokenizer)
    nvt, subs = config.get("num_virtual_tokens"), config.get("num_transformer_submodules") or 1
    if not isinstance(nvt, int) or not isinstance(subs, int):
        raise AdapterError(f"{where!r}: {ADAPTER_CONFIG} gives no num_virtual_tokens; cannot rebuild its TEXT init")
    built = make_origin(
        model, "text", num_virtual_tokens=nvt, text=text, tokenizer=tokenizer, num_transformer_submodules=subs
    )
    recorded = config.get("base_model_name_or_path")
    known = isinstance(recorded, str) and bool(recorded) and built.base_model != UNKNOWN_MODEL
    if known and not _same_model(built.base_model, str(recorded)):
        logger.warning(
            "rebuilding the TEXT init of %s on %r, but the adapter names %r", where, built.base_model, recorded
        )
    record = {"from": ADAPTER_CONFIG, "peft_init": "TEXT", "adapter": where, **how}
    logger.info("rebuilt the TEXT init of %s from %s (model %r, tokenizer %r)", where, ADAPTER_CONFIG, how["model"],
                how["tokenizer"])  # fmt: skip
    return Origin(
        built.tensor,
        init="text",
        params={**built.params, "recovered": record},
        base_model=built.base_model,
        num_virtual_tokens=built.num_virtual_tokens,
        num_transformer_submodules=built.num_transformer_submodules,
    )
