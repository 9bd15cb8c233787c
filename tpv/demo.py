"""The main job, ``tpv demo``: task prompt vectors end to end on a real model and real data, in minutes on a CPU.

1. draw one origin (``first-n-vocab``) from the model's embeddings;
2. tune a short soft prompt on each source task (Rotten Tomatoes and the VADER word ratings by default) and
   extract its task prompt vector ``tau = tuned - origin``;
3. combine the vectors (``sum`` or ``mean``);
4. start a few-shot target task (IMDB reviews) once from the bare origin and once from ``origin + combination``,
   tune both the same number of steps, and score each before and after.

The result is a small table (score before/after and time per row) that the CLI prints; this module never prints,
it reports progress lines through ``report``. Any model works: tests pass a tiny one and their own data.

Example:
    >>> from tpv.demo import run_demo  # doctest: +SKIP
    >>> result = run_demo(report=print)  # doctest: +SKIP
    >>> print(result.format_table())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tpv._fs import atomic_write_text
from tpv.engine.config import TrainConfig
from tpv.errors import ConfigError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

if TYPE_CHECKING:
    from tpv.tasks import TaskData

__all__ = ["DEMO_FILE", "DemoResult", "DemoRow", "run_demo"]

DEMO_FILE = "demo.json"
DEFAULT_SOURCES = ("rotten_tomatoes", "vader_words")
DEFAULT_TARGET = "imdb_reviews"


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table.

    Attributes:
        stage: ``"source"`` (a source prompt tuned from the origin) or ``"target"`` (the few-shot target).
        task: the task tuned and scored.
        init: where the prompt started, e.g. ``"origin"`` or ``"origin + tau(rotten_tomatoes) + tau(vader_words)"``.
        metric: the task's metric.
        before: score of the starting prompt.
        after: score of the tuned prompt.
        train_examples: examples tuned on.
        steps: optimizer steps.
        seconds: wall time of the row (tuning and both scorings).
    """

    stage: Literal["source", "target"]
    task: str
    init: str
    metric: str
    before: float
    after: float
    train_examples: int
    steps: int
    seconds: float


