"""``evaluate_many``: score several soft prompts on one example set, their rows mixed in the same batches.

Each result equals :func:`tpv.evaluate` of a PEFT model holding that prompt (up to float rounding): the same
class logits (:mod:`tpv.engine.scoring`: rank classification over label words for causal LMs and seq2seq models,
the classification head for seq-cls models), the same tokenization and truncation, the same metric summary; only
the batches differ, each pass holding rows of several prompts (:func:`tpv.engine.packing.score_sets`). A seq2seq
prompt of two blocks (``2P`` rows) enters through its encoder block, as in PEFT; a seq-cls prompt is scored with
the model's head, or with a :class:`TrainResult`'s own trained head.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import torch

from tpv._tensor import check_prompt_tensor
from tpv.engine.data import Encoded, check_examples, encode, label_token_ids
from tpv.engine.env import resolve_device, resolve_precision
from tpv.engine.evaluation import _Evaluator, task_examples
from tpv.engine.packing import PackedScorer, ScoreSet, check_packable, job_head, score_sets
from tpv.engine.records import TrainResult
from tpv.engine.scoring import TaskType
from tpv.engine.setup import _max_length, _model_device, _pad_id, _resolve_model, _verbalizer
from tpv.errors import ConfigError
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

__all__ = ["PromptLike", "evaluate_many"]

PromptLike = torch.Tensor | Origin | tuple[TaskPromptVector, Origin] | TrainResult
"""A prompt to score: a tensor ``(rows, dim)``, an :class:`~tpv.Origin`, a ``(vector, origin)`` pair (the prompt
``origin + vector``) or a :class:`TrainResult` (its kept prompt)."""


def _prompt(item: Any, i: int) -> tuple[torch.Tensor, int | None]:
    """The soft prompt ``(rows, dim)`` of one ``prompts`` entry, float32, and its virtual tokens per block.

    The virtual tokens are those of the entry's origin; ``None`` for a bare tensor (see :func:`_input_rows`).
    """
    if isinstance(item, TrainResult):
        return item.prompt.float(), item.origin.num_virtual_tokens
    if isinstance(item, Origin):
        return item.tensor.float(), item.num_virtual_tokens
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], TaskPromptVector):
        vector, origin = item
        if not isinstance(origin, Origin):
            raise ConfigError(f"prompts[{i}] is a (vector, origin) pair whose origin is a {type(origin).__name__}")
        return vector.apply_to(origin, strict=True).float(), origin.num_virtual_tokens
    if isinstance(item, TaskPromptVector):
        raise ConfigError(
            f"prompts[{i}] is a TaskPromptVector, a difference: pass (vector, origin) so origin + vector is scored"
        )
    if isinstance(item, torch.Tensor):
        return check_prompt_tensor(item, what=f"prompts[{i}]").float(), None
    raise ConfigError(
        f"prompts[{i}] is a {type(item).__name__}; pass tensors (rows, dim), Origins, (vector, origin) pairs or "
        "TrainResults"
    )


def _input_rows(tensor: torch.Tensor, nvt: int | None, i: int, kind: TaskType) -> int:
    """How many of a prompt's first rows go in front of the input: its virtual tokens, as PEFT prepends them.

    A bare tensor's count follows :func:`tpv.adapters.init_prompt_tuning`: half its rows on an encoder-decoder (two
    blocks, the first for the encoder), all of them otherwise.
    """
    if nvt is not None:
        return nvt
    rows = int(tensor.shape[0])
    if kind != "seq2seq":
        return rows
    if rows % 2:
        raise ConfigError(
            f"prompts[{i}] has {rows} rows, but an encoder-decoder prompt has 2 blocks (2 x virtual tokens rows); "
            "pass an even number of rows, or an Origin that records its blocks"
        )
    return rows // 2


def evaluate_many(
    model: Any,
    tokenizer: Any | None,
    prompts: Sequence[PromptLike],
    examples: Sequence[Any] | None = None,
    *,
    task: str | None = None,
    label_words: Sequence[str] | None = None,
    split: Literal["train", "validation", "test"] = "test",
    metric: str | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    max_examples: int | None = None,
    precision: str = "auto",
    device: str | None = None,
    seed: int = 0,
    share_prefix: bool | None = None,
    return_predictions: bool = False,
) -> list[dict[str, Any]]:
    """Score several soft prompts in mixed batches, as :func:`tpv.evaluate` scores each; one result per prompt.

    Each result is what :func:`tpv.evaluate` returns for a PEFT model holding that prompt (same keys, same values
    up to float rounding); ``seconds`` is the shared scoring time divided by the number of prompts.

    Args:
        model: a plain ``transformers`` model: a causal LM, a seq2seq model or a sequence classifier whose head
            is named ``classifier`` (a PEFT wrapper is unwrapped; its own prompt is not used); or a model name
            (loaded as a causal LM).
        tokenizer: its tokenizer (loaded for a model name when ``None``).
        prompts: tensors ``(rows, dim)``, origins (:class:`~tpv.Origin`), ``(vector, origin)`` pairs or
            results of ``train`` (:class:`TrainResult`); lengths may differ. seq2seq: ``2 * P`` rows (two
            blocks). seq-cls: a TrainResult is scored with its own head, the others with the model's.
        examples: ``Example(text, label)`` objects or ``(text, label)`` pairs; or give ``task``.
        task: a registered task name; its ``split`` is scored and it supplies label words and metric.
        label_words: the verbalizer (a task supplies its own; not needed for a classification head).
        split: which split of ``task``.
        metric: ``accuracy`` (default), ``f1``, ``macro_f1`` or ``matthews``.
        batch_size: rows (prompt-example pairs) per forward pass.
        max_length: most input tokens per example (the middle of longer inputs is dropped).
        max_examples: score only the first N examples.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (autocast).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``; default: where the model is.
        seed: the task's split seed.
        share_prefix: run each pass's prompts once into a key/value cache (default: on a CPU).
        return_predictions: add ``"predictions"`` (class indices in example order) to each result.

    Returns:
        One dict per prompt, in order: ``{"metric", "score", <metric>, "accuracy", "loss", "examples", "seconds",
        "examples_per_s", "precision"}``.

    Raises:
        ConfigError: no prompts, a bad prompt (an odd row count for an encoder-decoder), a seq-cls model whose
            head cannot be packed, a bad option.
        TrainingError: no examples, or a label missing from the verbalizer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: must be a positive integer")
    items = list(prompts) if isinstance(prompts, Sequence) and not isinstance(prompts, torch.Tensor) else None
    if not items:
        raise ConfigError("prompts must be a non-empty list of tensors (rows, dim), Origins or (vector, origin) pairs")
    prompted = [_prompt(item, i) for i, item in enumerate(items)]
    tensors = [t for t, _ in prompted]
    examples, label_words, metric = task_examples(examples, task, seed, split, label_words, metric)
    model, tokenizer, kind = _resolve_model(model, tokenizer, None, len(label_words) if label_words else None)
    check_packable(model)
    counts = [_input_rows(t, nvt, i, kind) for i, (t, nvt) in enumerate(prompted)]
    words, num_labels = _verbalizer(kind, model, label_words)
    dim = int(model.get_input_embeddings().weight.shape[1])
    for i, t in enumerate(tensors):
        if int(t.shape[1]) != dim:
            raise ConfigError(f"prompts[{i}] is {t.shape[1]} wide but the model's embeddings are {dim}")
    rows = list(examples) if examples is not None else []
    texts, labels = check_examples(rows[:max_examples] if max_examples is not None else rows,
                                   num_labels=num_labels, label_words=words, what="examples")  # fmt: skip
    dev = resolve_device(device) if device is not None else _model_device(model)
    if _model_device(model) != dev:
        model.to(dev)
    prec = resolve_precision(precision, dev)
    ids = label_token_ids(tokenizer, words) if kind != "seq-cls" and words is not None else []
    label_ids = torch.tensor(ids, dtype=torch.long, device=dev)  # (C,), empty for a classification head
    model_head = job_head(model)
    encodings: dict[int, list[Encoded]] = {}  # truncation depends on the prompt's length, as in evaluate
    sets = []
    for item, t, nvt in zip(items, tensors, counts):
        limit = _max_length(max_length, model, nvt)
        if limit not in encodings:
            encodings[limit] = encode(tokenizer, texts, labels, max_length=limit)
        head = job_head(item.model) if isinstance(item, TrainResult) and model_head is not None else model_head
        sets.append(ScoreSet(t[:nvt].to(dev), encodings[limit], label_ids, head))  # the rows before the input
    pad_id = _pad_id(tokenizer)
    start = time.perf_counter()
    logits = score_sets(
        PackedScorer(model, share_prefix=share_prefix), sets, rows_per_pass=batch_size, pad_id=pad_id, precision=prec
    )
    seconds = (time.perf_counter() - start) / len(sets)
    results = []
    for s, scores in zip(sets, logits):
        evaluator = _Evaluator(
            list(s.encoded), metric=metric, batch_size=batch_size, pad_id=pad_id, device=dev, precision=prec
        )
        result = evaluator.summarize(scores, seconds, predictions=return_predictions)
        result["precision"] = prec
        results.append(result)
    return results
