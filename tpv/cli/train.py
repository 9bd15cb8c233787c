"""``tpv train``, ``tpv eval`` and ``tpv demo``: prompt tuning, scoring and the end-to-end demo.

Mounted by :mod:`tpv.cli` with :func:`register`. Errors are tpv exceptions; the app's ``main`` prints them as
one line and exits with status 2. ``python -m tpv.cli.train train ...`` runs these commands alone, which is how
``tpv train --launcher accelerate`` starts its processes under ``accelerate launch``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Optional,
)

import typer

from tpv.cli._common import THREADS_HELP as _THREADS
from tpv.cli._common import console as _console
from tpv.cli._common import set_threads as _set_threads
from tpv.cli._config_options import CONFIG_OPTIONS, _to_config, config_options
from tpv.engine.config import TrainConfig
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.engine.records import TrainEvent

_LAUNCHED = "TPV_ACCELERATE_LAUNCHED"
_RUN = "Run control"  # a second help panel (how the run executes): keeps `tpv train --help` uncut at 80 columns
_GRID = "Grid (several tasks or --origins: tpv.train_many)"


def _under_launcher() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or os.environ.get(_LAUNCHED) == "1"


def _relaunch(num_processes: int) -> int:
    """Run this same ``tpv train`` command in ``num_processes`` processes and return the exit status.

    The processes are started by ``torchrun --standalone`` (CPU processes talk over gloo, GPUs over NCCL; plain
    ``accelerate launch`` starts several CPU processes only through MPI); each builds an ``Accelerator`` that
    wraps model, optimizer and data.
    """
    args = list(sys.argv[1:])
    if "train" in args:
        args = args[args.index("train") :]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes)]
    cmd += ["-m", "tpv.cli.train", *args]
    return subprocess.call(cmd, env={**os.environ, _LAUNCHED: "1"})


@config_options(CONFIG_OPTIONS, after="model")
def train_command(
    ctx: typer.Context,
    task: Annotated[
        list[str],
        typer.Argument(help="Registered task(s) (see `tpv tasks list`), e.g. rotten_tomatoes; several make a grid."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The run folder: adapter/, vector, origin, run.json (a grid: one per job)."),
    ],
    model: Annotated[str, typer.Option(help="Model name, local folder or Hub id.")] = "smollm2-135m",
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Start from this origin file (so vectors of several tasks share it)."),
    ] = None,
    vector: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Start from origin + these vectors (summed); needs --origin. Repeat for several."),
    ] = None,
    task_type: Annotated[
        str, typer.Option(help="How --model loads: causal-lm, seq2seq or seq-cls (one run or a grid alike).")
    ] = "causal-lm",
    origins: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Origin seeds, e.g. 0,1,2: one run per task and seed (not with --origin-seed).", rich_help_panel=_GRID
        ),
    ] = None,
    pack_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Most grid jobs training at once (default: as many as memory holds).", rich_help_panel=_GRID),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in --out.", rich_help_panel=_RUN)] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.", rich_help_panel=_RUN)] = False,
    launcher: Annotated[
        str,
        typer.Option(
            help="'none', or 'accelerate': data parallel over --num-processes processes (torchrun + accelerate).",
            rich_help_panel=_RUN,
        ),
    ] = "none",
    num_processes: Annotated[int, typer.Option(help="Processes for --launcher accelerate.", rich_help_panel=_RUN)] = 2,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.", rich_help_panel=_RUN)] = True,
    threads: Annotated[Optional[int], typer.Option(help=_THREADS, rich_help_panel=_RUN)] = None,  # noqa: UP045
    **options: Any,
) -> None:
    """Tune a soft prompt on a task and save its adapter, origin, task prompt vector and run.json.

    Validation is scored every --eval-every steps and the best prompt is kept; --patience stops early; a
    checkpoint is written every --save-every steps so --resume continues an interrupted run exactly.

    Several tasks, or --origins, train a grid in one process (tpv.train_many): one run per task and origin
    seed, in --out/TASK/oSEED/ (--out/TASK/ without --origins), one JSON line per run. A grid trains any
    --task-type; with seq-cls its tasks need one number of classes (one head shape).

    Example: `tpv train rotten_tomatoes --out runs/rt --steps 80 --eval-every 20`
    """
    _set_threads(threads)
    if launcher not in ("none", "accelerate"):
        raise ConfigError(f"--launcher {launcher!r}: must be 'none' or 'accelerate'")
    grid = len(task) > 1 or origins is not None
    seeds: list[int] | None = None
    if grid:
        seeds = _grid_refusals(
            task,
            origins,
            origin_seed_given=_given(ctx, "origin_seed"),
            origin=origin,
            vector=vector,
            resume=resume,
            launcher=launcher,
        )
    if pack_size is not None and (not grid or pack_size < 1):
        raise ConfigError(
            f"--pack-size {pack_size}: must be a positive number of jobs, and applies to a grid only (several tasks "
            "or --origins)"
        )
    if launcher == "accelerate" and not _under_launcher():
        raise typer.Exit(_relaunch(num_processes))
    config = _to_config(options)  # the TrainConfig fields' options (see config_options)
    if grid:
        folders = _grid_folders(out, task, seeds, overwrite=overwrite)
        start, org = _init_from_files(origin, vector)
        _train_grid(
            model, folders, config, task_type=task_type, start=start, origin=org, overwrite=overwrite,
            pack_size=pack_size, progress=progress,
        )  # fmt: skip
        return
    start, org = _init_from_files(origin, vector)
    from tpv.engine.loop import train

    console = _console(stderr=True)
    result = train(
        model,
        task=task[0],
        init=start,
        origin=org,
        config=config,
        out_dir=out,
        resume=resume,
        overwrite=overwrite,
        task_type=task_type,  # type: ignore[arg-type]
        launcher="accelerate" if launcher == "accelerate" else "none",
        progress=progress,
        callback=_printer(console),
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    _report(console, result, out)


def _report(
    console: Any, result: Any, out: Path, *, extra: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """Print a run's warnings on ``console`` (named ``name`` in a grid) and its JSON summary line on stdout."""
    summary = {
        "task": result.task,
        "steps": result.steps,
        "best_step": result.best_step,
        "best_score": result.best_score,
        "stopped_early": result.stopped_early,
        "lr": result.lr,
        "lr_rule": result.lr_choice.get("rule"),
        "norm_ratio": round(result.norm_ratio, 3),
        "warnings": result.warnings,
        "seconds": round(result.seconds, 1),
        **(extra or {}),
        "out": str(out),
    }
    for line in result.warnings:
        console.print(f"warning: {name}: {line}" if name else f"warning: {line}")
    typer.echo(json.dumps(summary))


