"""``train``: prompt tuning, one session of steps, evaluations and checkpoints (see ``docs/training.md``).

Speed comes from doing only the work the answer needs: one forward pass per batch, logits only at each row's
answer position and only for the label words (:mod:`tpv.engine.scoring`), inputs tokenized once, batches padded to
their own longest row and grouped by length, gradients only for the prompt (the model is frozen, so the backward
pass computes input gradients, never weight gradients), bf16 autocast where the hardware has it.

The engine's other parts live beside this module: :mod:`tpv.engine.setup` resolves model, data, verbalizer and
origin before the first step, :mod:`tpv.engine.evaluation` scores (``evaluate``), :mod:`tpv.engine.runfolder` writes
the run folder and :mod:`tpv.engine.records` holds :class:`TrainEvent` and :class:`TrainResult`. Their public names
stay importable from here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from tpv.engine.checkpoint import CHECKPOINT_DIR, CheckpointState, write_checkpoint
from tpv.engine.config import TrainConfig
from tpv.engine.data import collate
from tpv.engine.data import plan_epoch as _plan_epoch
from tpv.engine.evaluation import _Evaluator as _Evaluator
from tpv.engine.evaluation import _progress_bar
from tpv.engine.evaluation import evaluate as evaluate
from tpv.engine.precision import autocast as _autocast
from tpv.engine.precision import frozen_linears_in_bf16
from tpv.engine.records import TrainEvent as TrainEvent
from tpv.engine.records import TrainResult as TrainResult
from tpv.engine.runfolder import ADAPTER_DIR as ADAPTER_DIR
from tpv.engine.runfolder import ORIGIN_FILE as ORIGIN_FILE
from tpv.engine.runfolder import RUN_FILE as RUN_FILE
from tpv.engine.runfolder import RUN_VECTOR_FILE, _check_out_dir, write_run
from tpv.engine.scoring import Scorer, TaskType
from tpv.engine.setup import _max_length as _max_length
from tpv.engine.setup import _pad_id as _pad_id
from tpv.engine.setup import _Setup, _setup, vector_terms
from tpv.errors import ConfigError, TrainingError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

__all__ = ["RUN_FILE", "Launcher", "TrainEvent", "TrainResult", "evaluate", "train"]

logger = logging.getLogger("tpv.engine")

Launcher = Literal["auto", "none", "accelerate"]
VECTOR_FILE = RUN_VECTOR_FILE
"""Alias of :data:`tpv.engine.runfolder.RUN_VECTOR_FILE` (the run folder's vector file)."""


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


def _accelerator(launcher: Launcher, device: torch.device) -> Any:
    if launcher not in ("auto", "none", "accelerate"):
        raise ConfigError(f"launcher={launcher!r}: must be 'auto', 'none' or 'accelerate'")
    if launcher == "none":
        return None
    if launcher == "auto" and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")


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

    def _evaluate(self, result: dict[str, Any] | None = None) -> None:
        """Score the validation set (or record ``result``, scored elsewhere), keep the best prompt, stop early."""
        assert self.evaluator is not None
        if result is None:
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
        terms = vector_terms(s.task, s.start)
        vector = TaskPromptVector.from_prompts(prompt, s.origin, terms=terms, base_model=s.model_name)
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
            write_run(self.out, self.s, result, seconds=self.elapsed_before + result.seconds, world=self.world)
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
    with frozen_linears_in_bf16(setup.peft_model, setup.device, setup.precision):
        session = _Session(setup, out=out, launcher=launcher, progress=progress, callback=callback)
        if checkpoint is not None:
            session.restore(checkpoint)
        else:
            torch.manual_seed(cfg.seed)  # dropout (where the model has any) follows the run's seed
            session.range_test()
        seconds = session.run()
        return session.finish(seconds)
