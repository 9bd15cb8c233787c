"""Resolving a run before its first step: model and tokenizer, task data, verbalizer, origin and PEFT model.

:func:`_setup` turns the arguments of :func:`tpv.engine.train` into a checked :class:`_Setup`, one named step at a
time; the model, tokenizer and verbalizer helpers are shared with :func:`tpv.engine.evaluate`. Task data is
loaded through :func:`_load_task_data`, looked up on this module at call time (tests replace it here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tpv.engine.config import TrainConfig
from tpv.engine.data import Encoded, check_examples, encode, fingerprint, label_token_ids
from tpv.engine.env import cpu_has_native_bf16, resolve_device, resolve_precision
from tpv.engine.heads import with_own_head
from tpv.engine.scoring import TaskType, infer_kind, is_peft
from tpv.errors import ConfigError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

if TYPE_CHECKING:
    from tpv.tasks import TaskData

__all__: list[str] = []

logger = logging.getLogger("tpv.engine")


# -- model, tokenizer, verbalizer -------------------------------------------------------------------------------


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    return int(pad) if pad is not None else 0


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device  # type: ignore[no-any-return]
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _resolve_model(
    model: Any, tokenizer: Any, kind: TaskType | None, num_labels: int | None
) -> tuple[Any, Any, TaskType]:
    """Load a model named by a string; return ``(model, tokenizer, kind)``."""
    if isinstance(model, str | os.PathLike):
        from tpv.models import load_model, load_tokenizer

        name = str(model)
        chosen: TaskType = kind or "causal-lm"
        loaded = load_model(name, task_type=chosen, num_labels=num_labels if chosen == "seq-cls" else None)
        return loaded, tokenizer if tokenizer is not None else load_tokenizer(name), chosen
    if model is None:
        raise ConfigError("model is None; pass a transformers model or a model name such as 'smollm2-135m'")
    if tokenizer is None:
        raise ConfigError(
            f"a {type(model).__name__} was given without its tokenizer; pass tokenizer= (or pass the model by name, "
            "e.g. model='smollm2-135m', to load both)"
        )
    found = infer_kind(model)
    if kind is not None and kind != found:
        raise ConfigError(f"task_type={kind!r} but the model is a {type(_base(model)).__name__} ({found})")
    return model, tokenizer, found


def _base(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _load_task_data(task: str, seed: int) -> TaskData:
    from tpv.tasks import load_task

    return load_task(task, seed=seed)


def _verbalizer(kind: TaskType, model: Any, label_words: Sequence[str] | None) -> tuple[list[str] | None, int]:
    """``(label_words or None, num_labels)`` checked against the model kind."""
    if kind == "seq-cls":
        num = int(getattr(_base(model).config, "num_labels", 0) or 0)
        if label_words is not None and len(label_words) != num:
            raise ConfigError(
                f"the classification head has {num} classes but {len(label_words)} label words were given "
                f"({tuple(label_words)!r}); load the model with num_labels={len(label_words)}"
            )
        return (list(label_words) if label_words is not None else None), num
    if label_words is None:
        raise ConfigError(
            "label_words is required for rank classification with a language model, e.g. "
            "label_words=(' negative', ' positive'); a task name supplies its own"
        )
    words = list(label_words)
    return words, len(words)


def _max_length(cfg_len: int, model: Any, nvt: int) -> int:
    limit = getattr(_base(model).config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0 and cfg_len + nvt > limit:
        clamped = max(1, limit - nvt)
        logger.info(
            "max_length %d + %d virtual tokens exceeds the model's %d positions; using %d", cfg_len, nvt, limit, clamped
        )
        return clamped
    return cfg_len


# -- the run's setup --------------------------------------------------------------------------------------------


@dataclass
class _Setup:
    """Everything a run needs, resolved and checked before the first step."""

    cfg: TrainConfig
    device: torch.device
    precision: str
    kind: TaskType
    task: str
    metric: str
    words: list[str] | None
    label_ids: list[int] | None
    tokenizer: Any
    peft_model: Any
    origin: Origin
    model_name: str
    encoded: list[Encoded]
    val_encoded: list[Encoded]
    identity: dict[str, Any]
    max_length: int
    start: dict[str, Any]


def _setup(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[Any] | None,
    *,
    cfg: TrainConfig,
    task: str | None,
    label_words: Sequence[str] | None,
    validation: Sequence[Any] | None,
    metric: str | None,
    init: torch.Tensor | Origin | TaskPromptVector | None,
    origin: Origin | None,
    task_type: TaskType | None,
) -> _Setup:
    """Resolve model, data, verbalizer, origin and PEFT model; validate everything before training starts."""
    from tpv.models import model_name

    device, precision = _runtime(cfg)
    train_examples, validation, label_words, metric = _task_inputs(
        train_examples, task=task, seed=cfg.seed, validation=validation, label_words=label_words, metric=metric
    )
    model, tokenizer, kind = _plain_model(model, tokenizer, task_type, label_words)
    words, num_labels = _verbalizer(kind, model, label_words)
    texts, labels = check_examples(train_examples, num_labels=num_labels, label_words=words, what="train_examples")
    val_texts, val_labels = _validation_data(validation, cfg, num_labels=num_labels, words=words)
    label_ids = label_token_ids(tokenizer, words) if kind != "seq-cls" and words is not None else None
    start = start_record(init)
    init, origin = _init_and_origin(model, tokenizer, cfg, kind, init=init, origin=origin)
    peft_model = _prompt_model(model, cfg, kind, init=init, origin=origin)
    max_len = _max_length(cfg.max_length, model, origin.num_virtual_tokens)
    name = model_name(model)
    return _Setup(
        cfg=cfg,
        device=device,
        precision=precision,
        kind=kind,
        task=task or "task",
        metric=metric,
        words=words,
        label_ids=label_ids,
        tokenizer=tokenizer,
        peft_model=peft_model,
        origin=origin,
        model_name=name,
        encoded=encode(tokenizer, texts, labels, max_length=max_len),
        val_encoded=encode(tokenizer, val_texts, val_labels, max_length=max_len) if val_texts else [],
        start=start,
        identity={
            "model": name,
            "task": task or "task",
            "kind": kind,
            "config": cfg.to_dict(),
            "origin_id": origin.id,
            "train_data": fingerprint(texts, labels),
            "validation_data": fingerprint(val_texts, val_labels) if val_texts else None,
            "label_words": words,
        },
        max_length=max_len,
    )


def _runtime(cfg: TrainConfig) -> tuple[torch.device, str]:
    """``(device, precision)`` of the run, warning about emulated bf16 on a CPU."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("precision='bf16' on a CPU without AVX512-BF16/AMX: bf16 is emulated and slower than fp32")
    return device, precision