# -- the grid: several tasks x origin seeds in one process (train_many) ------------------------------------------


@dataclass(frozen=True)
class _GridRun:
    """One job of a ``tpv train`` grid: its task, origin seed (None: the config's) and run folder."""

    task: str
    seed: int | None
    out: Path

    @property
    def name(self) -> str:
        """How progress lines name the job: ``task`` or ``task/oSEED``."""
        return self.task if self.seed is None else f"{self.task}/o{self.seed}"


def _given(ctx: Any, name: str) -> bool:
    """Whether the option of parameter ``name`` was set on the command line or from the environment, not defaulted."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")


def _parse_origins(text: str) -> list[int]:
    """``--origins 0,1,2``: distinct origin seeds, integers >= 0."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(seed < 0 for seed in seeds):
        raise ConfigError(f"--origins {text!r}: must be comma-separated origin seeds (integers >= 0), e.g. 0,1,2")
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"--origins {text!r}: a seed is given twice; each origin seed makes one run per task")
    return seeds


def _grid_refusals(
    tasks: Sequence[str],
    origins: str | None,
    *,
    origin_seed_given: bool,
    origin: Path | None,
    vector: list[Path] | None,
    resume: bool,
    launcher: str,
) -> list[int] | None:
    """Refuse what a grid cannot honour, naming the option, before any model loads; the ``--origins`` seeds."""
    what = "a grid (several tasks or --origins)"
    if resume:
        raise ConfigError(f"--resume: {what} keeps no checkpoints to resume; resume one run at a time")
    if launcher != "none":
        raise ConfigError(f"--launcher {launcher}: {what} trains in one process; drop --launcher")
    twice = sorted({name for name in tasks if list(tasks).count(name) > 1})
    if twice:
        raise ConfigError(f"task {twice[0]!r} is given twice; {what} trains one run per task and origin seed")
    if origins is None:
        return None
    if origin_seed_given:
        raise ConfigError("--origin-seed and --origins: pass one (--origins 0,1,2 trains one run per origin seed)")
    if origin is not None or vector:
        option = "--origin" if origin is not None else "--vector"
        raise ConfigError(
            f"{option} and --origins: the runs start from one given file or from seeded origins; pass one"
        )
    return _parse_origins(origins)


