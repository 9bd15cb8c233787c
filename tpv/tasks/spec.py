"""Declarative task specifications: what a task is, where its data lives, and how an example is rendered.

A task is data, not a subclass: one frozen :class:`TaskSpec` names its source (the Hugging Face hub, a
package installed on this machine, or local files), the fields an example's text is built from, the input
template ending with the answer cue, the label words (verbalizer) and the metric. The loaders in
:mod:`tpv.tasks.loaders` turn a spec into a :class:`TaskData` of rendered :class:`Example` objects.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from tpv.errors import ConfigError

__all__ = [
    "METRIC_NAMES",
    "Example",
    "MetricName",
    "SourceKind",
    "TaskData",
    "TaskGroup",
    "TaskSpec",
    "truncate_middle",
]

MetricName = Literal["accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman"]
"""The metrics a task can be scored with (see :mod:`tpv.metrics`)."""

METRIC_NAMES: tuple[str, ...] = get_args(MetricName)

SourceKind = Literal["hub", "offline", "local"]
"""Where a task's data comes from: the Hugging Face hub (needs internet and ``datasets``), packages installed on
this machine (``offline``), or files the user names (``local``)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGRESSION_METRICS = ("pearson", "spearman")


def truncate_middle(text: str, max_chars: int) -> str:
    """Shorten ``text`` to at most ``max_chars`` characters, keeping its start and its end.

    Long reviews state their verdict at the start or at the end, so both are kept and the middle is replaced by
    ``" ... "``; cuts fall on spaces where possible.

    Args:
        text: the text.
        max_chars: the most characters to keep (at least 20).

    Returns:
        ``text`` unchanged when short enough, else its head and tail joined by ``" ... "``.
    """
    if len(text) <= max_chars:
        return text
    budget = max(max_chars - 5, 10)
    head_len = budget // 2
    tail_len = budget - head_len
    head = text[:head_len]
    tail = text[len(text) - tail_len :]
    if " " in head[head_len // 2 :]:
        head = head[: head.rindex(" ")]
    if " " in tail[: tail_len // 2]:
        tail = tail[tail.index(" ") + 1 :]
    return f"{head.rstrip()} ... {tail.lstrip()}"


@dataclass(frozen=True)
class Example:
    r"""One rendered example.

    Attributes:
        text: the model input, already rendered with the task's template and ending with the answer cue
            (e.g. ``"Review: a gorgeous film\nSentiment:"``).
        label: index into the task's ``label_words`` (a float score for regression tasks).
    """

    text: str
    label: int | float


@dataclass(frozen=True)
class TaskSpec:
    """A task, declared: source, fields, template, label words, metric and provenance.

    Validated on creation: a bad field raises :class:`tpv.errors.ConfigError` naming the field and the rule.
    """

    name: str = field(metadata={"help": "Registry name: lowercase letters, digits and underscores."})
    group: str = field(metadata={"help": "The group the task is listed under (e.g. 'glue', 'offline-sentiment')."})
    source: SourceKind = field(metadata={"help": "'hub', 'offline' (installed packages) or 'local' (files)."})
    text_fields: tuple[str, ...] = field(metadata={"help": "Row fields the template reads, in order."})
    template: str = field(
        metadata={
            "help": "str.format template over text_fields, ending with the answer cue, e.g. 'Review: {text}\\n"
            "Sentiment:'."
        }
    )
    label_words: tuple[str, ...] = field(
        metadata={"help": "Verbalizer: one word per label, each with a leading space. Empty for regression."}
    )
    label_names: tuple[str, ...] = field(
        metadata={"help": "The dataset's own label names, in label-index order (strings in files map to these)."}
    )
    metric: MetricName = field(metadata={"help": "The metric the task is scored with."})
    hub_path: str | None = field(default=None, metadata={"help": "Hugging Face dataset path (source 'hub')."})
    hub_subset: str | None = field(default=None, metadata={"help": "Dataset configuration name, if any."})
    hub_splits: tuple[str, str] = field(
        default=("train", "validation"),
        metadata={
            "help": "(training split, held-out split); the held-out split plays the paper's 'original "
            "validation set' and becomes the test set."
        },
    )
    local_files: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata={"help": "(split, path) pairs for source 'local': csv, tsv, json, jsonl or parquet."},
    )
    label_field: str = field(default="label", metadata={"help": "The row field holding the label."})
    max_chars: int | None = field(
        default=None,
        metadata={"help": "Truncate each text field to this many characters (keeping both ends)."},
    )
    version: str = field(default="1.0", metadata={"help": "Bumped whenever the rendering or the data changes."})
    description: str = field(default="", metadata={"help": "One sentence: what the task asks."})
    licence: str = field(default="", metadata={"help": "The data's licence."})
    size: str = field(default="", metadata={"help": "Size of the source data, in words."})
    balance: str = field(default="", metadata={"help": "Label balance of the source data, in words."})
    install: str = field(default="", metadata={"help": "The command that makes the data available here."})
    citation: str = field(default="", metadata={"help": "Where the data comes from (paper or URL)."})

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"TaskSpec.name must match {_NAME.pattern}; got {self.name!r}")
        if self.source not in get_args(SourceKind):
            raise ConfigError(f"TaskSpec.source must be one of {get_args(SourceKind)}; got {self.source!r}")
        if self.metric not in METRIC_NAMES:
            raise ConfigError(f"TaskSpec.metric of {self.name!r} must be one of {METRIC_NAMES}; got {self.metric!r}")
        if self.source == "hub" and not self.hub_path:
            raise ConfigError(f"TaskSpec {self.name!r}: source 'hub' needs hub_path")
        if not self.text_fields:
            raise ConfigError(f"TaskSpec {self.name!r}: text_fields is empty")
        used = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        unknown = used - set(self.text_fields)
        if unknown:
            raise ConfigError(
                f"TaskSpec {self.name!r}: template uses {sorted(unknown)} which are not in text_fields "
                f"{list(self.text_fields)}"
            )
        if self.is_regression:
            if self.label_words:
                raise ConfigError(f"TaskSpec {self.name!r}: a regression task ({self.metric}) has no label_words")
        else:
            if len(self.label_words) < 2:
                raise ConfigError(f"TaskSpec {self.name!r}: a classification task needs at least 2 label_words")
            if len(self.label_words) != len(self.label_names):
                raise ConfigError(
                    f"TaskSpec {self.name!r}: {len(self.label_words)} label_words but "
                    f"{len(self.label_names)} label_names; give one word per label"
                )
            bad = [w for w in self.label_words if not (w.startswith(" ") and w.strip())]
            if bad:
                raise ConfigError(
                    f"TaskSpec {self.name!r}: label words need a leading space and a word, e.g. ' positive'; got {bad}"
                )
            if len(set(self.label_words)) != len(self.label_words):
                raise ConfigError(f"TaskSpec {self.name!r}: label_words repeat: {list(self.label_words)}")
        if self.max_chars is not None and self.max_chars < 20:
            raise ConfigError(f"TaskSpec {self.name!r}: max_chars must be at least 20; got {self.max_chars}")

    @property
    def is_regression(self) -> bool:
        """Whether the label is a float score (metric pearson or spearman) rather than a class index."""
        return self.metric in _REGRESSION_METRICS

    @property
    def num_labels(self) -> int:
        """Number of classes (0 for regression)."""
        return len(self.label_words)

    def render(self, fields: Mapping[str, object]) -> str:
        """Render one row's text fields with the template (truncating long fields to ``max_chars``).

        Args:
            fields: the row; must hold every name in ``text_fields``.

        Returns:
            The model input, ending with the answer cue.

        Raises:
            TaskError: a field is missing from the row.
        """
        from tpv.errors import TaskError

        values: dict[str, str] = {}
        for name in self.text_fields:
            if name not in fields:
                raise TaskError(
                    f"task {self.name!r}: a row has no field {name!r} (it has {sorted(fields)}); the task needs "
                    f"{list(self.text_fields)} and {self.label_field!r}"
                )
            value = fields[name]
            text = "" if value is None else " ".join(str(value).split())
            if self.max_chars is not None:
                text = truncate_middle(text, self.max_chars)
            values[name] = text
        return self.template.format(**values)


