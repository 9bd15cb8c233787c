"""``tpv fuse``: fit FUSE maps between two models' embedding spaces, and move prompts and vectors with them.

Mounted by :mod:`tpv.cli` as ``tpv fuse``; usable alone as the ``typer`` app ``tpv.cli.fuse:app``. Known errors print
one line on stderr and exit with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpv.cli._common import THREADS_HELP, guard, set_threads
from tpv.cli._common import console as _console

app = typer.Typer(
    help="FUSE maps between models with different tokenizers: fit them, move soft prompts and vectors with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.command("fit")
def fit_command(
    source: Annotated[str, typer.Argument(help="Source model (smollm2-135m, gemma3-270m, a folder, a hub id).")],
    target: Annotated[str, typer.Argument(help="Target model.")],
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("-o", "--out", help="Also write the map to this .safetensors file (plus a .json sidecar)."),
    ] = None,
    words: Annotated[
        str, typer.Option(help="Fitting words: wordnet (WordNet 3.0 lemmas), dict (/usr/share/dict/words), or a file.")
    ] = "wordnet",
    max_subtokens: Annotated[int, typer.Option(help="K: fit maps for words of 1..K target subtokens.")] = 4,
    min_words: Annotated[int, typer.Option(help="The fewest words a word length may be fitted on.")] = 32,
    max_words_per_k: Annotated[int, typer.Option(help="At most this many words per word length (0: all).")] = 16384,
    few_words: Annotated[
        str, typer.Option(help="error | positionwise: what to do when a word length has too few words.")
    ] = "error",
    seed: Annotated[int, typer.Option(help="Seed of the word draw.")] = 0,
    refit: Annotated[bool, typer.Option("--refit", help="Fit again even if a cached map exists.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the map's metadata as JSON.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Fit (or load from the cache) the FUSE maps G_1..G_K from SOURCE's embedding space to TARGET's.

    The first fit of a model pair takes about a minute on CPU; later calls read the cache
    ($TPV_CACHE/fuse, default ~/.cache/tpv/fuse).

    Example: `tpv fuse fit smollm2-135m gemma3-270m -o smollm2-to-gemma3.safetensors`
    """

    def run() -> None:
        from tpv._fs import check_output
        from tpv.fuse import fit, save_map

        set_threads(threads)
        if out is not None:  # checked before any model is loaded
            check_output(out, overwrite=overwrite, flag="--overwrite")
            check_output(str(out) + ".json", overwrite=overwrite, flag="--overwrite")
        fmap = fit(
            source,
            target,
            words=words,
            max_subtokens=max_subtokens,
            min_words=min_words,
            max_words_per_k=max_words_per_k or None,
            few_words=few_words,  # type: ignore[arg-type]
            seed=seed,
            cache=not no_cache,
            refit=refit,
        )
        if out is not None:
            save_map(fmap, out, overwrite=overwrite)
        if as_json:
            record = {
                "source": dict(fmap.source),
                "target": dict(fmap.target),
                "max_subtokens": fmap.max_subtokens,
                "word_source": fmap.word_source,
                "words_per_k": {str(k): v for k, v in fmap.words_per_k.items()},
                "solvers": {str(k): v for k, v in fmap.solvers.items()},
                "settings": dict(fmap.settings),
                "fit_seconds": fmap.fit_seconds,
                "created": fmap.created,
                "out": str(out) if out is not None else None,
            }
            typer.echo(json.dumps(record, indent=2, sort_keys=True))
            return
        console = _console()
        console.print(fmap.describe())
        console.print(f"solvers: {dict(sorted(fmap.solvers.items()))}; words from {fmap.word_source}")
        console.print(f"fitted in {fmap.fit_seconds:.1f} s on {fmap.created}")
        if out is not None:
            console.print(f"wrote {out}")

    guard(run)


@app.command("apply")
def apply_command(
    map_file: Annotated[Path, typer.Argument(help="A map file written by `tpv fuse fit -o`.")],
    item: Annotated[Path, typer.Argument(help="A tpv origin or vector file of the map's source model.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the moved origin or vector.")],
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="For a vector: the origin file it was tuned from (required)."),
    ] = None,
    origin_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="For a vector: where to write the moved origin (default: OUT with .origin before the suffix)."
        ),
    ] = None,
    word_length: Annotated[int, typer.Option(help="Virtual tokens per mapped word (1..K).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
) -> None:
    """Move an origin or a task prompt vector to the map's target model.

    A moved vector belongs to the moved origin, which is written beside it.

    Example: `tpv fuse apply smol-gemma.safetensors sst2.safetensors --origin origin.safetensors -o sst2-g.safetensors`
    """

    def run() -> None:
        from tpv._fs import check_output
        from tpv.files import load, load_origin, save
        from tpv.fuse import apply, load_map
        from tpv.origin import Origin

        inputs = [map_file, item, origin]
        check_output(out, overwrite=overwrite, inputs=inputs, flag="--overwrite")
        fmap = load_map(map_file)
        obj = load(item)
        provenance = {"fuse_map": str(map_file), "moved_from": str(item)}
        console = _console()
        if isinstance(obj, Origin):
            moved_alone = apply(fmap, obj, word_length=word_length)
            save(moved_alone, out, provenance=provenance, overwrite=overwrite)
            console.print(f"wrote {moved_alone.describe()} to {out}")
            return
        if origin is None:
            from tpv.errors import ConfigError

            raise ConfigError(f"{item} is a vector: give --origin (the origin file it was tuned from)")
        src_origin = load_origin(origin)
        moved_origin = apply(fmap, src_origin, word_length=word_length)
        moved = apply(fmap, obj, origin=src_origin, word_length=word_length)
        o_out = origin_out or out.with_name(f"{out.stem}.origin{out.suffix or '.safetensors'}")
        check_output(o_out, overwrite=overwrite, inputs=[*inputs, out], flag="--overwrite")
        save(moved_origin, o_out, provenance=provenance | {"moved_from": str(origin)}, overwrite=overwrite)
        save(moved, out, provenance=provenance, overwrite=overwrite)
        console.print(f"wrote {moved.describe()} to {out}")
        console.print(f"wrote its origin {moved_origin.describe()} to {o_out}")

    guard(run)