def _grid_folders(out: Path, tasks: Sequence[str], seeds: list[int] | None, *, overwrite: bool) -> list[_GridRun]:
    """The grid's runs in order (task-major) with their folders ``out/TASK[/oSEED]``, checked before any model loads."""
    from tpv.engine.runfolder import RUN_FILE, _check_out_dir

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; a grid writes one run folder per job under a folder")
    if (out / RUN_FILE).is_file():
        raise ConfigError(
            f"--out {str(out)!r} holds a single run; a grid writes one folder per job: pick another --out"
        )
    runs = [
        _GridRun(name, seed, out / name if seed is None else out / name / f"o{seed}")
        for name in tasks
        for seed in (seeds if seeds is not None else [None])
    ]
    for run in runs:
        if run.out.exists() and not run.out.is_dir():
            raise ConfigError(f"{str(run.out)!r} is a file, not a run folder")
        if not overwrite:
            _check_out_dir(run.out, resume=False, overwrite=False)
    return runs


def _train_grid(
    model: str,
    runs: list[_GridRun],
    config: TrainConfig,
    *,
    task_type: str,
    start: Any,
    origin: Any,
    overwrite: bool,
    pack_size: int | None,
    progress: bool,
) -> None:
    """Train the grid's runs with :func:`tpv.train_many` and print one JSON line per run, in order.

    Each task's data is loaded once, as :func:`tpv.train` loads it, and shared by its runs; the model is loaded
    once with ``task_type``, as ``tpv train`` loads it for one run, and every job shares it.
    """
    from tpv.engine.many import Job, train_many
    from tpv.engine.setup import _resolve_model, _task_inputs

    inputs: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(run.task for run in runs):
        data = _task_inputs(None, task=name, seed=config.seed, validation=None, label_words=None, metric=None)
        inputs[name] = dict(zip(("train_examples", "validation", "label_words", "metric"), data))
    words = {name: given["label_words"] for name, given in inputs.items()}
    num_labels = _grid_num_labels(words) if task_type == "seq-cls" else None
    loaded, tokenizer, _ = _resolve_model(model, None, task_type, num_labels)  # type: ignore[arg-type]
    console = _console(stderr=True)
    jobs = [
        Job(
            task=run.task,
            **inputs[run.task],
            init=start,
            origin=origin,
            config=config if run.seed is None else config.replace(origin_seed=run.seed),
            out_dir=run.out,
            overwrite=overwrite,
            name=run.name,
        )
        for run in runs
    ]

    def show(index: int, event: TrainEvent) -> None:
        if event.kind != "checkpoint":
            console.print(f"{runs[index].name}: {event.message}", markup=False)

    results = train_many(loaded, tokenizer, jobs, config=config, pack_size=pack_size, progress=progress, callback=show)
    for run, result in zip(runs, results):
        seed = config.origin_seed if run.seed is None else run.seed
        _report(console, result, run.out, extra={"origin_seed": seed}, name=run.name)


def _grid_num_labels(label_words: Mapping[str, Sequence[str] | None]) -> int | None:
    """The classes of a seq-cls grid's one head: its tasks' number of label words (``None``: the model's own).

    Raises:
        ConfigError: two tasks with different numbers of classes.
    """
    counts = {name: len(words) for name, words in label_words.items() if words}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in counts.items())
        raise ConfigError(
            "--task-type seq-cls: a grid trains one model, whose classification head has one number of classes, but "
            f"the tasks' numbers of classes differ ({listed}). Fix: train one grid per number of classes"
        )
    return next(iter(counts.values()), None)


