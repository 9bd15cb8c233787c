"""The cells of experiment ``fewshot``: the multi-task mixture prompt, the init selection and few-shot training.

=============  ===============================================================================================
kind           work
=============  ===============================================================================================
``mixture``    tune one prompt on the mixture of a target's sources (SPoT multi), over their label words' union
``select``     choose a target's inits on its validation examples: the best source (SPoT), ``origin + Σ τ``
               (TPV) and tpv's best (the coefficient search or a merge method)
``fewshot``    train a target on k examples per class from one init (k = 0: score the init as it is)
=============  ===============================================================================================

``mixture`` and ``fewshot`` are :class:`~tpv.bench.experiments._common.TrainingCell` s: with ``runtime.pack`` the
ready cells of one kind and model train together (``tpv.train_many``); a few-shot cell at k = 0 tunes nothing and
is only scored, on its pack's loaded model.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import CellInput, CellKind, CellOutput
from tpv.bench.experiments._common import (
    CELL_VECTOR_FILE,
    TrainingCell,
    Tuning,
    build_origin,
    cached_tokenizer,
    cell_data,
    load_cell_model,
    score_prompt,
    score_together,
    train_config,
    train_info,
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


def _prepare_mixture(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """The mixture tuning: every task's examples, their labels renumbered over the union of their label words."""
    from tpv.tasks import Example

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
    return Tuning(train, validation, words, origin, origin, params["train"], "+".join(params["tasks"]), "accuracy",
                  state={"loaded": loaded, "origin": origin})  # fmt: skip


def _finish_mixture(params: Mapping[str, Any], tuning: Tuning, result: Any, tok: Any, start: float) -> CellOutput:
    """Score the mixture prompt on each task's test set (a fresh model each); the vector is the cell's artifact."""
    origin, vector = tuning.state["origin"], result.vector
    scores = {}
    for spec, _tr, _va, test in tuning.state["loaded"]:
        fresh = load_cell_model(params["model"])
        scores[spec.name] = score_prompt(fresh, tok, vector.apply_to(origin), test, spec, params["train"])
    metrics = {
        "tasks": params["tasks"],
        "origin": params["origin"],
        "origin_id": origin.id,
        "label_words": list(tuning.label_words),
        "test": scores,
        "n_train": len(tuning.train),
        "train": train_info(result),
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics, {CELL_VECTOR_FILE: vector_bytes(vector, {"bench": {"mixture": params["tasks"]}})})


MIXTURE = TrainingCell(_prepare_mixture, _finish_mixture)
"""The ``mixture`` cell: tune one prompt on the mixture of several tasks (SPoT multi), over the union of their label
words; score it on each task's test set (packable)."""