def _task_inputs(
    train_examples: Sequence[Any] | None,
    *,
    task: str | None,
    seed: int,
    validation: Sequence[Any] | None,
    label_words: Sequence[str] | None,
    metric: str | None,
) -> tuple[Sequence[Any], Sequence[Any] | None, Sequence[str] | None, str]:
    """``(train_examples, validation, label_words, metric)``: what was given, else the registered task's."""
    from tpv.metrics import METRICS

    if train_examples is None:
        if task is None:
            raise ConfigError("pass train_examples=[(text, label), ...] or task='name' (a registered task)")
        data = _load_task_data(task, seed)
        train_examples = data.train
        validation = data.validation if validation is None else validation
        label_words = label_words if label_words is not None else (data.spec.label_words or None)
        metric = metric or data.spec.metric
    metric = metric or "accuracy"
    if metric not in METRICS or metric in ("pearson", "spearman"):
        raise ConfigError(f"metric={metric!r}: must be one of accuracy, f1, macro_f1, matthews (classification)")
    return train_examples, validation, label_words, metric


def _plain_model(
    model: Any, tokenizer: Any, task_type: TaskType | None, label_words: Sequence[str] | None
) -> tuple[Any, Any, TaskType]:
    """:func:`_resolve_model`, refusing a model that is already a ``PeftModel``."""
    model, tokenizer, kind = _resolve_model(model, tokenizer, task_type, len(label_words) if label_words else None)
    if is_peft(model):
        raise ConfigError(
            "model is already a PeftModel; pass the plain transformers model (peft_model.get_base_model()) and "
            "the prompt to start from as init="
        )
    return model, tokenizer, kind