def _printer(console: Any) -> Any:
    def show(event: TrainEvent) -> None:
        if event.kind != "checkpoint":
            console.print(event.message)

    return show


def _init_from_files(origin: Path | None, vectors: list[Path] | None) -> tuple[Any, Any]:
    from tpv.files import load_origin, load_vector

    if vectors and origin is None:
        raise ConfigError("--vector needs --origin (the origin the vectors were tuned from)")
    org = load_origin(origin) if origin is not None else None
    if not vectors:
        return None, org
    total = sum(load_vector(v) for v in vectors)
    return total, org


def eval_command(
    run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="A `tpv train` run folder (run.json names model and task) or a PEFT adapter folder."),
    ] = None,
    task: Annotated[Optional[str], typer.Option(help="Task to score (default: the run's).")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option(help="Model (default: the run's).")] = None,  # noqa: UP045
    vector: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Score origin + these vectors (summed): files, adapter or run folders. Repeatable."),
    ] = None,
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The origin file (default: the run's or the folders'); alone, scores the bare origin."),
    ] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    max_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Examples of --split scored: only the first N (default all)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 32,
    max_length: Annotated[int, typer.Option(help="Most input tokens per example.")] = 256,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="The task's split seed.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help=_THREADS)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score a tuned prompt (a run, an adapter folder, or origin + vectors) on a task by rank classification.

    A PEFT adapter folder is scored as its prompt (origin + vector), on the model its config names unless
    --model is given; --task is required for it.

    Example: `tpv eval runs/rt --split test --max-examples 500`
    """
    from tpv.adapters import init_prompt_tuning
    from tpv.cli._common import input_kind, known_origin, read_input
    from tpv.engine.evaluation import evaluate
    from tpv.engine.runfolder import ADAPTER_DIR, ORIGIN_FILE, RUN_FILE, RUN_VECTOR_FILE, read_run
    from tpv.files import load_origin
    from tpv.models import load_model, load_tokenizer

    _set_threads(threads)
    recorded: dict[str, Any] = {}
    head_dir: Path | None = None  # where a seq-cls head is saved beside the prompt
    if run is not None:
        run_kind = input_kind(run)
        if run_kind == "adapter":
            recorded = _adapter_record(run)
            head_dir = run
            vector = [run, *(vector or [])]
        else:
            path = run / RUN_FILE
            if not path.is_file():
                raise ConfigError(f"{str(run)!r} holds no {RUN_FILE}: not a finished `tpv train` run")
            recorded = read_run(path)
            head_dir = run / ADAPTER_DIR
            origin = origin or run / ORIGIN_FILE
            vector = vector or [run / RUN_VECTOR_FILE]
    inputs = [read_input(v, origin=origin) for v in vector or []]
    if origin is None and not inputs:
        raise ConfigError("give a run folder, an adapter folder, or --origin (and optionally --vector) to score")
    if split not in ("train", "validation", "test"):
        raise ConfigError(f"--split {split!r}: must be train, validation or test")
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"--max-examples {max_examples}: must be a positive number of examples to score")
    task_name = task or recorded.get("task")
    model_name = model or recorded.get("model") or "smollm2-135m"
    if not task_name:
        raise ConfigError("--task is required when no run folder names one")
    kind = recorded.get("kind", "causal-lm")
    start: Any
    if inputs:
        start = sum(i.item for i in inputs)
        org = known_origin(inputs, origin, start.origin_id)
        if org is None:
            raise ConfigError(
                f"the vectors were tuned from origin {start.origin_id}: pass its file with --origin ORIGIN.safetensors"
            )
    else:
        assert origin is not None  # checked above
        org = load_origin(origin)
        start = org
    words = recorded.get("label_words") if task_name == recorded.get("task") else None
    if words is None:
        from tpv.tasks import get_task

        words = list(get_task(task_name).label_words)
    num_labels = len(words) if kind == "seq-cls" else None
    base = load_model(model_name, task_type=kind, num_labels=num_labels)
    peft_model = init_prompt_tuning(base, start, origin=org if inputs else None, task_type=kind)
    if kind == "seq-cls" and head_dir is not None:
        _load_head(peft_model, head_dir)
    result = evaluate(
        peft_model,
        load_tokenizer(model_name),
        task=task_name,
        label_words=words,
        split=split,  # type: ignore[arg-type]
        max_examples=max_examples,
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
        device=device,
        seed=seed,
        progress=True,
    )
    result = {"task": task_name, "model": model_name, "split": split, **result}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    scores = f"{result['metric']} {result['score']:.4f}"
    if result["metric"] != "accuracy":  # the task's metric is something else: give accuracy beside it, once
        scores += f", accuracy {result['accuracy']:.4f}"
    _console().print(
        f"{task_name} ({split}, {result['examples']} examples): {scores}, {result['examples_per_s']:.1f} examples/s"
    )


def _adapter_record(folder: Path) -> dict[str, Any]:
    """What ``tpv eval`` takes from an adapter folder's config: the model (``model``) and its kind (``kind``)."""
    from tpv._adapter_files import TPV_TASK
    from tpv.adapter_origin import model_identity
    from tpv.adapters import read_adapter

    _prompt, config = read_adapter(folder)
    record: dict[str, Any] = {"kind": TPV_TASK.get(str(config.get("task_type")), "causal-lm")}
    name = config.get("base_model_name_or_path")
    if isinstance(name, str) and name:
        record["model"] = model_identity(name)
    return record


