"""A LoRA reference at the prompt's budget: what the same data, steps and scoring reach when weights may move.

Prompt tuning freezes the model; LoRA (Hu et al., ICLR 2022; PEFT's ``LoraConfig``) trains low-rank updates of
its weights. :func:`train_lora` runs LoRA through the engine's own pieces (the same tokenization, batch order,
loss at the answer position, learning-rate schedule, gradient clipping, validation, best-state keeping and rank
classification scoring as :func:`tpv.train`), so the only difference from a prompt-tuning run is what is trained.
The calibration study (``tpv bench run calibration``) puts it beside every prompt-tuning row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tpv.engine.config import TrainConfig
from tpv.engine.data import check_examples, collate, encode, label_token_ids
from tpv.engine.env import resolve_device, resolve_precision
from tpv.engine.evaluation import _Evaluator
from tpv.engine.loop import _lr_at, _optimizer, _Stream, _trainable
from tpv.engine.precision import autocast as _autocast
from tpv.engine.precision import frozen_linears_in_bf16
from tpv.engine.scoring import Scorer, infer_kind, is_peft
from tpv.engine.setup import _max_length, _pad_id
from tpv.errors import ConfigError, TrainingError

__all__ = ["LORA_LR", "LORA_TARGETS", "LoraResult", "train_lora"]

LORA_LR = 1e-3
"""The learning rate of :func:`train_lora` when ``config.lr`` is a rule (``"auto"``), not a number."""

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
"""The attention projections LoRA adapts by default (their names in Llama, Gemma, Mistral, Qwen, ...)."""


@dataclass
class LoraResult:
    """What :func:`train_lora` returns.

    Attributes:
        model: the ``peft.PeftModel`` holding the kept LoRA weights (score it with :func:`tpv.evaluate`).
        config: the training config.
        lr: the peak learning rate used.
        trainable_parameters: the number of trained parameters.
        history: one record per step: ``step``, ``loss``, ``lr``.
        evals: one record per validation: ``step`` and the metrics of :func:`tpv.evaluate`.
        best_step: the step whose weights were kept (``None`` without validation).
        best_score: its validation score.
        steps: steps run.
        seconds: wall time of the loop.
    """

    model: Any
    config: TrainConfig
    lr: float
    trainable_parameters: int
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_score: float | None = None
    steps: int = 0
    seconds: float = 0.0


def train_lora(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[Any],
    *,
    label_words: Sequence[str],
    validation: Sequence[Any] | None = None,
    metric: str = "accuracy",
    config: TrainConfig | None = None,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] = LORA_TARGETS,
    **options: Any,
) -> LoraResult:
    """Fine-tune LoRA adapters on a classification task with the engine's loss, schedule and scoring.

    PEFT wraps ``model`` in place (its attention projections gain LoRA layers); ``result.model.unload()`` gives
    the plain model back.

    Args:
        model: a ``transformers`` causal LM (not a PEFT model).
        tokenizer: its tokenizer.
        train_examples: ``(text, label)`` pairs or ``Example`` objects.
        label_words: the verbalizer, one word per class.
        validation: examples scored every ``config.eval_every`` steps; the best weights are kept.
        metric: ``accuracy``, ``f1``, ``macro_f1`` or ``matthews``.
        config: a :class:`TrainConfig` (steps, batch size, schedule, ...); a rule as ``lr`` means :data:`LORA_LR`.
        r: LoRA rank.
        alpha: LoRA scaling numerator (``alpha / r`` scales the update).
        dropout: LoRA dropout.
        target_modules: module names to adapt.
        **options: :class:`TrainConfig` fields overriding ``config``.

    Returns:
        The :class:`LoraResult`.

    Raises:
        ConfigError: a PEFT model, a model that is not a causal LM, or bad options.
        TrainingError: empty data or a non-finite loss.
    """
    from peft import LoraConfig, get_peft_model

    cfg = (config or TrainConfig()).replace(**options) if options else (config or TrainConfig())
    if is_peft(model):
        raise ConfigError("train_lora needs the plain transformers model; pass peft_model.get_base_model()")
    if infer_kind(model) != "causal-lm":
        raise ConfigError(f"train_lora supports causal language models; got a {type(model).__name__}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"r={r!r}: must be a positive integer (the LoRA rank)")
    lr = LORA_LR if isinstance(cfg.lr, str) else float(cfg.lr)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    words = list(label_words)
    texts, labels = check_examples(train_examples, num_labels=len(words), label_words=words, what="train_examples")
    val = list(validation or [])[: cfg.eval_examples or None]
    max_len = _max_length(cfg.max_length, model, 0)
    encoded = encode(tokenizer, texts, labels, max_length=max_len)
    lora = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), task_type="CAUSAL_LM"
    )
    from tpv._quiet import quiet_loading

    with quiet_loading():  # PEFT reads a deprecated transformers alias while wrapping the model
        peft_model = get_peft_model(model, lora).to(device)
    scorer = Scorer(peft_model, "causal-lm", label_token_ids(tokenizer, words)).to(device)
    params = _trainable(peft_model)
    optimizer = _optimizer(cfg, list(params.values()), lr)
    pad = _pad_id(tokenizer)
    evaluator = None
    if val:
        vt, vl = check_examples(val, num_labels=len(words), label_words=words, what="validation")
        evaluator = _Evaluator(
            encode(tokenizer, vt, vl, max_length=max_len),
            metric=metric,
            batch_size=cfg.eval_batch_size,
            pad_id=pad,
            device=device,
            precision=precision,
        )
    stream = _Stream([len(e.ids) for e in encoded], cfg, world=1, rank=0)
    result = LoraResult(peft_model, cfg, lr, sum(p.numel() for p in params.values()))
    best: dict[str, torch.Tensor] | None = None
    torch.manual_seed(cfg.seed)
    scorer.train()
    start = time.perf_counter()
    with frozen_linears_in_bf16(peft_model, device, precision):  # the frozen base weights cast once (CPU bf16)
        for step in range(cfg.steps):
            step_lr = _lr_at(cfg, step, lr)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            total = 0.0
            for micro in range(cfg.grad_accum):
                batch = collate(encoded, stream.micro_batch(step * cfg.grad_accum + micro), pad_id=pad).to(device)
                with _autocast(device, precision):
                    _, vocab = scorer(batch.input_ids, batch.attention_mask, full_vocab=True)
                assert vocab is not None
                loss = torch.nn.functional.cross_entropy(vocab.float(), scorer.label_ids.index_select(0, batch.labels))
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(f"the LoRA training loss became {value} at step {step + 1}; lower lr ({lr})")
                (loss / cfg.grad_accum).backward()
                total += value / cfg.grad_accum
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.history.append({"step": step + 1, "loss": total, "lr": step_lr})
            at_eval = (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step + 1 == cfg.steps
            if evaluator is not None and at_eval:
                record = {"step": step + 1, **evaluator.run(scorer)}
                result.evals.append(record)
                if result.best_score is None or record["score"] > result.best_score:
                    result.best_score, result.best_step = float(record["score"]), step + 1
                    best = {k: v.detach().clone() for k, v in params.items()}
    result.steps = cfg.steps
    result.seconds = time.perf_counter() - start
    if best is not None:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(best[name])
    peft_model.eval()
    return result
