"""Experiment ``tasks``: every offline task's tuned prompt beside the zero-shot prompt it was tuned from.

``tpv bench run tasks`` plans, per task of ``zeroshot.tasks`` (default: every offline task of :mod:`tpv.tasks`):

========================  =======================================================================================
arm                       cells
========================  =======================================================================================
origins (per origin seed) ``calib_untuned``: the untuned ``first-n-vocab`` origin scored on the test set (zero-shot
                          of a random prompt); ``source``: the prompt tuned from it, scored on the same test set.
                          Both are the cells of ``calibration`` and ``sources`` (same parameters, same ids): run
                          into one results root, they are shared.
instruction               ``task_instruction``: a manual instruction naming the task and its label words becomes a
                          text-init prompt of exactly its token count (the instruction prepended to every input),
                          scored untuned (zero-shot), then tuned with :func:`tpv.train` from there and scored again
                          (``zeroshot.instructions``; its training options are ``train`` overlaid with
                          ``zeroshot.instruction_train``).
========================  =======================================================================================

Both arms score the same test examples (the engine's stratified cap of ``data.max_test``) by rank classification
over the task's label words. The report gives, per task, the zero-shot and tuned scores of each arm, the change,
the binomial standard error of the tuned score and the majority-class share of the test set. ``source`` and
``task_instruction`` are :class:`~tpv.bench.experiments._common.TrainingCell` s: with ``runtime.pack`` the tunings of
one model train together (``tpv.train_many``; each instruction keeps its own prompt length).

Ported from ``benchmarks/bench_tasks.py`` (removed; ``git show 1232ac3:benchmarks/bench_tasks.py``), which produced
the committed ``benchmarks/results/tasks_tuned_vs_zeroshot.{json,md}``: its measurement is the instruction arm
(same instructions, same text init, same 200 steps at lr 0.03 in ``tasks.yaml``). Changed: training examples are
capped at ``data.max_train`` (the script used the whole train split), tasks run in registry order (the script ran
the shortest texts first) and its ``--stop-after`` deadline is gone (the harness resumes unfinished cells).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellOutput, make_cell
from tpv.bench.experiments._common import (
    TrainingCell,
    Tuning,
    binomial_se,
    cell_data,
    check_task,
    common_params,
    data_params,
    load_cell_model,
    model_params,
    pct,
    score_prompt,
    source_cell,
    train_cost,
    train_info,
    train_steps,
    validation_evals,
)
from tpv.bench.report import Report, Table
from tpv.bench.stats import summarize

if TYPE_CHECKING:
    from tpv.bench.config import Config

__all__ = ["EXPERIMENT", "INSTRUCTIONS", "KINDS", "instruction_for"]

INSTRUCTIONS: dict[str, str] = {
    "rotten_tomatoes": "Classify the sentiment of the movie review as negative or positive.",
    "imdb_reviews": "Classify the sentiment of the movie review as negative or positive.",
    "vader_words": "Is the sentiment of the word negative or positive?",
    "afinn_words": "Rate the sentiment of the word as terrible, bad, good or great.",
    "wordnet_noun_supersense": (
        "Give the category of the noun from its definition: animal, plant, food, artifact, person, action, body "
        "or substance."
    ),
    "wordnet_verb_supersense": (
        "Give the category of the verb from its definition: moving, speaking, thinking, feeling, making, owning, "
        "touching or fighting."
    ),
    "wordnet_topic_domain": (
        "Give the topic of the word from its definition: law, sports, military, biology, math, music, computers or "
        "medicine."
    ),
    "fortune_topics": "Give the topic of the quote: computers, politics, science, art, books, law, school or food.",
    "wordnet_hypernymy": "Answer the question about word meanings with yes or no.",
    "wordnet_gloss_match": "Does the definition match the word? Answer yes or no.",
    "wordnet_wic": "Does the word have the same meaning in both sentences? Answer yes or no.",
    "wordnet_antonymy": "Are the two words opposites? Answer yes or no.",
}
"""The manual instruction of each offline task (those of ``bench_tasks.py``): names the task and every label word."""


def instruction_for(task: str, label_words: Sequence[str]) -> str:
    """The task's manual instruction (a generic one naming the label words for a task without its own)."""
    if task in INSTRUCTIONS:
        return INSTRUCTIONS[task]
    words = [w.strip() for w in label_words]
    return f"Answer with one of: {', '.join(words)}." if words else "Answer the question."


