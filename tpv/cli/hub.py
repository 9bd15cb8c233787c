"""``tpv push``: share a vector, an origin, a run folder or a PEFT adapter on the Hugging Face Hub.

Mounted by :mod:`tpv.cli` with :func:`register`. Reading needs no command of its own: every command that takes
a tpv file also takes ``hf://owner/repo[@revision]/path/file.safetensors`` (see :mod:`tpv.hub`). Known errors
(not logged in, a bad repo id, a source that is not a tpv file or adapter) propagate as :class:`tpv.TPVError` and
are printed by ``tpv.cli.main`` as one line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpv.cli._common import console

__all__ = ["push_command", "register"]


def push_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A tpv .safetensors file (vector or origin), a `tpv train` run folder or a PEFT adapter folder."
        ),
    ],
    repo_id: Annotated[str, typer.Argument(help="The model repo, as owner/name (created when missing).")],
    path_in_repo: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--path-in-repo", help="Folder inside the repo for the files and their card (default: root)."),
    ] = None,
    revision: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--revision", help="Branch to push to (created from the default branch when missing)."),
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (when it is created).")] = False,
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="A vector file's origin, uploaded beside it (default: a matching origin file beside it)."),
    ] = None,
    commit_message: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--commit-message", "-m", help="The commit message (default: what is uploaded, tpv version)."),
    ] = None,
) -> None:
    """Upload a vector, an origin, a run folder or an adapter to the Hugging Face Hub, with a model card.

    Log in first (`huggingface-cli login`, or set HF_TOKEN). Load it back with
    `tpv inspect hf://owner/repo/vector.safetensors` or `tpv.from_adapter("owner/repo")`.

    Example: `tpv push runs/sst2 me/tpv-sst2 --private`
    """
    from tpv.hub import push_to_hub

    url = push_to_hub(
        source,
        repo_id,
        path_in_repo=path_in_repo,
        revision=revision,
        private=True if private else None,
        commit_message=commit_message,
        origin=origin,
    )
    console().print(f"pushed {source} to {url}")


def register(app: typer.Typer) -> None:
    """Mount ``tpv push`` on the given app."""
    app.command("push")(push_command)
