"""The cells of experiment ``fewshot``: the multi-task mixture prompt, the init selection and few-shot training.

=============  ===============================================================================================
kind           work
=============  ===============================================================================================
``mixture``    tune one prompt on the mixture of a target's sources (SPoT multi), over their label words' union
``select``     choose a target's inits on its validation examples: the best source (SPoT), ``origin + Σ τ``
               (TPV) and tpv's best (the coefficient search or a merge method)
``fewshot``    train a target on k examples per class from one init (k = 0: score the init as it is)
=============  ===============================================================================================
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import CellInput, CellKind, CellOutput
from tpv.bench.experiments._common import (
    CELL_VECTOR_FILE,
    build_origin,
    cached_tokenizer,
    cell_data,
    load_cell_model,
    score_prompt,
    score_prompts,
    tune,
    vector_bytes,
    vector_from,
)

if TYPE_CHECKING:
    import torch

    from tpv.origin import Origin
    from tpv.tasks.spec import TaskSpec
    from tpv.vector import TaskPromptVector

__all__ = ["KINDS", "union_label_words"]


def union_label_words(specs: Sequence[TaskSpec]) -> tuple[str, ...]:
    """The label words of ``specs`` in order, each once (a mixture's classes)."""
    words: list[str] = []
    for spec in specs:
        words += [w for w in spec.label_words if w not in words]
    return tuple(words)


def _mixture(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Tune one prompt on the mixture of several tasks (SPoT multi), over the union of their label words."""
    from tpv.tasks import Example

    start = time.perf_counter()
    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    origin = build_origin(model, params["prompt"], params["origin"])
    loaded = [cell_data(t, params["data"]) for t in params["tasks"]]
    words = union_label_words([spec for spec, *_ in loaded])
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
    vector, _result, info = tune(
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
        fresh = load_cell_model(params["model"])
        scores[spec.name] = score_prompt(fresh, tok, vector.apply_to(origin), test, spec, params["train"])
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
    return CellOutput(metrics, {CELL_VECTOR_FILE: vector_bytes(vector, {"bench": {"mixture": params["tasks"]}})})


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


def _select(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Choose the few-shot inits of one target and seed on its validation examples.

    spot_best is the source prompt that scores best; tpv is ``origin + sum_i tau_i``; tpv_best is the best of that
    sum, the coefficient search and the merge methods.
    """
    import torch

    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    origin = build_origin(model, params["prompt"], params["origin"])
    spec, _train, validation, _test = cell_data(params["target"], params["data"])
    examples = validation[: params["fewshot"]["selection_examples"]]
    by_source = {role.removeprefix("source:"): vector_from(inp.artifacts[CELL_VECTOR_FILE])
                 for role, inp in inputs.items() if role.startswith("source:")}  # fmt: skip
    names = sorted(by_source)
    vectors = [by_source[n] for n in names]

    def scorer(prompts: torch.Tensor) -> torch.Tensor:
        scores = score_prompts(model, tok, prompts, examples, spec, params["eval"], params["model"]["task_type"])
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
        mix = vector_from(inputs["mixture"].artifacts[CELL_VECTOR_FILE])
        validation_scores["spot_multi"] = float(scorer(mix.apply_to(origin).unsqueeze(0))[0])
    artifacts = {
        "init-spot_best.safetensors": vector_bytes(by_source[best_source]),
        "init-tpv.safetensors": vector_bytes(total),
        "init-tpv_best.safetensors": vector_bytes(candidates[best_key][0]),
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


def _fewshot(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Train a target on k examples per class from one init (k = 0: score the init as it is)."""
    from tpv.tasks import few_shot

    start = time.perf_counter()
    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    origin = build_origin(model, params["prompt"], params["seed"])
    spec, train, validation, test = cell_data(params["target"], params["data"])
    init_name = params["init"]
    init: Origin | TaskPromptVector
    if init_name == "random":
        init = origin
    elif init_name == "spot_multi":
        init = vector_from(inputs["init"].artifacts[CELL_VECTOR_FILE])
    else:
        init = vector_from(inputs["init"].artifacts[f"init-{init_name}.safetensors"])
    k = int(params["shots"])
    info: dict[str, Any] = {}
    prompt: torch.Tensor | None
    if k == 0:
        prompt = init.tensor if init_name == "random" else init.apply_to(origin)  # type: ignore[union-attr]
    else:
        shots = few_shot(train, k, seed=int(params["seed"]), allow_fewer=True)
        _vector, result, info = tune(
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
    score = score_prompt(model, tok, prompt, test, spec, params["eval"])
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


KINDS = (
    CellKind("mixture", _mixture, version=1),
    CellKind("select", _select, version=1),
    CellKind("fewshot", _fewshot, version=1),
)