def _load_head(peft_model: Any, adapter_dir: Path) -> None:
    """Put a run's trained classification head (saved beside the prompt in its adapter) into ``peft_model``."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    state = get_peft_model_state_dict(peft_model)
    state.update({k: v for k, v in saved.items() if k != "prompt_embeddings"})
    set_peft_model_state_dict(peft_model, state)


def demo_command(
    model: Annotated[str, typer.Option(help="Model name, local folder or Hub id.")] = "smollm2-135m",
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", "-o", help="Also write every run and demo.json here."),
    ] = None,
    shots: Annotated[int, typer.Option(help="Target training examples per class.")] = 16,
    source_steps: Annotated[int, typer.Option(help="Steps per source prompt.")] = 100,
    target_steps: Annotated[int, typer.Option(help="Steps per target run.")] = 16,
    eval_examples: Annotated[int, typer.Option(help="Examples scored per evaluation.")] = 100,
    combine: Annotated[str, typer.Option(help="sum or mean of the source vectors.")] = "sum",
    seed: Annotated[int, typer.Option(help="Seed of origin, splits, shots and training.")] = 0,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars on stderr.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=_THREADS)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the runs of an earlier demo in --out.")] = False,
) -> None:
    """The main job: tune source prompts, combine their vectors, start a few-shot target from them.

    On SmolLM2-135M with the packaged data: one origin; prompts tuned on Rotten Tomatoes and the VADER word
    ratings; their task prompt vectors summed; IMDB reviews tuned from 16 shots per class, once from the bare
    origin and once from origin + the combination. Prints score before/after and time per row; measured 282 s
    on 2 CPU cores (docs/training.md, "The demo").

    Example: `tpv demo --out runs/demo`
    """
    from tpv.demo import run_demo

    _set_threads(threads)
    console = _console(min_width=140)
    result = run_demo(
        model,
        shots=shots,
        source_steps=source_steps,
        target_steps=target_steps,
        eval_examples=eval_examples,
        combine=combine,  # type: ignore[arg-type]
        seed=seed,
        precision=precision,  # type: ignore[arg-type]
        out_dir=out,
        progress=progress,
        report=lambda line: _console(stderr=True).print(line),
        overwrite=overwrite,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = _demo_table(result)
    console.print(table)
    if out is not None:
        console.print(f"runs and demo.json in {out}")


def _demo_table(result: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"tpv demo on {result.model} ({result.seconds:.0f} s)", title_justify="left")
    numeric = ("before", "after", "examples", "steps", "time (s)")
    for column in result.HEADER:
        table.add_column(column, justify="right" if column in numeric else "left")
    for row in result.table():
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    """Add ``train``, ``eval`` and ``demo`` to ``app``."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("demo")(demo_command)


def _standalone() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
    register(app)
    return app


if __name__ == "__main__":  # `python -m tpv.cli.train train ...` (what --launcher accelerate runs)
    _standalone()()
