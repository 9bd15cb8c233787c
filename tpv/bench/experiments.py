"""The paper's experiments as cell plans and summaries (Belanec et al., arXiv 2408.01119), plus ``perf``.

================  ==========================================================================================
experiment        what it measures (cells)
================  ==========================================================================================
``sources``       source prompts tuned from several origins; test metric mean +- std per task
                  (``source``: one task from one origin)
``cross_origin``  the paper's Table 1: each task's vector applied to a *different* origin
                  (``vector.apply_to(other, strict=False)``) vs its own (``source`` + ``cross``)
``fewshot``       the paper's Table 2 and few-shot curves: targets initialized from the random origin, the best
                  single source prompt (SPoT), the multi-task mixture prompt (SPoT multi), ``origin + tau_A +
                  tau_B`` (TPV) and tpv's best (searched coefficients or a merge method), at several shot counts
                  and seeds; Welch t-tests with Bonferroni correction against the best SPoT
                  (``source``, ``mixture``, ``select``: inits chosen on target validation data, ``fewshot``)
``similarity``    the paper's Figure 2: cosine similarities of vectors and of prompts within and across tasks
                  and origins (``source`` + ``similarity``)
``perf``          the engine and search speed benchmarks of ``benchmarks/`` gathered into one table (``perf``)
================  ==========================================================================================

Cells of the same kind and parameters have the same id in every experiment, so running them into one results
root shares them: ``cross_origin``, ``fewshot`` and ``similarity`` reuse the tunings of ``sources``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tpv.bench.report import Report, Table, plot_curves, plot_heatmap
from tpv.bench.runner import Cell, CellInput, CellOutput, cell_kind, make_cell
from tpv.bench.stats import compare, summarize
from tpv.errors import ConfigError, TaskError

if TYPE_CHECKING:
    import torch

    from tpv.bench.config import Config, InitName
    from tpv.origin import Origin
    from tpv.tasks.spec import Example, TaskSpec
    from tpv.vector import TaskPromptVector

__all__ = ["EXPERIMENTS", "Experiment", "get_experiment"]

VECTOR_FILE = "vector.safetensors"
INIT_LABELS = {
    "random": "random origin",
    "spot_best": "SPoT (best source)",
    "spot_multi": "SPoT (multi-task)",
    "tpv": "TPV (origin + Σ τ)",
    "tpv_best": "tpv best (search/merge)",
}


class Experiment(Protocol):
    """An experiment: plans cells from a config and summarizes their results into tables and plots."""

    name: str
    description: str

    def plan(self, config: Config) -> list[Cell]:
        """Every cell of the experiment (finished ones included; the runner skips them)."""

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        """Tables, a JSON summary and plots (written into ``report_dir``) from the finished cells' results."""


# =============================================================================================================
# Shared planning helpers
# =============================================================================================================


def _model_params(config: Config) -> dict[str, Any]:
    m = config.model
    return {"name": m.name, "task_type": m.task_type, "dtype": m.dtype, "device": m.device}


def _prompt_params(config: Config) -> dict[str, Any]:
    p = config.prompt
    return {"num_virtual_tokens": p.num_virtual_tokens, "init": p.init, "init_params": dict(p.init_params)}


def _data_params(config: Config) -> dict[str, Any]:
    d = config.data
    return {"max_train": d.max_train, "max_validation": d.max_validation, "max_test": d.max_test, "seed": d.seed}


def _common(config: Config) -> dict[str, Any]:
    return {"model": _model_params(config), "prompt": _prompt_params(config), "data": _data_params(config)}


def _check_task(name: str) -> None:
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
        _check_task(name)
    per_target = {}
    for t in targets:
        own = [s for s in group_sources.get(t, sources) if s in sources]
        per_target[t] = own or list(sources)
    return sources, targets, per_target


def _train_cost(config: Config, steps: int, evals: int) -> float:
    rt = config.runtime
    return rt.model_load_seconds + steps * rt.seconds_per_step + evals / rt.eval_examples_per_second


def _train_config(options: Mapping[str, Any]) -> Any:
    from tpv.engine.config import TrainConfig

    return TrainConfig(**options)


def _eval_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """The scoring settings of the training options (batch size, length, precision), resolved."""
    cfg = _train_config(options)
    return {"eval_batch_size": cfg.eval_batch_size, "max_length": cfg.max_length, "precision": cfg.precision}


def _train_steps(options: Mapping[str, Any]) -> int:
    return int(_train_config(options).steps)


def _validation_evals(options: Mapping[str, Any], n_val: int) -> int:
    """Validation examples scored during one training run (for the estimate)."""
    cfg = _train_config(options)
    per_eval = min(n_val, cfg.eval_examples or n_val)
    evaluations = 1 + (cfg.steps // cfg.eval_every if cfg.eval_every else 0)
    return per_eval * evaluations


def source_cell(config: Config, task: str, origin: int) -> Cell:
    """The cell that tunes ``task`` from origin seed ``origin`` (shared by every experiment)."""
    opts = config.train_options()
    params = {**_common(config), "task": task, "origin": origin, "train": opts}
    est = _train_cost(
        config, _train_steps(opts), _validation_evals(opts, config.data.max_validation) + config.data.max_test
    )
    return make_cell("source", f"{task}/o{origin}", params, stage="sources", estimate_s=est)


def mixture_cell(config: Config, tasks: Sequence[str], origin: int) -> Cell:
    """The cell that tunes one prompt on the mixture of ``tasks`` (SPoT multi-task) from origin ``origin``."""
    opts = config.train_options()
    params = {**_common(config), "tasks": sorted(tasks), "origin": origin, "train": opts}
    est = _train_cost(
        config, _train_steps(opts), _validation_evals(opts, config.data.max_validation) + config.data.max_test
    )
    return make_cell("mixture", f"{'+'.join(sorted(tasks))}/o{origin}", params, stage="mixtures", estimate_s=est)


# =============================================================================================================
# The engine: models, data, origins, tuning and scoring (runs inside cells)
# =============================================================================================================


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str) -> Any:
    from tpv.models import load_tokenizer

    return load_tokenizer(name)