def _validation_data(
    validation: Sequence[Any] | None, cfg: TrainConfig, *, num_labels: int, words: list[str] | None
) -> tuple[list[str], list[int]]:
    """The checked validation texts and labels (the first ``cfg.eval_examples``; empty without validation)."""
    val_items = list(validation) if validation is not None else []
    if cfg.eval_examples is not None:
        val_items = val_items[: cfg.eval_examples]
    if not val_items:
        return [], []
    return check_examples(val_items, num_labels=num_labels, label_words=words, what="validation")


def start_record(init: torch.Tensor | Origin | TaskPromptVector | None) -> dict[str, Any]:
    """Where a run starts, for ``run.json`` and the vector's terms.

    Returns:
        ``{"kind": "new origin" | "origin" | "tensor" | "vector", "terms": {task: coefficient}}``; ``terms`` is the
        combination the run starts from (``origin + sum_i c_i tau_i``), empty unless ``init`` is a vector.
    """
    if init is None:
        return {"kind": "new origin", "terms": {}}
    if isinstance(init, TaskPromptVector):
        return {"kind": "vector", "terms": dict(init.terms)}
    return {"kind": "origin" if isinstance(init, Origin) else "tensor", "terms": {}}


def vector_terms(task: str, start: dict[str, Any]) -> dict[str, float]:
    """The terms of the vector a run returns: the starting combination's terms plus ``{task: 1}``.

    The returned vector is measured from the origin (``tuned - origin``), so a run started from
    ``origin + tau_rt`` returns a vector that still holds ``tau_rt``: its terms say so (``{rt: 1, imdb: 1}``), and
    adding ``tau_rt`` to it again shows ``rt: 2`` instead of silently counting it twice. A task already among the
    starting terms keeps its coefficient.
    """
    terms = {str(k): float(v) for k, v in start.get("terms", {}).items()}
    terms.setdefault(task, 1.0)
    return terms


def _init_and_origin(
    model: Any,
    tokenizer: Any,
    cfg: TrainConfig,
    kind: TaskType,
    *,
    init: torch.Tensor | Origin | TaskPromptVector | None,
    origin: Origin | None,
) -> tuple[torch.Tensor | Origin | TaskPromptVector, Origin]:
    """``(init, origin)``: the prompt the run starts at and the origin the vector is measured from."""
    from tpv.adapters import make_origin
    from tpv.models import model_name

    if init is None:
        origin = origin or make_origin(
            model,
            cfg.init,
            num_virtual_tokens=cfg.virtual_tokens,
            seed=cfg.origin_seed,
            text=cfg.init_text,
            tokenizer=tokenizer,
        )
        init = origin
    elif isinstance(init, Origin):
        origin = origin or init
    elif isinstance(init, torch.Tensor) and origin is None:
        subs = 2 if kind == "seq2seq" else 1
        origin = Origin.from_tensor(init, base_model=model_name(model), num_transformer_submodules=subs)
    elif isinstance(init, TaskPromptVector) and origin is None:
        raise ConfigError("init is a TaskPromptVector (a difference): pass origin= (the Origin it was tuned from)")
    assert origin is not None
    return init, origin


def _prompt_model(
    model: Any, cfg: TrainConfig, kind: TaskType, *, init: torch.Tensor | Origin | TaskPromptVector, origin: Origin
) -> Any:
    """The PEFT prompt-tuning model starting at ``init`` (only the prompt, and a seq-cls head if asked, trainable).

    A sequence classifier is wrapped through :func:`tpv.engine.heads.with_own_head`: the run trains its own copy of
    the model's original head, and ``model`` itself is never wrapped (PEFT wraps a head in place, so a second run
    on the same model would otherwise start from, and keep changing, the first run's head).
    """
    from tpv.adapters import init_prompt_tuning

    if cfg.num_virtual_tokens is not None and cfg.num_virtual_tokens != origin.num_virtual_tokens:
        raise ConfigError(
            f"TrainConfig.num_virtual_tokens={cfg.num_virtual_tokens} but the init has {origin.num_virtual_tokens} "
            "virtual tokens; drop num_virtual_tokens or make them match"
        )
    peft_model = init_prompt_tuning(
        with_own_head(model), init, origin=None if isinstance(init, Origin) else origin, task_type=kind
    )
    if kind == "seq-cls" and not cfg.train_head:
        for name, p in peft_model.named_parameters():
            if "prompt_encoder" not in name:
                p.requires_grad_(False)
    return peft_model
