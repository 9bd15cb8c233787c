"""What the experiments share: planning helpers and the work done inside cells.

Planning helpers build cell parameters, the task layout and time estimates; the in-cell work loads models and
data, draws origins, tunes through :func:`tpv.engine.train` (or, packed, :func:`tpv.engine.train_many`) and scores
through the engine: one prompt with :func:`score_prompt` (:func:`tpv.engine.evaluate`), several prompts on one
example set with :func:`score_together` (one :func:`tpv.engine.evaluate_many` call).

Planning helpers run where the plan is made and read the config; in-cell helpers run inside cell functions
(possibly on a Ray worker) and read only the cell's plain-JSON parameters.

A cell that tunes one prompt is written as a :class:`TrainingCell`: ``prepare`` (origin, data: a :class:`Tuning`),
the tuning, ``finish`` (scores and records). Its cell function tunes alone through :func:`tpv.engine.train`; its
pack function loads the model once and tunes a pack of such cells through :func:`tpv.engine.train_many`, whose
jobs end as ``train`` ends them, so a packed cell stores what it stores unpacked (up to float rounding). A cell
whose ``prepare`` asks for no tuning (``Tuning.tunes`` false: a few-shot cell at k = 0) is only finished, packed or
not, on the loaded model.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, NotPackableError, PackMember, make_cell
from tpv.errors import ConfigError, TaskError

if TYPE_CHECKING:
    import torch

    from tpv.bench.config import Config
    from tpv.engine import Job, TrainResult
    from tpv.origin import Origin
    from tpv.tasks.spec import Example, TaskSpec
    from tpv.vector import TaskPromptVector

CELL_VECTOR_FILE = "vector.safetensors"
"""The artifact holding a tuned cell's task prompt vector."""


# -- planning ---------------------------------------------------------------------------------------------------


def model_params(config: Config) -> dict[str, Any]:
    m = config.model
    return {"name": m.name, "task_type": m.task_type, "dtype": m.dtype, "device": m.device}


def prompt_params(config: Config) -> dict[str, Any]:
    p = config.prompt
    return {"num_virtual_tokens": p.num_virtual_tokens, "init": p.init, "init_params": dict(p.init_params)}


def data_params(config: Config) -> dict[str, Any]:
    d = config.data
    out = {"max_train": d.max_train, "max_validation": d.max_validation, "max_test": d.max_test, "seed": d.seed}
    if d.min_test is not None:  # only when set: the cells planned without it keep their ids
        out["min_test"] = d.min_test
    return out


def common_params(config: Config) -> dict[str, Any]:
    return {"model": model_params(config), "prompt": prompt_params(config), "data": data_params(config)}


def check_task(name: str) -> None:
    from tpv.tasks import get_task

    try:
        get_task(name)
    except TaskError as exc:
        raise ConfigError(f"config tasks: {exc}") from None


def task_layout(config: Config) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """``(sources, targets, target -> its sources)`` from the config's groups and explicit lists.

    A target's sources are those of its group (restricted to ``tasks.sources`` when given); targets named
    outside any group use every source.

    Raises:
        ConfigError: an unknown group or task.
    """
    from tpv.tasks import get_group

    group_sources: dict[str, list[str]] = {}
    sources: list[str] = []
    targets: list[str] = []
    for gname in config.tasks.groups:
        try:
            group = get_group(gname)
        except TaskError as exc:
            raise ConfigError(f"config tasks.groups: {exc}") from None
        sources += [s for s in group.sources if s not in sources]
        for t in group.targets:
            if t not in targets:
                targets.append(t)
            group_sources[t] = list(group.sources)
    if config.tasks.sources is not None:
        sources = list(config.tasks.sources)
    if config.tasks.targets is not None:
        targets = list(config.tasks.targets)
    for name in (*sources, *targets):
        check_task(name)
    per_target = {}
    for t in targets:
        own = [s for s in group_sources.get(t, sources) if s in sources]
        per_target[t] = own or list(sources)
    return sources, targets, per_target


def train_cost(config: Config, steps: int, evals: int) -> float:
    rt = config.runtime
    return rt.model_load_seconds + steps * rt.seconds_per_step + evals / rt.eval_examples_per_second


