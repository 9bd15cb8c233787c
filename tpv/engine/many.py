"""``train_many``: many prompt-tuning runs over one frozen model, their micro-batches packed into one pass.

Prompt tuning freezes the model, so K runs differ only in their ``(rows, dim)`` prompts and their data. Here each
run (a :class:`Job`) keeps everything a :func:`tpv.train` run has: its own resolved setup (task, data, label words,
metric, origin, PEFT model), its own seeded batch stream, optimizer, learning-rate schedule, gradient clipping,
validation, best prompt and early stopping (the very :class:`tpv.engine.loop._Session` of ``train``). Only the
forward and backward passes are shared: at every tick each active job contributes its next micro-batch, the rows
of all jobs go through the backbone together, each row carrying its own job's prompt
(:class:`tpv.engine.packing.PackedScorer`), each job's loss is the mean over its own rows, and one backward pass
of the sum gives every prompt the gradient of its own loss (a prompt touches only its job's rows). Validation of
the jobs due at a tick is packed too. A job leaves the pack when it finishes or stops early; with ``pack_size``,
a waiting job takes its place.

Model kinds (the row layouts are in :mod:`tpv.engine.packing`):

* **causal LM**: a job's prompt ``(P, D)`` goes in front of its rows; the loss reads the label words (or the whole
  vocabulary) at each row's last token.
* **seq2seq** (T5): a job's prompt has two blocks, ``(2P, D)``; as in PEFT's prompt-tuning forward (and so in
  ``train``), the first block goes in front of the encoder input and the decoder reads its start token; the second
  block gets no gradient (only weight decay moves it), alone as in a pack.
* **seq-cls** (BERT): as in ``train``, a job trains its prompt and its own copy of the classification head (PEFT's
  ``modules_to_save``, starting from the model's head, both in the job's optimizer, clipped together). Each job
  wraps a view of the model that shares every module but the head slot (:func:`tpv.engine.heads.with_own_head`, as
  :func:`tpv.train` does), so PEFT gives each job a head of its own and the user's model is left unwrapped; the
  pack runs the shared encoder once over all rows and applies each job's head to its own rows.

**Parity law** (``tests/test_many.py``): a job trained in a pack ends with the prompt (and, for seq-cls, the head)
and the evaluations it gets alone from :func:`tpv.train` with the same seed, data and config (equal up to float
rounding: relative difference well under 1e-4 after 10 fp32 steps), whichever other jobs share its pack, on causal
LMs, seq2seq and sequence-classification models. Not covered: dropout (one RNG stream is shared by the pack, so a
model with dropout, as T5 and BERT checkpoints have, trains each job with other masks than alone: the same
training in distribution, not the same numbers; set the dropout probabilities to 0 for exact parity), resuming,
and ``launcher="accelerate"``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tpv.engine.config import TrainConfig
from tpv.engine.data import collate
from tpv.engine.evaluation import _progress_bar
from tpv.engine.loop import _lr_at, _Session
from tpv.engine.many_eval import evaluate_many
from tpv.engine.many_memory import auto_pack_size, is_out_of_memory, peak_memory
from tpv.engine.packing import (
    Group,
    PackedScorer,
    ScoreSet,
    check_packable,
    input_prompt,
    job_head,
    score_sets,
)
from tpv.engine.precision import autocast as _autocast
from tpv.engine.precision import frozen_linears_in_bf16
from tpv.engine.records import TrainEvent, TrainResult
from tpv.engine.runfolder import _check_out_dir
from tpv.engine.scoring import is_peft
from tpv.engine.setup import _resolve_model, _setup
from tpv.errors import ConfigError, TrainingError
from tpv.models import unwrap_model
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

logger = logging.getLogger("tpv.engine")

__all__ = ["Job", "evaluate_many", "train_many"]


@dataclass
class Job:
    """One prompt-tuning run of :func:`train_many`: the arguments of :func:`tpv.train` that differ per run.

    Attributes:
        task: the task's name (recorded in the vector; without ``train_examples``, loaded from the registry with its
            validation split, label words and metric).
        train_examples: ``Example(text, label)`` objects or ``(text, label)`` pairs.
        label_words: the verbalizer, one word per class with its leading space (a task supplies its own).
        validation: examples scored every ``eval_every`` steps (the best prompt is kept).
        metric: ``accuracy`` (default), ``f1``, ``macro_f1`` or ``matthews``.
        init: the starting prompt: a tensor ``(rows, dim)``, an :class:`~tpv.Origin` or a
            :class:`~tpv.TaskPromptVector` applied to ``origin``.
        origin: the origin the vector is measured from.
        seed: the run's seed (data order); overrides the config's.
        config: this job's :class:`~tpv.TrainConfig` (default: ``train_many``'s ``config``).
        options: :class:`~tpv.TrainConfig` fields overriding ``config``'s, e.g. ``{"steps": 80, "lr": 0.01}``.
        out_dir: where to write the finished run folder (adapter, origin, vector, ``run.json``); no checkpoints.
        overwrite: replace a run already in ``out_dir``.
        name: how progress and error messages name the job (default: the task, else ``job <i>``).
    """

    task: str | None = None
    train_examples: Sequence[Any] | None = None
    label_words: Sequence[str] | None = None
    validation: Sequence[Any] | None = None
    metric: str | None = None
    init: torch.Tensor | Origin | TaskPromptVector | None = None
    origin: Origin | None = None
    seed: int | None = None
    config: TrainConfig | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    out_dir: str | os.PathLike[str] | None = None
    overwrite: bool = False
    name: str | None = None

    def resolve_config(self, default: TrainConfig | None = None) -> TrainConfig:
        """The job's config: ``config`` (else ``default``, else the defaults), then ``options``, then ``seed``."""
        if self.config is not None and not isinstance(self.config, TrainConfig):
            raise ConfigError(f"Job.config must be a tpv.TrainConfig, got {type(self.config).__name__}")
        cfg = self.config or default or TrainConfig()
        changes = dict(self.options)
        if self.seed is not None:
            changes["seed"] = self.seed
        return cfg.replace(**changes) if changes else cfg