# =============================================================================================================
# Planning
# =============================================================================================================


def _tasks(config: Config) -> list[str]:
    from tpv.tasks import list_tasks

    tasks = config.zeroshot.tasks
    if tasks is None:
        return [s.name for s in list_tasks() if s.source == "offline"]
    for task in tasks:
        check_task(task)
    return list(tasks)


def _untuned_cell(config: Config, task: str, seed: int) -> Cell:
    """The untuned origin scored on validation and test: ``calibration``'s cell (same parameters, same id)."""
    rt = config.runtime
    params = {**common_params(config), "task": task, "origin": seed, "train": config.train_options()}
    est = rt.model_load_seconds + (config.data.max_validation + config.data.max_test) / rt.eval_examples_per_second
    return make_cell("calib_untuned", f"{task}/o{seed}", params, stage="untuned", estimate_s=est)


def _instruction_cell(config: Config, task: str) -> Cell:
    from tpv.tasks import get_task

    spec = get_task(task)
    opts = {**config.train_options(), **config.zeroshot.instruction_train}
    params = {"model": model_params(config), "data": data_params(config), "task": task,
              "instruction": instruction_for(task, spec.label_words), "train": opts}  # fmt: skip
    est = train_cost(config, train_steps(opts), validation_evals(opts, config.data.max_validation))
    est += 2 * config.data.max_test / config.runtime.eval_examples_per_second
    return make_cell("task_instruction", task, params, stage="instruction", estimate_s=est)


# =============================================================================================================
# Cells
# =============================================================================================================


