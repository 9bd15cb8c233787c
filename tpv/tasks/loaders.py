"""Loading a task's data: from the hub, from local files, or from the offline suite, split as the paper splits.

The paper's rule (:func:`split_like_paper`): a dataset with more than 10,000 training examples gives 1,000 of them
to validation and uses its original validation set as the test set; a smaller one keeps its training set and
splits its original validation set in half (validation, test). Everything is deterministic under ``seed``.

Data without a held-out split (the offline suite; local files with only a training file) first has one carved
out by :func:`carve_held_out`: a stratified 20% (at most 2,000 examples) chosen by a stable hash of the text, the
same for every seed, so the test set never moves between seeds of a large task.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tpv.errors import ConfigError, TaskError
from tpv.tasks.sampling import stratified_cap
from tpv.tasks.spec import Example, TaskData, TaskSpec

__all__ = [
    "LARGE_TRAIN",
    "VALIDATION_FROM_TRAIN",
    "carve_held_out",
    "dedupe",
    "examples_from_rows",
    "load_task",
    "read_rows",
    "split_like_paper",
]

LARGE_TRAIN = 10_000
"""Training sets larger than this give examples to validation; smaller ones split their validation set."""

VALIDATION_FROM_TRAIN = 1_000
"""How many training examples a large dataset gives to validation."""

logger = logging.getLogger(__name__)

DataFiles = str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]]
_SPLITS = ("train", "validation", "test")


def _stable_key(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\x1f{text}".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Rows from files
# ---------------------------------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a data file into rows (dicts).

    Formats by suffix: ``.csv``, ``.tsv`` (header row), ``.json`` (a list of objects, an object holding one such
    list, or JSON lines), ``.jsonl`` (JSON lines) and ``.parquet`` (needs ``pyarrow``).

    Args:
        path: the file.

    Returns:
        The rows, in file order.

    Raises:
        TaskError: the file is missing, unreadable, of an unknown format, or malformed (the message names the file
            and, where it can, the line).
    """
    file = Path(path)
    if not file.is_file():
        raise TaskError(f"data file {file} does not exist")
    suffix = file.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return _read_csv(file, delimiter="\t" if suffix == ".tsv" else ",")
        if suffix in (".json", ".jsonl"):
            return _read_json(file)
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise TaskError(f"reading {file} needs pyarrow: pip install pyarrow") from None
            return [dict(row) for row in pq.read_table(file).to_pylist()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TaskError(f"could not read {file}: {exc}") from None
    except TaskError:
        raise
    except Exception as exc:  # pyarrow's own errors on a broken parquet file
        raise TaskError(f"could not read {file}: {type(exc).__name__}: {exc}") from None
    raise TaskError(f"data file {file}: unknown format {suffix!r}; use .csv, .tsv, .json, .jsonl or .parquet")


def _read_csv(file: Path, *, delimiter: str) -> list[dict[str, Any]]:
    """CSV/TSV rows; a UTF-8 BOM is dropped; an unterminated quote (a field swallowing the rest) is named."""
    text = file.read_text(encoding="utf-8-sig")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        return [dict(row) for row in reader]
    except csv.Error as exc:
        hint = (
            " (a quote is never closed; a quote inside a field is written twice)" if "end of data" in str(exc) else ""
        )
        raise TaskError(f"data file {file}, line {reader.line_num}: malformed CSV: {exc}{hint}") from None


def _read_json(file: Path) -> list[dict[str, Any]]:
    text = file.read_text(encoding="utf-8-sig")
    data: Any = None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # maybe JSON lines under a .json name, as the hub often ships
    if data is None:
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise TaskError(f"data file {file}, line {number}: not JSON ({exc.msg})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise TaskError(f"data file {file}: a JSON object must hold exactly one list of rows")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise TaskError(f"data file {file}: expected a list of JSON objects (one per example)")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Rows to examples
# ---------------------------------------------------------------------------------------------------------------


def _label(spec: TaskSpec, value: Any, where: str) -> int | float | None:
    """A row's label as a class index (or float score); None for an unlabelled row (``-1``, empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if spec.is_regression:
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise TaskError(f"task {spec.name!r}, {where}: label {value!r} is not a number") from None
        if not math.isfinite(score):
            raise TaskError(f"task {spec.name!r}, {where}: label {value!r} is not a finite number")
        return score
    index: int | None = None
    if isinstance(value, str):
        text = value.strip()
        lowered = [name.lower() for name in spec.label_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        try:
            number = float(text)
            if not math.isfinite(number) or number != int(number):
                raise ValueError(text)
            index = int(number)
        except ValueError:
            raise TaskError(
                f"task {spec.name!r}, {where}: label {value!r} is neither an index nor one of {list(spec.label_names)}"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise TaskError(f"task {spec.name!r}, {where}: label {value!r} is not a class index")
        index = int(value)
    else:
        raise TaskError(f"task {spec.name!r}, {where}: label {value!r} of type {type(value).__name__} is not a class")
    if index == -1:
        return None
    if not 0 <= index < spec.num_labels:
        raise TaskError(
            f"task {spec.name!r}, {where}: label {index} is out of range; the task has {spec.num_labels} labels "
            f"{list(spec.label_names)}"
        )
    return index


def examples_from_rows(spec: TaskSpec, rows: Sequence[Mapping[str, Any]], *, where: str = "data") -> list[Example]:
    """Render rows into examples; rows without a gold label (``-1`` or empty, e.g. SNLI's) are dropped.

    Args:
        spec: the task.
        rows: dicts holding the spec's ``text_fields`` and ``label_field``.
        where: names the data in error messages (a file, a split).

    Returns:
        The examples, in row order.

    Raises:
        TaskError: a row misses a field or has a label that is not one of the task's.
    """
    out: list[Example] = []
    for number, row in enumerate(rows, 1):
        if spec.label_field not in row:
            raise TaskError(
                f"task {spec.name!r}, {where}, row {number}: no label field {spec.label_field!r} "
                f"(fields: {sorted(row)})"
            )
        label = _label(spec, row[spec.label_field], f"{where}, row {number}")
        if label is None:
            continue
        missing = [f for f in spec.text_fields if f in row and (row[f] is None or (isinstance(row[f], str) and
                                                                                  not row[f].strip()))]  # fmt: skip
        if missing:
            raise TaskError(
                f"task {spec.name!r}, {where}, row {number}: text field {missing[0]!r} is empty or null; fill it or "
                "drop the row"
            )
        out.append(Example(spec.render(dict(row)), label))
    return out


def dedupe(examples: Sequence[Example]) -> list[Example]:
    """Drop repeated texts: one copy is kept when the copies agree, none when their labels disagree."""
    labels: dict[str, set[int | float]] = {}
    for ex in examples:
        labels.setdefault(ex.text, set()).add(ex.label)
    seen: set[str] = set()
    out: list[Example] = []
    for ex in examples:
        if ex.text in seen or len(labels[ex.text]) > 1:
            continue
        seen.add(ex.text)
        out.append(ex)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------------------------


def carve_held_out(
    examples: Sequence[Example], *, salt: str, fraction: float = 0.2, max_size: int = 2_000
) -> tuple[list[Example], list[Example]]:
    """Set aside a stratified held-out set, chosen by a stable hash of each text (the same for every seed).

    Args:
        examples: the pool.
        salt: mixed into the hash (the task name), so two tasks sharing texts carve independently.
        fraction: share of the pool held out.
        max_size: the most examples held out.

    Returns:
        (the rest, in pool order; the held-out examples, in hash order).
    """
    size = min(max_size, round(fraction * len(examples)))
    order = sorted(range(len(examples)), key=lambda i: _stable_key(salt, examples[i].text))
    regression = any(isinstance(ex.label, float) for ex in examples)
    chosen = stratified_cap([examples[i] for i in order], size, regression=regression)
    chosen_ids = {id(ex) for ex in chosen}
    rest = [ex for ex in examples if id(ex) not in chosen_ids]
    return rest, chosen


def split_like_paper(
    train: Sequence[Example], held_out: Sequence[Example], seed: int
) -> tuple[list[Example], list[Example], list[Example]]:
    """The paper's split of (training set, original validation set) into train, validation and test.

    Over :data:`LARGE_TRAIN` training examples: :data:`VALIDATION_FROM_TRAIN` of them (drawn by ``seed``) become
    the validation set and the held-out set is the test set. Otherwise the held-out set is shuffled by ``seed``
    and split in half: the first half (the smaller, when odd) is validation, the rest test.

    Args:
        train: the original training examples.
        held_out: the original validation (or test) examples.
        seed: the draw.

    Returns:
        (train, validation, test); train is shuffled by ``seed``.
    """
    shuffled = list(train)
    random.Random(f"tpv-split:{seed}:train").shuffle(shuffled)
    if len(shuffled) > LARGE_TRAIN:
        return shuffled[VALIDATION_FROM_TRAIN:], shuffled[:VALIDATION_FROM_TRAIN], list(held_out)
    held = list(held_out)
    random.Random(f"tpv-split:{seed}:held-out").shuffle(held)
    half = len(held) // 2
    return shuffled, held[:half], held[half:]


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------


def _normalise_files(data_files: DataFiles) -> dict[str, Path]:
    if isinstance(data_files, str | os.PathLike):
        return {"train": Path(data_files)}
    if not isinstance(data_files, Mapping):
        raise ConfigError(f"data_files must be a path or a mapping of split -> path; got {type(data_files).__name__}")
    unknown = set(data_files) - set(_SPLITS)
    if unknown:
        raise ConfigError(f"data_files: unknown split(s) {sorted(unknown)}; use train, validation and test")
    if "train" not in data_files:
        raise ConfigError("data_files needs a 'train' file (and optionally 'validation' and 'test')")
    return {split: Path(path) for split, path in data_files.items()}


def _from_files(spec: TaskSpec, files: Mapping[str, Path], seed: int) -> tuple[list[Example], ...]:
    examples = {split: examples_from_rows(spec, read_rows(path), where=str(path)) for split, path in files.items()}
    if not examples["train"]:
        raise TaskError(f"task {spec.name!r}: the training file {files['train']} holds no labelled example")
    if "validation" in examples and "test" in examples:
        return examples["train"], examples["validation"], examples["test"]
    held_out = examples.get("validation", examples.get("test"))
    train = examples["train"]
    if held_out is None:
        train, held_out = carve_held_out(train, salt=spec.name)
    return split_like_paper(train, held_out, seed)


def _hub_rows(spec: TaskSpec) -> list[list[dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise TaskError(
            f"task {spec.name!r} loads {spec.hub_path} from the Hugging Face hub, which needs the datasets package: "
            "pip install datasets (without internet, pass data_files=... instead)"
        ) from None
    columns = [*spec.text_fields, spec.label_field]
    out = []
    for split in spec.hub_splits:
        try:
            dataset = datasets.load_dataset(spec.hub_path, spec.hub_subset, split=split)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            subset = f" ({spec.hub_subset})" if spec.hub_subset else ""
            raise TaskError(
                f"task {spec.name!r}: could not load split {split!r} of {spec.hub_path}{subset} from the hub: "
                f"{message}. Without internet, save the data as files and pass data_files={{'train': ..., "
                f"'validation': ...}}"
            ) from None
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise TaskError(
                f"task {spec.name!r}: {spec.hub_path} split {split!r} has no column(s) {missing} "
                f"(it has {dataset.column_names})"
            )
        data = dataset.select_columns(columns).to_dict()
        out.append([dict(zip(columns, values)) for values in zip(*(data[c] for c in columns))])
    return out


def _from_hub(spec: TaskSpec, seed: int) -> tuple[list[Example], ...]:
    train_rows, held_rows = _hub_rows(spec)
    train = examples_from_rows(spec, train_rows, where=f"{spec.hub_path} {spec.hub_splits[0]}")
    held_out = examples_from_rows(spec, held_rows, where=f"{spec.hub_path} {spec.hub_splits[1]}")
    if len(train) > LARGE_TRAIN:  # the test set: a fixed order that does not follow the file (often sorted)
        held_out.sort(key=lambda ex: _stable_key(spec.name, ex.text))
    return split_like_paper(train, held_out, seed)


@functools.lru_cache(maxsize=16)
def _offline_pool(spec: TaskSpec) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """An offline task's (training pool, held-out set): rendered, deduplicated and carved once per process."""
    from tpv.tasks.offline import build_rows

    pool = dedupe([Example(spec.render(fields), label) for fields, label in build_rows(spec.name)])
    train, held_out = carve_held_out(pool, salt=spec.name)
    return tuple(train), tuple(held_out)


def _from_offline(spec: TaskSpec, seed: int) -> tuple[list[Example], ...]:
    train, held_out = _offline_pool(spec)
    return split_like_paper(train, held_out, seed)


def load_task(
    task: str | TaskSpec,
    *,
    data_files: DataFiles | None = None,
    max_examples: int | None = None,
    seed: int = 0,
) -> TaskData:
    r"""Load a task's examples, rendered and split as the paper does.

    Args:
        task: a registered task name (see ``tpv tasks list``) or a :class:`TaskSpec`.
        data_files: local files instead of the task's own source: one path (a training file; a held-out set is
            carved from it) or a mapping with ``train`` and optionally ``validation`` (the original held-out set,
            split by the paper's rule) and ``test`` (given all three, they are used as they are). Files hold the
            task's fields (e.g. ``sentence``, ``label`` for sst2); labels may be indices or label names.
        max_examples: keep at most this many examples in each split (stratified by label, deterministic).
        seed: the split's draw.

    Returns:
        The task's :class:`TaskData`.

    Raises:
        TaskError: unknown task (the message lists close names), data missing on this machine (the message gives
            the install command), or malformed data.
        ConfigError: an invalid argument.

    Example:
        >>> data = load_task("rotten_tomatoes", seed=0)  # doctest: +SKIP
        >>> data.train[0].text  # doctest: +SKIP
        'Review: ...\nSentiment:'
    """
    from tpv.tasks.registry import get_task

    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int; got {seed!r}")
    if max_examples is not None and (
        isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1
    ):
        raise ConfigError(f"max_examples must be a positive int or None; got {max_examples!r}")
    if data_files is not None:
        train, validation, test = _from_files(spec, _normalise_files(data_files), seed)
    elif spec.source == "local":
        if not spec.local_files:
            raise TaskError(f"task {spec.name!r} is local but names no files; pass data_files=...")
        train, validation, test = _from_files(spec, {s: Path(p) for s, p in spec.local_files}, seed)
    elif spec.source == "offline":
        train, validation, test = _from_offline(spec, seed)
    else:
        train, validation, test = _from_hub(spec, seed)
    if max_examples is not None:
        train, validation, test = (
            stratified_cap(split, max_examples, regression=spec.is_regression) for split in (train, validation, test)
        )
    empty = [name for name, split in (("train", train), ("validation", validation), ("test", test)) if not split]
    warnings: tuple[str, ...] = ()
    if empty and train + validation + test:
        total = len(train) + len(validation) + len(test)
        warnings = (
            f"the {' and '.join(empty)} split(s) of {spec.name!r} are empty: the data holds only {total} "
            "example(s), too few to carve every split. Fix: give more rows, or pass a mapping of files with "
            "'validation' and 'test'",
        )
        logger.warning("%s", warnings[0])
    return TaskData(spec, train, validation, test, warnings)