def _selection_scorer(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Any],
    spec: TaskSpec,
    ev: Mapping[str, Any],
    model_params: Mapping[str, Any],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``prompts (c, rows, dim) -> validation accuracies (c,)``, float64: the selection's one scorer.

    On a causal LM a :class:`~tpv.engine.prompt_scoring.BatchedPromptScorer` over the packed primitive of
    :func:`tpv.evaluate_many` (the ``c`` candidates share forward passes; the examples are tokenized once for all
    calls; texts keep their last ``max_length`` tokens, in fp32, as the selection always scored them); on other
    model kinds one :func:`tpv.evaluate_many` call per scorer call
    (:func:`tpv.bench.experiments._common.score_together`, with the cell's scoring settings).
    """
    import dataclasses

    import torch

    if model_params["task_type"] == "causal-lm":
        from tpv.engine.prompt_scoring import BatchedPromptScorer

        return BatchedPromptScorer(
            model,
            tokenizer,
            [ex.text for ex in examples],
            [int(ex.label) for ex in examples],
            tuple(spec.label_words),
            batch_size=int(ev["eval_batch_size"]),
            max_length=int(ev["max_length"]),
        )
    accuracy = dataclasses.replace(spec, metric="accuracy")

    def together(prompts: torch.Tensor) -> torch.Tensor:
        scores = score_together(model, tokenizer, list(prompts), examples, accuracy, ev, model_params)
        return torch.tensor(scores, dtype=torch.float64)

    return together


def _search(
    vectors: Sequence[TaskPromptVector],
    origin: Origin,
    scorer: Callable[[torch.Tensor], torch.Tensor],
    fs: Mapping[str, Any],
) -> tuple[str, tuple[TaskPromptVector, float, dict[str, Any]]]:
    """The coefficient search's tpv_best candidate: its key, vector, validation score and details."""
    from tpv.search import search_per_task, search_scalar

    grid = [float(g) for g in fs["grid"]]
    if fs["search"] == "per_task" and len(vectors) > 1:
        res = search_per_task(vectors, origin, scorer, grid, strategy="coordinate")
    else:
        res = search_scalar(vectors, origin, scorer, grid)
    info = {"coefficients": list(res.coefficients), "evaluated": len(res.candidates)}
    return f"search_{res.mode}", (res.vector(vectors), float(res.score), info)


def _select(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Choose the few-shot inits of one target and seed on its validation examples or on its k shots.

    spot_best is the source prompt that scores best; tpv is ``origin + sum_i tau_i``; tpv_best is the best of that
    sum, the coefficient search and the merge methods. The fixed candidates (the origin, each source, the sum, each
    merge, the mixture) are scored in one call of the selection's scorer, then the search calls it for its grid.
    With ``fewshot.shots`` the examples are the cell's k training shots per class (at most ``selection_examples``);
    at k = 0 nothing is scored: spot_best is the target's first source, tpv_best ``zero_shot_combination``.
    """
    from tpv.tasks import few_shot

    spec, train, validation, _test = cell_data(params["target"], params["data"])
    fs = params["fewshot"]
    if "shots" in fs:  # the few-shot cells' own draw (same seed): the choice sees nothing else
        examples = few_shot(train, int(fs["shots"]), seed=int(params["origin"]), allow_fewer=True)
        examples = examples[: fs["selection_examples"]]  # classes interleaved: a prefix stays balanced
    else:
        examples = validation[: fs["selection_examples"]]
    by_source = {role.removeprefix("source:"): vector_from(inp.artifacts[CELL_VECTOR_FILE])
                 for role, inp in inputs.items() if role.startswith("source:")}  # fmt: skip
    if not examples:  # nothing to score: no model is loaded
        return _fixed_choice(params, fs, by_source, spec.name)
    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    origin = build_origin(model, params["prompt"], params["origin"])
    return _scored_choice(params, inputs, fs, by_source, origin, examples, model, tok, spec)


def _fixed_choice(params: Mapping[str, Any], fs: Mapping[str, Any], by_source: Mapping[str, TaskPromptVector],
                  target: str) -> CellOutput:  # fmt: skip
    """The inits at k = 0, where there is nothing to choose on: the target's first source; a fixed combination."""
    from tpv.merge import merge

    names = [n for n in fs["sources"] if n in by_source]
    vectors = [by_source[n] for n in names]
    total = sum(vectors[1:], vectors[0])
    rule = fs["zero_shot_combination"]
    best = total if rule == "tpv" else merge(vectors, method=rule)
    artifacts = {
        "init-spot_best.safetensors": vector_bytes(by_source[names[0]]),
        "init-tpv.safetensors": vector_bytes(total),
        "init-tpv_best.safetensors": vector_bytes(best),
    }
    metrics = {
        "target": target,
        "origin": params["origin"],
        "shots": 0,
        "selection_examples": 0,
        "validation_accuracy": {},
        "spot_best": names[0],
        "tpv_best": rule if rule == "tpv" else f"merge_{rule}",
        "tpv_best_info": {"rule": "fixed at 0 shots"},
        "tpv_best_terms": dict(best.terms),
    }
    return CellOutput(metrics, artifacts)


def _scored_choice(params: Mapping[str, Any], inputs: Mapping[str, CellInput], fs: Mapping[str, Any],
                   by_source: Mapping[str, TaskPromptVector], origin: Origin, examples: Sequence[Any], model: Any,
                   tok: Any, spec: TaskSpec) -> CellOutput:  # fmt: skip
    """The inits chosen by their accuracy on ``examples``."""
    import torch

    from tpv.merge import merge

    names = sorted(by_source)
    vectors = [by_source[n] for n in names]
    dtvg = _dtvg_group(fs["dtvg_warmup"], names, vectors, origin, examples, model, tok, spec) \
        if "dtvg_warmup" in fs else None  # fmt: skip
    scorer = _selection_scorer(model, tok, examples, spec, params["eval"], params["model"])

    total = sum(vectors[1:], vectors[0])
    merged = {f"merge_{method}": merge(vectors, method=method) for method in fs["merge_methods"]}
    mixture = vector_from(inputs["mixture"].artifacts[CELL_VECTOR_FILE]) if "mixture" in inputs else None
    fixed: dict[str, torch.Tensor] = {"random": origin.tensor}
    fixed.update({f"source:{n}": v.apply_to(origin) for n, v in zip(names, vectors)})
    fixed["tpv"] = total.apply_to(origin)
    fixed.update({key: m.apply_to(origin) for key, m in merged.items()})
    if mixture is not None:
        fixed["spot_multi"] = mixture.apply_to(origin)
    if dtvg is not None and dtvg[0] is not None:
        fixed["dtvg"] = dtvg[0].apply_to(origin)
    scored = dict(zip(fixed, scorer(torch.stack(list(fixed.values()))).tolist()))  # (len(fixed), rows, dim) -> scores

    validation_scores: dict[str, float] = {k: v for k, v in scored.items() if k != "spot_multi" and k not in merged}
    best_source = max(names, key=lambda n: (validation_scores[f"source:{n}"], -names.index(n)))
    candidates: dict[str, tuple[TaskPromptVector, float, dict[str, Any]]] = {"tpv": (total, scored["tpv"], {})}
    key, found = _search(vectors, origin, scorer, fs)
    candidates[key] = found
    candidates.update({k: (m, scored[k], {"method": k.removeprefix("merge_")}) for k, m in merged.items()})
    if dtvg is not None and dtvg[0] is not None:
        candidates["dtvg"] = (dtvg[0], scored["dtvg"], dtvg[1])
    for k, (_v, s, _info) in candidates.items():
        validation_scores[k] = s
    best_key = max(candidates, key=lambda k: (candidates[k][1], -list(candidates).index(k)))
    if mixture is not None:
        validation_scores["spot_multi"] = scored["spot_multi"]
    artifacts = {
        "init-spot_best.safetensors": vector_bytes(by_source[best_source]),
        "init-tpv.safetensors": vector_bytes(total),
        "init-tpv_best.safetensors": vector_bytes(candidates[best_key][0]),
    }
    metrics = {
        "target": spec.name,
        "origin": params["origin"],
        **({"shots": int(fs["shots"])} if "shots" in fs else {}),
        **({"dtvg": dtvg[1]} if dtvg is not None else {}),
        "selection_examples": len(examples),
        "validation_accuracy": validation_scores,
        "spot_best": best_source,
        "tpv_best": best_key,
        "tpv_best_info": candidates[best_key][2],
        "tpv_best_terms": dict(candidates[best_key][0].terms),
    }
    return CellOutput(metrics, artifacts)


def _dtvg_group(options: Mapping[str, Any], names: Sequence[str], vectors: Sequence[TaskPromptVector],
                origin: Origin, examples: Sequence[Any], model: Any, tok: Any,
                spec: TaskSpec) -> tuple[TaskPromptVector | None, dict[str, Any]]:  # fmt: skip
    """tpv_best's DTVG-style candidate: the sum of the sources grouped around a warm-up vector of the k shots.

    A prompt is tuned from ``origin`` on ``examples`` (the choice's k shots) for ``options["steps"]`` steps; its
    vector is the target vector :func:`tpv.select.select_sources` (``method="dtvg"``) groups the sources by (target
    similarity and knowledge consistency). Returns the group's sum (``None`` when no source is more similar to the
    target than 0) and what was chosen, with every source's similarity to the warm-up vector.
    """
    from tpv.engine.loop import train
    from tpv.select import select_sources

    warm = train(model, tok, list(examples), task=spec.name, label_words=spec.label_words, init=origin,
                 origin=origin, config=train_config(options), progress=False)  # fmt: skip
    chosen = select_sources(warm.vector, dict(zip(names, vectors)), method="dtvg")
    info: dict[str, Any] = {
        "warmup_steps": int(options["steps"]),
        "group": list(chosen.chosen),
        "similarity": {s.name: round(s.score, 4) for s in chosen.ranking},
    }
    group = [vectors[names.index(n)] for n in chosen.chosen]
    return (sum(group[1:], group[0]) if group else None), info


def _prepare_fewshot(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """A target's k shots per class, from one init; at k = 0 a tuning that does not tune (the init is scored)."""
    from tpv.tasks import few_shot

    origin = build_origin(model, params["prompt"], params["seed"])
    spec, train, validation, test = cell_data(params["target"], params["data"])
    init_name = params["init"]
    vector: TaskPromptVector | None = None  # None: the random origin itself
    if init_name == "spot_multi":
        vector = vector_from(inputs["init"].artifacts[CELL_VECTOR_FILE])
    elif init_name != "random":
        vector = vector_from(inputs["init"].artifacts[f"init-{init_name}.safetensors"])
    init: Origin | TaskPromptVector = origin if vector is None else vector
    state: dict[str, Any] = {"spec": spec, "test": test}
    k = int(params["shots"])
    if k == 0:
        state["model"] = model
        state["prompt"] = origin.tensor if vector is None else vector.apply_to(origin)
        return Tuning([], [], spec.label_words, init, origin, params["train"], spec.name, spec.metric, state,
                      tunes=False)  # fmt: skip
    shots = few_shot(train, k, seed=int(params["seed"]), allow_fewer=True)
    return Tuning(shots, validation if params["validate"] else [], spec.label_words, init, origin, params["train"],
                  spec.name, spec.metric, state)  # fmt: skip


def _finish_fewshot(params: Mapping[str, Any], tuning: Tuning, result: Any, tok: Any, start: float) -> CellOutput:
    """Score the trained prompt (or, at k = 0, the init) on the target's test set."""
    spec, test = tuning.state["spec"], tuning.state["test"]
    if result is None:
        score = score_prompt(tuning.state["model"], tok, tuning.state["prompt"], test, spec, params["eval"])
    else:
        score = score_prompt(result.model, tok, None, test, spec, params["eval"])
    return CellOutput(
        {
            "target": spec.name,
            "metric": spec.metric,
            "init": params["init"],
            "shots": int(params["shots"]),
            "seed": params["seed"],
            "test": score,
            "train": train_info(result) if result is not None else {},
            "seconds": time.perf_counter() - start,
        }
    )


FEWSHOT = TrainingCell(_prepare_fewshot, _finish_fewshot)
"""The ``fewshot`` cell: train a target on k examples per class from one init (k = 0: score the init as it is;
packable)."""


KINDS = (
    MIXTURE.kind("mixture", version=1),
    CellKind("select", _select, version=1),
    FEWSHOT.kind("fewshot", version=1),
)
