"""``tpv combine``, ``tpv select``, ``tpv search``: merge vectors, pick sources, search coefficients.

The commands are plain typed functions; :func:`register` adds them to an app. Errors a user can cause are
raised as :class:`~tpv.TPVError` (or ``OSError``) for the main entry point to print as one line.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tpv._fs import check_output
from tpv.cli._common import INPUT_HELP, ORIGIN_HELP, THREADS_HELP, set_threads
from tpv.errors import ConfigError, ModelError, TaskError

if TYPE_CHECKING:
    from tpv.cli._common import VectorInput
    from tpv.vector import TaskPromptVector

__all__ = ["combine_command", "parse_grid", "parse_weights", "register", "search_command", "select_command"]


# -- helpers --------------------------------------------------------------------------------------------------


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _number(text: str) -> float:
    """A plain decimal number (no ``1_0`` digit grouping, no ``inf``/``nan``); ValueError otherwise."""
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(text)
    return float(text)


def parse_weights(text: str) -> list[float]:
    """``"1,0.5"`` -> ``[1.0, 0.5]``.

    Raises:
        ConfigError: an empty list or a value that is not a finite number.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [_number(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers such as 1,0.5; got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--weights must be finite numbers, got {text!r}")
    return values


def parse_grid(text: str) -> tuple[float, ...]:
    """A coefficient grid: ``"0,0.5,1"`` (a list) or ``"0:1:0.05"`` (start:stop:step, stop included).

    Raises:
        ConfigError: malformed text, a non-positive step, or more than 10,000 values.
    """
    text = text.strip()
    malformed = f"--grid must be numbers like 0,0.5,1 or start:stop:step like 0:1:0.05; got {text!r}"
    if ":" in text:
        try:
            start, stop, step = (_number(x) for x in text.split(":"))
        except ValueError:
            raise ConfigError(malformed) from None
        if not step > 0 or stop < start:
            raise ConfigError(f"--grid start:stop:step needs step > 0 and stop >= start, got {text!r}")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > 10_000:
            raise ConfigError(f"--grid {text!r} has {count} values; at most 10,000")
        return tuple(round(start + k * step, 10) for k in range(count))
    try:
        values = tuple(_number(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(malformed) from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--grid values must be finite, got {text!r}")
    return values


_DTYPES = ("float32", "float64", "bfloat16", "float16")


def _load_vectors(files: list[Path], dtype: str | None = None, *, origin: Path | None = None) -> list[TaskPromptVector]:
    """Read vectors (files, adapter or run folders); with ``dtype`` convert them all, else refuse mixed dtypes."""
    return [inp.item for inp in _read_inputs(files, dtype, origin=origin)]


def _read_inputs(files: list[Path], dtype: str | None = None, *, origin: Path | None = None) -> list[VectorInput]:
    """Read vector inputs (tpv files, PEFT adapter folders, run folders) as :func:`_load_vectors` does."""
    import dataclasses

    import torch

    from tpv.cli._common import read_input

    if dtype is not None and dtype not in _DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    inputs = [read_input(f, origin=origin) for f in files]
    if dtype is not None:
        return [dataclasses.replace(i, item=i.item.to(getattr(torch, dtype))) for i in inputs]
    dtypes = {str(i.item.dtype).removeprefix("torch.") for i in inputs}
    if len(dtypes) > 1:
        listing = ", ".join(f"{i.path} ({str(i.item.dtype).removeprefix('torch.')})" for i in inputs)
        raise ConfigError(f"the vectors have different dtypes: {listing}; pass --dtype float32 to convert them all")
    return inputs


def _names(files: list[Path], vectors: list[TaskPromptVector]) -> list[str]:
    """A readable, unique name per file: its stem, or its task when the stem is generic."""
    names = []
    for f, v in zip(files, vectors):
        terms = "+".join(v.terms)
        names.append(terms if f.stem in ("vector", "merged") and terms else f.stem)
    if len(set(names)) != len(names):
        names = [str(f) for f in files]
    return names


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


# -- combine --------------------------------------------------------------------------------------------------


def combine_command(
    files: Annotated[
        list[Path], typer.Argument(help=f"Vectors tuned from one origin on one model: each {INPUT_HELP}.")
    ],
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("-o", "--out", help="Where to write the merged vector (.safetensors)."),
    ] = None,
    adapter_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Also (or instead) write origin + merged vector as a PEFT adapter folder here."),
    ] = None,
    origin: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The vectors' origin file: for adapter folders without one, and for --adapter-out."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(help="task_arithmetic | mean | per_token | magnitude | ties | dare | dare_ties."),
    ] = "task_arithmetic",
    mean: Annotated[bool, typer.Option("--mean", help="Shorthand for --method mean.")] = False,
    weights: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="One weight per vector, comma-separated, e.g. 1,0.5 (default: all 1)."),
    ] = None,
    token_weights: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="per_token: a JSON file holding one list of per-row weights per vector."),
    ] = None,
    density: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="magnitude/ties/dare: fraction of entries kept, in (0, 1]."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="dare/dare_ties: seed of the drop masks.")] = None,  # noqa: UP045
    scale: Annotated[float, typer.Option(help="Multiply the merged vector by this (a lambda).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the merge record as JSON.")] = False,
    dtype: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Convert every vector to this dtype first (float32, bfloat16, ...): for mixed inputs."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file or --adapter-out folder.")] = False,
) -> None:
    """Merge task prompt vectors with a registered method and save the result.

    The inputs may be tpv vector files, PEFT adapter folders (read as tuned - origin) and `tpv train` run
    folders. The merge method, parameters, weights and inputs are saved in the file's provenance. For the
    linear methods the result's terms are exact; for ties, dare and magnitude they record the weights given.
    --adapter-out writes origin + merged as a PEFT adapter folder (PeftModel.from_pretrained loads it).

    Example: `tpv combine a.safetensors b.safetensors --method ties --density 0.2 --weights 1,0.5 -o multi.safetensors`
    """
    from tpv.files import save
    from tpv.merge import get_method, merge, merge_record

    if mean:
        if method not in ("task_arithmetic", "mean"):
            raise ConfigError(f"--mean and --method {method} disagree: give one of them")
        method = "mean"
    get_method(method)
    if not files:
        raise ConfigError("tpv combine needs at least one vector file")
    if weights is not None and token_weights is not None:
        raise ConfigError("give --weights or --token-weights, not both")
    if not math.isfinite(scale):
        raise ConfigError(f"--scale must be finite, got {scale}")
    if seed is not None and not 0 <= seed <= 2**63 - 1:
        raise ConfigError(f"--seed must be an integer in 0..2**63-1; got {seed}")
    if out is None and adapter_out is None:
        raise ConfigError("tpv combine needs an output: -o FILE.safetensors and/or --adapter-out FOLDER")
    if out is not None:
        check_output(out, overwrite=overwrite, inputs=[*files, token_weights, origin], flag="--overwrite")
    if adapter_out is not None:
        check_output(
            adapter_out,
            overwrite=overwrite,
            inputs=[*files, token_weights, origin, out],
            flag="--overwrite",
            folder=True,
        )
    inputs = _read_inputs(files, dtype, origin=origin)
    vectors = [i.item for i in inputs]
    w: Any = None
    if weights is not None:
        w = parse_weights(weights)
    elif token_weights is not None:
        try:
            w = json.loads(token_weights.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--token-weights {token_weights} is not valid JSON: {exc}") from None
    elif method == "per_token":
        raise ConfigError("--method per_token needs --token-weights FILE.json (one list of row weights per vector)")
    params = {"density": density, "seed": seed}
    merged = merge(vectors, method, weights=w, **params)
    if scale != 1.0:
        merged = merged * scale
    record = merge_record(method, w, [str(f) for f in files], **params)
    record["merge"]["scale"] = scale
    merged_origin = None
    if adapter_out is not None:
        merged_origin = _known_origin(inputs, origin, merged.origin_id)
    if out is not None:
        save(merged, out, provenance=record, overwrite=overwrite)
    if adapter_out is not None:
        from tpv.adapters import save_adapter

        save_adapter(merged, adapter_out, origin=merged_origin, overwrite=overwrite)
    written = [str(p) for p in (out, adapter_out) if p is not None]
    if as_json:
        outputs = {
            "out": str(out) if out is not None else None,
            "adapter_out": str(adapter_out) if adapter_out else None,
        }
        typer.echo(json.dumps({**outputs, "terms": dict(merged.terms), **record}, indent=2))
        return
    typer.echo(f"wrote {merged.describe()} to {' and '.join(written)} ({method})")


def _known_origin(inputs: list[VectorInput], origin: Path | None, origin_id: str) -> Any:
    """The origin ``--adapter-out`` needs: ``--origin`` or an input folder's own, else a ConfigError."""
    from tpv.cli._common import known_origin

    found = known_origin(inputs, origin, origin_id)
    if found is None:
        raise ConfigError(
            f"--adapter-out writes origin + merged vector and needs the origin {origin_id}: pass --origin "
            "ORIGIN.safetensors (none of the inputs is a folder holding it)"
        )
    return found


# -- select ---------------------------------------------------------------------------------------------------


def select_command(
    sources: Annotated[list[Path], typer.Argument(help=f"Source vectors to choose from: each {INPUT_HELP}.")],
    target: Annotated[Path, typer.Option(help="The target's vector (e.g. from a brief tuning): file or folder.")],
    method: Annotated[str, typer.Option(help="spot (top-k by similarity) | dtvg (best similar group).")] = "spot",
    top_k: Annotated[int, typer.Option(help="spot: how many sources to keep.")] = 1,
    threshold: Annotated[float, typer.Option(help="dtvg: keep sources more similar to the target than this.")] = 0.0,
    max_group: Annotated[Optional[int], typer.Option(help="dtvg: largest group to choose.")] = None,  # noqa: UP045
    min_group: Annotated[int, typer.Option(help="dtvg: smallest group to choose.")] = 1,
    pooling: Annotated[
        str, typer.Option(help="flat | mean_tokens | token_pairs (SPoT's token-level variants).")
    ] = "flat",
    origin: Annotated[Optional[Path], typer.Option(help=ORIGIN_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the selection as JSON.")] = False,
) -> None:
    """Choose the source vectors most useful for a target, by cosine similarity.

    spot ranks sources by similarity to the target and keeps the top k (SPoT, arXiv 2110.07904); dtvg keeps
    the sources more similar than a threshold and picks the group with the highest mean pairwise similarity,
    target included (DTVG, arXiv 2503.18063). Vectors of different origins can be compared.

    Example: `tpv select --target rte.safetensors mnli.safetensors qnli.safetensors sst2.safetensors --method dtvg`
    """
    from tpv.select import select_sources

    if method not in ("spot", "dtvg"):
        raise ConfigError(f"--method must be spot or dtvg, got {method!r}")
    if pooling not in ("flat", "mean_tokens", "token_pairs"):
        raise ConfigError(f"--pooling must be flat, mean_tokens or token_pairs, got {pooling!r}")
    if not sources:
        raise ConfigError("tpv select needs at least one source vector file")
    vectors = _load_vectors(sources, origin=origin)
    (target_vector,) = _load_vectors([target], origin=origin)
    selection = select_sources(
        target_vector,
        vectors,
        names=_names(sources, vectors),
        method=method,  # type: ignore[arg-type]
        top_k=top_k,
        threshold=threshold,
        max_group=max_group,
        min_group=min_group,
        pooling=pooling,  # type: ignore[arg-type]
    )
    if as_json:
        typer.echo(json.dumps({"target": str(target), **selection.to_dict()}, indent=2))
        return
    from rich.table import Table

    from tpv.cli import console

    table = Table(title=f"sources for {target} ({method})", title_justify="left")
    table.add_column("source")
    table.add_column("similarity", justify="right")
    table.add_column("chosen")
    for s in selection.ranking:
        table.add_row(s.name, f"{s.score:.4f}", "yes" if s.chosen else "")
    out = console()
    out.print(table)
    extra = "" if selection.group_score is None else f" (group score {selection.group_score:.4f})"
    out.print(f"chosen: {', '.join(selection.chosen) or 'none'}{extra}")


# -- search ---------------------------------------------------------------------------------------------------


def _model_layer() -> Any:
    try:
        import tpv.models as models
    except ImportError as exc:
        raise ModelError(
            f"tpv search needs the model layer (tpv.models) and transformers: {exc}. Fix: pip install 'tpv[peft]'"
        ) from None
    return models


def _tasks_layer() -> Any:
    try:
        import tpv.tasks as tasks
    except ImportError as exc:
        raise TaskError(f"tpv search needs the tasks layer (tpv.tasks): {exc}. Fix: pip install 'tpv[tasks]'") from None
    return tasks


def search_command(
    vectors: Annotated[
        list[Path], typer.Argument(help=f"Vectors to combine (one origin, one model): each {INPUT_HELP}.")
    ],
    origin: Annotated[Path, typer.Option(help="The origin file the vectors were tuned from.")],
    task: Annotated[str, typer.Option(help="The task whose validation split scores the candidates.")],
    model: Annotated[str, typer.Option(help="Model name or path (the vectors' model).")] = "smollm2-135m",
    grid: Annotated[
        str, typer.Option(help="Coefficients to try: 0,0.5,1 or start:stop:step (the paper's 0:1:0.05).")
    ] = "0:1:0.05",
    per_task: Annotated[bool, typer.Option("--per-task", help="One coefficient per vector, not one lambda.")] = False,
    strategy: Annotated[str, typer.Option(help="--per-task: coordinate (ascent over the grid) | grid.")] = "coordinate",
    batch_size: Annotated[int, typer.Option(help="Validation examples per forward pass.")] = 8,
    max_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Validation examples scoring each candidate: at most N, stratified (default all)."),
    ] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Keep the last N tokens of an input.")] = None,  # noqa: UP045
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Score candidates one at a time (the slow baseline).")
    ] = False,
    seed: Annotated[int, typer.Option(help="The task split's seed.")] = 0,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("-o", "--out", help="Write the best combination (a vector) here."),
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Search the coefficients of a combination of vectors on a task's validation split.

    The paper's protocol: one lambda for the whole sum, origin + lambda * sum(vectors), best accuracy over
    lambda in {0, 0.05, ..., 1}. With --per-task, one coefficient per vector (coordinate ascent from the
    best lambda, or the full grid). All candidates are scored together on each batch (rank classification
    over the task's label words, causal LMs).

    Example: `tpv search sst2.safetensors imdb.safetensors --origin origin.safetensors --task rotten_tomatoes`
    """
    from tpv.engine.prompt_scoring import BatchedPromptScorer, SequentialPromptScorer
    from tpv.files import load_origin, save
    from tpv.search import search_per_task, search_scalar

    set_threads(threads)
    if strategy not in ("coordinate", "grid"):
        raise ConfigError(f"--strategy must be coordinate or grid, got {strategy!r}")
    if out is not None:
        check_output(out, overwrite=overwrite, inputs=[*vectors, origin], flag="--overwrite")
    if not vectors:
        raise ConfigError("tpv search needs at least one vector file")
    values = parse_grid(grid)
    vecs = _load_vectors(vectors, origin=origin)
    org = load_origin(origin)
    models = _model_layer()
    tasks = _tasks_layer()
    data = tasks.load_task(task, seed=seed, max_examples=max_examples)
    examples = list(data.validation)
    if not examples:
        raise TaskError(f"task {task!r} has no validation examples to score with")
    if any(isinstance(e.label, float) and not float(e.label).is_integer() for e in examples):
        raise ConfigError(f"task {task!r} is a regression task; tpv search scores classification by label words")
    label_words = tuple(data.spec.label_words)
    lm = models.load_model(model, task_type="causal-lm")
    tokenizer = models.load_tokenizer(model)
    name = models.model_name(lm) if hasattr(models, "model_name") else model
    if vecs[0].base_model not in ("unknown", name):
        _echo_err(f"warning: the vectors were tuned on {vecs[0].base_model!r}, scoring with {name!r}")
    texts = [e.text for e in examples]
    labels = [int(e.label) for e in examples]
    scorer_cls = SequentialPromptScorer if sequential else BatchedPromptScorer
    scorer = scorer_cls(lm, tokenizer, texts, labels, label_words, batch_size, max_length=max_length)
    calls = {"n": 0, "candidates": 0}
    start = time.perf_counter()

    def scored(prompts: Any) -> Any:
        result = scorer(prompts)
        calls["n"] += 1
        calls["candidates"] += int(prompts.shape[0])
        _echo_err(f"scored {calls['candidates']} candidate(s) in {time.perf_counter() - start:.1f} s")
        return result

    if per_task:
        result = search_per_task(vecs, org, scored, values, strategy=strategy)  # type: ignore[arg-type]
    else:
        result = search_scalar(vecs, org, scored, values)
    elapsed = time.perf_counter() - start
    record = {
        "search": {
            **result.to_dict(),
            "files": [str(v) for v in vectors],
            "origin": str(origin),
            "task": task,
            "model": name,
            "examples": len(examples),
            "seconds": round(elapsed, 3),
            "scorer": "sequential" if sequential else "batched",
        }
    }
    if out is not None:
        save(result.vector(vecs), out, provenance=record, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    from rich.table import Table

    from tpv.cli import console

    table = Table(title=f"{task}: accuracy of each candidate ({len(examples)} examples)", title_justify="left")
    for col in result.names:
        table.add_column(col, justify="right")
    table.add_column("accuracy", justify="right")
    for c in result.candidates:
        mark = " *" if c.coefficients == result.coefficients else ""
        table.add_row(*(f"{x:g}" for x in c.coefficients), f"{c.score:.4f}{mark}")
    con = console()
    con.print(table)
    best = ", ".join(f"{n}={c:g}" for n, c in zip(result.names, result.coefficients))
    con.print(f"best: {best} accuracy {result.score:.4f} ({len(result.candidates)} candidates, {elapsed:.1f} s)")
    if out is not None:
        con.print(f"wrote the best combination to {out}")


def register(app: typer.Typer) -> None:
    """Add ``combine``, ``select`` and ``search`` to ``app``."""
    app.command("combine")(combine_command)
    app.command("select")(select_command)
    app.command("search")(search_command)
