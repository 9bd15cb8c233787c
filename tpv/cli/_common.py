"""Helpers shared by the ``tpv`` sub-apps: a rich console, and one-line errors for apps run on their own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from tpv.errors import TPVError

T = TypeVar("T")


def console(stderr: bool = False, *, min_width: int | None = None) -> Any:
    """A rich console on stdout (or stderr), created at call time so tests can capture it.

    Args:
        stderr: write to stderr instead of stdout.
        min_width: the width when the output is a file or a pipe (rich assumes 80 columns there).
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if min_width is None or stream.isatty() else min_width
    return Console(stderr=stderr, soft_wrap=True, highlight=False, width=width)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a tpv error or a missing file becomes one line on stderr and exit status 2.

    ``tpv.cli.main`` does the same for the mounted apps; this keeps a sub-app run on its own (``tpv.cli.fuse:app``)
    as clean.
    """
    try:
        return fn()
    except (TPVError, OSError) as exc:
        typer.echo(f"error ({type(exc).__name__}): {exc}", err=True)
        raise typer.Exit(2) from None