@dataclass
class _Member:
    """A job in the pack: its training session and where it stands within the current optimizer step."""

    index: int
    name: str
    session: _Session
    micro: int = 0
    loss: float = 0.0
    lr: float = 0.0
    window: list[float] = field(default_factory=list)
    joined: float = 0.0
    head: torch.nn.Module | None = None  # seq-cls: the job's own classification head


def _check_jobs(jobs: Sequence[Job], pack_size: int | None) -> list[Job]:
    if isinstance(jobs, Job):
        raise ConfigError("jobs must be a list of tpv.Job, got one Job; pass [job]")
    items = list(jobs) if jobs is not None else []
    if not items:
        raise ConfigError("jobs is empty: pass a list of tpv.Job, e.g. [tpv.Job(task='sst2'), tpv.Job(task='qnli')]")
    for i, job in enumerate(items):
        if not isinstance(job, Job):
            raise ConfigError(f"jobs[{i}] is a {type(job).__name__}; every job must be a tpv.Job")
    if pack_size is not None and (isinstance(pack_size, bool) or not isinstance(pack_size, int) or pack_size < 1):
        raise ConfigError(
            f"pack_size={pack_size!r}: must be a positive integer or None (as many as the memory budget holds)"
        )
    return items


def _sessions(
    model: Any,
    tokenizer: Any,
    jobs: list[Job],
    config: TrainConfig | None,
    callback: Callable[[int, TrainEvent], None] | None,
) -> list[_Member]:
    """Resolve every job exactly as :func:`tpv.train` resolves one (setup, session, learning rate)."""
    members: list[_Member] = []
    outs: dict[Path, int] = {}
    for i, job in enumerate(jobs):
        cfg = job.resolve_config(config)
        out = Path(job.out_dir) if job.out_dir is not None else None
        if out is not None:
            if out.resolve() in outs:
                raise ConfigError(f"jobs[{outs[out.resolve()]}] and jobs[{i}] share out_dir {str(out)!r}")
            outs[out.resolve()] = i
            _check_out_dir(out, resume=False, overwrite=job.overwrite)
        setup = _setup(
            model, tokenizer, job.train_examples, cfg=cfg, task=job.task, label_words=job.label_words,
            validation=job.validation, metric=job.metric, init=job.init, origin=job.origin, task_type=None,
        )  # fmt: skip
        events = (lambda e, i=i: callback(i, e)) if callback is not None else None
        session = _Session(setup, out=out, launcher="none", progress=False, callback=events)
        name = job.name or job.task or f"job {i}"
        members.append(_Member(index=i, name=name, session=session, head=job_head(setup.peft_model)))
    first = members[0].session.s
    for m in members[1:]:
        s = m.session.s
        if (s.device, s.precision) != (first.device, first.precision):
            raise ConfigError(
                f"jobs share one model, so they must share device and precision: {members[0].name!r} runs on "
                f"{first.device.type}/{first.precision} but {m.name!r} on {s.device.type}/{s.precision}. Fix: set "
                "device= and precision= in train_many's config, not per job"
            )
    return members


