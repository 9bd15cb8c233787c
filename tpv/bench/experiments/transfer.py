"""Experiment ``transfer``: zero-shot cross-model prompt transfer (SmolLM2-135M <-> Gemma-3-270M by default).

``tpv bench run transfer`` plans, per task of ``transfer.tasks`` and direction ``(source, target)`` of
``transfer.directions``:

=================================  ====================================================================================
cells                              what they measure (the target's test score)
=================================  ====================================================================================
``xfer_tune`` (stage ``tune``)     a prompt tuned on one model (:func:`tpv.train`, best validation kept), scored on that
                                   model's test set; seed ``transfer.seeds[0]`` starts from the instruction's
                                   embeddings (``transfer.init: text``), the other seeds from ``first-n-vocab``.
                                   The source prompts, and the reference ``tuned`` (tuned on the target itself).
``xfer_ref`` ``random``            a random target prompt: the ``first-n-vocab`` origin of seed ``transfer.seeds[0]``
``xfer_ref`` ``manual``            the instruction's token embeddings on the target (a manual prompt, untuned)
``xfer_move`` ``relative``         PTfer's relative-space search (:func:`tpv.transfer.run_transfer`), its candidate
                                   chosen on the target's validation examples (:func:`tpv.transfer.validation_scorer`)
``relative_labels``                the same with the label words weighted ``transfer.label_weight`` among the anchors
``relative_multi``                 the same with the prompts of the other seeds as extra sources (multi-source)
``relative_no_target_data``        the same search without target data (its last candidate)
``linear`` / ``procrustes``        least-squares / orthogonal maps fitted on the shared anchors
``fuse``                           a FUSE map (:func:`tpv.fuse.fit`, WordNet lemmas by default) applied row by row
=================================  ====================================================================================

The report gives each method's test score and the share of the ``random`` -> ``tuned`` gap it recovers, one row
per task and direction, and the tunings' validation and test scores. The ``xfer_tune`` cells are
:class:`~tpv.bench.experiments._common.TrainingCell` s: with ``runtime.pack`` the tunings of one model train
together (``tpv.train_many``).

Ported from ``benchmarks/bench_transfer.py`` (removed; ``git show 1232ac3:benchmarks/bench_transfer.py``), which
produced the committed ``benchmarks/results/transfer*.json``. Every method it measured is here (its columns
``a_random``, ``b_manual``, ``c_relative*``, ``d_linear``, ``d_procrustes``, ``f_fuse``, ``e_tuned``). What
changed, because its private training loop and scorers are gone:

* prompts are tuned by :func:`tpv.train` (PEFT prompt tuning) instead of the script's PEFT-free loop: the script's
  per-model "recipes" (lr, steps, eval_every, loss ``lm``/``label``) are the config's ``train`` section overlaid
  with ``transfer.recipes[model]`` (loss ``full-vocab``/``label-words``); ``transfer.yaml`` sets constant lr, no
  weight decay and no gradient clipping, as the script's AdamW loop had, but batches, padding and data order are
  the engine's (the train seed is the tuning seed);
* every test score comes from :func:`tpv.evaluate` on a PEFT model (the script used the batched PEFT-free
  scorer; both are rank classification over the label words);
* the data are the engine's stratified caps of ``data.max_train/max_validation/max_test`` (the script took the
  first ``train_pool``/``val``/``test`` examples of each split), and texts longer than ``train.max_length`` tokens
  are cut as the engine cuts them (512 in ``transfer.yaml``; the script kept whole reviews); precision is
  ``train.precision`` (the script's ``--bf16``), threads ``runtime.threads`` (its ``--threads``);
* the shared anchors are found inside each ``xfer_move`` cell by :func:`tpv.transfer.run_transfer` (the script
  found them once per direction; the same words) and recorded in the cell's ``record``;
* the cells are cached and resumed by the harness (the script's ``--work`` cache, ``--resume``/``--merge`` and
  ``--only``: choose columns with ``transfer.methods``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, make_cell
from tpv.bench.experiments._common import (
    TrainingCell,
    Tuning,
    cached_tokenizer,
    cell_data,
    check_task,
    data_params,
    eval_params,
    load_cell_model,
    pct,
    score_prompt,
    train_cost,
    train_info,
    train_steps,
    validation_evals,
)
from tpv.bench.report import Report, Table

if TYPE_CHECKING:
    import torch

    from tpv.bench.config import Config
    from tpv.origin import Origin

__all__ = ["COLUMNS", "EXPERIMENT", "KINDS", "gap_recovered"]

PROMPT_FILE = "prompt.safetensors"
"""The artifact of a tuning cell: the tuned prompt ``(rows, dim)``."""

COLUMNS: dict[str, str] = {
    "random": "(a) random",
    "manual": "(b) manual",
    "relative": "(c) relative",
    "relative_labels": "(c) relative, label anchors",
    "relative_multi": "(c) relative, 2 sources",
    "relative_no_target_data": "(c) relative, no target data",
    "linear": "(d) linear",
    "procrustes": "(d) Procrustes",
    "fuse": "(f) FUSE map",
    "tuned": "(e) tuned on target",
}
"""The report's columns (method -> heading), in the order of ``benchmarks/results/transfer.md``."""