@dataclass
class DemoResult:
    """What :func:`run_demo` returns: the table rows, the origin, the source vectors and timings."""

    model: str
    rows: list[DemoRow]
    origin: Origin
    vectors: dict[str, TaskPromptVector]
    combination: TaskPromptVector
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    HEADER = ("stage", "task", "init", "metric", "before", "after", "examples", "steps", "time (s)")

    def table(self) -> list[tuple[str, ...]]:
        """The rows as strings, in :attr:`HEADER` order."""
        return [
            (
                r.stage,
                r.task,
                r.init,
                r.metric,
                f"{r.before:.3f}",
                f"{r.after:.3f}",
                str(r.train_examples),
                str(r.steps),
                f"{r.seconds:.1f}",
            )
            for r in self.rows
        ]

    def format_table(self) -> str:
        """A plain-text table (the CLI draws a richer one)."""
        rows = [self.HEADER, *self.table()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable record (written to ``demo.json``)."""
        return {
            "model": self.model,
            "rows": [asdict(r) for r in self.rows],
            "origin": {"id": self.origin.id, "init": self.origin.init, "seed": self.origin.seed},
            "combination": {"terms": dict(self.combination.terms), "norm": self.combination.norm()},
            "seconds": self.seconds,
            "settings": self.settings,
        }


def _task_data(name: str, data: Mapping[str, TaskData] | None, seed: int) -> TaskData:
    if data is not None and name in data:
        return data[name]
    from tpv.tasks import load_task

    return load_task(name, seed=seed)


def _describe(terms: Mapping[str, float]) -> str:
    parts = []
    for name, coef in terms.items():
        parts.append(f"tau({name})" if coef == 1.0 else f"{coef:g} tau({name})")
    return "origin + " + " + ".join(parts)


def run_demo(
    model: Any = "smollm2-135m",
    tokenizer: Any | None = None,
    *,
    sources: Sequence[str] = DEFAULT_SOURCES,
    target: str = DEFAULT_TARGET,
    shots: int = 16,
    source_steps: int = 100,
    target_steps: int = 16,
    eval_examples: int = 100,
    num_virtual_tokens: int = 50,
    batch_size: int = 8,
    max_length: int = 96,
    lr: float | Literal["auto", "range-test"] = "auto",
    combine: Literal["sum", "mean"] = "sum",
    seed: int = 0,
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    out_dir: str | os.PathLike[str] | None = None,
    data: Mapping[str, TaskData] | None = None,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> DemoResult:
    """Run the demo: source prompts -> vectors -> combination -> few-shot target from origin vs combination.

    The defaults are budgeted to finish in under 10 minutes on 2 CPU cores with SmolLM2-135M: measured 282 s on
    2 CPU cores (see ``docs/training.md``).

    Args:
        model: a model name (``smollm2-135m`` by default) or a ``transformers`` causal LM.
        tokenizer: its tokenizer (loaded for a name when omitted).
        sources: source task names.
        target: the few-shot target task.
        shots: target training examples per class.
        source_steps: optimizer steps per source prompt.
        target_steps: optimizer steps per target run.
        eval_examples: validation examples scored per source, test examples scored per target run.
        num_virtual_tokens: soft prompt length.
        batch_size: training batch size.
        max_length: most input tokens per example (long reviews lose their middle).
        lr: learning rate: a number, ``"auto"`` (the default: fitted to the model's embedding scale, see
            :data:`tpv.engine.config.AUTO_LR`) or ``"range-test"``.
        combine: ``"sum"`` (``origin + sum_i tau_i``, the paper's combination) or ``"mean"``.
        seed: seed of the origin, the data splits, the few-shot draw and training.
        precision: ``"auto"`` (bf16 only where the hardware has it), ``"fp32"`` or ``"bf16"``.
        out_dir: write every run (``sources/<task>/``, ``target/<init>/``) and ``demo.json`` here.
        data: task name -> :class:`~tpv.tasks.TaskData` to use instead of loading (tests pass small data).
        progress: show progress bars on stderr.
        report: called with one line per stage (the CLI prints them).
        overwrite: replace the runs of an earlier demo in a non-empty ``out_dir``.

    Returns:
        The :class:`DemoResult`.

    Raises:
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        ConfigError: bad arguments (no sources, unknown ``combine``, too few shots).
        TaskError: a task's data is missing on this machine (the message gives the install command).
        ModelError: the model cannot be loaded.
    """
    _check_arguments(sources, combine, shots, out_dir=out_dir, overwrite=overwrite)
    say = report or (lambda line: None)
    t_start = time.perf_counter()
    model, tokenizer = _load_model(model, tokenizer, say)
    demo = _Demo.start(
        model,
        tokenizer,
        base=TrainConfig(
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            origin_seed=seed,
            max_length=max_length,
            num_virtual_tokens=num_virtual_tokens,
            eval_examples=eval_examples,
            eval_every=0,
            precision=precision,
            steps=max(source_steps, 1),
            save_every=0,
        ),
        out=Path(out_dir) if out_dir is not None else None,
        progress=progress,
        say=say,
    )
    rows: list[DemoRow] = []
    vectors: dict[str, TaskPromptVector] = {}
    for task in sources:  # 1. the source prompts and their vectors
        row, vectors[task] = demo.source(task, data, steps=source_steps)
        rows.append(row)
    combination = _combination(vectors, combine)  # 2. their combination
    rows += demo.targets(target, data, combination, shots=shots, steps=target_steps)  # 3. the target, twice
    settings = {
        "sources": list(sources),
        "target": target,
        "shots": shots,
        "source_steps": source_steps,
        "target_steps": target_steps,
        "eval_examples": eval_examples,
        "num_virtual_tokens": num_virtual_tokens,
        "batch_size": batch_size,
        "max_length": max_length,
        "lr": lr,
        "combine": combine,
        "seed": seed,
        "precision": precision,
    }
    return demo.result(rows, vectors, combination, settings=settings, seconds=time.perf_counter() - t_start)  # 4.


# -- the steps --------------------------------------------------------------------------------------------------


def _check_arguments(
    sources: Sequence[str], combine: str, shots: int, *, out_dir: str | os.PathLike[str] | None, overwrite: bool
) -> None:
    if not sources:
        raise ConfigError("sources is empty; name at least one source task, e.g. sources=('rotten_tomatoes',)")
    if combine not in ("sum", "mean"):
        raise ConfigError(f"combine={combine!r}: must be 'sum' or 'mean'")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots={shots!r}: must be a positive integer (examples per class)")
    if out_dir is not None:
        from tpv._fs import check_output

        check_output(out_dir, overwrite=overwrite, folder=True, flag="overwrite=True (--overwrite)")


def _load_model(model: Any, tokenizer: Any | None, say: Callable[[str], None]) -> tuple[Any, Any]:
    """``(model, tokenizer)``: loaded for a model name, checked for a model object."""
    from tpv.models import load_model, load_tokenizer

    if isinstance(model, str):
        say(f"loading {model}")
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
        model = load_model(model)
    elif tokenizer is None:
        raise ConfigError("a model object was given without its tokenizer; pass tokenizer=")
    return model, tokenizer


def _combination(vectors: Mapping[str, TaskPromptVector], combine: str) -> TaskPromptVector:
    """The sources' vectors summed (``"sum"``) or averaged (``"mean"``)."""
    combination: TaskPromptVector = sum(vectors.values())  # type: ignore[assignment]
    if combine == "mean":
        combination = combination / len(vectors)
    return combination


@dataclass
class _Demo:
    """What every run of one demo shares: model, origin, base config, output folder and reporting."""

    model: Any
    tokenizer: Any
    model_name: str
    origin: Origin
    base: TrainConfig
    out: Path | None
    progress: bool
    say: Callable[[str], None]

    @classmethod
    def start(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        base: TrainConfig,
        out: Path | None,
        progress: bool,
        say: Callable[[str], None],
    ) -> _Demo:
        """Draw the demo's one origin (``first-n-vocab``, seeded by ``base.origin_seed``)."""
        from tpv.adapters import make_origin
        from tpv.models import model_name

        name = model_name(model)
        origin = make_origin(model, "first-n-vocab", num_virtual_tokens=base.virtual_tokens, seed=base.origin_seed)
        say(f"origin: {origin.describe()}")
        return cls(model, tokenizer, name, origin, base, out, progress, say)

    def score(self, peft_model: Any, examples: Sequence[Any], task_data: TaskData) -> float:
        """The task's metric of ``peft_model`` on the first ``eval_examples`` of ``examples``."""
        from tpv.engine.evaluation import evaluate

        base = self.base
        result = evaluate(
            peft_model,
            self.tokenizer,
            list(examples)[: base.eval_examples],
            label_words=task_data.spec.label_words,
            metric=task_data.spec.metric,
            batch_size=base.eval_batch_size,
            max_length=base.max_length,
            precision=base.precision,
            progress=self.progress,
        )
        return float(result["score"])

    def source(self, task: str, data: Mapping[str, TaskData] | None, *, steps: int) -> tuple[DemoRow, TaskPromptVector]:
        """Tune a source prompt from the origin; its row and task prompt vector."""
        from tpv.adapters import init_prompt_tuning
        from tpv.engine.loop import train

        t0 = time.perf_counter()
        task_data = _task_data(task, data, self.base.seed)
        self.say(f"source {task}: {len(task_data.train)} training examples, {steps} steps")
        before = self.score(init_prompt_tuning(self.model, self.origin), task_data.validation, task_data)
        run = train(
            self.model,
            self.tokenizer,
            task_data.train,
            task=task,
            label_words=task_data.spec.label_words,
            validation=task_data.validation,
            metric=task_data.spec.metric,
            origin=self.origin,
            config=self.base.replace(steps=steps),
            out_dir=self.out / "sources" / task if self.out is not None else None,
            overwrite=True,
            progress=self.progress,
            launcher="none",
        )
        after = float(run.best_score) if run.best_score is not None else before
        row = DemoRow(
            stage="source",
            task=task,
            init="origin",
            metric=task_data.spec.metric,
            before=before,
            after=after,
            train_examples=len(task_data.train),
            steps=run.steps,
            seconds=time.perf_counter() - t0,
        )
        self.say(f"source {task}: {row.metric} {before:.3f} -> {after:.3f} in {row.seconds:.0f} s")
        return row, run.vector

    def targets(
        self,
        target: str,
        data: Mapping[str, TaskData] | None,
        combination: TaskPromptVector,
        *,
        shots: int,
        steps: int,
    ) -> list[DemoRow]:
        """Tune the few-shot target once from the bare origin, once from origin + combination; their rows."""
        from tpv.tasks import few_shot

        seed = self.base.seed
        target_data = _task_data(target, data, seed)
        shots_train = few_shot(target_data.train, shots, seed, allow_fewer=True)
        inits: list[tuple[str, str, TaskPromptVector | None]] = [
            ("origin", "origin", None),
            ("combination", _describe(combination.terms), combination),
        ]
        return [
            self._target(target, target_data, shots_train, slug=slug, label=label, vector=vector, steps=steps)
            for slug, label, vector in inits
        ]

    def _target(
        self,
        target: str,
        target_data: TaskData,
        shots_train: Sequence[Any],
        *,
        slug: str,
        label: str,
        vector: TaskPromptVector | None,
        steps: int,
    ) -> DemoRow:
        from tpv.adapters import init_prompt_tuning
        from tpv.engine.loop import train

        t0 = time.perf_counter()
        start = self.origin if vector is None else vector
        self.say(f"target {target} from {label}: {len(shots_train)} examples, {steps} steps")
        before = self.score(
            init_prompt_tuning(self.model, start, origin=self.origin if vector is not None else None),
            target_data.test,
            target_data,
        )
        run = train(
            self.model,
            self.tokenizer,
            shots_train,
            task=target,
            label_words=target_data.spec.label_words,
            metric=target_data.spec.metric,
            init=start,
            origin=self.origin,
            config=self.base.replace(steps=steps),
            out_dir=self.out / "target" / slug if self.out is not None else None,
            overwrite=True,
            progress=self.progress,
            launcher="none",
        )
        after = self.score(run.model, target_data.test, target_data)
        row = DemoRow(
            stage="target",
            task=target,
            init=label,
            metric=target_data.spec.metric,
            before=before,
            after=after,
            train_examples=len(shots_train),
            steps=run.steps,
            seconds=time.perf_counter() - t0,
        )
        self.say(f"target {target} from {label}: {row.metric} {before:.3f} -> {after:.3f} in {row.seconds:.0f} s")
        return row

    def result(
        self,
        rows: list[DemoRow],
        vectors: dict[str, TaskPromptVector],
        combination: TaskPromptVector,
        *,
        settings: dict[str, Any],
        seconds: float,
    ) -> DemoResult:
        """The demo's :class:`DemoResult`, also written to ``demo.json`` in the output folder."""
        result = DemoResult(
            model=self.model_name,
            rows=rows,
            origin=self.origin,
            vectors=vectors,
            combination=combination,
            seconds=seconds,
            settings=settings,
            out_dir=self.out,
        )
        if self.out is not None:
            atomic_write_text(self.out / DEMO_FILE, json.dumps(result.to_dict(), indent=1) + "\n")
        return result