class _Pack:
    """The packed training loop: ticks of one forward/backward over every active job's micro-batch."""

    def __init__(self, members: list[_Member], *, pack_size: int, share_prefix: bool | None, progress: bool) -> None:
        self.waiting = deque(members)
        self.active: list[_Member] = []
        self.pack_size = pack_size
        first = members[0].session
        self.device, self.precision = first.s.device, first.s.precision
        self.scorer = PackedScorer(first.s.peft_model, share_prefix=share_prefix)
        self.results: dict[int, TrainResult] = {}
        total = sum(m.session.cfg.steps for m in members)
        self.bar = _progress_bar(total, 0, f"{len(members)} jobs", progress)

    def run(self) -> list[TrainResult]:
        try:
            self._fill()
            while self.active:
                self._tick()
                done = [m for m in self.active if m.session.stopped_early or m.session.step >= m.session.cfg.steps]
                for m in done:
                    self.active.remove(m)
                    self.results[m.index] = m.session.finish(time.perf_counter() - m.joined)
                if done:
                    self._fill()
        finally:
            self.bar.close()
        return [self.results[i] for i in sorted(self.results)]

    def _fill(self) -> None:
        while self.waiting and len(self.active) < self.pack_size:
            m = self.waiting.popleft()
            s = m.session
            s.emit(
                "start",
                f"tuning {s.s.origin.num_virtual_tokens} virtual tokens of {s.s.model_name} on {s.s.task} in a pack: "
                f"{len(s.s.encoded)} examples, {s.cfg.steps} steps, {s.s.device.type}/{s.s.precision}",
            )
            s.wrapped.train()
            m.joined = s._t0 = time.perf_counter()
            self.active.append(m)

    def _tick(self) -> None:
        """One micro-batch of every active job: packed forward, per-job losses, one backward, due optimizer steps."""
        for m in self.active:
            if m.micro == 0:  # the start of the job's optimizer step
                s = m.session
                m.lr, m.loss = _lr_at(s.cfg, s.step, s.lr), 0.0
                for group in s.optimizer.param_groups:
                    group["lr"] = m.lr
        losses = self._forward()
        total: torch.Tensor | None = None
        for m, loss in zip(self.active, losses):
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"job {m.name!r}: the training loss became {value} at step {m.session.step + 1} (lr {m.lr:g}, "
                    f"precision {self.precision}); the prompt diverged. Fix: lower that job's learning rate (e.g. "
                    f"lr={m.lr / 10:g} or lr='auto'), keep gradient clipping on (max_grad_norm=1.0) or use "
                    "precision='fp32'"
                )
            scaled = loss / m.session.cfg.grad_accum
            total = scaled if total is None else total + scaled
            m.loss += value / m.session.cfg.grad_accum
            m.micro += 1
        assert total is not None
        total.backward()
        due = []
        for m in self.active:
            if m.micro == m.session.cfg.grad_accum:
                m.micro = 0
                if self._step(m):
                    due.append(m)
        if due:
            self._evaluate(due)

    def _forward(self) -> list[torch.Tensor]:
        """Each active job's loss on its next micro-batch (the mean over its rows, as alone), from one pass."""
        batches, groups = [], []
        for m in self.active:
            s = m.session
            index = s.stream.micro_batch(s.step * s.cfg.grad_accum + m.micro)
            batch = collate(s.s.encoded, index, pad_id=s.pad_id).to(self.device)
            batches.append(batch)
            groups.append(
                Group(
                    input_prompt(s.s.peft_model),  # (P, D), differentiable
                    batch.input_ids,
                    batch.attention_mask,
                    label_ids=s.scorer.label_ids,
                    head=m.head,
                    full_vocab=s.cfg.loss == "full-vocab",
                )
            )
        with _autocast(self.device, self.precision):
            logits = self.scorer.logits(groups)
        losses = []
        for m, batch, (classes, vocab) in zip(self.active, batches, logits):  # as train's micro-step
            if vocab is not None:  # (n, V)
                targets = m.session.scorer.label_ids.index_select(0, batch.labels)  # (n,) vocabulary ids
                losses.append(torch.nn.functional.cross_entropy(vocab.float(), targets))
            else:  # (n, C)
                losses.append(torch.nn.functional.cross_entropy(classes.float(), batch.labels))
        return losses

    def _step(self, m: _Member) -> bool:
        """The job's optimizer step and its records, as in ``train``; whether it is due for validation."""
        s, cfg = m.session, m.session.cfg
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(s.params.values()), cfg.max_grad_norm)
        s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        s.history.append({"step": s.step, "loss": m.loss, "lr": m.lr, "seconds": round(s.elapsed(), 4)})
        m.window.append(m.loss)
        self.bar.update(1)
        if s.step % cfg.log_every == 0 or s.step == cfg.steps:
            mean = sum(m.window) / len(m.window)
            m.window = []
            s.emit("step", f"step {s.step}: loss {mean:.4f}", loss=mean, lr=m.lr)
        at_eval = (cfg.eval_every and s.step % cfg.eval_every == 0) or s.step == cfg.steps
        return bool(s.evaluator is not None and at_eval)

    def _evaluate(self, due: list[_Member]) -> None:
        """Score the validation sets of the jobs due, their prompts packed together, and record each result."""
        sets = []
        for m in due:
            s = m.session
            assert s.evaluator is not None
            prompt = input_prompt(s.s.peft_model).detach()  # (P, D)
            sets.append(ScoreSet(prompt, s.evaluator.encoded, s.scorer.label_ids, m.head))
        rows = sum(m.session.cfg.eval_batch_size for m in due)
        start = time.perf_counter()
        logits = score_sets(
            self.scorer, sets, rows_per_pass=rows, pad_id=due[0].session.pad_id, precision=self.precision
        )
        seconds = (time.perf_counter() - start) / len(due)
        for m, scores in zip(due, logits):
            assert m.session.evaluator is not None
            m.session._evaluate(m.session.evaluator.summarize(scores, seconds))


