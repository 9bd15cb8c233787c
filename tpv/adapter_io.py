"""Adapter folders: read a PEFT prompt-tuning adapter into a vector, write a vector or prompt as one.

:func:`read_adapter` reads a folder without PEFT, :func:`from_adapter` turns it into ``tuned - origin`` (the
origin from the folder's ``origin.safetensors``, from ``origin=``, or rebuilt from a PEFT ``TEXT`` init, see
:mod:`tpv.adapter_origin`), :func:`save_adapter` writes a standard folder that PEFT loads with no tpv installed.
All three are exported by :mod:`tpv.adapters` (and lazily by :mod:`tpv`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from tpv._adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ORIGIN_FILE,
    PICKLE_WEIGHTS,
    PROMPT_KEY,
    VECTOR_FILE,
    peft_task_name,
)
from tpv._fs import atomic_dir, check_output
from tpv._tensor import check_prompt_tensor
from tpv.errors import AdapterError, ConfigError, FormatError, IncompatibleVectorsError
from tpv.files import load_origin, load_vector, save
from tpv.models import TaskType
from tpv.origin import Origin
from tpv.vector import UNKNOWN_MODEL, TaskPromptVector

__all__ = ["from_adapter", "read_adapter", "recover_origin", "save_adapter"]

logger = logging.getLogger("tpv.adapters")


# -- adapter folders --------------------------------------------------------------------------------------------


def _adapter_folder(adapter_dir: str | os.PathLike[str]) -> Path:
    """``adapter_dir``, or the downloaded snapshot of a Hub adapter (``owner/repo``, ``hf://owner/repo[@rev][/sub]``)."""
    from tpv.hub.refs import resolve_adapter_dir

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
        pickled = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
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


def _origin_arg(
    origin: Origin | torch.Tensor | str | os.PathLike[str] | None,
    folder: Path,
    config: Mapping[str, Any],
    *,
    model: Any | None = None,
    tokenizer: Any | None = None,
) -> Origin:
    """The origin ``from_adapter`` uses: the given one, the folder's file, else rebuilt from the config."""
    if isinstance(origin, Origin):
        return origin
    if isinstance(origin, torch.Tensor):  # e.g. tpv.prompt_of(peft_model) taken right after get_peft_model
        return Origin(origin, params={"source": "tensor given to from_adapter"})
    path = Path(origin) if origin is not None else folder / ORIGIN_FILE
    if origin is None and not path.is_file():
        from tpv.adapter_origin import rebuild_origin

        return rebuild_origin(folder, config, model=model, tokenizer=tokenizer)
    try:
        return load_origin(path)
    except (FormatError, OSError) as exc:
        raise AdapterError(f"cannot read the origin {str(path)!r}: {exc}") from exc


def _config_model(config: Mapping[str, Any]) -> str | None:
    """The adapter's ``base_model_name_or_path`` as tpv names the model (a packaged folder -> its packaged name)."""
    from tpv.adapter_origin import model_identity

    name = config.get("base_model_name_or_path")
    return model_identity(name) if isinstance(name, str) and name else None


def from_adapter(
    adapter_dir: str | os.PathLike[str],
    *,
    origin: Origin | torch.Tensor | str | os.PathLike[str] | None = None,
    task: str | None = None,
    base_model: str | None = None,
    model: Any | None = None,
    tokenizer: Any | None = None,
    check_origin: bool = True,
) -> TaskPromptVector:
    """Read a PEFT prompt-tuning adapter folder into its task prompt vector ``tuned - origin``.

    The origin is, in order: ``origin=``; the folder's ``origin.safetensors`` (written by :func:`save_adapter`,
    :func:`tpv.save_pretrained`, :class:`tpv.OriginCallback`, ``tpv train``); else rebuilt from
    ``adapter_config.json`` when PEFT's ``TEXT`` init made it (see :func:`tpv.recover_origin`; a ``RANDOM`` or
    ``SAMPLE_VOCAB`` init cannot be rebuilt and raises :class:`~tpv.errors.AdapterError` saying how to capture it).

    Args:
        adapter_dir: folder with ``adapter_config.json`` and ``adapter_model.safetensors``, or a Hub adapter
            (``"owner/repo"`` when no local folder has that name, or ``hf://owner/repo[@revision][/subfolder]``).
        origin: the :class:`~tpv.Origin` the prompt was tuned from, its tensor ``(rows, dim)`` (e.g.
            ``tpv.prompt_of(peft_model)`` taken right after ``get_peft_model``), or the path of its file. When the
            folder holds an origin file, a different ``origin`` is refused.
        task: the task's name (terms ``{task: 1.0}``); by default the folder's ``tpv_vector.safetensors``
            decides: when it gives back the adapter's prompt from this origin exactly, it is returned as saved
            (full precision), else its terms are used.
        base_model: model id to record; default the origin's (else the adapter's ``base_model_name_or_path``).
        model: the base model, to rebuild a ``TEXT`` init (default: loaded from ``base_model_name_or_path``).
        tokenizer: its tokenizer, to rebuild a ``TEXT`` init (default: loaded from ``tokenizer_name_or_path``).
        check_origin: refuse a given ``origin`` that contradicts the adapter's config (another init kind or init
            text, another base model; see :func:`tpv.adapter_origin.check_origin`). ``False`` accepts it as is.

    Returns:
        The vector (float64 differences; ``vector.apply_to(origin)`` is the tuned prompt bit for bit).

    Raises:
        AdapterError: not a prompt-tuning adapter, pickle weights, missing files, another origin, an origin that
            contradicts the config, an origin that cannot be rebuilt, a shape or submodule mismatch.
        ConfigError: no ``task`` given and no ``tpv_vector.safetensors`` to take the terms from.
    """
    folder = _adapter_folder(adapter_dir)
    prompt, config = read_adapter(folder)
    org = _origin_arg(origin, folder, config, model=model, tokenizer=tokenizer)
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
    if origin is not None and check_origin:
        from tpv.adapter_origin import check_origin as _check

        _check(org, config, folder)
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
    model_id = base_model or recorded_model or _config_model(config) or UNKNOWN_MODEL
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
        base_model: the model, recorded as ``base_model_name_or_path``; default the vector's or origin's base model. A
            packaged name (``smollm2-135m``...) available locally is written as its local folder (which
            ``AutoPeftModelForCausalLM.from_pretrained(out_dir)`` loads offline; tpv reads it back as the name).
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
    if model_id is not None:
        from tpv.adapter_origin import resolvable_model_path

        model_id = resolvable_model_path(model_id)  # a packaged name -> its local folder, when there is one
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
        peft_task = peft_task_name(task_type)
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


def recover_origin(
    adapter_dir: str | os.PathLike[str], *, model: Any | None = None, tokenizer: Any | None = None
) -> Origin:
    """The origin an adapter folder was tuned from: its ``origin.safetensors``, else rebuilt from its config.

    Only PEFT's ``TEXT`` init can be rebuilt (see the module doc); :func:`tpv.from_adapter` calls this when no
    ``origin=`` is given and the folder holds no origin file, so ``vector.apply_to(recover_origin(dir))`` is the
    adapter's prompt.

    Args:
        adapter_dir: the adapter folder (or a Hub adapter, as for :func:`tpv.from_adapter`).
        model: the base model (default: loaded from the config's ``base_model_name_or_path``).
        tokenizer: its tokenizer (default: loaded from ``tokenizer_name_or_path``).

    Returns:
        The origin; a rebuilt one records ``params["recovered"] = {"from": "adapter_config.json", "peft_init":
        "TEXT", "adapter": ..., "model": ..., "tokenizer": ...}``.

    Raises:
        AdapterError: not a prompt-tuning adapter; an init that cannot be rebuilt (``RANDOM``, ``SAMPLE_VOCAB``);
            a model or tokenizer that cannot be loaded.
    """
    from tpv.adapter_origin import rebuild_origin

    folder = _adapter_folder(adapter_dir)
    _, config = read_adapter(folder)
    if (folder / ORIGIN_FILE).is_file():
        return _origin_arg(None, folder, config)
    return rebuild_origin(folder, config, model=model, tokenizer=tokenizer)