def _prepare_instruction(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """The instruction as a text-init origin of its token count, scored untuned (zero-shot) on a model of its own."""
    from tpv.adapters import make_origin

    spec, train_set, validation, test = cell_data(params["task"], params["data"])
    text = params["instruction"] + "\n"
    n_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
    origin = make_origin(model, "text", num_virtual_tokens=n_tokens, text=text, tokenizer=tok)
    opts = params["train"]
    # a fresh model: scoring wraps the model it is given, and ``model`` is the one tuned (alone or in a pack)
    zero = score_prompt(load_cell_model(params["model"]), tok, origin.tensor, test, spec, opts)
    return Tuning(train_set, validation, spec.label_words, origin, origin, opts, spec.name, spec.metric,
                  state={"spec": spec, "test": test, "n_tokens": n_tokens, "zero_shot": zero})  # fmt: skip


def _finish_instruction(params: Mapping[str, Any], tuning: Tuning, result: Any, tok: Any, start: float) -> CellOutput:
    """Score the tuned instruction prompt on the test set, beside its zero-shot score."""
    spec, test, zero = tuning.state["spec"], tuning.state["test"], tuning.state["zero_shot"]
    tuned = score_prompt(result.model, tok, None, test, spec, params["train"])
    metrics = {
        "task": spec.name,
        "metric": spec.metric,
        "instruction": params["instruction"],
        "virtual_tokens": tuning.state["n_tokens"],
        "zero_shot": zero,
        "tuned": tuned,
        "delta": tuned - zero,
        "n_test": len(test),
        "n_validation": len(tuning.validation),
        "n_train": len(tuning.train),
        "curve": [[int(e["step"]), float(e["score"])] for e in result.evals],
        "train": train_info(result),
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics)


INSTRUCTION = TrainingCell(_prepare_instruction, _finish_instruction)
"""The ``task_instruction`` cell: score the instruction as an untuned text-init prompt, tune it with ``tpv.train``
from there, score it again (packable: the instructions of one model train together, each its own length)."""


# =============================================================================================================
# The report
# =============================================================================================================


def _by_task(results: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell], kind: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in cells:
        if c.kind == kind and c.id in results:
            m = dict(results[c.id]["metrics"])
            out.setdefault(m["task"], []).append(m)
    return out


def _majority(config: Config, task: str) -> float | None:
    """The share of the test set's most frequent label (None for regression or when the task cannot load)."""
    try:
        spec, _tr, _va, test = cell_data(task, data_params(config))
    except Exception:  # the report must not fail on a task that no longer loads
        return None
    if not test or not spec.label_words:
        return None
    counts: dict[int, int] = {}
    for ex in test:
        counts[int(ex.label)] = counts.get(int(ex.label), 0) + 1
    return max(counts.values()) / len(test)


def _delta(tuned: float | None, zero: float | None) -> str:
    return "–" if tuned is None or zero is None else f"{100 * (tuned - zero):+.1f}"


def _se(p: float | None, n: int) -> str:
    se = binomial_se(p, n)
    return "–" if se != se else f"{100 * se:.1f}"  # NaN check


_INSTRUCTION_KEYS = ("instruction", "virtual_tokens", "zero_shot", "tuned", "delta")


def _task_row(config: Config, task: str, untuned: list[dict], tuned: list[dict],
              instr: dict | None) -> tuple[list[Any], dict[str, Any]]:  # fmt: skip
    zero = summarize([m["test"] for m in untuned]) if untuned else None
    tune = summarize([m["test"] for m in tuned]) if tuned else None
    zero_mean = zero.mean if zero else None
    tune_mean = tune.mean if tune else None
    n_test = next((m["n_test"] for m in (*tuned, *untuned, *([instr] if instr else []))), 0)
    metric = next((m["metric"] for m in (*tuned, *untuned, *([instr] if instr else []))), "")
    majority = _majority(config, task)
    i_zero, i_tuned = (instr["zero_shot"], instr["tuned"]) if instr else (None, None)
    beats = [t > z for t, z in ((tune_mean, zero_mean), (i_tuned, i_zero)) if t is not None and z is not None]
    row = [task, metric, n_test, pct(majority), zero.format() if zero else "–", tune.format() if tune else "–",
           _delta(tune_mean, zero_mean), _se(tune_mean, n_test), pct(i_zero), pct(i_tuned), _delta(i_tuned, i_zero),
           _se(i_tuned, n_test), ("yes" if all(beats) else "**no**") if beats else "–"]  # fmt: skip
    summary = {
        "metric": metric,
        "n_test": n_test,
        "majority_share": majority,
        "origins": {
            "zero_shot": zero.to_dict() if zero else None,
            "tuned": tune.to_dict() if tune else None,
            "per_origin_tuned": {str(m["origin"]): m["test"] for m in tuned},
        },
        "instruction": None if instr is None else {k: instr[k] for k in _INSTRUCTION_KEYS},
    }
    return row, summary


class _Tasks:
    name = "tasks"
    description = "Every offline task's tuned prompt beside its zero-shot prompt (untuned origin, manual instruction)."

    def plan(self, config: Config) -> list[Cell]:
        cells: list[Cell] = []
        for task in _tasks(config):
            for seed in config.prompt.origins:
                cells += [_untuned_cell(config, task, seed), source_cell(config, task, seed)]
            if config.zeroshot.instructions:
                cells.append(_instruction_cell(config, task))
        return cells

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        untuned = _by_task(results, cells, "calib_untuned")
        tuned = _by_task(results, cells, "source")
        instr = {t: ms[0] for t, ms in _by_task(results, cells, "task_instruction").items()}
        rows, summary = [], {}
        for task in _tasks(config):
            if task in untuned or task in tuned or task in instr:
                row, summary[task] = _task_row(config, task, untuned.get(task, []), tuned.get(task, []),
                                               instr.get(task))  # fmt: skip
                rows.append(row)
        table = Table(
            "Tuned prompt vs zero-shot, per task",
            ["task", "metric", "test n", "majority", "untuned origin", "tuned from origin", "Δ", "s.e.",
             "instruction (zero-shot)", "tuned from instruction", "Δ", "s.e.", "beats zero-shot"],
            rows,
            "Scores in % (the task's metric) on the same test examples. Origins: mean ± std over origin seeds of "
            "the untuned first-n-vocab origin and of the prompt tuned from it. Instruction: the task's manual "
            "instruction as an untuned text-init prompt (zero-shot), then tuned from there. s.e. = binomial "
            "standard error sqrt(p (1 - p) / n) of the tuned score; 'majority' = share of the most frequent label.",
        )  # fmt: skip
        details = [[t, m["instruction"], m["virtual_tokens"], m["train"]["steps"], m["train"]["best_step"],
                    pct(m["train"]["best_validation"])] for t, m in instr.items()]  # fmt: skip
        instructions = Table(
            "The instructions (zero-shot prompts) and their tuning",
            ["task", "instruction", "tokens", "steps", "best step", "best validation"],
            details,
        )
        return Report({"tasks": summary}, [table, instructions] if details else [table])


EXPERIMENT = _Tasks()
"""The tasks experiment (``tpv bench run tasks``)."""
KINDS = (INSTRUCTION.kind("task_instruction", version=1),)