def train_many(
    model: Any,
    tokenizer: Any | None,
    jobs: Sequence[Job],
    *,
    config: TrainConfig | None = None,
    pack_size: int | None = None,
    share_prefix: bool | None = None,
    progress: bool = True,
    callback: Callable[[int, TrainEvent], None] | None = None,
) -> list[TrainResult]:
    """Tune many soft prompts at once over one frozen model; one :class:`TrainResult` per job, in job order.

    Each job is what one :func:`tpv.train` call would run (see :class:`Job`), with its own data, label words,
    origin, seed and config (steps, learning rate, schedule, clipping, ``eval_every``, ``patience``, loss ...).
    Their micro-batches share one forward and backward pass per tick (see the module docstring); each job keeps its
    own optimizer (over its prompt and, for a sequence classifier, its own head), schedule, clipping, validation,
    best prompt and early stopping, and returns what ``train`` returns for it (up to float rounding).

    Example:
        ``tpv.train_many("smollm2-135m", None, [tpv.Job(task="rotten_tomatoes"), tpv.Job(task="sst2", seed=1)],
        config=tpv.TrainConfig(steps=80))``.

    Args:
        model: a ``transformers`` model (not a ``PeftModel``): a causal LM, a seq2seq model (T5) or a sequence
            classifier whose head is named ``classifier`` (BERT); or a model name, loaded as a causal LM
            (``smollm2-135m``). Every job wraps this one model in its own PEFT prompt (``TrainResult.model``; a
            seq-cls job wraps a view of it with its own head, see the module docstring).
        tokenizer: its tokenizer (loaded for a model name when ``None``).
        jobs: the runs.
        config: the default :class:`TrainConfig` of the jobs (each job's ``config``/``options``/``seed`` override it).
            Device and precision must be the same for all jobs.
        pack_size: most jobs training at once; a waiting job joins when another finishes. ``None``: as many as a
            memory budget holds (:mod:`tpv.engine.many_memory`: 80 % of a GPU's free memory, half the available
            memory on a CPU, against an estimate of each job's activations); the choice and the pack's peak
            memory are in every result's ``pack``.
        share_prefix: how prompts enter the pass of a causal LM (:class:`tpv.engine.packing.PackedScorer`);
            ``None`` picks by device, as ``train`` does. seq2seq and seq-cls models always prepend them.
        progress: one tqdm bar (job-steps) on stderr.
        callback: called with ``(job index, TrainEvent)`` at each job's start, logging, evaluation and end.

    Returns:
        The jobs' :class:`TrainResult`, in the order of ``jobs``.

    Raises:
        ConfigError: no jobs, not a :class:`Job`, a sequence classifier whose head cannot be packed (none named
            ``classifier``, or a decoder's ``score`` head, which reads the last position), mixed devices or
            precisions, two jobs with one ``out_dir``, a bad option.
        TrainingError: a job with empty data, a label missing from its verbalizer, a diverging loss, running out
            of memory (the message names ``pack_size``).
    """
    items = _check_jobs(jobs, pack_size)
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a tpv.TrainConfig, got {type(config).__name__}")
    if not isinstance(model, str | os.PathLike):
        if is_peft(model):
            raise ConfigError("model is already a PeftModel; pass the plain transformers model (get_base_model())")
        check_packable(model)
    model, tokenizer, _ = _resolve_model(model, tokenizer, None, None)
    members = _sessions(model, tokenizer, items, config, callback)
    for m in members:  # as train does before its loop: seed, then the optional learning-rate range test
        torch.manual_seed(m.session.cfg.seed)
        m.session.range_test()
    torch.manual_seed(members[0].session.cfg.seed)  # dropout, where a model has any, draws from one shared stream
    size, chosen, budget = _pack_size(model, members, pack_size)
    device = members[0].session.s.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pack = _Pack(members, pack_size=size, share_prefix=share_prefix, progress=progress)
    try:
        with frozen_linears_in_bf16(model, device, members[0].session.s.precision):
            results = pack.run()
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        how = f"chosen from a memory budget of {budget / 2**30:.1f} GiB" if budget is not None else chosen
        raise TrainingError(
            f"out of memory training {size} jobs at once on {device.type} (pack_size={size}, {how}). Fix: pass a "
            f"smaller pack_size, e.g. train_many(..., pack_size={max(1, size // 2)}), or lower batch_size or "
            "max_length"
        ) from error
    peak = peak_memory(device)
    info = {
        "jobs": len(members),
        "pack_size": size,
        "chosen": chosen,
        "budget_bytes": budget,
        "peak_memory_bytes": peak,
    }
    logger.info(
        "train_many: %d jobs, %d at once (%s), peak memory %s",
        len(members), size, chosen, "unknown" if peak is None else f"{peak / 2**30:.2f} GiB",
    )  # fmt: skip
    for result in results:
        result.pack = dict(info)
    return results


def _pack_size(model: Any, members: list[_Member], pack_size: int | None) -> tuple[int, str, int | None]:
    """The pack's size: ``pack_size`` as given, else the most jobs the memory budget holds (:mod:`many_memory`)."""
    if pack_size is not None:
        return min(pack_size, len(members)), "given", None
    shapes = []
    for m in members:
        s = m.session
        longest = max((len(e.ids) for e in s.s.encoded), default=1)
        shapes.append((s.cfg.batch_size, s.s.origin.num_virtual_tokens + longest))
    size, budget = auto_pack_size(unwrap_model(model).config, shapes, members[0].session.s.device)
    return size, "memory budget", budget
