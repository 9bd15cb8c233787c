"""The ``tpv`` command line (typer). The only place in tpv that prints.

Every command is a plain typed function whose docstring becomes its ``--help`` (with an example). Errors a user
can cause (``tpv.TPVError``, missing files) print one line on stderr and exit with status 2, never a traceback;
set ``TPV_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.exceptions import TyperException

from tpv.cli._common import ORIGIN_HELP, THREADS_HELP, console
from tpv.errors import ConfigError, TPVError

app = typer.Typer(
    name="tpv",
    help="Task prompt vectors: soft prompts as vectors you can add, scale, compare, merge and move.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
origin_app = typer.Typer(help="Create origins (the random inits prompts are tuned from).", no_args_is_help=True)
app.add_typer(origin_app, name="origin")


def _version_callback(value: bool) -> None:
    if value:
        from tpv._version import __version__

        typer.echo(f"tpv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Task prompt vectors: soft prompts as vectors you can add, scale, compare, merge and move between models.

    Example: `tpv inspect vector.safetensors`
    """


@app.command("inspect")
def inspect_command(
    file: Annotated[
        Path, typer.Argument(help="A tpv .safetensors file (vector or origin), a PEFT adapter folder or a run folder.")
    ],
    origin: Annotated[Optional[Path], typer.Option(help=ORIGIN_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the header as JSON.")] = False,
) -> None:
    """Show what a tpv file holds (its header only), or summarize a PEFT adapter folder.

    A run folder of `tpv train` shows its vector file. An adapter folder shows its PEFT config (base model,
    virtual tokens, init kind, token dim), whether it holds an origin and a vector, and the vector's terms
    and norm when it can be read (with --origin where the folder holds no origin.safetensors).

    Example: `tpv inspect runs/sst2/vector.safetensors --json`
    """
    from tpv.cli._common import input_kind

    kind = input_kind(file)
    if kind == "adapter":
        info = _adapter_summary(file, origin)
    else:
        from tpv.files import inspect

        if kind == "run":
            from tpv.engine.runfolder import RUN_VECTOR_FILE

            file = file / RUN_VECTOR_FILE
        info = inspect(file).to_dict()
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    from rich.table import Table

    table = Table(title=str(file), show_header=False, title_justify="left")
    for key, value in info.items():
        if key == "path" or value in ({}, None):
            continue
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    console().print(table)


def _adapter_summary(folder: Path, origin: Path | None) -> dict[str, object]:
    """What ``tpv inspect`` shows of a PEFT adapter folder: config fields, files present, the vector if readable."""
    from tpv._adapter_files import ORIGIN_FILE, VECTOR_FILE
    from tpv.adapters import read_adapter
    from tpv.cli._common import read_input

    prompt, config = read_adapter(folder)
    info: dict[str, object] = {
        "path": str(folder),
        "kind": "peft adapter",
        "peft_type": config.get("peft_type"),
        "task_type": config.get("task_type"),
        "base_model": config.get("base_model_name_or_path"),
        "num_virtual_tokens": config.get("num_virtual_tokens"),
        "num_transformer_submodules": config.get("num_transformer_submodules"),
        "token_dim": config.get("token_dim"),
        "init": config.get("prompt_tuning_init"),
        "init_text": config.get("prompt_tuning_init_text"),
        "shape": list(prompt.shape),
        "dtype": str(prompt.dtype).removeprefix("torch."),
        "origin_file": (folder / ORIGIN_FILE).is_file(),
        "vector_file": (folder / VECTOR_FILE).is_file(),
    }
    try:
        vector = read_input(folder, origin=origin).item
    except TPVError as exc:
        info["vector"] = f"not readable: {exc}"
        return info
    info["terms"] = dict(vector.terms)
    info["norm"] = round(float(vector.norm()), 6)
    info["origin_id"] = vector.origin_id
    return info


@app.command("similarity")
def similarity_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="Two or more vectors or origins of the same shape: files, adapter or run folders."),
    ],
    origin: Annotated[Optional[Path], typer.Option(help=ORIGIN_HELP)] = None,  # noqa: UP045
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write a heatmap PNG here.")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the matrix as JSON.")] = False,
) -> None:
    """Cosine similarity matrix of vectors (or prompts), as a table and optionally a heatmap.

    Vectors of different origins may be compared (the paper's heatmaps compare the same task across origins).
    PEFT adapter folders and `tpv train` run folders are read as their vectors.

    Example: `tpv similarity sst2.safetensors imdb.safetensors trec.safetensors --plot sim.png`
    """
    from tpv.cli._common import read_input
    from tpv.vector import TaskPromptVector, cosine_matrix

    if len(files) < 2:
        raise ConfigError("tpv similarity needs at least two files")
    items = [read_input(f, origin=origin, vector_only=False).item for f in files]
    tensors = [x if isinstance(x, TaskPromptVector) else x.tensor for x in items]
    matrix = cosine_matrix(tensors)  # (n, n)
    labels = [_label(f, x) for f, x in zip(files, items)]
    if len(set(labels)) != len(labels):
        labels = [str(f) for f in files]
    if plot is not None:
        from tpv.plots import plot_similarity

        plot_similarity(matrix, labels, plot)
    if as_json:
        typer.echo(json.dumps({"labels": labels, "matrix": matrix.tolist()}, indent=2))
        return
    from rich.table import Table

    table = Table(title="cosine similarity")
    table.add_column("")
    for lab in labels:
        table.add_column(lab, justify="right")
    for lab, row in zip(labels, matrix.tolist()):
        table.add_row(lab, *(f"{v:.3f}" for v in row))
    out = console()
    out.print(table)
    if plot is not None:
        out.print(f"heatmap written to {plot}")


