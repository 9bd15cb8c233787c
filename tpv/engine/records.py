"""The public records of a training run: :class:`TrainEvent` (progress) and :class:`TrainResult` (the outcome).

They live apart from the loop so that :mod:`tpv.engine.evaluation` (which scores a ``TrainResult``) and
:mod:`tpv.engine.runfolder` (which writes one) need not import the training session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from tpv._tensor import html_table, text_summary
from tpv.engine.config import TrainConfig
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

__all__ = ["TrainEvent", "TrainResult"]


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


@dataclass(repr=False)
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
        pack: for a job of :func:`tpv.train_many`: ``jobs`` (in the call), ``pack_size`` (most at once), ``chosen``
            (``"memory budget"`` or ``"given"``), ``budget_bytes`` and ``peak_memory_bytes`` (of the whole pack:
            CUDA's allocator peak, or the process's peak resident set on a CPU); ``{}`` for :func:`tpv.train`.
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
    pack: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        """What a notebook shows: task, steps, score, learning rate, norm ratio, warnings, time, vector and model."""
        score = "n/a" if self.best_score is None else f"{self.best_score:.4f} (step {self.best_step})"
        fields = {
            "task": self.task,
            "steps": f"{self.steps}" + (" (stopped early)" if self.stopped_early else ""),
            "best validation score": score,
            "lr": f"{self.lr:.4g} ({self.lr_choice.get('rule', 'given')})",
            "||tuned - origin|| / ||origin||": f"{self.norm_ratio:.3g}",
            "time": f"{self.seconds:.1f} s",
            "vector": self.vector.describe(),
            "model": self.vector.base_model,
        }
        if self.out_dir is not None:
            fields["run folder"] = str(self.out_dir)
        for i, warning in enumerate(self.warnings, 1):
            fields[f"warning {i}"] = warning
        return fields

    def __repr__(self) -> str:
        score = "None" if self.best_score is None else f"{self.best_score:.4f}"
        return (
            f"TrainResult(task={self.task!r}, steps={self.steps}, best_score={score}, lr={self.lr:.4g}, "
            f"norm_ratio={self.norm_ratio:.3g}, warnings={len(self.warnings)}, seconds={self.seconds:.1f})"
        )

    def _repr_html_(self) -> str:
        return html_table("TrainResult", self.summary())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(text_summary("TrainResult", self.summary()))

    @property
    def steps_per_second(self) -> float:
        """Optimizer steps per second over this session's training loop."""
        run = self.steps - (self.resumed_from or 0)
        return run / self.seconds if self.seconds > 0 else float("nan")
