"""Experiment ``sources``: source prompts tuned from several origins; test metric mean ± std per task.

Its ``source`` cell (tune one task from one origin, score it on the test set) is shared by ``cross_origin``,
``fewshot`` and ``similarity``: run into one results root, they reuse these tunings. It is a
:class:`~tpv.bench.experiments._common.TrainingCell`, so ``runtime.pack`` trains several at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellOutput
from tpv.bench.experiments._common import (
    CELL_VECTOR_FILE,
    TrainingCell,
    Tuning,
    build_origin,
    cell_data,
    metrics_of,
    pct,
    score_prompt,
    source_cell,
    task_layout,
    train_info,
    vector_bytes,
)
from tpv.bench.report import Report, Table
from tpv.bench.stats import summarize

if TYPE_CHECKING:
    from tpv.bench.config import Config

__all__ = ["EXPERIMENT", "KINDS", "source_table"]


def _prepare(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """The source tuning: one task's data, from one origin."""
    origin = build_origin(model, params["prompt"], params["origin"])
    spec, train, validation, test = cell_data(params["task"], params["data"])
    return Tuning(train, validation, spec.label_words, origin, origin, params["train"], spec.name, spec.metric,
                  state={"spec": spec, "test": test, "origin": origin})  # fmt: skip


def _finish(params: Mapping[str, Any], tuning: Tuning, result: Any, tok: Any, start: float) -> CellOutput:
    """Score the tuned prompt on the test set; the vector is the cell's artifact."""
    spec, test, origin = tuning.state["spec"], tuning.state["test"], tuning.state["origin"]
    score = score_prompt(result.model, tok, None, test, spec, params["train"])
    metrics = {
        "task": spec.name,
        "metric": spec.metric,
        "origin": params["origin"],
        "origin_id": origin.id,
        "test": score,
        "n_train": len(tuning.train),
        "n_test": len(test),
        "train": train_info(result),
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics, {CELL_VECTOR_FILE: vector_bytes(result.vector, {"bench": {"task": spec.name}})})


SOURCE = TrainingCell(_prepare, _finish)
"""The ``source`` cell: tune one task from one origin, score the tuned prompt on the test set (packable)."""


def source_table(config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]) -> tuple[Table, dict]:
    """The table of the source tunings' test scores by task and origin, and its JSON summary."""
    rows = []
    summary: dict[str, Any] = {}
    by_task: dict[str, dict[int, float]] = {}
    metric_of: dict[str, str] = {}
    for _c, m in metrics_of(results, cells, "source"):
        by_task.setdefault(m["task"], {})[int(m["origin"])] = float(m["test"])
        metric_of[m["task"]] = m["metric"]
    origins = list(config.prompt.origins)
    for task, scores in by_task.items():
        s = summarize(list(scores.values()))
        summary[task] = {"metric": metric_of[task], "per_origin": scores, **s.to_dict()}
        rows.append([task, metric_of[task], *(pct(scores.get(o)) for o in origins), s.format()])
    if by_task:
        overall = summarize([summary[t]["mean"] for t in by_task])
        summary["average"] = overall.to_dict()
        rows.append(["**average**", "", *("" for _ in origins), pct(overall.mean)])
    table = Table(
        "Source prompts: test score by origin",
        ["task", "metric", *(f"origin {o}" for o in origins), "mean ± std"],
        rows,
        "Scores in %. Each origin is a different random init (first-n-vocab embeddings) the prompt was tuned from.",
    )
    return table, summary


def training_table(cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]) -> tuple[Table, dict]:
    """How each task's source tunings ended: steps run, the step of the kept (best validation) prompt, its score.

    Shows whether the budget and the stopping rule let every task converge: a best step at the last step says the
    task was still improving; a run stopped early with its best validation near chance says it stopped too soon.
    """
    per_task: dict[str, list[dict[str, Any]]] = {}
    for _c, m in metrics_of(results, cells, "source"):
        per_task.setdefault(m["task"], []).append({"origin": int(m["origin"]), **m.get("train", {})})
    rows = []
    summary: dict[str, Any] = {}
    for task, runs in per_task.items():
        runs.sort(key=lambda r: r["origin"])
        steps = [int(r["steps"]) for r in runs if r.get("steps") is not None]
        best = [int(r["best_step"]) for r in runs if r.get("best_step") is not None]
        val = summarize([float(r["best_validation"]) for r in runs if r.get("best_validation") is not None])
        summary[task] = {"steps": steps, "best_step": best, "best_validation": val.to_dict()}
        rows.append([task, ", ".join(map(str, steps)), ", ".join(map(str, best)), val.format()])
    table = Table(
        "Source tuning: where each run ended",
        ["task", "steps run (by origin)", "best validation step (by origin)", "best validation %"],
        rows,
        "The kept prompt is the one with the best validation score (train.eval_examples examples, every "
        "train.eval_every steps); with train.patience a run stops after that many evaluations without improvement.",
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
        table, summary = source_table(config, cells, results)
        training, training_summary = training_table(cells, results)
        return Report({"sources": summary, "training": training_summary}, [table, training])


EXPERIMENT = _Sources()
KINDS = (SOURCE.kind("source", version=1),)
