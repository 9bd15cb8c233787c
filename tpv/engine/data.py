"""Data for the engine: checked examples, token ids, label-word ids, length-grouped batches (internal).

Inputs are tokenized once, up front, into plain lists of ids; batches are padded on the fly to their own longest
row (dynamic padding), on the **right**: the scorer reads each row's last real position, and right padding keeps
every real token at the same position whatever its batch (so batched and one-by-one scores agree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tpv.errors import ConfigError, TrainingError

__all__ = [
    "Batch",
    "Encoded",
    "check_examples",
    "collate",
    "encode",
    "eval_batches",
    "fingerprint",
    "label_token_ids",
    "plan_epoch",
]


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: its input ids (already truncated) and its label index."""

    ids: tuple[int, ...]
    label: int


@dataclass(frozen=True)
class Batch:
    """A padded batch.

    Attributes:
        input_ids: shape ``(B, T)``, right-padded with the pad id.
        attention_mask: shape ``(B, T)``, 1 on real tokens.
        labels: shape ``(B,)``, class indices.
        index: shape ``(B,)``, positions of the rows in the encoded list.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        return Batch(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            self.index,
        )

    @property
    def tokens(self) -> int:
        """Real (non-pad) tokens in the batch."""
        return int(self.attention_mask.sum())


def _text_label(item: Any, i: int, what: str) -> tuple[str, Any]:
    if hasattr(item, "text") and hasattr(item, "label"):
        return item.text, item.label
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        return item[0], item[1]
    raise TrainingError(
        f"{what}[{i}] is a {type(item).__name__}; examples must be tpv.tasks.Example(text, label) objects or "
        "(text, label) pairs"
    )


def check_examples(
    examples: Iterable[Any] | None, *, num_labels: int, label_words: Sequence[str] | None, what: str
) -> tuple[list[str], list[int]]:
    """Validate examples against the verbalizer and split them into texts and labels.

    Args:
        examples: ``Example`` objects or ``(text, label)`` pairs.
        num_labels: number of classes (length of the verbalizer).
        label_words: the verbalizer, for messages (``None`` for a classification head).
        what: how to name the dataset in messages (``"train_examples"``, ``"validation"``).

    Returns:
        ``(texts, labels)``.

    Raises:
        TrainingError: no examples, a text that is not a non-empty string, or a label that is not an index into
            the verbalizer (the message names the example, its label and the label words).
    """
    items = list(examples) if examples is not None else []
    if not items:
        raise TrainingError(
            f"{what} is empty: there is nothing to train or score on. Fix: pass a non-empty list of "
            "Example(text, label) / (text, label) pairs, or a task name with data on this machine"
        )
    texts: list[str] = []
    labels: list[int] = []
    verbalizer = f"label words {tuple(label_words)!r}" if label_words is not None else f"{num_labels} head classes"
    for i, item in enumerate(items):
        text, label = _text_label(item, i, what)
        if not isinstance(text, str) or not text.strip():
            raise TrainingError(f"{what}[{i}] has an empty or non-string text ({text!r})")
        if isinstance(label, bool) or not isinstance(label, int):
            if isinstance(label, float) and label.is_integer():
                label = int(label)
            else:
                raise TrainingError(
                    f"{what}[{i}] has label {label!r}; the engine classifies, so labels must be class indices "
                    f"0..{num_labels - 1} into the {verbalizer}"
                )
        if not 0 <= label < num_labels:
            raise TrainingError(
                f"{what}[{i}] has label {label}, which is missing from the verbalizer: the {verbalizer} cover "
                f"labels 0..{num_labels - 1}. Fix: add a label word for every class, or map labels into that range"
            )
        texts.append(text)
        labels.append(int(label))
    return texts, labels


def fingerprint(texts: Sequence[str], labels: Sequence[int]) -> str:
    """A short content hash of a dataset (texts and labels, in order), recorded in checkpoints and ``run.json``."""
    h = hashlib.sha256()
    for text, label in zip(texts, labels):
        h.update(text.encode("utf-8"))
        h.update(b"\x00")
        h.update(str(label).encode("ascii"))
        h.update(b"\x01")
    return "sha256:" + h.hexdigest()[:16]


def _truncate(ids: list[int], max_length: int) -> list[int]:
    """Keep the first quarter and the last three quarters of ``max_length`` ids (instruction and answer cue)."""
    if len(ids) <= max_length:
        return ids
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head) :]


def encode(tokenizer: Any, texts: Sequence[str], labels: Sequence[int], *, max_length: int) -> list[Encoded]:
    """Tokenize texts (with the tokenizer's special tokens) and truncate their middles to ``max_length`` ids.

    Args:
        tokenizer: a ``transformers`` tokenizer.
        texts: rendered inputs, each ending with its answer cue.
        labels: class indices.
        max_length: most ids kept per text.

    Returns:
        One :class:`Encoded` per text.
    """
    out: list[Encoded] = []
    chunk = 1024
    for start in range(0, len(texts), chunk):
        ids_list = tokenizer(list(texts[start : start + chunk]), add_special_tokens=True)["input_ids"]
        for ids, label in zip(ids_list, labels[start : start + chunk]):
            if not ids:
                raise TrainingError(f"text {texts[start]!r} tokenizes to nothing")
            out.append(Encoded(tuple(_truncate(list(ids), max_length)), int(label)))
    return out


def label_token_ids(tokenizer: Any, label_words: Sequence[str]) -> list[int]:
    """The first token id of each label word (rank classification reads the answer's first token).

    Args:
        tokenizer: a ``transformers`` tokenizer.
        label_words: the verbalizer, e.g. ``(" negative", " positive")`` (leading spaces matter for BPE).

    Returns:
        One id per label word.

    Raises:
        ConfigError: fewer than 2 words, an empty word, a word that tokenizes to nothing, or two words whose first
            tokens coincide (they could not be told apart).
    """
    words = list(label_words)
    if len(words) < 2:
        raise ConfigError(f"label_words must name at least 2 classes, got {tuple(words)!r}")
    ids: list[int] = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"label_words must be non-empty strings, got {word!r}")
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ConfigError(f"label word {word!r} tokenizes to nothing with this tokenizer")
        ids.append(int(toks[0]))
    seen: dict[int, str] = {}
    for word, tid in zip(words, ids):
        if tid in seen:
            raise ConfigError(
                f"label words {seen[tid]!r} and {word!r} start with the same token (id {tid}), so their first "
                "tokens cannot tell the classes apart. Fix: choose label words whose first tokens differ"
            )
        seen[tid] = word
    return ids


def plan_epoch(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """The batches of one epoch: a seeded shuffle, optionally grouped by length, in a seeded random order.

    Grouping sorts windows of ``50 * batch_size`` shuffled examples by length and cuts them into batches, so a
    batch holds examples of similar length (little padding) while the data order stays random. The plan depends
    only on ``(lengths, batch_size, seed, epoch, group_by_length)``, which is what makes resuming exact.

    Args:
        lengths: token count of every example.
        batch_size: examples per batch (the last batch may be smaller).
        seed: the run's seed.
        epoch: the epoch number.
        group_by_length: group by length.

    Returns:
        Lists of example positions.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Scoring batches: examples sorted by length (longest first), cut into ``batch_size`` chunks."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(encoded: Sequence[Encoded], index: Sequence[int], *, pad_id: int) -> Batch:
    """Right-pad the examples at ``index`` to their longest row.

    Args:
        encoded: the encoded dataset.
        index: positions to batch.
        pad_id: the pad token id.

    Returns:
        The :class:`Batch`.
    """
    rows = [encoded[i] for i in index]
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for j, r in enumerate(rows):
        n = len(r.ids)
        ids[j, :n] = torch.tensor(r.ids, dtype=torch.long)
        mask[j, :n] = 1
    labels = torch.tensor([r.label for r in rows], dtype=torch.long)  # (B,)
    return Batch(ids, mask, labels, torch.tensor(list(index), dtype=torch.long))