_REFERENCES = ("random", "manual")
_PROVENANCE_KEYS = ("search", "linear_map", "anchors", "uses_target_dev_data", "sources")


def gap_recovered(x: float, random: float, tuned: float) -> float | None:
    """``(x - random) / (tuned - random)``: the share of the random -> tuned gap a transfer recovers (None: no gap)."""
    return None if tuned - random <= 1e-9 else (x - random) / (tuned - random)


# =============================================================================================================
# Planning
# =============================================================================================================


def _model(config: Config, name: str) -> dict[str, Any]:
    return {"name": name, "task_type": "causal-lm", "dtype": config.model.dtype, "device": config.model.device}


def _short(name: str) -> str:
    return Path(name).name or name


def _options(config: Config, model: str) -> dict[str, Any]:
    """The training options of ``model``'s tunings: ``train`` overlaid with ``transfer.recipes[model]``."""
    return {**config.train_options(), **config.transfer.recipes.get(model, {})}


def _tune_cell(config: Config, task: str, model: str, seed: int) -> Cell:
    tr = config.transfer
    text = tr.init == "text" and seed == tr.seeds[0]
    prompt = {
        "num_virtual_tokens": config.prompt.num_virtual_tokens,
        "init": "text" if text else "first-n-vocab",
        "init_params": {"text": tr.instruction} if text else dict(config.prompt.init_params),
    }
    opts = {**_options(config, model), "seed": seed}
    params = {"model": _model(config, model), "prompt": prompt, "data": data_params(config), "task": task,
              "seed": seed, "train": opts}  # fmt: skip
    evals = validation_evals(opts, config.data.max_validation) + config.data.max_test
    est = train_cost(config, train_steps(opts), evals)
    return make_cell("xfer_tune", f"{task}/{_short(model)}/s{seed}", params, stage="tune", estimate_s=est)


def _ref_cell(config: Config, task: str, target: str, method: str) -> Cell:
    tr, rt = config.transfer, config.runtime
    params: dict[str, Any] = {"task": task, "target": _model(config, target), "method": method,
                              "data": data_params(config), "eval": eval_params(_options(config, target))}  # fmt: skip
    if method == "random":
        params["prompt"] = {"num_virtual_tokens": config.prompt.num_virtual_tokens, "seed": tr.seeds[0],
                            "init_params": dict(config.prompt.init_params)}  # fmt: skip
    else:
        params["instruction"] = tr.instruction
    est = rt.model_load_seconds + config.data.max_test / rt.eval_examples_per_second
    return make_cell("xfer_ref", f"{task}/{_short(target)}/{method}", params, stage="references", estimate_s=est)