def _label(path: Path, obj: object) -> str:
    from tpv.vector import TaskPromptVector

    if isinstance(obj, TaskPromptVector) and len(obj.terms) == 1:
        (task,) = obj.terms
        return f"{task}@{obj.origin_id.removeprefix('sha256:')[:6]}" if path.stem in ("vector", task) else path.stem
    return path.stem


@origin_app.command("new")
def origin_new_command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the origin .safetensors file.")],
    init: Annotated[
        str, typer.Option(help="gaussian | sample-vocab | first-n-vocab | text (vocab kinds and text need --model).")
    ] = "gaussian",
    num_virtual_tokens: Annotated[
        int, typer.Option("--num-virtual-tokens", help="Number of virtual tokens (rows per submodule).")
    ] = 50,
    tokens: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--tokens", hidden=True, help="Deprecated spelling of --num-virtual-tokens."),
    ] = None,
    dim: Annotated[Optional[int], typer.Option(help="Embedding width (gaussian without --model).")] = None,  # noqa: UP045
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Model name or path whose embeddings to draw from (e.g. smollm2-135m)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    std: Annotated[float, typer.Option(help="Standard deviation (gaussian).")] = 1.0,
    n: Annotated[int, typer.Option(help="first-n-vocab: draw ids among the first N.")] = 5000,
    text: Annotated[Optional[str], typer.Option(help="text init: the text to embed.")] = None,  # noqa: UP045
    submodules: Annotated[
        int, typer.Option(help="gaussian without --model: 2 for encoder-decoder models (PEFT doubles the rows).")
    ] = 1,
    task_type: Annotated[
        str, typer.Option(help="With --model: causal-lm | seq2seq | seq-cls (e.g. seq-cls for minilm-l6).")
    ] = "causal-lm",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Create a reproducible origin and save it.

    Example: `tpv origin new --init first-n-vocab --model smollm2-135m --num-virtual-tokens 50 -o origin.safetensors`
    """
    if tokens is not None:  # the old spelling, kept working
        if num_virtual_tokens not in (50, tokens):
            raise ConfigError(
                f"--tokens {tokens} and --num-virtual-tokens {num_virtual_tokens} disagree: give --num-virtual-tokens"
            )
        num_virtual_tokens = tokens
    tokens = num_virtual_tokens
    from tpv.files import save
    from tpv.origin import INIT_KINDS, Origin

    if init not in INIT_KINDS or init == "tensor":
        raise ConfigError(f"--init must be one of gaussian, sample-vocab, first-n-vocab, text; got {init!r}")
    if submodules not in (1, 2):
        raise ConfigError(
            f"--submodules must be 1 (decoder-only, encoder-only) or 2 (encoder-decoder); got {submodules}"
        )
    if not (std > 0 and math.isfinite(std)):
        raise ConfigError(f"--std must be a positive finite number; got {std}")
    if not 0 <= seed <= 2**63 - 1:
        raise ConfigError(f"--seed must be an integer in 0..2**63-1; got {seed}")
    from tpv._fs import check_output

    check_output(out, overwrite=overwrite, flag="--overwrite")
    if init == "gaussian" and model is None:
        if dim is None:
            raise ConfigError("--init gaussian needs --dim (the embedding width) or --model")
        origin = Origin.gaussian(tokens, dim, seed=seed, std=std, num_transformer_submodules=submodules)
    else:
        if model is None:
            raise ConfigError(f"--init {init} draws from a model's embeddings: give --model (e.g. smollm2-135m)")
        from tpv.adapters import make_origin
        from tpv.cli._common import set_threads
        from tpv.models import load_model, load_tokenizer

        set_threads(threads)

        if task_type not in ("causal-lm", "seq2seq", "seq-cls"):
            raise ConfigError(f"--task-type must be causal-lm, seq2seq or seq-cls; got {task_type!r}")
        lm = load_model(model, task_type=task_type)  # type: ignore[arg-type]
        tok = load_tokenizer(model) if init == "text" else None
        origin = make_origin(
            lm,
            init=init,  # type: ignore[arg-type]
            num_virtual_tokens=tokens,
            seed=seed,
            text=text,
            tokenizer=tok,
            n=n,
            std=std,
        )
    save(origin, out, overwrite=overwrite)
    console().print(f"wrote {origin.describe()} to {out}")


def _mount() -> None:
    """Attach the command groups of the outer layers (each keeps its heavy imports inside its commands)."""
    from tpv.cli import hub as hub_cli
    from tpv.cli import merge as merge_cli
    from tpv.cli import train as train_cli
    from tpv.cli import transfer as transfer_cli
    from tpv.cli.bench import app as bench_app
    from tpv.cli.fuse import app as fuse_app
    from tpv.cli.models import app as models_app
    from tpv.cli.tasks import app as tasks_app

    app.add_typer(models_app, name="models", help="Packaged models: list them, convert them once.")
    app.add_typer(tasks_app, name="tasks", help="The task registry and the offline suite.")
    merge_cli.register(app)
    train_cli.register(app)
    transfer_cli.register(app)
    hub_cli.register(app)
    app.add_typer(bench_app, name="bench", help="Re-run the paper's experiments: configs, resumable cells, reports.")
    app.add_typer(fuse_app, name="fuse", help="FUSE cross-tokenizer embedding maps: fit them, apply them.")


_mount()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning known errors into one line and exit status 2.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    debug = os.environ.get("TPV_DEBUG", "") not in ("", "0")
    try:
        rv = app(args=argv, prog_name="tpv", standalone_mode=False)
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort):
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except (TyperException, click.ClickException) as exc:
        # Usage errors (missing argument, bad option value): click's own one-paragraph message, exit 2.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except (TPVError, OSError) as exc:
        if debug:
            raise
        kind = type(exc).__name__
        typer.echo(f"error ({kind}): {exc}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