def _load_model(mp: Mapping[str, Any]) -> Any:
    import torch

    from tpv.models import load_model

    return load_model(mp["name"], task_type=mp["task_type"], dtype=getattr(torch, mp["dtype"]), device=mp["device"])


def _origin(model: Any, pp: Mapping[str, Any], seed: int) -> Origin:
    from tpv.adapters import make_origin

    return make_origin(
        model, pp["init"], num_virtual_tokens=int(pp["num_virtual_tokens"]), seed=int(seed), **dict(pp["init_params"])
    )


@functools.lru_cache(maxsize=16)
def _task_data(task: str, seed: int) -> Any:
    from tpv.tasks import load_task

    return load_task(task, seed=seed)


def _data(task: str, dp: Mapping[str, Any]) -> tuple[TaskSpec, list[Example], list[Example], list[Example]]:
    from tpv.tasks import stratified_cap

    data = _task_data(task, int(dp["seed"]))
    return (
        data.spec,
        stratified_cap(data.train, dp["max_train"]),
        stratified_cap(data.validation, dp["max_validation"]),
        stratified_cap(data.test, dp["max_test"]),
    )


def _vector_bytes(vector: TaskPromptVector, provenance: Mapping[str, Any] | None = None) -> bytes:
    from tpv.files import save

    with tempfile.TemporaryDirectory() as tmp:
        path = save(vector, Path(tmp) / VECTOR_FILE, provenance=dict(provenance) if provenance else None)
        return path.read_bytes()


def _vector_from(data: bytes) -> TaskPromptVector:
    from tpv.files import load_vector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / VECTOR_FILE
        path.write_bytes(data)
        return load_vector(path)


def _tune(
    model: Any,
    tokenizer: Any,
    train: Sequence[Example],
    validation: Sequence[Example],
    label_words: Sequence[str],
    *,
    init: Origin | TaskPromptVector,
    origin: Origin,
    options: Mapping[str, Any],
    task: str,
    metric: str,
) -> tuple[TaskPromptVector, Any, dict[str, Any]]:
    """Prompt-tune from ``init`` (tpv's engine); returns the vector (relative to ``origin``), the run and stats."""
    from tpv.engine import train as train_prompt

    result = train_prompt(
        model,
        tokenizer,
        list(train),
        task=task,
        label_words=tuple(label_words),
        validation=list(validation) or None,
        metric=metric,
        init=init,
        origin=origin,
        config=_train_config(options),
        progress=False,
    )
    info = {
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "steps_per_second": result.steps_per_second,
        "best_step": result.best_step,
        "best_validation": result.best_score,
        "final_loss": result.history[-1]["loss"] if result.history else None,
    }
    return result.vector, result, info