def train_config(options: Mapping[str, Any]) -> Any:
    from tpv.engine.config import TrainConfig

    return TrainConfig(**options)


def eval_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """The scoring settings of the training options (batch size, length, precision), resolved."""
    cfg = train_config(options)
    return {"eval_batch_size": cfg.eval_batch_size, "max_length": cfg.max_length, "precision": cfg.precision}


def train_steps(options: Mapping[str, Any]) -> int:
    return int(train_config(options).steps)


def validation_evals(options: Mapping[str, Any], n_val: int) -> int:
    """Validation examples scored during one training run (for the estimate)."""
    cfg = train_config(options)
    per_eval = min(n_val, cfg.eval_examples or n_val)
    evaluations = 1 + (cfg.steps // cfg.eval_every if cfg.eval_every else 0)
    return per_eval * evaluations


def source_cell(config: Config, task: str, origin: int) -> Cell:
    """The cell that tunes ``task`` from origin seed ``origin`` (shared by every experiment)."""
    opts = config.train_options()
    params = {**common_params(config), "task": task, "origin": origin, "train": opts}
    est = train_cost(
        config, train_steps(opts), validation_evals(opts, config.data.max_validation) + config.data.max_test
    )
    return make_cell("source", f"{task}/o{origin}", params, stage="sources", estimate_s=est)


# -- in-cell work ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def cached_tokenizer(name: str) -> Any:
    from tpv.models import load_tokenizer

    return load_tokenizer(name)


def load_cell_model(mp: Mapping[str, Any]) -> Any:
    import torch

    from tpv.models import load_model

    return load_model(mp["name"], task_type=mp["task_type"], dtype=getattr(torch, mp["dtype"]), device=mp["device"])


def build_origin(model: Any, pp: Mapping[str, Any], seed: int) -> Origin:
    from tpv.adapters import make_origin

    return make_origin(
        model, pp["init"], num_virtual_tokens=int(pp["num_virtual_tokens"]), seed=int(seed), **dict(pp["init_params"])
    )


@functools.lru_cache(maxsize=16)
def task_data(task: str, seed: int) -> Any:
    from tpv.tasks import load_task

    return load_task(task, seed=seed)


def cell_data(task: str, dp: Mapping[str, Any]) -> tuple[TaskSpec, list[Example], list[Example], list[Example]]:
    from tpv.tasks import stratified_cap

    data = task_data(task, int(dp["seed"]))
    train, test = list(data.train), list(data.test)
    need = min(int(dp.get("min_test") or 0), int(dp["max_test"])) - len(test)
    if need > 0:  # a small test split topped up from training (train is already shuffled by the split's seed)
        need = min(need, max(len(train) - 1, 0))
        train, test = train[: len(train) - need], test + train[len(train) - need :]
    return (
        data.spec,
        stratified_cap(train, dp["max_train"]),
        stratified_cap(data.validation, dp["max_validation"]),
        stratified_cap(test, dp["max_test"]),
    )


def vector_bytes(vector: TaskPromptVector, provenance: Mapping[str, Any] | None = None) -> bytes:
    from tpv.files import save

    with tempfile.TemporaryDirectory() as tmp:
        path = save(vector, Path(tmp) / CELL_VECTOR_FILE, provenance=dict(provenance) if provenance else None)
        return path.read_bytes()


def vector_from(data: bytes) -> TaskPromptVector:
    from tpv.files import load_vector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CELL_VECTOR_FILE
        path.write_bytes(data)
        return load_vector(path)


@dataclass
class Tuning:
    """One prompt tuning a cell asks for: what :func:`tpv.engine.train` is called with, as data.

    Attributes:
        train: training examples.
        validation: examples scored while training (the best prompt is kept); empty: the last prompt is kept.
        label_words: the verbalizer.
        init: the starting prompt (an origin, or a vector applied to ``origin``).
        origin: the origin the tuned vector is measured from (``None``: ``train``'s default, the init's origin).
        options: :class:`tpv.engine.TrainConfig` fields.
        task: the task's name (recorded in the vector).
        metric: the validation metric.
        state: what the cell's ``finish`` needs besides the run (the task spec, the test set, the origin...).
        tunes: false when the cell tunes nothing (a few-shot cell at k = 0 scores its init as it is): its
            ``finish`` gets no run (``None``) and the loaded model is in ``state``, as ``prepare`` put it there.
    """

    train: Sequence[Example]
    validation: Sequence[Example]
    label_words: Sequence[str]
    init: Origin | TaskPromptVector
    origin: Origin | None
    options: Mapping[str, Any]
    task: str
    metric: str
    state: dict[str, Any] = field(default_factory=dict)
    tunes: bool = True

    def run_alone(self, model: Any, tokenizer: Any) -> TrainResult:
        """Tune with :func:`tpv.engine.train` (what an unpacked cell does)."""
        from tpv.engine import train as train_prompt

        return train_prompt(model, tokenizer, list(self.train), task=self.task, label_words=tuple(self.label_words),
                            validation=list(self.validation) or None, metric=self.metric, init=self.init,
                            origin=self.origin, config=train_config(self.options), progress=False)  # fmt: skip

    def job(self) -> Job:
        """The same run as a :class:`tpv.engine.Job` of :func:`tpv.engine.train_many` (what a packed cell does)."""
        from tpv.engine import Job

        return Job(task=self.task, train_examples=list(self.train), label_words=tuple(self.label_words),
                   validation=list(self.validation) or None, metric=self.metric, init=self.init, origin=self.origin,
                   config=train_config(self.options))  # fmt: skip


def train_info(result: TrainResult) -> dict[str, Any]:
    """What a cell records of a run: steps, time, best step and validation score, final loss."""
    return {
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "steps_per_second": result.steps_per_second,
        "best_step": result.best_step,
        "best_validation": result.best_score,
        "final_loss": result.history[-1]["loss"] if result.history else None,
    }


Prepare = Callable[[Mapping[str, Any], Mapping[str, CellInput], Any, Any], Tuning]
"""``prepare(params, inputs, model, tokenizer) -> Tuning``: a training cell's origin and data."""

Finish = Callable[[Mapping[str, Any], Tuning, Any, Any, float], CellOutput]
"""``finish(params, tuning, result, tokenizer, start) -> CellOutput``: score the run and record it; ``start`` is the
``time.perf_counter()`` the cell's seconds count from; ``result`` is the :class:`tpv.engine.TrainResult`, or ``None``
for a tuning that does not tune (``Tuning.tunes`` false)."""


@dataclass(frozen=True)
class TrainingCell:
    """A cell kind that tunes one prompt: ``prepare``, one tuning, ``finish``; packable through ``train_many``.

    Attributes:
        prepare: builds the cell's :class:`Tuning` on the loaded model.
        finish: turns the finished run into the cell's output.
    """

    prepare: Prepare
    finish: Finish

    def kind(self, name: str, *, version: int = 1) -> CellKind:
        """The registered kind: :meth:`run` as its cell function, :meth:`pack` as its pack function."""
        return CellKind(name, self.run, version, pack=self.pack, pack_key=pack_key)

    def run(self, params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
        """The cell alone: load the model, prepare, tune with :func:`tpv.engine.train` (if it tunes), finish."""
        start = time.perf_counter()
        model = load_cell_model(params["model"])
        tok = cached_tokenizer(params["model"]["name"])
        tuning = self.prepare(params, inputs, model, tok)
        return self.finish(params, tuning, tuning.run_alone(model, tok) if tuning.tunes else None, tok, start)

    def pack(self, members: Sequence[PackMember], env: Mapping[str, Any]) -> list[CellOutput]:
        """Several cells over one loaded model: prepare each, tune all in one ``train_many``, finish each.

        Cells that tune nothing (``Tuning.tunes`` false) are only finished. A cell's seconds are its share of the
        shared work plus its own ``finish``.

        Raises:
            NotPackableError: cells of different models, or a model ``train_many`` does not pack.
        """
        from tpv.engine import train_many
        from tpv.engine.packing import check_packable

        start = time.perf_counter()
        spec = members[0][0]["model"]
        if any(params["model"] != spec for params, _inputs in members):
            raise NotPackableError("the cells of a pack must share one model")
        model = load_cell_model(spec)
        try:
            check_packable(model)
        except ConfigError as exc:
            raise NotPackableError(str(exc)) from None
        tok = cached_tokenizer(spec["name"])
        tunings = [self.prepare(params, inputs, model, tok) for params, inputs in members]
        jobs = [t.job() for t in tunings if t.tunes]
        trained = iter(train_many(model, tok, jobs, progress=False) if jobs else [])
        results = [next(trained) if t.tunes else None for t in tunings]
        share = (time.perf_counter() - start) / len(members)
        return [
            self.finish(params, tuning, result, tok, time.perf_counter() - share)
            for (params, _inputs), tuning, result in zip(members, tunings, results)
        ]


def pack_key(params: Mapping[str, Any]) -> dict[str, Any]:
    """What training cells must share to go in one pack: the model, and the device and precision they train at."""
    cfg = train_config({k: v for k, v in params["train"].items() if not k.startswith("_")})
    return {"model": params["model"], "device": cfg.device, "precision": cfg.precision}


def score_prompt(
    model: Any,
    tokenizer: Any,
    prompt: torch.Tensor | None,
    examples: Sequence[Example],
    spec: TaskSpec,
    options: Mapping[str, Any],
) -> float:
    """The task metric on ``examples`` of ``prompt`` (a fresh PEFT model around ``model``) or of a PEFT model."""
    from tpv.adapters import init_prompt_tuning
    from tpv.engine import evaluate

    cfg = train_config(options)
    peft = init_prompt_tuning(model, prompt) if prompt is not None else model
    out = evaluate(
        peft,
        tokenizer,
        list(examples),
        label_words=tuple(spec.label_words),
        metric=spec.metric,
        batch_size=cfg.eval_batch_size,
        max_length=cfg.max_length,
        precision=cfg.precision,
    )
    return float(out["score"])


def score_together(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[torch.Tensor],
    examples: Sequence[Example],
    spec: TaskSpec,
    ev: Mapping[str, Any],
    model_params: Mapping[str, Any],
) -> list[float]:
    """The task metric of several prompts ``(rows, dim)`` on the same examples, each as :func:`score_prompt` scores it.

    One :func:`tpv.evaluate_many` call (the prompts' rows share forward passes of ``len(prompts) *
    eval_batch_size`` rows; each result equals ``tpv.evaluate`` of that prompt alone, up to float rounding of the
    logits); for a model ``evaluate_many`` does not pack, one :func:`score_prompt` per prompt, each around a model
    of its own (PEFT wraps a model in place).

    Args:
        model: the cell's model, loaded from ``model_params`` (not wrapped: ``evaluate_many`` splices the prompts
            in).
        tokenizer: its tokenizer.
        prompts: the soft prompts, each ``(rows, dim)``.
        examples: the examples all prompts are scored on.
        spec: the task (label words and metric).
        ev: the scoring settings (:func:`eval_params`).
        model_params: the cell's model parameters (where to load another copy from).

    Returns:
        One score per prompt, in order.
    """
    from tpv.engine import evaluate_many
    from tpv.engine.packing import check_packable

    try:
        check_packable(model)
    except ConfigError:
        models = [model] + [load_cell_model(model_params) for _ in prompts[1:]]
        return [score_prompt(m, tokenizer, p, examples, spec, ev) for m, p in zip(models, prompts)]

    cfg = train_config(ev)
    results = evaluate_many(
        model,
        tokenizer,
        list(prompts),
        list(examples),
        label_words=tuple(spec.label_words),
        metric=spec.metric,
        batch_size=cfg.eval_batch_size * len(prompts),
        max_length=cfg.max_length,
        precision=cfg.precision,
    )
    return [float(r["score"]) for r in results]


# -- summaries -------------------------------------------------------------------------------------------------


def metrics_of(results: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell], kind: str) -> list[tuple[Cell, Any]]:
    return [(c, results[c.id]["metrics"]) for c in cells if c.kind == kind and c.id in results]


def pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def binomial_se(p: float | None, n: int) -> float:
    """The binomial standard error ``sqrt(p (1 - p) / n)`` of a score ``p`` measured on ``n`` examples (NaN if none)."""
    if p is None or not n or not math.isfinite(p):
        return math.nan
    return math.sqrt(max(p * (1 - p), 0.0) / n)
