"""Helpers shared by the ``tpv`` sub-apps: console, one-line errors, ``--threads``, vector inputs.

A rich console, one-line errors for apps run on their own, ``--threads`` (:func:`set_threads`), and reading a vector
from a tpv file, a PEFT adapter folder or a ``tpv train`` run folder (:func:`read_input`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

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


# -- --threads ---------------------------------------------------------------------------------------------------

THREADS_HELP = (
    "CPU threads for torch (default: torch's choice, one per core); 1 is fastest on a machine other jobs keep busy."
)
"""The help of ``--threads``, on every command that loads a model."""


def set_threads(threads: int | None) -> None:
    """Apply ``--threads``: ``torch.set_num_threads(threads)``; ``None`` leaves torch's choice.

    Raises:
        ConfigError: not a positive integer.
    """
    if threads is None:
        return
    if threads < 1:
        from tpv.errors import ConfigError

        raise ConfigError(f"--threads {threads}: must be a positive integer")
    import torch

    torch.set_num_threads(threads)


# -- vector inputs: tpv files, PEFT adapter folders, `tpv train` run folders ------------------------------------

INPUT_HELP = "a tpv .safetensors file, a PEFT adapter folder or a `tpv train` run folder"
"""How the help texts name what :func:`read_input` reads."""

ORIGIN_HELP = "The origin file of adapter folders that hold no origin.safetensors."


@dataclass(frozen=True)
class VectorInput:
    """One vector input of a command, read by :func:`read_input`.

    Attributes:
        path: the path given.
        kind: ``"file"`` (a tpv file), ``"adapter"`` (a PEFT adapter folder) or ``"run"`` (a ``tpv train`` run).
        item: the vector (or, for a tpv origin file, the origin).
        origin: the origin the vector was tuned from, when the input carries it (an adapter folder's or run
            folder's ``origin.safetensors``, or the ``--origin`` used to read an adapter), else None.
    """

    path: Path
    kind: Literal["file", "adapter", "run"]
    item: Any
    origin: Any | None


def input_kind(path: Path) -> Literal["file", "adapter", "run"]:
    """What ``path`` is: a tpv file, a PEFT adapter folder (``adapter_config.json``) or a run folder (``run.json``).

    Raises:
        AdapterError: a folder that is neither, naming it and what it holds.
    """
    if not path.is_dir():
        return "file"
    from tpv._adapter_files import ADAPTER_CONFIG
    from tpv.engine.runfolder import RUN_FILE

    if (path / RUN_FILE).is_file():
        return "run"
    if (path / ADAPTER_CONFIG).is_file():
        return "adapter"
    from tpv.errors import AdapterError

    present = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise AdapterError(
        f"{str(path)!r} is a folder but neither a PEFT adapter folder (no adapter_config.json) nor a `tpv train` "
        f"run folder (no run.json); it holds {present}. Fix: give an adapter folder, a run folder or a "
        ".safetensors file"
    )


def read_input(path: Path, *, origin: Path | None = None, vector_only: bool = True) -> VectorInput:
    """Read a vector from a tpv file, a PEFT adapter folder (``tpv.from_adapter``) or a run folder (its vector).

    An adapter folder is read with ``origin`` when given (else its own ``origin.safetensors``, else the origin
    rebuilt from a ``TEXT`` init); its task is the one recorded in its ``tpv_vector.safetensors``, else the
    folder's name.

    Args:
        path: the input.
        origin: ``--origin``: the origin file for adapter folders that hold none.
        vector_only: refuse a tpv origin file (else it is returned as the item).

    Returns:
        The :class:`VectorInput`.

    Raises:
        AdapterError: a folder that is neither kind, an unreadable adapter, an origin that does not fit.
        FormatError: a file that is not a tpv file (or, with ``vector_only``, an origin file).
    """
    from tpv._adapter_files import ORIGIN_FILE, VECTOR_FILE
    from tpv.files import load, load_origin, load_vector

    kind = input_kind(path)
    if kind == "file":
        return VectorInput(path, kind, load_vector(path) if vector_only else load(path), None)
    if kind == "run":
        from tpv.engine.runfolder import RUN_VECTOR_FILE

        own = path / ORIGIN_FILE
        return VectorInput(path, kind, load_vector(path / RUN_VECTOR_FILE), load_origin(own) if own.is_file() else None)
    from tpv.adapters import from_adapter

    task = None if (path / VECTOR_FILE).is_file() else (path.resolve().name or "adapter")
    vector = from_adapter(path, origin=origin, task=task)
    own = path / ORIGIN_FILE
    used = origin if origin is not None else (own if own.is_file() else None)
    return VectorInput(path, kind, vector, load_origin(used) if used is not None else None)


def known_origin(inputs: Sequence[VectorInput], origin: Path | None, origin_id: str) -> Any | None:
    """The origin of id ``origin_id`` among ``--origin`` and the inputs' own origins, else None.

    Raises:
        ConfigError: ``--origin`` is another origin than ``origin_id``.
    """
    from tpv.files import load_origin

    if origin is not None:
        given = load_origin(origin)
        if given.id != origin_id:
            from tpv.errors import ConfigError

            raise ConfigError(
                f"--origin {origin} is origin {given.id}, but the vectors were tuned from {origin_id}: "
                "pass the origin they were tuned from"
            )
        return given
    for inp in inputs:
        if inp.origin is not None and inp.origin.id == origin_id:
            return inp.origin
    return None
