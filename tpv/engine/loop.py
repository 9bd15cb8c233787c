"""``train`` and ``evaluate``: prompt tuning and rank-classification scoring (see ``docs/training.md``).

Speed comes from doing only the work the answer needs: one forward pass per batch, logits only at each row's
answer position and only for the label words (:mod:`tpv.engine.scoring`), inputs tokenized once, batches padded to
their own longest row and grouped by length, gradients only for the prompt (the model is frozen, so the backward
pass computes input gradients, never weight gradients), bf16 autocast where the hardware has it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from tpv._fs import atomic_write_text
from tpv.engine.checkpoint import CHECKPOINT_DIR, CheckpointState, read_checkpoint, write_checkpoint
from tpv.engine.config import TrainConfig
from tpv.engine.data import Encoded, check_examples, collate, encode, eval_batches, fingerprint, label_token_ids
from tpv.engine.data import plan_epoch as _plan_epoch
from tpv.engine.env import cpu_has_native_bf16, environment, resolve_device, resolve_precision
from tpv.engine.scoring import Scorer, TaskType, has_prompt, infer_kind, is_peft
from tpv.errors import ConfigError, TrainingError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

if TYPE_CHECKING:
    from tpv.tasks import TaskData

__all__ = ["RUN_FILE", "Launcher", "TrainEvent", "TrainResult", "evaluate", "train"]

logger = logging.getLogger("tpv.engine")

Launcher = Literal["auto", "none", "accelerate"]
RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
ORIGIN_FILE = "origin.safetensors"
VECTOR_FILE = "vector.safetensors"
_RUN_FORMAT = "tpv-run"


# -- public records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainEvent:
    """A progress report passed to ``train(..., callback=...)`` (library code never prints; the CLI does).

    Attributes:
        kind: ``"start"``, ``"step"`` (every ``log_every`` steps), ``"eval"``, ``"checkpoint"``, ``"stop"`` (early
            stopping) or ``"end"``.
        step: optimizer steps done.
        total: steps planned.
        loss: mean training loss since the last ``"step"`` event.
        lr: current learning rate.
        metrics: evaluation results (``"eval"`` and ``"end"``).
        message: one human-readable line.
    """

    kind: Literal["start", "step", "eval", "checkpoint", "stop", "end"]
    step: int
    total: int
    loss: float | None = None
    lr: float | None = None
    metrics: Mapping[str, Any] | None = None
    message: str = ""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        vector: the task prompt vector ``kept_prompt - origin`` (terms ``{task: 1.0}``).
        origin: the origin the prompt was tuned from.
        prompt: the kept prompt (best on validation when validation was given, else the last), ``(rows, dim)``.
        model: the ``peft.PeftModel`` holding the kept prompt (ready for :func:`evaluate`).
        tokenizer: the model's tokenizer (``evaluate(result, task=...)`` takes both from the result).
        task: the task's name.
        config: the config the run used.
        history: one record per optimizer step: ``step``, ``loss``, ``lr``, ``seconds``.
        lr: the peak learning rate the run used (``config.lr`` resolved: see :mod:`tpv.engine.lr`).
        lr_choice: how it was chosen: ``rule`` (``"given"``, ``"auto"`` or ``"range-test"``), ``lr``,
            ``embedding_scale`` and, for the range test, its ``lrs`` and ``losses``.
        norm_ratio: ``||prompt - origin|| / ||origin||``: how far tuning moved the prompt, in units of the origin.
        warnings: the guard's findings, one sentence each with the likely cause and the fix: a prompt that left its
            embedding scale (``norm_ratio > 5``) or a validation score that never rose above chance.
        evals: one record per evaluation: ``step``, ``score`` and the metrics of :func:`evaluate`.
        best_step: the step whose prompt was kept (``None`` without validation).
        best_score: its validation score.
        metrics: the validation metrics of the kept prompt (``{}`` without validation).
        steps: optimizer steps run in total (fewer than ``config.steps`` after early stopping).
        stopped_early: whether early stopping ended the run.
        seconds: wall time of the training loop (this session; a resumed run adds the earlier ones).
        out_dir: where the run was saved, if anywhere.
        resumed_from: the checkpoint step this session started from, if it resumed.
    """

    vector: TaskPromptVector
    origin: Origin
    prompt: torch.Tensor
    model: Any
    tokenizer: Any
    task: str
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    lr: float = float("nan")
    lr_choice: dict[str, Any] = field(default_factory=dict)
    norm_ratio: float = float("nan")
    warnings: list[str] = field(default_factory=list)
    best_step: int | None = None
    best_score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    out_dir: Path | None = None
    resumed_from: int | None = None

    @property
    def steps_per_second(self) -> float:
        """Optimizer steps per second over this session's training loop."""
        run = self.steps - (self.resumed_from or 0)
        return run / self.seconds if self.seconds > 0 else float("nan")


