"""``evaluate``: rank-classification scoring of a model, a PEFT prompt or a :class:`TrainResult`.

One forward pass per batch, logits only at each row's answer position and only for the label words
(:mod:`tpv.engine.scoring`), inputs tokenized once and batches grouped by length. :class:`_Evaluator` scores a
fixed, pre-tokenized example set; the training loop reuses it for its validation evaluations.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch

from tpv.engine import setup as _resolve
from tpv.engine.data import Encoded, check_examples, collate, encode, eval_batches, label_token_ids
from tpv.engine.env import resolve_device, resolve_precision
from tpv.engine.precision import autocast as _autocast
from tpv.engine.records import TrainResult
from tpv.engine.scoring import Scorer, TaskType, has_prompt
from tpv.engine.setup import _max_length, _model_device, _pad_id, _resolve_model, _verbalizer
from tpv.errors import ConfigError

__all__ = ["evaluate"]


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, file=sys.stderr, disable=not enabled, dynamic_ncols=True, leave=False
    )


# -- scoring ----------------------------------------------------------------------------------------------------


class _Evaluator:
    """Scores a fixed, pre-tokenized example set (reused at every evaluation of a run)."""

    def __init__(
        self,
        encoded: list[Encoded],
        *,
        metric: str,
        batch_size: int,
        pad_id: int,
        device: torch.device,
        precision: str,
    ) -> None:
        self.encoded = encoded
        self.metric = metric
        self.batches = eval_batches([len(e.ids) for e in encoded], batch_size)
        self.pad_id = pad_id
        self.device = device
        self.precision = precision

    def scores(self, scorer: Scorer, *, progress: bool = False) -> torch.Tensor:
        """Class logits of every example, in dataset order, shape ``(N, C)``, float32 on the CPU."""
        was_training = scorer.training
        scorer.eval()
        out: torch.Tensor | None = None
        bar = _progress_bar(len(self.encoded), 0, "scoring", progress)
        try:
            with torch.inference_mode(), _autocast(self.device, self.precision):
                for index in self.batches:
                    batch = collate(self.encoded, index, pad_id=self.pad_id).to(self.device)
                    logits, _ = scorer(batch.input_ids, batch.attention_mask)  # (B, C)
                    logits = logits.float().cpu()
                    if out is None:
                        out = torch.empty((len(self.encoded), logits.shape[1]), dtype=torch.float32)
                    out[batch.index] = logits
                    bar.update(len(index))
        finally:
            bar.close()
            scorer.train(was_training)
        assert out is not None
        return out

    def run(self, scorer: Scorer, *, progress: bool = False, predictions: bool = False) -> dict[str, Any]:
        """Score, then compute the metric, accuracy, the mean cross-entropy over the classes and the speed."""
        start = time.perf_counter()
        logits = self.scores(scorer, progress=progress)  # (N, C)
        return self.summarize(logits, time.perf_counter() - start, predictions=predictions)

    def summarize(self, logits: torch.Tensor, seconds: float, *, predictions: bool = False) -> dict[str, Any]:
        """The result of :meth:`run` from class logits ``(N, C)`` in dataset order, scored in ``seconds``."""
        from tpv.metrics import compute_metric

        labels = torch.tensor([e.label for e in self.encoded], dtype=torch.long)  # (N,)
        preds = logits.argmax(dim=1)  # (N,)
        loss = float(torch.nn.functional.cross_entropy(logits, labels))
        pred_list, label_list = preds.tolist(), labels.tolist()
        accuracy = int((preds == labels).sum()) / len(label_list)
        score = compute_metric(self.metric, pred_list, label_list) if self.metric != "accuracy" else accuracy
        result: dict[str, Any] = {
            "metric": self.metric,
            "score": float(score),
            self.metric: float(score),
            "accuracy": accuracy,
            "loss": loss,
            "examples": len(self.encoded),
            "seconds": seconds,
            "examples_per_s": len(self.encoded) / seconds if seconds > 0 else float("inf"),
        }
        if predictions:
            result["predictions"] = pred_list
        return result


def evaluate(
    model: Any,
    tokenizer: Any | None = None,
    examples: Sequence[Any] | None = None,
    *,
    label_words: Sequence[str] | None = None,
    task: str | None = None,
    split: Literal["train", "validation", "test"] = "test",
    metric: str | None = None,
    batch_size: int = 32,
    max_length: int = 256,
    max_examples: int | None = None,
    precision: str = "auto",
    device: str | None = None,
    task_type: TaskType | None = None,
    seed: int = 0,
    progress: bool = False,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Score a model on classification examples by rank classification, one forward pass per batch.

    Each example's class is the label word with the highest logit at the answer position (see
    :mod:`tpv.engine.scoring`); a PEFT prompt-tuning model is scored with its prompt, a plain model without one.

    Args:
        model: a ``peft.PeftModel`` (e.g. ``TrainResult.model``), a :class:`TrainResult` (its model and tokenizer),
            a plain ``transformers`` model, or a model name.
        tokenizer: its tokenizer (loaded for a model name, taken from a TrainResult, when omitted).
        examples: ``Example(text, label)`` objects or ``(text, label)`` pairs; or give ``task``.
        label_words: the verbalizer (a task supplies its own); not needed for a classification head.
        task: a registered task name; its ``split`` is scored and it supplies label words and metric.
        split: which split of ``task``.
        metric: ``accuracy`` (default), ``f1``, ``macro_f1`` or ``matthews`` (a task supplies its own).
        batch_size: examples per forward pass.
        max_length: most input tokens per example (the middle of longer inputs is dropped).
        max_examples: score only the first N examples.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (autocast).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``; default: where the model is.
        task_type: ``"causal-lm"``, ``"seq2seq"`` or ``"seq-cls"`` (inferred from the model).
        seed: the task's split seed.
        progress: show a progress bar on stderr.
        return_predictions: add ``"predictions"`` (class indices in example order).

    Returns:
        ``{"metric", "score", <metric>, "accuracy", "loss", "examples", "seconds", "examples_per_s"}``; ``loss``
        is the mean cross-entropy over the label words.

    Raises:
        TrainingError: no examples, or a label missing from the verbalizer.
        ConfigError: a bad option (missing label words or tokenizer, unknown metric, ...).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: must be a positive integer")
    if isinstance(model, TrainResult):
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        model = model.model
    examples, label_words, metric = task_examples(examples, task, seed, split, label_words, metric)
    num_labels_hint = len(label_words) if label_words is not None else None
    model, tokenizer, kind = _resolve_model(model, tokenizer, task_type, num_labels_hint)
    words, num_labels = _verbalizer(kind, model, label_words)
    items = list(examples) if examples is not None else []
    if max_examples is not None:
        items = items[:max_examples]
    texts, labels = check_examples(items, num_labels=num_labels, label_words=words, what="examples")
    label_ids = label_token_ids(tokenizer, words) if kind != "seq-cls" and words is not None else None
    dev = resolve_device(device) if device is not None else _model_device(model)
    if _model_device(model) != dev:
        model.to(dev)
    prec = resolve_precision(precision, dev)
    nvt = int(model.active_peft_config.num_virtual_tokens) if has_prompt(model) else 0
    encoded = encode(tokenizer, texts, labels, max_length=_max_length(max_length, model, nvt))
    scorer = Scorer(model, kind, label_ids).to(dev)
    evaluator = _Evaluator(
        encoded, metric=metric, batch_size=batch_size, pad_id=_pad_id(tokenizer), device=dev, precision=prec
    )
    result = evaluator.run(scorer, progress=progress, predictions=return_predictions)
    result["precision"] = prec
    return result


def task_examples(
    examples: Sequence[Any] | None,
    task: str | None,
    seed: int,
    split: str,
    label_words: Sequence[str] | None,
    metric: str | None,
) -> tuple[Sequence[Any] | None, Sequence[str] | None, str]:
    """``(examples, label_words, metric)``: the given ones, or ``task``'s ``split`` with its label words and metric.

    Shared by :func:`evaluate` and :func:`tpv.engine.many_eval.evaluate_many`.
    """
    if examples is None and task is not None:
        data = _resolve._load_task_data(task, seed)  # looked up at call time: tests replace it there
        if split not in ("train", "validation", "test"):
            raise ConfigError(f"split={split!r}: must be 'train', 'validation' or 'test'")
        examples = getattr(data, split)
        label_words = label_words if label_words is not None else (data.spec.label_words or None)
        metric = metric or data.spec.metric
    return examples, label_words, metric or "accuracy"