def _move_cell(config: Config, task: str, source: str, target: str, method: str,
               tunings: Mapping[tuple[str, int], Cell]) -> Cell:  # fmt: skip
    tr, rt = config.transfer, config.runtime
    params: dict[str, Any] = {"task": task, "source": _model(config, source), "target": _model(config, target),
                              "method": method, "data": data_params(config),
                              "eval": eval_params(_options(config, target))}  # fmt: skip
    deps = {"source": tunings[(source, tr.seeds[0])].id}
    est = 2 * rt.model_load_seconds + config.data.max_test / rt.eval_examples_per_second
    if method.startswith("relative"):
        params["search"] = tr.search.model_dump(mode="json")
        est += tr.search.steps * 0.02
        if method != "relative_no_target_data":
            evals = (tr.search.steps // tr.search.eval_every + 1) * config.data.max_validation
            est += evals / rt.eval_examples_per_second
    if method == "relative_labels":
        params["label_weight"] = tr.label_weight
    if method == "relative_multi":
        deps.update({f"source_{i}": tunings[(source, s)].id for i, s in enumerate(tr.seeds[1:], 1)})
    if method == "fuse":
        params["fuse"] = dict(tr.fuse)
        est += 60.0
    name = f"{task}/{_short(source)}-{_short(target)}/{method}"
    return make_cell("xfer_move", name, params, stage="transfer", deps=deps, estimate_s=est)


def _plan_task(config: Config, task: str) -> list[Cell]:
    """The cells of one task: tunings first, then references and moves (deduplicated by id, in plan order)."""
    tr = config.transfer
    methods = set(tr.methods)
    wanted: list[tuple[str, int]] = []
    for source, target in tr.directions:
        wanted.append((source, tr.seeds[0]))
        if "relative_multi" in methods:
            wanted += [(source, s) for s in tr.seeds[1:]]
        if "tuned" in methods:
            wanted.append((target, tr.seeds[0]))
    tunings = {key: _tune_cell(config, task, *key) for key in dict.fromkeys(wanted)}
    cells = list(tunings.values())
    for source, target in tr.directions:
        cells += [_ref_cell(config, task, target, m) for m in tr.methods if m in _REFERENCES]
        moves = [m for m in tr.methods if m not in _REFERENCES and m != "tuned"]
        cells += [_move_cell(config, task, source, target, m, tunings) for m in moves]
    return list({c.id: c for c in cells}.values())


# =============================================================================================================
# Cells
# =============================================================================================================


def _prompt_bytes(prompt: torch.Tensor) -> bytes:
    from safetensors.torch import save

    return save({"prompt": prompt.detach().float().contiguous().cpu()})


def _prompt_from(data: bytes) -> torch.Tensor:
    from safetensors.torch import load

    return load(data)["prompt"]


def _origin(model: Any, tok: Any, pp: Mapping[str, Any], seed: int) -> Origin:
    from tpv.adapters import make_origin

    n = int(pp["num_virtual_tokens"])
    if pp["init"] == "text":
        return make_origin(model, "text", num_virtual_tokens=n, text=pp["init_params"]["text"], tokenizer=tok)
    return make_origin(model, "first-n-vocab", num_virtual_tokens=n, seed=int(seed), **dict(pp["init_params"]))


def _plain(value: Any) -> Any:
    """Plain JSON without NaN (what a cell's metrics must be): non-finite floats become ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return json.loads(json.dumps(value, default=str))


def _prepare_tune(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """A tuning on one model: the task's data, from the cell's origin (the instruction's text or first-n-vocab)."""
    origin = _origin(model, tok, params["prompt"], params["seed"])
    spec, train_set, validation, test = cell_data(params["task"], params["data"])
    return Tuning(train_set, validation, spec.label_words, origin, origin, params["train"], spec.name, spec.metric,
                  state={"spec": spec, "test": test, "origin": origin})  # fmt: skip


def _finish_tune(params: Mapping[str, Any], tuning: Tuning, result: Any, tok: Any, start: float) -> CellOutput:
    """Score the tuned prompt on the model's test set; the prompt is the cell's artifact."""
    spec, test, origin = tuning.state["spec"], tuning.state["test"], tuning.state["origin"]
    score = score_prompt(result.model, tok, None, test, spec, params["train"])
    metrics = {
        "task": spec.name,
        "metric": spec.metric,
        "model": params["model"]["name"],
        "seed": params["seed"],
        "init": params["prompt"]["init"],
        "test": score,
        "n_test": len(test),
        "n_validation": len(tuning.validation),
        "curve": [[int(e["step"]), float(e["score"])] for e in result.evals],
        "train": train_info(result),
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(_plain(metrics), {PROMPT_FILE: _prompt_bytes(result.vector.apply_to(origin))})


TUNE = TrainingCell(_prepare_tune, _finish_tune)
"""The ``xfer_tune`` cell: tune one prompt on one model (``tpv.train``, best validation kept), score it on that
model's test set (packable: the tunings of one model train together)."""


def _reference(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Score a reference target prompt: random (a first-n-vocab origin) or manual (the instruction's embeddings)."""
    import torch

    from tpv.adapters import make_origin
    from tpv.spaces import EmbeddingSpace

    start = time.perf_counter()
    model = load_cell_model(params["target"])
    tok = cached_tokenizer(params["target"]["name"])
    spec, _train, _val, test = cell_data(params["task"], params["data"])
    if params["method"] == "random":
        pp = params["prompt"]
        prompt = make_origin(model, "first-n-vocab", num_virtual_tokens=int(pp["num_virtual_tokens"]),
                             seed=int(pp["seed"]), **dict(pp["init_params"])).tensor  # fmt: skip
    else:
        ids = tok(params["instruction"], add_special_tokens=False)["input_ids"]
        prompt = EmbeddingSpace.from_model(model, tok).embeddings[torch.tensor(ids)]
    score = score_prompt(model, tok, prompt, test, spec, params["eval"])
    metrics = {"task": spec.name, "method": params["method"], "target": params["target"]["name"], "test": score,
               "n_test": len(test), "rows": int(prompt.shape[0]), "seconds": time.perf_counter() - start}  # fmt: skip
    return CellOutput(metrics)


def _space(mp: Mapping[str, Any]) -> Any:
    """The embedding space of a model (its weights are dropped)."""
    from tpv.spaces import EmbeddingSpace

    model = load_cell_model(mp)
    return EmbeddingSpace.from_model(model, cached_tokenizer(mp["name"]), name=mp["name"])


def _moved(params: Mapping[str, Any], inputs: Mapping[str, CellInput], spaces: tuple[Any, Any], target: tuple[Any, Any],
           spec: Any, validation: Sequence[Any]) -> tuple[torch.Tensor, dict[str, Any]]:  # fmt: skip
    """The source prompt moved to the target by the cell's method, and the record of how."""
    from tpv.transfer import SearchConfig, Source, run_transfer, validation_scorer

    src, tgt = spaces
    prompt = _prompt_from(inputs["source"].artifacts[PROMPT_FILE])
    method = params["method"]
    if method == "fuse":
        from tpv import fuse

        fmap = fuse.fit(src, tgt, **dict(params["fuse"]))
        return fuse.apply(fmap, prompt), {"map": fmap.describe(), "uses_target_dev_data": False}
    kw: dict[str, Any] = {"method": method}
    if method.startswith("relative"):
        kw = {"method": "relative", "config": SearchConfig(**params["search"])}
    if method in ("relative", "relative_labels", "relative_multi"):
        opts = params["eval"]
        kw["score_fn"] = validation_scorer(*target, [e.text for e in validation], [int(e.label) for e in validation],
                                           spec.label_words, batch_size=int(opts["eval_batch_size"]),
                                           max_length=opts["max_length"])  # fmt: skip
    if method == "relative_labels":
        kw["anchor_weights"] = {w.strip(): float(params["label_weight"]) for w in spec.label_words}
    if method == "relative_multi":
        extra = sorted((r for r in inputs if r != "source"), key=lambda r: int(r.split("_")[1]))
        kw["more_sources"] = [Source(_prompt_from(inputs[r].artifacts[PROMPT_FILE]), src) for r in extra]
    res = run_transfer(prompt, source_model=src, target_model=tgt, **kw)
    return res.prompt, {k: v for k, v in res.provenance.items() if k in _PROVENANCE_KEYS}


def _move(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Move the source's tuned prompt to the target with one method; score it on the target's test set."""
    from tpv.spaces import EmbeddingSpace

    start = time.perf_counter()
    src = _space(params["source"])
    model = load_cell_model(params["target"])
    tok = cached_tokenizer(params["target"]["name"])
    tgt = EmbeddingSpace.from_model(model, tok, name=params["target"]["name"])
    spec, _train, validation, test = cell_data(params["task"], params["data"])
    t0 = time.perf_counter()
    prompt, record = _moved(params, inputs, (src, tgt), (model, tok), spec, validation)
    moved_s = time.perf_counter() - t0
    score = score_prompt(model, tok, prompt, test, spec, params["eval"])
    metrics = {
        "task": spec.name,
        "method": params["method"],
        "source": params["source"]["name"],
        "target": params["target"]["name"],
        "test": score,
        "source_test": inputs["source"].metrics["test"],
        "n_test": len(test),
        "transfer_seconds": round(moved_s, 2),
        "record": record,
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(_plain(metrics))


# =============================================================================================================
# The report
# =============================================================================================================


def _results_of(results: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell], kind: str) -> list[dict[str, Any]]:
    return [dict(results[c.id]["metrics"]) for c in cells if c.kind == kind and c.id in results]


def _scores(config: Config, task: str, source: str, target: str, tuned: Mapping[tuple[str, str, int], float],
            refs: Mapping[tuple[str, str, str], float],
            moves: Mapping[tuple[str, str, str, str], float]) -> dict[str, float]:  # fmt: skip
    """Method -> target test score of one (task, direction); the measured ones only."""
    out: dict[str, float] = {}
    for method in config.transfer.methods:
        if method == "tuned":
            value = tuned.get((task, target, config.transfer.seeds[0]))
        elif method in _REFERENCES:
            value = refs.get((task, target, method))
        else:
            value = moves.get((task, source, target, method))
        if value is not None:
            out[method] = float(value)
    return out


def _direction_rows(
    config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]
) -> tuple[Table, dict[str, Any]]:
    tuned = {(m["task"], m["model"], int(m["seed"])): m["test"] for m in _results_of(results, cells, "xfer_tune")}
    refs = {(m["task"], m["target"], m["method"]): m["test"] for m in _results_of(results, cells, "xfer_ref")}
    moved = _results_of(results, cells, "xfer_move")
    moves = {(m["task"], m["source"], m["target"], m["method"]): m["test"] for m in moved}
    n_test = {m["task"]: m["n_test"] for m in moved}
    methods = [m for m in COLUMNS if m in config.transfer.methods]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    for task in config.transfer.tasks:
        for source, target in config.transfer.directions:
            scores = _scores(config, task, source, target, tuned, refs, moves)
            low, high = scores.get("random"), scores.get("tuned")
            entry = {}
            for m, x in scores.items():
                gap = gap_recovered(x, low, high) if low is not None and high is not None else None
                entry[m] = {"test": x, "gap_recovered": gap}
            summary.setdefault(task, {})[f"{source}->{target}"] = entry
            rows.append([task, f"{_short(source)} -> {_short(target)}", *(_cell(entry.get(m), m) for m in methods)])
    n = sorted(set(n_test.values()))
    table = Table(
        "Zero-shot prompt transfer: target test score by method",
        ["task", "source -> target", *(COLUMNS[m] for m in methods)],
        rows,
        "Scores in % (the task's metric) on the target's test set"
        + (f" ({'/'.join(str(x) for x in n)} examples)" if n else "")
        + "; in parentheses the share of the (a) random -> (e) tuned-on-target gap the transfer recovers. "
        "(c) relative chooses its candidate on target validation examples (PTfer's protocol), except 'no target "
        "data'. The binomial s.e. of one score p is sqrt(p (1 - p) / n).",
    )
    return table, summary


def _cell(entry: Mapping[str, Any] | None, method: str) -> str:
    if entry is None:
        return "–"
    gap = entry["gap_recovered"]
    text = pct(entry["test"])
    return text if gap is None or method in ("random", "tuned") else f"{text} ({100 * gap:.0f} %)"


def _tuning_table(cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]) -> tuple[Table, list]:
    rows, out = [], []
    for m in _results_of(results, cells, "xfer_tune"):
        info = m["train"]
        rows.append([m["task"], _short(m["model"]), m["seed"], m["init"], pct(info.get("best_validation")),
                     info.get("best_step"), pct(m["test"]), info.get("steps")])  # fmt: skip
        out.append({k: m[k] for k in ("task", "model", "seed", "init", "test", "n_test")} | {"train": info})
    table = Table(
        "Tuned prompts (the sources and the tuned-on-target references)",
        ["task", "model", "seed", "init", "best validation", "best step", "test", "steps"],
        rows,
        "Scores in %. Tuned with tpv.train (PEFT prompt tuning), the best validation prompt kept.",
    )
    return table, out


class _Transfer:
    name = "transfer"
    description = "Zero-shot cross-model prompt transfer (relative/PTfer, linear, Procrustes, FUSE) vs references."

    def plan(self, config: Config) -> list[Cell]:
        for task in config.transfer.tasks:
            check_task(task)
        cells: list[Cell] = []
        for task in config.transfer.tasks:
            cells += _plan_task(config, task)
        return list({c.id: c for c in cells}.values())

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        table, summary = _direction_rows(config, cells, results)
        tunings, tuned = _tuning_table(cells, results)
        return Report({"transfer": summary, "tunings": tuned}, [table, tunings])


EXPERIMENT = _Transfer()
"""The transfer experiment (``tpv bench run transfer``)."""
KINDS = (
    TUNE.kind("xfer_tune", version=1),
    CellKind("xfer_ref", _reference, version=1),
    CellKind("xfer_move", _move, version=1),
)