# -- small helpers ----------------------------------------------------------------------------------------------


def _lr_at(cfg: TrainConfig, step: int, peak: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup to ``peak``, then the schedule."""
    if cfg.warmup and step < cfg.warmup:
        return peak * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return peak
    span = max(1, cfg.steps - cfg.warmup)
    progress = (step - cfg.warmup) / span
    if cfg.schedule == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=cfg.weight_decay)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, file=sys.stderr, disable=not enabled, dynamic_ncols=True, leave=False
    )


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


# -- scoring ----------------------------------------------------------------------------------------------------


class _Evaluator:
    """Scores a fixed, pre-tokenized example set (reused at every evaluation of a run)."""

    def __init__(
        self,
        encoded: list[Encoded],
        *,
        metric: str,
        batch_size: int,
        pad_id: int,
        device: torch.device,
        precision: str,
    ) -> None:
        self.encoded = encoded
        self.metric = metric
        self.batches = eval_batches([len(e.ids) for e in encoded], batch_size)
        self.pad_id = pad_id
        self.device = device
        self.precision = precision

    def scores(self, scorer: Scorer, *, progress: bool = False) -> torch.Tensor:
        """Class logits of every example, in dataset order, shape ``(N, C)``, float32 on the CPU."""
        was_training = scorer.training
        scorer.eval()
        out: torch.Tensor | None = None
        bar = _progress_bar(len(self.encoded), 0, "scoring", progress)
        try:
            with torch.inference_mode(), _autocast(self.device, self.precision):
                for index in self.batches:
                    batch = collate(self.encoded, index, pad_id=self.pad_id).to(self.device)
                    logits, _ = scorer(batch.input_ids, batch.attention_mask)  # (B, C)
                    logits = logits.float().cpu()
                    if out is None:
                        out = torch.empty((len(self.encoded), logits.shape[1]), dtype=torch.float32)
                    out[batch.index] = logits
                    bar.update(len(index))
        finally:
            bar.close()
            scorer.train(was_training)
        assert out is not None
        return out

    def run(self, scorer: Scorer, *, progress: bool = False, predictions: bool = False) -> dict[str, Any]:
        """Score, then compute the metric, accuracy, the mean cross-entropy over the classes and the speed."""
        from tpv.metrics import compute_metric

        start = time.perf_counter()
        logits = self.scores(scorer, progress=progress)  # (N, C)
        seconds = time.perf_counter() - start
        labels = torch.tensor([e.label for e in self.encoded], dtype=torch.long)  # (N,)
        preds = logits.argmax(dim=1)  # (N,)
        loss = float(torch.nn.functional.cross_entropy(logits, labels))
        pred_list, label_list = preds.tolist(), labels.tolist()
        accuracy = int((preds == labels).sum()) / len(label_list)
        score = compute_metric(self.metric, pred_list, label_list) if self.metric != "accuracy" else accuracy
        result: dict[str, Any] = {
            "metric": self.metric,
            "score": float(score),
            self.metric: float(score),
            "accuracy": accuracy,
            "loss": loss,
            "examples": len(self.encoded),
            "seconds": seconds,
            "examples_per_s": len(self.encoded) / seconds if seconds > 0 else float("inf"),
        }
        if predictions:
            result["predictions"] = pred_list
        return result


def evaluate(
    model: Any,
    tokenizer: Any | None = None,
    examples: Sequence[Any] | None = None,
    *,
    label_words: Sequence[str] | None = None,
    task: str | None = None,
    split: Literal["train", "validation", "test"] = "test",
    metric: str | None = None,
    batch_size: int = 32,
    max_length: int = 256,
    max_examples: int | None = None,
    precision: str = "auto",
    device: str | None = None,
    task_type: TaskType | None = None,
    seed: int = 0,
    progress: bool = False,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Score a model on classification examples by rank classification, one forward pass per batch.

    Each example's class is the label word with the highest logit at the answer position (see
    :mod:`tpv.engine.scoring`); a PEFT prompt-tuning model is scored with its prompt, a plain model without one.

    Args:
        model: a ``peft.PeftModel`` (e.g. ``TrainResult.model``), a :class:`TrainResult` (its model and tokenizer),
            a plain ``transformers`` model, or a model name.
        tokenizer: its tokenizer (loaded for a model name, taken from a TrainResult, when omitted).
        examples: ``Example(text, label)`` objects or ``(text, label)`` pairs; or give ``task``.
        label_words: the verbalizer (a task supplies its own); not needed for a classification head.
        task: a registered task name; its ``split`` is scored and it supplies label words and metric.
        split: which split of ``task``.
        metric: ``accuracy`` (default), ``f1``, ``macro_f1`` or ``matthews`` (a task supplies its own).
        batch_size: examples per forward pass.
        max_length: most input tokens per example (the middle of longer inputs is dropped).
        max_examples: score only the first N examples.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (autocast).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``; default: where the model is.
        task_type: ``"causal-lm"``, ``"seq2seq"`` or ``"seq-cls"`` (inferred from the model).
        seed: the task's split seed.
        progress: show a progress bar on stderr.
        return_predictions: add ``"predictions"`` (class indices in example order).

    Returns:
        ``{"metric", "score", <metric>, "accuracy", "loss", "examples", "seconds", "examples_per_s"}``; ``loss``
        is the mean cross-entropy over the label words.

    Raises:
        TrainingError: no examples, or a label missing from the verbalizer.
        ConfigError: a bad option (missing label words or tokenizer, unknown metric, ...).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: must be a positive integer")
    if isinstance(model, TrainResult):
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        model = model.model
    if examples is None and task is not None:
        data = _load_task_data(task, seed)
        if split not in ("train", "validation", "test"):
            raise ConfigError(f"split={split!r}: must be 'train', 'validation' or 'test'")
        examples = getattr(data, split)
        label_words = label_words if label_words is not None else (data.spec.label_words or None)
        metric = metric or data.spec.metric
    metric = metric or "accuracy"
    num_labels_hint = len(label_words) if label_words is not None else None
    model, tokenizer, kind = _resolve_model(model, tokenizer, task_type, num_labels_hint)
    words, num_labels = _verbalizer(kind, model, label_words)
    items = list(examples) if examples is not None else []
    if max_examples is not None:
        items = items[:max_examples]
    texts, labels = check_examples(items, num_labels=num_labels, label_words=words, what="examples")
    label_ids = label_token_ids(tokenizer, words) if kind != "seq-cls" and words is not None else None
    dev = resolve_device(device) if device is not None else _model_device(model)
    if _model_device(model) != dev:
        model.to(dev)
    prec = resolve_precision(precision, dev)
    nvt = int(model.active_peft_config.num_virtual_tokens) if has_prompt(model) else 0
    encoded = encode(tokenizer, texts, labels, max_length=_max_length(max_length, model, nvt))
    scorer = Scorer(model, kind, label_ids).to(dev)
    evaluator = _Evaluator(
        encoded, metric=metric, batch_size=batch_size, pad_id=_pad_id(tokenizer), device=dev, precision=prec
    )
    result = evaluator.run(scorer, progress=progress, predictions=return_predictions)
    result["precision"] = prec
    return result


# -- training ---------------------------------------------------------------------------------------------------


class _Stream:
    """The micro-batch sequence of a run: epoch plans are a pure function of the seed, so any position resumes."""

    def __init__(self, lengths: list[int], cfg: TrainConfig, *, world: int, rank: int) -> None:
        self.lengths = lengths
        self.cfg = cfg
        self.world = world
        self.rank = rank
        self._plans: dict[int, list[list[int]]] = {}

    def _plan(self, epoch: int) -> list[list[int]]:
        plan = self._plans.get(epoch)
        if plan is None:
            plan = _plan_epoch(
                self.lengths,
                self.cfg.batch_size,
                seed=self.cfg.seed,
                epoch=epoch,
                group_by_length=self.cfg.group_by_length,
            )
            self._plans = {epoch: plan}
        return plan

    def micro_batch(self, m: int) -> list[int]:
        """Example positions of this process's ``m``-th micro-batch (global micro-batch ``m * world + rank``)."""
        g = m * self.world + self.rank
        per = len(self._plan(0))
        return self._plan(g // per)[g % per]


def _trainable(model: Any) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].to(torch.uint8))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].to(torch.uint8), device)


