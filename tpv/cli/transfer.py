"""``tpv transfer``: move a soft prompt, an origin or a task prompt vector to another model (PTfer / linear maps).

Mounted by :mod:`tpv.cli` with :func:`register`. Known errors (an unknown model, a prompt that does not fit the
source model, tokenizers that share too few anchors) propagate as :class:`tpv.TPVError` and are printed by
``tpv.cli.main`` as one line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tpv._fs import check_output
from tpv.cli._common import THREADS_HELP, input_kind, set_threads
from tpv.errors import ConfigError

__all__ = ["register", "transfer_command"]


def _read_input(path: Path, origin_file: Path | None) -> tuple[Any, Any, str]:
    """``(prompt_or_vector, origin, description)`` from an adapter folder or a tpv file."""
    from tpv.files import inspect, load_origin, load_vector

    if path.is_dir() and input_kind(path) == "run":  # a `tpv train` run folder: its vector and origin
        from tpv.engine.runfolder import ORIGIN_FILE, RUN_VECTOR_FILE

        origin_file = origin_file or path / ORIGIN_FILE
        path = path / RUN_VECTOR_FILE
    if path.is_dir():
        from tpv.adapters import read_adapter

        prompt, _config = read_adapter(path)
        return prompt.float(), None, f"the prompt of adapter {path}"
    info = inspect(path)
    if info.kind == "origin":
        return load_origin(path), None, f"origin {path}"
    vector = load_vector(path)
    candidates = [origin_file] if origin_file is not None else []
    candidates += [path.with_name(path.name.removesuffix(".safetensors") + ".origin.safetensors")]
    candidates += [path.with_name("origin.safetensors")]
    for c in candidates:
        if c is not None and c.is_file():
            origin = load_origin(c)
            if origin.id == vector.origin_id:
                return vector, origin, f"vector {path} (origin {c})"
            if c == origin_file:
                raise ConfigError(
                    f"--origin {c} is origin {origin.id}, but the vector was tuned from {vector.origin_id}"
                )
    raise ConfigError(
        f"{path} is a vector, a difference: give the origin it was tuned from with --origin ORIGIN.safetensors"
    )


def transfer_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A PEFT prompt-tuning adapter folder, a `tpv train` run folder, or a tpv .safetensors file."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", help="Output: a .safetensors path (tpv file) or a folder (PEFT adapter for the target)."
        ),
    ],
    source_model: Annotated[str, typer.Option("--source-model", help="The model the input was tuned on.")],
    target_model: Annotated[str, typer.Option("--target-model", help="The model to move it to.")],
    method: Annotated[str, typer.Option(help="relative (PTfer) | linear | procrustes.")] = "relative",
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="A vector's origin file (default: <vector>.origin.safetensors or origin.safetensors)."),
    ] = None,
    vector_mode: Annotated[
        str, typer.Option(help="prompts (move origin and tuned prompt) | difference (move the vector itself).")
    ] = "prompts",
    task: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Score candidates on this task's target validation set and keep the best (uses target data)."
        ),
    ] = None,
    val_examples: Annotated[
        int,
        typer.Option("--max-examples", help="With --task: at most N target validation examples score the candidates."),
    ] = 200,
    old_val_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--val-examples", hidden=True, help="The old name of --max-examples."),
    ] = None,
    label_anchors: Annotated[
        float, typer.Option(help="With --task: weight of the task's label words among the anchors (0: off).")
    ] = 0.0,
    steps: Annotated[int, typer.Option(help="Target search steps (relative).")] = 2000,
    lr: Annotated[float, typer.Option(help="Target search learning rate (relative).")] = 5e-3,
    top_k: Annotated[Optional[int], typer.Option(help="Match only each row's top-k similarities.")] = None,  # noqa: UP045
    norm: Annotated[str, typer.Option(help="standardize (PTfer) | source-ratio: how target rows get their size.")] = (
        "standardize"
    ),
    eval_every: Annotated[int, typer.Option(help="Score every N steps (with --task).")] = 50,
    max_anchors: Annotated[Optional[int], typer.Option(help="Use at most N shared anchors.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed of the search's init and the anchor subset.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file or folder.")] = False,
) -> None:
    """Move a soft prompt, origin or task prompt vector to another model, zero-shot, through shared anchors.

    The output records the source (model, method, anchors, search) in its `tpv.provenance` metadata. Without
    `--task` no target data is used; with `--task` the relative search keeps the candidate that scores best on
    the target's validation set (PTfer's protocol).

    Example: `tpv transfer --source-model smollm2-135m --target-model gemma3-270m rt -o rt-g --task rotten_tomatoes`
    """
    import time

    from tpv.cli import console
    from tpv.spaces import EmbeddingSpace
    from tpv.transfer import METHODS, SearchConfig, run_transfer, validation_scorer
    from tpv.transfer.api import VECTOR_MODES

    set_threads(threads)
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if vector_mode not in VECTOR_MODES:
        raise ConfigError(f"--vector-mode must be one of {', '.join(VECTOR_MODES)}; got {vector_mode!r}")
    config = SearchConfig(steps=steps, lr=lr, top_k=top_k, norm=norm, eval_every=eval_every, seed=seed)  # type: ignore[arg-type]
    as_file = out.suffix == ".safetensors"
    check_output(out, overwrite=overwrite, inputs=[source, origin], flag="--overwrite", folder=not as_file)
    value, vec_origin, what = _read_input(source, origin)
    src = EmbeddingSpace.load(source_model)
    score_fn = None
    weights = None
    if task is not None:
        from tpv.models import load_model, load_tokenizer
        from tpv.tasks import load_task

        data = load_task(task, seed=0)
        model = load_model(target_model)
        tok = load_tokenizer(target_model)
        tgt = EmbeddingSpace.from_model(model, tok, name=target_model)
        val = data.validation[: old_val_examples if old_val_examples is not None else val_examples]
        labels = [int(e.label) for e in val]
        score_fn = validation_scorer(model, tok, [e.text for e in val], labels, data.spec.label_words)
        if label_anchors > 0:
            weights = {w.strip(): label_anchors for w in data.spec.label_words}
    else:
        if label_anchors > 0:
            raise ConfigError("--label-anchors needs --task (the label words come from the task)")
        tgt = EmbeddingSpace.load(target_model)
    start = time.perf_counter()
    result = run_transfer(
        value,
        source_model=src,
        target_model=tgt,
        method=method,  # type: ignore[arg-type]
        origin=vec_origin,
        vector_mode=vector_mode,  # type: ignore[arg-type]
        anchor_weights=weights,
        max_anchors=max_anchors,
        config=config,
        score_fn=score_fn,
    )
    seconds = time.perf_counter() - start
    result.provenance["command"] = "tpv transfer"
    if task is not None:
        result.provenance["task"] = task
    written = result.save(out, overwrite=overwrite) if as_file else [result.save_adapter(out, overwrite=overwrite)]
    con = console()
    con.print(
        f"moved {what} from {src.name} to {tgt.name} with {method} over {len(result.anchors)} shared anchors "
        f"in {seconds:.1f} s"
    )
    if result.search is not None:
        score = "" if result.search.score is None else f", validation score {result.search.score:.4f}"
        con.print(f"search: step {result.search.step}, code loss {result.search.loss:.4f}{score}")
    for path in written:
        con.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Mount ``tpv transfer`` on the given app."""
    app.command("transfer")(transfer_command)