def _score(
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

    cfg = _train_config(options)
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


def _score_many(
    model: Any,
    tokenizer: Any,
    prompts: torch.Tensor,
    examples: Sequence[Example],
    spec: TaskSpec,
    options: Mapping[str, Any],
    task_type: str,
) -> list[float]:
    """Accuracy of many candidate prompts ``(c, rows, dim)``: batched (tpv.search's scorer) on causal LMs."""
    cfg = _train_config(options)
    if task_type == "causal-lm":
        from tpv.search import BatchedPromptScorer

        scorer = BatchedPromptScorer(
            model,
            tokenizer,
            [ex.text for ex in examples],
            [int(ex.label) for ex in examples],
            tuple(spec.label_words),
            batch_size=cfg.eval_batch_size,
            max_length=cfg.max_length,
        )
        return [float(x) for x in scorer(prompts)]
    out = []
    for prompt in prompts:  # other model types: one engine evaluation per candidate, on a fresh PEFT model
        from tpv.adapters import init_prompt_tuning
        from tpv.engine import evaluate

        peft = init_prompt_tuning(model, prompt)
        res = evaluate(peft, tokenizer, list(examples), label_words=tuple(spec.label_words), metric="accuracy",
                       batch_size=cfg.eval_batch_size, max_length=cfg.max_length, precision=cfg.precision)  # fmt: skip
        out.append(float(res["score"]))
        model = peft.unload() if hasattr(peft, "unload") else peft.get_base_model()
    return out


# =============================================================================================================
# Cell kinds
# =============================================================================================================


@cell_kind("source", version=1)
def _source(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Tune one task from one origin; score the tuned prompt on the test set."""
    start = time.perf_counter()
    model = _load_model(params["model"])
    tok = _tokenizer(params["model"]["name"])
    origin = _origin(model, params["prompt"], params["origin"])
    spec, train, validation, test = _data(params["task"], params["data"])
    vector, result, info = _tune(
        model,
        tok,
        train,
        validation,
        spec.label_words,
        init=origin,
        origin=origin,
        options=params["train"],
        task=spec.name,
        metric=spec.metric,
    )
    score = _score(result.model, tok, None, test, spec, params["train"])
    metrics = {
        "task": spec.name,
        "metric": spec.metric,
        "origin": params["origin"],
        "origin_id": origin.id,
        "test": score,
        "n_train": len(train),
        "n_test": len(test),
        "train": info,
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics, {VECTOR_FILE: _vector_bytes(vector, {"bench": {"task": spec.name}})})


def _union_label_words(specs: Sequence[TaskSpec]) -> tuple[str, ...]:
    words: list[str] = []
    for spec in specs:
        words += [w for w in spec.label_words if w not in words]
    return tuple(words)


@cell_kind("mixture", version=1)
def _mixture(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Tune one prompt on the mixture of several tasks (SPoT multi), over the union of their label words."""
    from tpv.tasks import Example

    start = time.perf_counter()
    model = _load_model(params["model"])
    tok = _tokenizer(params["model"]["name"])
    origin = _origin(model, params["prompt"], params["origin"])
    loaded = [_data(t, params["data"]) for t in params["tasks"]]
    words = _union_label_words([spec for spec, *_ in loaded])
    train: list[Example] = []
    validation: list[Example] = []
    for spec, tr, va, _ in loaded:
        remap = {i: words.index(w) for i, w in enumerate(spec.label_words)}
        train += [Example(ex.text, remap[int(ex.label)]) for ex in tr]
        validation += [Example(ex.text, remap[int(ex.label)]) for ex in va]
    random.Random(f"tpv-bench-mixture:{params['origin']}").shuffle(train)
    random.Random(f"tpv-bench-mixture-val:{params['origin']}").shuffle(validation)
    validation = validation[: params["data"]["max_validation"]]
    name = "+".join(params["tasks"])
    vector, _result, info = _tune(
        model,
        tok,
        train,
        validation,
        words,
        init=origin,
        origin=origin,
        options=params["train"],
        task=name,
        metric="accuracy",
    )
    scores = {}
    for spec, _tr, _va, test in loaded:
        fresh = _load_model(params["model"])
        scores[spec.name] = _score(fresh, tok, vector.apply_to(origin), test, spec, params["train"])
    metrics = {
        "tasks": params["tasks"],
        "origin": params["origin"],
        "origin_id": origin.id,
        "label_words": list(words),
        "test": scores,
        "n_train": len(train),
        "train": info,
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics, {VECTOR_FILE: _vector_bytes(vector, {"bench": {"mixture": params["tasks"]}})})


@cell_kind("cross", version=1)
def _cross(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Apply a task's vector to another origin (strict=False) and score it on the task's test set."""
    model = _load_model(params["model"])
    tok = _tokenizer(params["model"]["name"])
    other = _origin(model, params["prompt"], params["to_origin"])
    vector = _vector_from(inputs["vector"].artifacts[VECTOR_FILE])
    spec, _train, _val, test = _data(params["task"], params["data"])
    prompt = vector.apply_to(other, strict=False)
    score = _score(model, tok, prompt, test, spec, params["eval"])
    origin_score = _score(_load_model(params["model"]), tok, other.tensor, test, spec, params["eval"])
    return CellOutput(
        {
            "task": spec.name,
            "metric": spec.metric,
            "from_origin": params["from_origin"],
            "to_origin": params["to_origin"],
            "own": inputs["vector"].metrics["test"],
            "other": score,
            "other_origin_alone": origin_score,
        }
    )


def _candidates_from_search(
    vectors: Sequence[TaskPromptVector], origin: Origin, scorer: Any, fs: Mapping[str, Any]
) -> dict[str, tuple[TaskPromptVector, float, dict[str, Any]]]:
    """tpv_best candidates: the coefficient search and each merge method, with their validation scores."""
    from tpv.merge import merge
    from tpv.search import search_per_task, search_scalar

    out: dict[str, tuple[TaskPromptVector, float, dict[str, Any]]] = {}
    grid = [float(g) for g in fs["grid"]]
    if fs["search"] == "per_task" and len(vectors) > 1:
        res = search_per_task(vectors, origin, scorer, grid, strategy="coordinate")
    else:
        res = search_scalar(vectors, origin, scorer, grid)
    out[f"search_{res.mode}"] = (
        res.vector(vectors),
        float(res.score),
        {"coefficients": list(res.coefficients), "evaluated": len(res.candidates)},
    )
    for method in fs["merge_methods"]:
        merged = merge(vectors, method=method)
        score = float(scorer(merged.apply_to(origin).unsqueeze(0))[0])
        out[f"merge_{method}"] = (merged, score, {"method": method})
    return out


@cell_kind("select", version=1)
def _select(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Choose the few-shot inits of one target and seed on its validation examples.

    spot_best is the source prompt that scores best; tpv is ``origin + sum_i tau_i``; tpv_best is the best of that
    sum, the coefficient search and the merge methods.
    """
    import torch

    model = _load_model(params["model"])
    tok = _tokenizer(params["model"]["name"])
    origin = _origin(model, params["prompt"], params["origin"])
    spec, _train, validation, _test = _data(params["target"], params["data"])
    examples = validation[: params["fewshot"]["selection_examples"]]
    by_source = {role.removeprefix("source:"): _vector_from(inp.artifacts[VECTOR_FILE])
                 for role, inp in inputs.items() if role.startswith("source:")}  # fmt: skip
    names = sorted(by_source)
    vectors = [by_source[n] for n in names]

    def scorer(prompts: torch.Tensor) -> torch.Tensor:
        scores = _score_many(model, tok, prompts, examples, spec, params["eval"], params["model"]["task_type"])
        return torch.tensor(scores, dtype=torch.float64)

    stacked = torch.stack([origin.tensor] + [v.apply_to(origin) for v in vectors])  # (1 + n, rows, dim)
    base_scores = scorer(stacked).tolist()
    validation_scores: dict[str, float] = {"random": base_scores[0]}
    for n, s in zip(names, base_scores[1:]):
        validation_scores[f"source:{n}"] = s
    best_source = max(names, key=lambda n: (validation_scores[f"source:{n}"], -names.index(n)))
    total = sum(vectors[1:], vectors[0])
    tpv_score = float(scorer(total.apply_to(origin).unsqueeze(0))[0])
    validation_scores["tpv"] = tpv_score
    candidates: dict[str, tuple[TaskPromptVector, float, dict[str, Any]]] = {"tpv": (total, tpv_score, {})}
    candidates.update(_candidates_from_search(vectors, origin, scorer, params["fewshot"]))
    for key, (_v, s, _info) in candidates.items():
        validation_scores[key] = s
    best_key = max(candidates, key=lambda k: (candidates[k][1], -list(candidates).index(k)))
    if "mixture" in inputs:
        mix = _vector_from(inputs["mixture"].artifacts[VECTOR_FILE])
        validation_scores["spot_multi"] = float(scorer(mix.apply_to(origin).unsqueeze(0))[0])
    artifacts = {
        "init-spot_best.safetensors": _vector_bytes(by_source[best_source]),
        "init-tpv.safetensors": _vector_bytes(total),
        "init-tpv_best.safetensors": _vector_bytes(candidates[best_key][0]),
    }
    metrics = {
        "target": spec.name,
        "origin": params["origin"],
        "selection_examples": len(examples),
        "validation_accuracy": validation_scores,
        "spot_best": best_source,
        "tpv_best": best_key,
        "tpv_best_info": candidates[best_key][2],
        "tpv_best_terms": dict(candidates[best_key][0].terms),
    }
    return CellOutput(metrics, artifacts)


@cell_kind("fewshot", version=1)
def _fewshot(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Train a target on k examples per class from one init (k = 0: score the init as it is)."""
    from tpv.tasks import few_shot

    start = time.perf_counter()
    model = _load_model(params["model"])
    tok = _tokenizer(params["model"]["name"])
    origin = _origin(model, params["prompt"], params["seed"])
    spec, train, validation, test = _data(params["target"], params["data"])
    init_name = params["init"]
    init: Origin | TaskPromptVector
    if init_name == "random":
        init = origin
    elif init_name == "spot_multi":
        init = _vector_from(inputs["init"].artifacts[VECTOR_FILE])
    else:
        init = _vector_from(inputs["init"].artifacts[f"init-{init_name}.safetensors"])
    k = int(params["shots"])
    info: dict[str, Any] = {}
    prompt: torch.Tensor | None
    if k == 0:
        prompt = init.tensor if init_name == "random" else init.apply_to(origin)  # type: ignore[union-attr]
    else:
        shots = few_shot(train, k, seed=int(params["seed"]), allow_fewer=True)
        _vector, result, info = _tune(
            model,
            tok,
            shots,
            validation if params["validate"] else [],
            spec.label_words,
            init=init,
            origin=origin,
            options=params["train"],
            task=spec.name,
            metric=spec.metric,
        )
        model, prompt = result.model, None
    score = _score(model, tok, prompt, test, spec, params["eval"])
    return CellOutput(
        {
            "target": spec.name,
            "metric": spec.metric,
            "init": init_name,
            "shots": k,
            "seed": params["seed"],
            "test": score,
            "train": info,
            "seconds": time.perf_counter() - start,
        }
    )


@cell_kind("similarity", version=2)
def _similarity(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Cosine similarities of vectors and prompts across tasks and origins."""
    import torch

    from tpv.vector import cosine_matrix

    model = _load_model(params["model"])
    origins = {s: _origin(model, params["prompt"], s) for s in params["origins"]}
    labels: list[str] = []
    vectors: list[TaskPromptVector] = []
    prompts: list[torch.Tensor] = []
    for role in sorted(inputs, key=lambda r: (r.split("@")[1], r)):
        task, seed = role.split("@")
        vec = _vector_from(inputs[role].artifacts[VECTOR_FILE])
        labels.append(f"{task}@o{seed.removeprefix('o')}")
        vectors.append(vec)
        prompts.append(vec.apply_to(origins[int(seed.removeprefix("o"))]))
    vmat = cosine_matrix(vectors)
    pmat = cosine_matrix(prompts)
    omat = cosine_matrix([o.tensor for o in origins.values()]) if len(origins) > 1 else torch.ones(1, 1)
    tasks = [lab.split("@")[0] for lab in labels]
    seeds = [lab.split("@")[1] for lab in labels]

    def means(mat: torch.Tensor) -> dict[str, float | None]:
        groups: dict[str, list[float]] = {"same_task_other_origin": [], "other_task_same_origin": [], "other_both": []}
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                same_t, same_o = tasks[i] == tasks[j], seeds[i] == seeds[j]
                key = (
                    "same_task_other_origin"
                    if same_t and not same_o
                    else ("other_task_same_origin" if same_o and not same_t else ("other_both" if not same_t else None))
                )
                if key:
                    groups[key].append(float(mat[i, j]))
        return {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}  # fmt: skip

    return CellOutput(
        {
            "labels": labels,
            "vectors": vmat.tolist(),
            "prompts": pmat.tolist(),
            "origins": omat.tolist(),
            "origin_labels": [f"o{s}" for s in origins],
            "vector_means": means(vmat),
            "prompt_means": means(pmat),
            "norm_ratios": {
                lab: v.norm() / float(origins[int(lab.split("@o")[1])].tensor.double().norm())
                for lab, v in zip(labels, vectors)
            },
        }
    )


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


TRUSTED_ENV = "TPV_BENCH_TRUSTED"
"""Environment variable: extra folders (``os.pathsep``-separated) whose scripts and files a perf config may name,
beside the project's own ``benchmarks/`` (for tests and development; a config itself can never widen this)."""


def _trusted(path: Path, what: str) -> Path:
    """``path`` resolved, if it lies inside ``benchmarks/`` of the project or a folder of ``$TPV_BENCH_TRUSTED``.

    Configs are data: a config naming a script or file elsewhere is refused, so running a config never runs code
    or copies files from outside the project's benchmark folder.
    """
    resolved = path.resolve()
    roots = [_repo_root() / "benchmarks"]
    roots += [Path(p) for p in os.environ.get(TRUSTED_ENV, "").split(os.pathsep) if p]
    if any(resolved.is_relative_to(root.resolve()) for root in roots):
        return resolved
    raise ConfigError(
        f"{what} {str(path)!r} is outside the project's benchmarks/ folder; configs may only name scripts and files "
        f"inside it (or inside a folder listed in ${TRUSTED_ENV})"
    )


def _repo_path(path: str) -> Path:
    p = Path(path)
    return _trusted(p if p.is_absolute() else _repo_root() / p, "perf.results_files names")


def _scripts_dir(configured: str | None) -> Path:
    if configured:
        path = Path(configured)
        return _trusted(path if path.is_absolute() else _repo_root() / path, "perf.scripts_dir")
    return _repo_root() / "benchmarks"


@cell_kind("perf", version=1)
def _perf(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Run one speed benchmark script (``bench_<name>.py --out STEM [args]``) and keep the JSON it writes.

    The scripts write ``STEM.json`` (and a markdown table beside it); a script that treats ``--out`` as a folder
    may write several ``*.json`` files into it, which are gathered by file name.
    """
    if params.get("gather"):
        path = _repo_path(params["gather"]["file"])
        text = path.read_bytes()
        return CellOutput(
            {"benchmark": params["benchmark"], "gathered_from": params["gather"]["file"], "result": json.loads(text)},
            {f"{params['benchmark']}-{path.name}": text},
        )
    script = _scripts_dir(params.get("scripts_dir")) / f"bench_{params['benchmark']}.py"
    if not script.is_file():
        raise ConfigError(f"benchmark script {script} not found (perf runs from a source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / str(params["benchmark"])
        cmd = [sys.executable, str(script), "--out", str(stem), *params["args"]]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=params["timeout_s"], cwd=_repo_root(), env=dict(os.environ)
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        files = [stem.with_suffix(".json")] if stem.with_suffix(".json").is_file() else sorted(stem.glob("*.json"))
        if not files:
            raise RuntimeError(f"{' '.join(cmd)} wrote no JSON result under {stem}(.json)")
        data: Any = json.loads(files[0].read_text()) if len(files) == 1 else {
            f.stem: json.loads(f.read_text()) for f in files}  # fmt: skip
        artifacts = {f"{params['benchmark']}-{f.name}": f.read_bytes() for f in files}
    metrics = {
        "benchmark": params["benchmark"],
        "command": [Path(cmd[1]).name, *cmd[2:3], "STEM", *cmd[4:]],
        "seconds": time.perf_counter() - start,
        "result": data,
    }
    return CellOutput(metrics, artifacts)


# =============================================================================================================
# Summaries
# =============================================================================================================


def _metrics(results: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell], kind: str) -> list[tuple[Cell, Any]]:
    return [(c, results[c.id]["metrics"]) for c in cells if c.kind == kind and c.id in results]


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _source_table(
    config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]
) -> tuple[Table, dict]:
    rows = []
    summary: dict[str, Any] = {}
    by_task: dict[str, dict[int, float]] = {}
    metric_of: dict[str, str] = {}
    for _c, m in _metrics(results, cells, "source"):
        by_task.setdefault(m["task"], {})[int(m["origin"])] = float(m["test"])
        metric_of[m["task"]] = m["metric"]
    origins = list(config.prompt.origins)
    for task, scores in by_task.items():
        s = summarize(list(scores.values()))
        summary[task] = {"metric": metric_of[task], "per_origin": scores, **s.to_dict()}
        rows.append([task, metric_of[task], *(_pct(scores.get(o)) for o in origins), s.format()])
    if by_task:
        overall = summarize([summary[t]["mean"] for t in by_task])
        summary["average"] = overall.to_dict()
        rows.append(["**average**", "", *("" for _ in origins), _pct(overall.mean)])
    table = Table(
        "Source prompts: test score by origin",
        ["task", "metric", *(f"origin {o}" for o in origins), "mean ± std"],
        rows,
        "Scores in %. Each origin is a different random init (first-n-vocab embeddings) the prompt was tuned from.",
    )
    return table, summary


class _Sources:
    name = "sources"
    description = "Source prompts tuned from several origins (test metric mean ± std per task)."

    def plan(self, config: Config) -> list[Cell]:
        sources, _t, _p = task_layout(config)
        return [source_cell(config, t, o) for t in sources for o in config.prompt.origins]

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        table, summary = _source_table(config, cells, results)
        return Report({"sources": summary}, [table])


class _CrossOrigin:
    name = "cross_origin"
    description = "Each task's vector applied to a different origin than it was tuned from (paper Table 1)."

    def _tasks(self, config: Config) -> list[str]:
        sources, _t, _p = task_layout(config)
        tasks = config.cross_origin.tasks or sources
        for t in tasks:
            _check_task(t)
        return list(tasks)

    def plan(self, config: Config) -> list[Cell]:
        cells: list[Cell] = []
        rt = config.runtime
        for task in self._tasks(config):
            for a in config.prompt.origins:
                src = source_cell(config, task, a)
                cells.append(src)
                for b in config.prompt.origins:
                    if b == a:
                        continue
                    params = {
                        **_common(config),
                        "task": task,
                        "from_origin": a,
                        "to_origin": b,
                        "eval": _eval_params(config.train_options()),
                    }
                    est = 2 * rt.model_load_seconds + 2 * config.data.max_test / rt.eval_examples_per_second
                    cells.append(
                        make_cell(
                            "cross", f"{task}/o{a}-o{b}", params, stage="cross", deps={"vector": src.id}, estimate_s=est
                        )
                    )
        return cells

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        src_table, src_summary = _source_table(config, cells, results)
        per_task: dict[str, dict[str, list[float]]] = {}
        for _c, m in _metrics(results, cells, "cross"):
            d = per_task.setdefault(m["task"], {"own": [], "other": [], "alone": []})
            d["other"].append(float(m["other"]))
            d["alone"].append(float(m["other_origin_alone"]))
        rows = []
        summary: dict[str, Any] = {}
        for task, d in per_task.items():
            own = summarize(list(src_summary.get(task, {}).get("per_origin", {}).values()))
            other = summarize(d["other"])
            alone = summarize(d["alone"])
            kept = other.mean / own.mean if own.n and own.mean else math.nan
            summary[task] = {"own": own.to_dict(), "other": other.to_dict(), "origin_alone": alone.to_dict(),
                             "retained": kept}  # fmt: skip
            rows.append([task, own.format(), other.format(), alone.format(), _pct(kept)])
        if per_task:
            own_avg = summarize([summary[t]["own"]["mean"] for t in per_task])
            other_avg = summarize([summary[t]["other"]["mean"] for t in per_task])
            kept = other_avg.mean / own_avg.mean if own_avg.mean else math.nan
            summary["average"] = {"own": own_avg.mean, "other": other_avg.mean, "retained": kept}
            rows.append(["**average**", _pct(own_avg.mean), _pct(other_avg.mean), "", _pct(kept)])
        table = Table(
            "Cross-origin: a vector applied to its own origin vs another origin",
            ["task", "own origin", "other origin", "other origin, no vector", "retained (%)"],
            rows,
            "Scores in %, mean ± std over (origin, other origin) pairs. 'retained' = other / own. Paper (Table 1): "
            "T5-base GLUE average 84.5 -> 84.0, but TREC 95.5 -> 26.5; LLaMA-3.1-8B average 89.6 -> 89.7.",
        )
        return Report({"cross_origin": summary, "sources": src_summary}, [table, src_table])


class _FewShot:
    name = "fewshot"
    description = "Few-shot initialization of target tasks from random, SPoT, SPoT multi, TPV and tpv's best."

    def plan(self, config: Config) -> list[Cell]:
        fs = config.fewshot
        _sources, targets, per_target = task_layout(config)
        if not targets:
            raise ConfigError("fewshot needs target tasks: set tasks.groups or tasks.targets")
        cells: dict[str, Cell] = {}
        opts = config.train_options(fewshot=True)
        rt = config.runtime
        fs_params = {
            "search": fs.search,
            "grid": list(fs.grid),
            "merge_methods": list(fs.merge_methods),
            "selection_examples": fs.selection_examples,
        }
        needs_select = any(i in fs.inits for i in ("spot_best", "tpv", "tpv_best"))
        for target in targets:
            srcs = per_target[target]
            for seed in fs.seeds:
                deps: dict[str, str] = {}
                for s in srcs:
                    c = source_cell(config, s, seed)
                    cells[c.id] = c
                    deps[f"source:{s}"] = c.id
                mix: Cell | None = None
                if "spot_multi" in fs.inits:
                    mix = mixture_cell(config, srcs, seed)
                    cells[mix.id] = mix
                select: Cell | None = None
                if needs_select:
                    n_cand = 2 + len(srcs) + len(fs.merge_methods) + len(fs.grid) * (1 + 2 * len(srcs))
                    est = rt.model_load_seconds + n_cand * fs.selection_examples / rt.eval_examples_per_second / 4
                    sdeps = dict(deps)
                    if mix is not None:
                        sdeps["mixture"] = mix.id
                    params = {
                        **_common(config),
                        "target": target,
                        "origin": seed,
                        "fewshot": fs_params,
                        "eval": _eval_params(config.train_options()),
                    }
                    select = make_cell(
                        "select", f"{target}/o{seed}", params, stage="select", deps=sdeps, estimate_s=est
                    )
                    cells[select.id] = select
                for init in fs.inits:
                    for k in fs.shots:
                        dep: dict[str, str] = {}
                        if init == "spot_multi" and mix is not None:
                            dep = {"init": mix.id}
                        elif init != "random" and select is not None:
                            dep = {"init": select.id}
                        params = {
                            **_common(config),
                            "target": target,
                            "init": init,
                            "shots": k,
                            "seed": seed,
                            "train": opts if k else {},
                            "validate": fs.use_validation if k else False,
                            "eval": _eval_params(opts),
                        }
                        n_val = config.data.max_validation if fs.use_validation else 0
                        evals = config.data.max_test + (_validation_evals(opts, n_val) if k else 0)
                        est = _train_cost(config, _train_steps(opts) if k else 0, evals)
                        c = make_cell(
                            "fewshot", f"{target}/{init}/k{k}/s{seed}", params, stage="fewshot", deps=dep,
                            estimate_s=est,
                        )  # fmt: skip
                        cells[c.id] = c
        return list(cells.values())

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        fs = config.fewshot
        scores: dict[tuple[str, str, int], dict[int, float]] = {}
        metric_of: dict[str, str] = {}
        for _c, m in _metrics(results, cells, "fewshot"):
            scores.setdefault((m["target"], m["init"], int(m["shots"])), {})[int(m["seed"])] = float(m["test"])
            metric_of[m["target"]] = m["metric"]
        targets = list(dict.fromkeys(t for t, _i, _k in scores))
        tables: list[Table] = []
        figures: list[str] = []
        summary: dict[str, Any] = {"targets": {}, "tests": [], "checks": {}}
        for target in targets:
            rows = []
            curves: dict[str, list[tuple[float, float, float]]] = {}
            tsum: dict[str, Any] = {}
            for init in fs.inits:
                row: list[Any] = [INIT_LABELS[init]]
                for k in fs.shots:
                    s = summarize(list(scores.get((target, init, k), {}).values()))
                    row.append(s.format())
                    if s.n:
                        curves.setdefault(INIT_LABELS[init], []).append((float(k), s.mean, s.std))
                        tsum.setdefault(init, {})[str(k)] = {
                            **s.to_dict(), "per_seed": scores[(target, init, k)]}  # fmt: skip
                rows.append(row)
            summary["targets"][target] = {"metric": metric_of[target], "inits": tsum}
            tables.append(
                Table(
                    f"Few-shot: {target} ({metric_of[target]}, %), by shots per class",
                    ["init", *(str(k) for k in fs.shots)],
                    rows,
                    f"mean ± std over seeds {list(fs.seeds)}; shots = training examples per class.",
                )
            )
            if curves:
                fname = f"fewshot_{target}.png"
                plot_curves(curves, report_dir / fname, title=f"{target}: few-shot initialization")
                figures.append(fname)
        tables.append(self._tests(config, targets, scores, summary))
        tables.append(self._selection(cells, results))
        checks = self._checks(config, targets, scores, summary)
        if checks is not None:
            tables.append(checks)
        return Report(summary, tables, figures)

    def _tests(
        self,
        config: Config,
        targets: Sequence[str],
        scores: Mapping[tuple[str, str, int], Mapping[int, float]],
        summary: dict[str, Any],
    ) -> Table:
        fs = config.fewshot
        spots = [i for i in ("spot_best", "spot_multi") if i in fs.inits]
        keys: list[tuple[str, int, InitName, InitName]] = []
        pairs = []
        for target in targets:
            for k in fs.shots:
                if not spots:
                    continue
                means = {i: summarize(list(scores.get((target, i, k), {}).values())).mean for i in spots}
                valid = {i: v for i, v in means.items() if math.isfinite(v)}
                if not valid:
                    continue
                best_spot = max(valid, key=lambda i: valid[i])
                for init in fs.compare:
                    a = list(scores.get((target, init, k), {}).values())
                    b = list(scores.get((target, best_spot, k), {}).values())
                    if a and b:
                        keys.append((target, k, init, best_spot))
                        pairs.append((a, b))
        results = compare(pairs, alpha=config.stats.alpha)
        rows = []
        for (target, k, init, spot), r in zip(keys, results):
            summary["tests"].append({"target": target, "shots": k, "init": init, "best_spot": spot, **r.to_dict()})
            sig = "yes" if r.significant else "no"
            p = "–" if math.isnan(r.p) else f"{r.p:.3g}"
            padj = "–" if math.isnan(r.p_adjusted) else f"{r.p_adjusted:.3g}"
            rows.append([target, k, INIT_LABELS[init], INIT_LABELS[spot], _pct(r.mean_a), _pct(r.mean_b),
                         f"{r.t:.2f}" if math.isfinite(r.t) else str(r.t), p, padj, sig])  # fmt: skip
        return Table(
            "Welch t-tests against the best SPoT (Bonferroni-corrected)",
            [
                "target",
                "shots",
                "init",
                "best SPoT",
                "init mean",
                "SPoT mean",
                "t",
                "p",
                "p (Bonferroni)",
                f"significant (α={config.stats.alpha})",
            ],
            rows,
            f"{len(rows)} comparisons in the family; p-values multiplied by their number (as the paper does). "
            "'best SPoT' is the SPoT variant with the higher mean at that target and shot count.",
        )

    def _selection(self, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]) -> Table:
        rows = []
        for _c, m in _metrics(results, cells, "select"):
            va = m["validation_accuracy"]
            best_source = va.get(f"source:{m['spot_best']}")
            details = json.dumps(m.get("tpv_best_info", {}))
            rows.append(
                [m["target"], m["origin"], m["spot_best"], m["tpv_best"], details, _pct(va.get("random")),
                 _pct(best_source), _pct(va.get("tpv")), _pct(va.get(m["tpv_best"]))]
            )  # fmt: skip
        return Table(
            "Init selection on target validation examples (accuracy, %)",
            [
                "target",
                "seed",
                "best source",
                "tpv best",
                "tpv best details",
                "random",
                "best source",
                "TPV sum",
                "tpv best",
            ],
            rows,
            "spot_best and tpv_best are chosen here, before any target training, on the first "
            "fewshot.selection_examples validation examples.",
        )

    def _checks(
        self,
        config: Config,
        targets: Sequence[str],
        scores: Mapping[tuple[str, str, int], Mapping[int, float]],
        summary: dict[str, Any],
    ) -> Table | None:
        """The issue's two few-shot targets, measured: TPV minus random, and tpv best against the best SPoT."""
        fs = config.fewshot

        def mean_over_shots(target: str, init: str) -> float:
            vals = [summarize(list(scores.get((target, init, k), {}).values())).mean for k in fs.shots]
            vals = [v for v in vals if math.isfinite(v)]
            return sum(vals) / len(vals) if vals else math.nan

        checks: dict[str, Any] = {}
        rows: list[list[Any]] = []
        if "tpv" in fs.inits and "random" in fs.inits:
            gains = {t: mean_over_shots(t, "tpv") - mean_over_shots(t, "random") for t in targets}
            avg = [g for g in gains.values() if math.isfinite(g)]
            mean_gain = 100 * sum(avg) / len(avg) if avg else math.nan
            checks["tpv_minus_random_points"] = {t: 100 * g for t, g in gains.items()}
            checks["tpv_beats_random_by_10_points"] = bool(avg) and mean_gain >= 10
            for t, g in gains.items():
                rows.append([f"TPV − random, mean over shots: {t}", f"{100 * g:+.1f} points", "", ""])
            rows.append(["TPV − random, mean over targets", f"{mean_gain:+.1f} points", "≥ +10 points",
                         "yes" if checks["tpv_beats_random_by_10_points"] else "no"])  # fmt: skip
        spots = [i for i in ("spot_best", "spot_multi") if i in fs.inits]
        if "tpv_best" in fs.inits and spots:
            wins = {}
            for t in targets:
                best = max(mean_over_shots(t, i) for i in spots)
                ours = mean_over_shots(t, "tpv_best")
                wins[t] = ours >= best
                rows.append([f"tpv best vs best SPoT, mean over shots: {t}", f"{100 * ours:.1f} vs {100 * best:.1f}",
                             "", "yes" if wins[t] else "no"])  # fmt: skip
            checks["tpv_best_matches_or_beats_best_spot"] = wins
            checks["tpv_best_wins_two_thirds"] = bool(wins) and sum(wins.values()) * 3 >= 2 * len(wins)
            rows.append(["targets where tpv best ≥ best SPoT", f"{sum(wins.values())} of {len(wins)}",
                         "≥ two thirds", "yes" if checks["tpv_best_wins_two_thirds"] else "no"])  # fmt: skip
        summary["checks"] = checks
        if not rows:
            return None
        return Table(
            "The issue's targets, measured",
            ["check", "measured", "target", "met"],
            rows,
            "Means over the shot counts of each init's per-shot means (the seeds averaged first).",
        )


class _Similarity:
    name = "similarity"
    description = "Cosine similarity of vectors and prompts within and across tasks and origins (paper Figure 2)."

    def plan(self, config: Config) -> list[Cell]:
        sources, _t, _p = task_layout(config)
        cells = [source_cell(config, t, o) for t in sources for o in config.prompt.origins]
        deps = {f"{c.params['task']}@o{c.params['origin']}": c.id for c in cells}
        params = {**_common(config), "origins": list(config.prompt.origins)}
        sim = make_cell("similarity", "all", params, stage="similarity", deps=deps, estimate_s=5.0)
        return [*cells, sim]

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        found = _metrics(results, cells, "similarity")
        src_table, src_summary = _source_table(config, cells, results)
        if not found:
            return Report({"sources": src_summary}, [src_table])
        m = found[0][1]
        figures = []
        for key, title in (("vectors", "task prompt vectors"), ("prompts", "tuned soft prompts")):
            fname = f"similarity_{key}.png"
            plot_heatmap(m[key], m["labels"], report_dir / fname, title=f"cosine similarity of {title}")
            figures.append(fname)
        rows = []
        for key in ("same_task_other_origin", "other_task_same_origin", "other_both"):
            rows.append([key.replace("_", " "), _num(m["vector_means"][key]), _num(m["prompt_means"][key])])
        o = m["origins"]
        off = [o[i][j] for i in range(len(o)) for j in range(len(o)) if i != j]
        rows.append(["origins with each other", "", _num(sum(off) / len(off) if off else None)])
        ratios = list(m.get("norm_ratios", {}).values())
        if ratios:
            rows.append(["‖vector‖ / ‖origin‖ (mean)", _num(sum(ratios) / len(ratios)), ""])
        table = Table(
            "Mean cosine similarity",
            ["pairs", "vectors", "prompts"],
            rows,
            "The paper observes that vectors of one task from different random origins are not similar, so vectors "
            "combine only within one origin. When a vector is much longer than its origin (last row), a prompt's "
            "cosines follow its vector's.",
        )
        return Report({"similarity": m, "sources": src_summary}, [table, src_table], figures)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


class _Perf:
    name = "perf"
    description = "Engine and search speed benchmarks gathered into one table."

    def plan(self, config: Config) -> list[Cell]:
        import hashlib

        p = config.perf
        cells = []
        if p.gather:
            for name in p.benchmarks:
                if name not in p.results_files:
                    raise ConfigError(f"perf.gather: perf.results_files has no file for benchmark {name!r}")
                path = _repo_path(p.results_files[name])
                if not path.is_file():
                    raise ConfigError(
                        f"perf.gather: {path} not found; run `python benchmarks/bench_{name}.py` first, or drop "
                        "perf.gather to run the scripts here"
                    )
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                gather = {"benchmark": name, "gather": {"file": p.results_files[name], "sha256": digest}}
                cells.append(make_cell("perf", name, gather, stage="perf", estimate_s=0.1))
            return cells
        folder = _scripts_dir(p.scripts_dir)
        missing = [n for n in p.benchmarks if not (folder / f"bench_{n}.py").is_file()]
        if missing:
            have = sorted(f.stem.removeprefix("bench_") for f in folder.glob("bench_*.py"))
            raise ConfigError(
                f"perf.benchmarks names {missing}, but {folder} has no bench_<name>.py for them; "
                f"available: {', '.join(have) or 'none'}"
            )
        for name in p.benchmarks:
            params: dict[str, Any] = {
                "benchmark": name,
                "args": list(p.args.get(name, [])),
                "timeout_s": p.timeout_s,
                "scripts_dir": p.scripts_dir,
                "model": _model_params(config),
            }
            cells.append(make_cell("perf", name, params, stage="perf", estimate_s=p.estimate_s.get(name, 600.0)))
        return cells

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        rows: list[list[Any]] = []
        summary: dict[str, Any] = {}
        for _c, m in _metrics(results, cells, "perf"):
            name, result = m["benchmark"], m["result"]
            summary[name] = result
            curated = _PERF_ROWS.get(name, _generic_perf_rows)(result)
            rows += [[name, *row] for row in curated]
        table = Table(
            "Speed benchmarks",
            ["benchmark", "setup", "measure", "value"],
            rows,
            "The key numbers of each benchmark script's JSON result (benchmarks/bench_<name>.py); the full records, "
            "with the scripts' own config, environment and load average, are in results.json.",
        )
        return Report(summary, [table])


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _engine_rows(result: Any) -> list[list[Any]]:
    """Training and evaluation speed of tpv's engine against plain PEFT + Trainer + generate."""
    rows: list[list[Any]] = []
    matmul = _get(result, "matmul", "fp32", "gflops")
    for run in _get(result, "runs") or []:
        setup = run.get("name", "?")
        measures = [
            ("train steps/s", _get(run, "train", "steps_per_s")),
            ("eval examples/s", _get(run, "eval", "examples_per_s")),
            ("peak RSS (MB)", run.get("peak_rss_mb")),
            ("train GFLOP/s (useful work)", _get(run, "train", "achieved_gflops")),
            ("validation accuracy", _get(run, "eval", "accuracy")),
        ]
        gflops = _get(run, "train", "achieved_gflops")
        if isinstance(gflops, int | float) and isinstance(matmul, int | float) and matmul:
            measures.append(("share of fp32 matmul FLOP/s", gflops / matmul))
        rows += [[setup, k, v] for k, v in measures if v is not None]
    for key in ("train_speedup", "eval_speedup", "flops_fraction"):
        value = _get(result, "summary", key)
        if value is not None:
            rows.append(["tpv vs plain", key.replace("_", " "), value])
    if matmul is not None:
        rows.append(["machine", "fp32 matmul GFLOP/s", matmul])
    return rows or _generic_perf_rows(result)


def _search_rows(result: Any) -> list[list[Any]]:
    """Batched vs sequential coefficient search."""
    rows: list[list[Any]] = []
    for scorer, run in (_get(result, "results") or {}).items():
        if not isinstance(run, Mapping):
            continue
        for key, label in (("wall_s", "wall (s)"), ("cpu_s", "CPU (s)"), ("speedup_wall", "speed-up (wall)"),
                           ("speedup_cpu", "speed-up (CPU)"), ("forward_passes", "forward passes"),
                           ("lambda", "chosen lambda"), ("accuracy", "accuracy")):  # fmt: skip
            if run.get(key) is not None:
                rows.append([scorer, label, run[key]])
    for key in ("same_choice", "same_table"):
        if _get(result, key) is not None:
            rows.append(["all scorers", key.replace("_", " "), result[key]])
    return rows or _generic_perf_rows(result)


def _generic_perf_rows(result: Any) -> list[list[Any]]:
    if isinstance(result, Mapping):  # the numbers, not the script's own config and environment records
        result = {k: v for k, v in result.items() if k not in ("command", "config", "environment")}
    return [["", name, value] for name, value in _flatten(result)]


_PERF_ROWS = {"engine": _engine_rows, "search": _search_rows}


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in data.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(data, list) and all(isinstance(x, Mapping) for x in data):
        out = []
        for i, v in enumerate(data):
            label = v.get("name") or v.get("setup") or v.get("label") or str(i)
            out += _flatten({k: x for k, x in v.items() if k not in ("name", "setup", "label")}, f"{prefix}[{label}]")
        return out
    return [(prefix, data if isinstance(data, int | float | str | bool) or data is None else json.dumps(data))]


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (_Sources(), _CrossOrigin(), _FewShot(), _Similarity(), _Perf())
}
"""The experiments by name."""


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        ConfigError: unknown name (the known ones listed).
    """
    exp = EXPERIMENTS.get(name)
    if exp is None and name == "calibration":
        from tpv.bench.calibration import CALIBRATION

        exp = CALIBRATION
    if exp is None:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}, calibration")
    return exp