def _head_tensors(peft_model: Any) -> dict[str, torch.Tensor]:
    """PEFT's saved tensors beside the prompt (a sequence-classification head copy), in PEFT's key format."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    return {k: v.detach().to("cpu").clone() for k, v in state.items() if k != "prompt_embeddings"}


def _accelerator(launcher: Launcher, device: torch.device) -> Any:
    if launcher not in ("auto", "none", "accelerate"):
        raise ConfigError(f"launcher={launcher!r}: must be 'auto', 'none' or 'accelerate'")
    if launcher == "none":
        return None
    if launcher == "auto" and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")


def _check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> CheckpointState | None:
    if resume and overwrite:
        raise ConfigError("resume=True and overwrite=True contradict each other: pass one (resume continues the run "
                          "in out_dir, overwrite replaces it)")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} is a file, not a folder; pass a folder path")
    ckpt = read_checkpoint(out) if resume else None
    if ckpt is not None:
        return ckpt
    finished = (out / RUN_FILE).is_file()
    if resume and finished:
        raise TrainingError(
            f"{str(out)!r} holds a finished run ({RUN_FILE}) and no checkpoint, so there is nothing to resume. "
            "Fix: pick a new out_dir, or pass overwrite=True to train again"
        )
    if resume:
        raise TrainingError(
            f"{str(out)!r} holds no checkpoint to resume from. Fix: drop resume=True (--resume) to start a new run "
            "there, or point out_dir at the run to continue"
        )
    if not overwrite and (finished or (out / CHECKPOINT_DIR).exists()):
        raise ConfigError(
            f"out_dir {str(out)!r} already holds a run; pass resume=True to continue it, overwrite=True to replace "
            "it, or another out_dir"
        )
    if overwrite and (out / CHECKPOINT_DIR).is_dir():
        shutil.rmtree(out / CHECKPOINT_DIR)
    return None


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
    from tpv.adapters import init_prompt_tuning, make_origin
    from tpv.metrics import METRICS
    from tpv.models import model_name

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("precision='bf16' on a CPU without AVX512-BF16/AMX: bf16 is emulated and slower than fp32")
    if train_examples is None:
        if task is None:
            raise ConfigError("pass train_examples=[(text, label), ...] or task='name' (a registered task)")
        data = _load_task_data(task, cfg.seed)
        train_examples = data.train
        validation = data.validation if validation is None else validation
        label_words = label_words if label_words is not None else (data.spec.label_words or None)
        metric = metric or data.spec.metric
    metric = metric or "accuracy"
    if metric not in METRICS or metric in ("pearson", "spearman"):
        raise ConfigError(f"metric={metric!r}: must be one of accuracy, f1, macro_f1, matthews (classification)")
    model, tokenizer, kind = _resolve_model(model, tokenizer, task_type, len(label_words) if label_words else None)
    if is_peft(model):
        raise ConfigError(
            "model is already a PeftModel; pass the plain transformers model (peft_model.get_base_model()) and "
            "the prompt to start from as init="
        )
    words, num_labels = _verbalizer(kind, model, label_words)
    texts, labels = check_examples(train_examples, num_labels=num_labels, label_words=words, what="train_examples")
    val_items = list(validation) if validation is not None else []
    if cfg.eval_examples is not None:
        val_items = val_items[: cfg.eval_examples]
    val_texts, val_labels = (
        ([], [])
        if not val_items
        else check_examples(val_items, num_labels=num_labels, label_words=words, what="validation")
    )
    label_ids = label_token_ids(tokenizer, words) if kind != "seq-cls" and words is not None else None

    # the origin the vector is measured from, and the prompt the run starts at
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
    if cfg.num_virtual_tokens is not None and cfg.num_virtual_tokens != origin.num_virtual_tokens:
        raise ConfigError(
            f"TrainConfig.num_virtual_tokens={cfg.num_virtual_tokens} but the init has {origin.num_virtual_tokens} "
            "virtual tokens; drop num_virtual_tokens or make them match"
        )
    peft_model = init_prompt_tuning(model, init, origin=None if isinstance(init, Origin) else origin, task_type=kind)
    if kind == "seq-cls" and not cfg.train_head:
        for name, p in peft_model.named_parameters():
            if "prompt_encoder" not in name:
                p.requires_grad_(False)
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


class _Session:
    """One training session: the loop, evaluations, checkpoints and resuming (internal to :func:`train`)."""

    def __init__(
        self,
        setup: _Setup,
        *,
        out: Path | None,
        launcher: Launcher,
        progress: bool,
        callback: Callable[[TrainEvent], None] | None,
    ) -> None:
        s = self.s = setup
        self.cfg = setup.cfg
        self.out = out
        self.progress = progress
        self.callback = callback
        self.accelerator = _accelerator(launcher, s.device)
        if self.accelerator is not None:
            s.device = self.accelerator.device
        s.peft_model.to(s.device)
        self.scorer = Scorer(s.peft_model, s.kind, s.label_ids).to(s.device)
        self.params = _trainable(s.peft_model)
        self.lr_choice = self._initial_lr()
        self.lr = float(self.lr_choice["lr"])
        self.optimizer = _optimizer(self.cfg, list(self.params.values()), self.lr)
        self.wrapped: Any = self.scorer
        self.world, rank, self.is_main = 1, 0, True
        if self.accelerator is not None:
            self.wrapped, self.optimizer = self.accelerator.prepare(self.scorer, self.optimizer)
            acc = self.accelerator
            self.world, rank, self.is_main = acc.num_processes, acc.process_index, acc.is_main_process
        s.identity["world_size"] = self.world
        self.stream = _Stream([len(e.ids) for e in s.encoded], self.cfg, world=self.world, rank=rank)
        self.pad_id = _pad_id(s.tokenizer)
        self.evaluator = (
            _Evaluator(
                s.val_encoded,
                metric=s.metric,
                batch_size=self.cfg.eval_batch_size,
                pad_id=self.pad_id,
                device=s.device,
                precision=s.precision,
            )
            if s.val_encoded
            else None
        )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.best_params: dict[str, torch.Tensor] | None = None
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.stopped_early = False
        self.elapsed_before = 0.0
        self.resumed_from: int | None = None
        self._t0 = 0.0

    # -- the learning rate ---------------------------------------------------------------------------------------

    def _initial_lr(self) -> dict[str, Any]:
        """``config.lr`` resolved: a number as given, ``"auto"`` from the embedding scale (range test: later)."""
        from tpv.engine.lr import RANGE_TEST_SPAN, auto_lr, embedding_scale

        cfg = self.cfg
        if not isinstance(cfg.lr, str):
            return {"rule": "given", "lr": float(cfg.lr)}
        scale = embedding_scale(self.s.peft_model)
        if cfg.lr == "auto":
            return {"rule": "auto", "lr": auto_lr(cfg.optimizer, scale), "embedding_scale": scale}
        unit = 1.0 if cfg.optimizer == "adafactor" else scale
        return {"rule": "range-test", "lr": unit * RANGE_TEST_SPAN[0], "embedding_scale": scale, "pending": True}

    def range_test(self) -> None:
        """``lr="range-test"``: train ``range_test_steps`` steps at growing rates, pick one, reset prompt and RNG."""
        from tpv.engine.lr import choose_from_range_test, range_test_lrs

        if not self.lr_choice.pop("pending", False):
            return
        cfg = self.cfg
        lrs = range_test_lrs(cfg, float(self.lr_choice["embedding_scale"]))
        saved = {k: v.detach().clone() for k, v in self.params.items()}
        rng = _rng_state(self.s.device)
        optimizer = _optimizer(cfg, list(self.params.values()), lrs[0])
        self.emit("start", f"learning-rate range test: {len(lrs)} steps from {lrs[0]:.3g} to {lrs[-1]:.3g}")
        losses: list[float] = []
        self.wrapped.train()
        try:
            for i, lr in enumerate(lrs):
                for group in optimizer.param_groups:
                    group["lr"] = lr
                try:
                    loss = self._micro_step(i, sync=True, lr=lr)
                except TrainingError:  # diverged: the test has seen enough
                    break
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss)
        finally:
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(saved[name])
            _set_rng_state(rng, self.s.device)
        chosen = choose_from_range_test(lrs, losses)
        self.lr_choice.update({"lr": chosen, "lrs": lrs[: len(losses)], "losses": losses})
        self.lr = chosen
        self.optimizer = _optimizer(cfg, list(self.params.values()), chosen)
        if self.accelerator is not None:
            self.optimizer = self.accelerator.prepare(self.optimizer)
        self.emit("start", f"range test chose lr {chosen:.3g}")

    # -- events and state -----------------------------------------------------------------------------------------

    def emit(self, kind: Any, message: str, **fields: Any) -> None:
        if self.callback is not None and self.is_main:
            self.callback(TrainEvent(kind, self.step, self.cfg.steps, message=message, **fields))

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t0

    def restore(self, ckpt: CheckpointState) -> None:
        """Continue from a checkpoint (after checking it belongs to this very run)."""
        assert self.out is not None
        diffs = [k for k, v in self.s.identity.items() if ckpt.info.get(k) != v]
        if diffs:
            details = "; ".join(f"{k}: checkpoint {ckpt.info.get(k)!r} vs now {self.s.identity[k]!r}" for k in diffs)
            raise TrainingError(
                f"cannot resume {str(self.out)!r}: the checkpoint was made with another {', '.join(diffs)} "
                f"({details}). Fix: resume with the same model, data, origin and config, or start a new out_dir"
            )
        with torch.no_grad():
            for name, p in self.params.items():
                if name not in ckpt.params:
                    raise TrainingError(f"the checkpoint in {str(self.out)!r} has no parameter {name!r}; delete it")
                p.copy_(ckpt.params[name].to(p.device, p.dtype))
        if "lr_choice" in ckpt.info:
            self.lr_choice = dict(ckpt.info["lr_choice"])
            self.lr = float(self.lr_choice["lr"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        self.optimizer.load_state_dict(ckpt.optimizer)
        _set_rng_state(ckpt.rng, self.s.device)
        info = ckpt.info
        self.best_params = ckpt.best_params
        self.step = self.resumed_from = ckpt.step
        self.history = list(info.get("history", []))
        self.evals = list(info.get("evals", []))
        self.best_score, self.best_step = info.get("best_score"), info.get("best_step")
        self.bad_evals = int(info.get("bad_evals", 0))
        self.elapsed_before = float(info.get("seconds", 0.0))
        logger.info("resuming %s from step %d", self.out, self.step)

    def checkpoint(self) -> None:
        if self.out is None or not self.is_main:
            return
        info = {
            **self.s.identity,
            "history": self.history,
            "evals": self.evals,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "seconds": self.elapsed(),
            "lr_choice": self.lr_choice,
        }
        state = CheckpointState(
            step=self.step,
            params={k: v.detach() for k, v in self.params.items()},
            best_params=self.best_params,
            optimizer=self.optimizer.state_dict(),
            rng=_rng_state(self.s.device),
            info=info,
        )
        write_checkpoint(self.out, state)
        self.emit("checkpoint", f"checkpoint at step {self.step} in {self.out / CHECKPOINT_DIR}")

    # -- the loop -------------------------------------------------------------------------------------------------

    def _micro_step(self, m: int, *, sync: bool, lr: float) -> float:
        """Forward and backward of micro-batch ``m``; returns its loss."""
        s, acc = self.s, self.accelerator
        batch = collate(s.encoded, self.stream.micro_batch(m), pad_id=self.pad_id).to(s.device)
        no_sync = acc is not None and not sync
        with acc.no_sync(self.wrapped) if no_sync else contextlib.nullcontext():
            with _autocast(s.device, s.precision):
                full = self.cfg.loss == "full-vocab"
                class_logits, vocab_logits = self.wrapped(batch.input_ids, batch.attention_mask, full_vocab=full)
            if vocab_logits is not None:
                targets = self.scorer.label_ids.index_select(0, batch.labels)  # (B,) vocabulary ids
                loss = torch.nn.functional.cross_entropy(vocab_logits.float(), targets)
            else:
                loss = torch.nn.functional.cross_entropy(class_logits.float(), batch.labels)  # (B, C) -> ()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"the training loss became {value} at step {self.step + 1} (lr {lr:g}, precision {s.precision}); "
                    f"the prompt diverged. Fix: lower the learning rate (e.g. lr={lr / 10:g} or lr='auto'), keep "
                    "gradient clipping on (max_grad_norm=1.0), use precision='fp32', or check the model weights and "
                    "inputs for NaN"
                )
            scaled = loss / self.cfg.grad_accum
            if acc is not None:
                acc.backward(scaled)
            else:
                scaled.backward()
        return value

    def _evaluate(self) -> None:
        assert self.evaluator is not None
        result = self.evaluator.run(self.scorer)
        record = {"step": self.step, **result}
        self.evals.append(record)
        improved = self.best_score is None or result["score"] > self.best_score
        if improved:
            self.best_score, self.best_step, self.bad_evals = float(result["score"]), self.step, 0
            self.best_params = {k: v.detach().to("cpu").clone() for k, v in self.params.items()}
        else:
            self.bad_evals += 1
        note = " (best)" if improved else f" (best {self.best_score:.4f} at step {self.best_step})"
        self.emit("eval", f"step {self.step}: validation {self.s.metric} {result['score']:.4f}{note}", metrics=record)
        patience = self.cfg.patience
        if patience is not None and self.bad_evals >= patience and self.step < self.cfg.steps:
            self.stopped_early = True
            self.emit("stop", f"early stop at step {self.step}: no improvement in {self.bad_evals} evaluations")

    def run(self) -> float:
        """Train until the last step or early stopping; returns this session's wall time."""
        cfg, s = self.cfg, self.s
        resumed = f", resumed at step {self.step}" if self.resumed_from else ""
        self.emit(
            "start",
            f"tuning {s.origin.num_virtual_tokens} virtual tokens of {s.model_name} on {s.task}: "
            f"{len(s.encoded)} examples, {cfg.steps} steps, {s.device.type}/{s.precision}{resumed}",
        )
        self.wrapped.train()
        bar = _progress_bar(cfg.steps, self.step, s.task, self.progress and self.is_main)
        self._t0 = time.perf_counter()
        window: list[float] = []
        try:
            while self.step < cfg.steps and not self.stopped_early:
                lr = _lr_at(cfg, self.step, self.lr)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = 0.0
                for micro in range(cfg.grad_accum):
                    m = self.step * cfg.grad_accum + micro
                    loss += self._micro_step(m, sync=micro == cfg.grad_accum - 1, lr=lr) / cfg.grad_accum
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.history.append({"step": self.step, "loss": loss, "lr": lr, "seconds": round(self.elapsed(), 4)})
                window.append(loss)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    mean = sum(window) / len(window)
                    window = []
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                    self.emit("step", f"step {self.step}: loss {mean:.4f}", loss=mean, lr=lr)
                at_eval = (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps
                if self.evaluator is not None and at_eval:
                    self._evaluate()
                every = cfg.checkpoint_every
                if every and self.step % every == 0 and self.step < cfg.steps and not self.stopped_early:
                    self.checkpoint()
                if self.accelerator is not None:
                    self.accelerator.wait_for_everyone()
        finally:
            bar.close()
        return time.perf_counter() - self._t0

    # -- the end --------------------------------------------------------------------------------------------------

    def finish(self, seconds: float) -> TrainResult:
        """Keep the best prompt, extract the vector, write the run folder."""
        from tpv.adapters import prompt_of

        s = self.s
        if self.best_params is not None:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.best_params[name].to(p.device, p.dtype))
        prompt = prompt_of(s.peft_model)  # (rows, dim)
        vector = TaskPromptVector.from_prompts(prompt, s.origin, task=s.task, base_model=s.model_name)
        metrics = next((dict(e) for e in reversed(self.evals) if e["step"] == self.best_step), {})
        origin_norm = float(s.origin.tensor.float().norm())
        norm_ratio = vector.norm() / origin_norm if origin_norm > 0 else float("inf")
        warnings = self._guard(norm_ratio)
        result = TrainResult(
            vector=vector,
            origin=s.origin,
            prompt=prompt,
            model=s.peft_model,
            tokenizer=s.tokenizer,
            task=s.task,
            config=self.cfg,
            history=self.history,
            evals=self.evals,
            lr=self.lr,
            lr_choice=dict(self.lr_choice),
            norm_ratio=norm_ratio,
            warnings=warnings,
            best_step=self.best_step,
            best_score=self.best_score,
            metrics=metrics,
            steps=self.step,
            stopped_early=self.stopped_early,
            seconds=seconds,
            out_dir=self.out,
            resumed_from=self.resumed_from,
        )
        if self.out is not None and self.is_main:
            self._write(result)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        best = f", best validation {s.metric} {self.best_score:.4f} at step {self.best_step}" if metrics else ""
        self.emit("end", f"done: {self.step} steps in {seconds:.1f} s{best}", metrics=metrics or None)
        return result

    def _guard(self, norm_ratio: float) -> list[str]:
        """The run's warnings (see :mod:`tpv.engine.guard`), also logged."""
        from tpv.engine.guard import run_warnings

        found = run_warnings(
            norm_ratio=norm_ratio,
            evals=self.evals,
            validation_labels=[e.label for e in self.s.val_encoded],
            lr=self.lr,
            rule=str(self.lr_choice.get("rule", "given")),
            steps=self.step,
        )
        for line in found:
            logger.warning("%s: %s", self.s.task, line)
        return found

    def _write(self, result: TrainResult) -> None:
        from tpv.adapters import save_adapter
        from tpv.files import save

        s, out = self.s, self.out
        assert out is not None
        run = {
            "format": _RUN_FORMAT,
            "version": 1,
            **{k: s.identity[k] for k in ("model", "task", "kind", "label_words", "config", "world_size")},
            "metric": s.metric,
            "origin": {"id": s.origin.id, "init": s.origin.init, "seed": s.origin.seed, "file": ORIGIN_FILE},
            "vector": {"file": VECTOR_FILE, "norm": result.vector.norm(), "terms": dict(result.vector.terms)},
            "adapter": ADAPTER_DIR,
            "data": {
                "train_examples": len(s.encoded),
                "validation_examples": len(s.val_encoded),
                "train_fingerprint": s.identity["train_data"],
                "validation_fingerprint": s.identity["validation_data"],
                "max_length": s.max_length,
            },
            "lr": result.lr,
            "lr_choice": result.lr_choice,
            "norm_ratio": result.norm_ratio,
            "warnings": result.warnings,
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            "best": {"step": result.best_step, "score": result.best_score},
            "metrics": result.metrics,
            "seconds": round(self.elapsed_before + result.seconds, 3),
            "steps_per_second": result.steps_per_second,
            "resumed_from": result.resumed_from,
            "history": {"train": result.history, "eval": result.evals},
            "environment": environment(s.device, s.precision, world_size=self.world),
        }
        extra = _head_tensors(s.peft_model) if s.kind == "seq-cls" else None
        save_adapter(
            result.prompt,
            out / ADAPTER_DIR,
            origin=s.origin,
            base_model=s.model_name,
            task_type=s.kind,
            extra_tensors=extra,
            overwrite=True,
        )
        provenance = {"task": s.task, "model": s.model_name, "steps": result.steps, "run": RUN_FILE}
        save(s.origin, out / ORIGIN_FILE, provenance=provenance, overwrite=True)  # the run folder's rule applies
        save(result.vector, out / VECTOR_FILE, provenance=provenance, overwrite=True)
        atomic_write_text(out / RUN_FILE, json.dumps(run, indent=1, default=_json_default) + "\n")
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)