@dataclass(frozen=True)
class TaskData:
    """A task's examples, split as the paper splits them.

    Attributes:
        spec: the task.
        train: training examples.
        validation: validation examples (model selection).
        test: test examples (reported).
        warnings: what a user should know about the data as loaded (e.g. a split left empty by a tiny file).
    """

    spec: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    warnings: tuple[str, ...] = ()

    def sizes(self) -> dict[str, int]:
        """Number of examples in each split."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def summary(self) -> str:
        """One line per fact: the task, its split sizes, then each warning."""
        sizes = ", ".join(f"{k} {v}" for k, v in self.sizes().items())
        return "\n".join([f"{self.spec.name}: {sizes}", *(f"warning: {w}" for w in self.warnings)])


@dataclass(frozen=True)
class TaskGroup:
    """A named set of tasks; transfer groups name which tasks are sources and which are targets.

    Attributes:
        name: registry name (e.g. ``"paper-nli"``).
        description: one sentence.
        sources: tasks prompts are trained on and combined.
        targets: tasks the combinations are transferred to (different datasets from the sources).
        tasks: every member (sources, targets and any others), in display order.
    """

    name: str
    description: str
    sources: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        overlap = set(self.sources) & set(self.targets)
        if overlap:
            raise ConfigError(f"TaskGroup {self.name!r}: {sorted(overlap)} are both sources and targets")
        members = list(self.tasks)
        for name in (*self.sources, *self.targets):
            if name not in members:
                members.append(name)
        object.__setattr__(self, "tasks", tuple(members))

    def role(self, task: str) -> str:
        """``"source"``, ``"target"`` or ``"member"`` for a task of this group."""
        if task in self.sources:
            return "source"
        if task in self.targets:
            return "target"
        return "member"