def train(
    model: Any = "smollm2-135m",
    tokenizer: Any | None = None,
    train_examples: Sequence[Any] | None = None,
    *,
    task: str | None = None,
    label_words: Sequence[str] | None = None,
    validation: Sequence[Any] | None = None,
    metric: str | None = None,
    init: torch.Tensor | Origin | TaskPromptVector | None = None,
    origin: Origin | None = None,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    task_type: TaskType | None = None,
    launcher: Launcher = "auto",
    progress: bool = True,
    callback: Callable[[TrainEvent], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Tune a soft prompt on a classification task and return its task prompt vector.

    The prompt starts at ``init`` (by default a fresh origin drawn as ``config.init`` says), is trained with
    cross-entropy at the answer position, is scored on ``validation`` every ``eval_every`` steps (the best prompt is
    kept; ``patience`` stops early) and becomes ``vector = kept_prompt - origin``. With ``out_dir`` the run writes
    resumable checkpoints and, at the end, ``adapter/`` (a standard PEFT adapter), ``origin.safetensors``,
    ``vector.safetensors`` and ``run.json`` (config, history, environment), each atomically.

    Examples:
        ``tpv.train(model="smollm2-135m", task="rotten_tomatoes", steps=80, out_dir="runs/rt")``;
        ``tpv.train(model, tokenizer, [("great film", 1), ("dull", 0)], label_words=(" negative", " positive"))``.

    Args:
        model: a ``transformers`` model (not yet a PEFT model) or a model name (``smollm2-135m`` by default).
        tokenizer: the model's tokenizer (loaded for a model name when omitted).
        train_examples: ``Example(text, label)`` objects or ``(text, label)`` pairs; omit to use ``task``'s data.
        task: the task's name: recorded in the vector's terms and, without ``train_examples``, loaded from the task
            registry (train split, its validation split, its label words and metric).
        label_words: the verbalizer, one word per class with its leading space (a task supplies its own).
        validation: examples scored during training; without them the last prompt is kept.
        metric: ``accuracy`` (default), ``f1``, ``macro_f1`` or ``matthews``; higher is better.
        init: the starting prompt: a tensor ``(rows, dim)``, an :class:`~tpv.Origin`, or a
            :class:`~tpv.TaskPromptVector` (a combination) applied to ``origin``.
        origin: the origin the vector is measured from (default: ``init`` when it is an origin, a new one otherwise).
        config: the :class:`TrainConfig`; keyword ``options`` override its fields (``steps=80``).
        out_dir: the run's folder (optional).
        resume: continue from ``out_dir``'s checkpoint (same model, data, origin and config), if there is one.
        overwrite: replace a run already in ``out_dir``.
        task_type: ``"causal-lm"``, ``"seq2seq"`` or ``"seq-cls"``; inferred from the model (``causal-lm`` for a
            name).
        launcher: ``"accelerate"`` wraps model, optimizer and data with ``accelerate`` (data parallel over the
            processes of ``accelerate launch``); ``"auto"`` does so when started by a distributed launcher
            (``WORLD_SIZE > 1``); ``"none"`` never.
        progress: show a tqdm progress bar on stderr.
        callback: called with a :class:`TrainEvent` at start, every ``log_every`` steps, at each evaluation and
            checkpoint, and at the end.
        **options: :class:`TrainConfig` fields.

    Returns:
        The :class:`TrainResult`.

    Raises:
        TrainingError: empty data, a label missing from the verbalizer, a non-finite loss (with the fix), a
            checkpoint that does not match.
        ConfigError: an invalid option.
        ModelError: the model cannot be loaded or does not fit the init.
    """
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a tpv.TrainConfig, got {type(config).__name__}")
    cfg = (config or TrainConfig()).replace(**options) if options else (config or TrainConfig())
    out = Path(out_dir) if out_dir is not None else None
    if out is None and resume:
        raise ConfigError("resume=True needs out_dir (the run folder holding the checkpoint)")
    checkpoint = _check_out_dir(out, resume=resume, overwrite=overwrite) if out is not None else None
    setup = _setup(
        model,
        tokenizer,
        train_examples,
        cfg=cfg,
        task=task,
        label_words=label_words,
        validation=validation,
        metric=metric,
        init=init,
        origin=origin,
        task_type=task_type,
    )
    session = _Session(setup, out=out, launcher=launcher, progress=progress, callback=callback)
    if checkpoint is not None:
        session.restore(checkpoint)
    else:
        torch.manual_seed(cfg.seed)  # dropout (where the model has any) follows the run's seed
        session.range_test()
    seconds = session.run()
    return session.finish(seconds)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
