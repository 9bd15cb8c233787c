"""Experiment ``cross_origin`` (the paper's Table 1): each task's vector applied to a *different* origin.

Per task and ordered pair of origins ``(a, b)``: the ``source`` tuning from ``a`` and a ``cross`` cell applying its
vector to ``b`` with ``vector.apply_to(other, strict=False)``, scored beside origin ``b`` alone (both prompts in one
:func:`tpv.evaluate_many` call: :func:`tpv.bench.experiments._common.score_together`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, make_cell
from tpv.bench.experiments._common import (
    CELL_VECTOR_FILE,
    build_origin,
    cached_tokenizer,
    cell_data,
    check_task,
    common_params,
    eval_params,
    load_cell_model,
    metrics_of,
    pct,
    score_together,
    source_cell,
    task_layout,
    vector_from,
)
from tpv.bench.experiments.sources import source_table
from tpv.bench.report import Report, Table
from tpv.bench.stats import compare, summarize

if TYPE_CHECKING:
    from tpv.bench.config import Config

__all__ = ["EXPERIMENT", "KINDS"]


def _cross(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Apply a task's vector to another origin (strict=False) and score it, and the origin alone, on the test set.

    Both prompts are scored in one :func:`~tpv.bench.experiments._common.score_together` call.
    """
    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    other = build_origin(model, params["prompt"], params["to_origin"])
    vector = vector_from(inputs["vector"].artifacts[CELL_VECTOR_FILE])
    spec, _train, _val, test = cell_data(params["task"], params["data"])
    prompt = vector.apply_to(other, strict=False)
    score, origin_score = score_together(
        model, tok, [prompt, other.tensor], test, spec, params["eval"], params["model"]
    )
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


def _cross_cell(config: Config, task: str, a: int, b: int, source: Cell) -> Cell:
    """The cell applying ``task``'s vector tuned from origin ``a`` (``source``) to origin ``b``."""
    rt = config.runtime
    params = {
        **common_params(config),
        "task": task,
        "from_origin": a,
        "to_origin": b,
        "eval": eval_params(config.train_options()),
    }
    est = rt.model_load_seconds + 2 * config.data.max_test / rt.eval_examples_per_second  # one load, two prompts
    return make_cell("cross", f"{task}/o{a}-o{b}", params, stage="cross", deps={"vector": source.id}, estimate_s=est)


class _CrossOrigin:
    name = "cross_origin"
    description = "Each task's vector applied to a different origin than it was tuned from (paper Table 1)."

    def _tasks(self, config: Config) -> list[str]:
        sources, _t, _p = task_layout(config)
        tasks = config.cross_origin.tasks or sources
        for t in tasks:
            check_task(t)
        return list(tasks)

    def plan(self, config: Config) -> list[Cell]:
        cells: list[Cell] = []
        for task in self._tasks(config):
            for a in config.prompt.origins:
                src = source_cell(config, task, a)
                cells.append(src)
                cells += [_cross_cell(config, task, a, b, src) for b in config.prompt.origins if b != a]
        return cells

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        src_table, src_summary = source_table(config, cells, results)
        per_task: dict[str, dict[str, list[float]]] = {}
        by_source: dict[str, dict[int, tuple[float, list[float]]]] = {}
        for _c, m in metrics_of(results, cells, "cross"):
            d = per_task.setdefault(m["task"], {"other": [], "alone": []})
            d["other"].append(float(m["other"]))
            d["alone"].append(float(m["other_origin_alone"]))
            by_source.setdefault(m["task"], {}).setdefault(int(m["from_origin"]), (float(m["own"]), []))[1].append(
                float(m["other"])
            )
        tasks = list(per_task)
        # One test per task: each source vector's own-origin score against its mean score on the other origins.
        tests = compare(
            [
                ([own for own, _o in by_source[t].values()], [sum(o) / len(o) for _own, o in by_source[t].values()])
                for t in tasks
            ],
            alpha=config.stats.alpha,
        )
        rows = []
        summary: dict[str, Any] = {}
        for task, test in zip(tasks, tests):
            d = per_task[task]
            own = summarize(list(src_summary.get(task, {}).get("per_origin", {}).values()))
            other = summarize(d["other"])
            alone = summarize(d["alone"])
            kept = other.mean / own.mean if own.n and own.mean else math.nan
            gain = own.mean - alone.mean
            gain_kept = (other.mean - alone.mean) / gain if own.n and alone.n and gain > 0 else math.nan
            per_vector = summarize([sum(o) / len(o) / own_a for own_a, o in by_source[task].values() if own_a])
            ci = per_vector.ci95()
            summary[task] = {"own": own.to_dict(), "other": other.to_dict(), "origin_alone": alone.to_dict(),
                             "retained": kept, "gain_kept": gain_kept,
                             "retained_per_vector": {**per_vector.to_dict(), "ci95": ci},
                             "own_vs_other": test.to_dict()}  # fmt: skip
            ci_text = f"{pct(per_vector.mean - ci)}–{pct(per_vector.mean + ci)}" if math.isfinite(ci) else "–"
            padj = "–" if math.isnan(test.p_adjusted) else f"{test.p_adjusted:.3g}"
            rows.append([task, own.format(), other.format(), alone.format(), pct(kept), ci_text, pct(gain_kept), padj])
        if per_task:
            own_avg = summarize([summary[t]["own"]["mean"] for t in per_task])
            other_avg = summarize([summary[t]["other"]["mean"] for t in per_task])
            kept = other_avg.mean / own_avg.mean if own_avg.mean else math.nan
            summary["average"] = {"own": own_avg.mean, "other": other_avg.mean, "retained": kept}
            rows.append(["**average**", pct(own_avg.mean), pct(other_avg.mean), "", pct(kept), "", "", ""])
        table = Table(
            "Cross-origin: a vector applied to its own origin vs another origin",
            ["task", "own origin", "other origin", "other origin, no vector", "retained (%)",
             "retained, 95 % CI (%)", "gain kept (%)", "own vs other: p (Bonferroni)"],
            rows,
            "Scores in %, mean ± std over (origin, other origin) pairs. 'retained' = other / own; its 95 % CI is over "
            "the task's source vectors (each vector's mean score on the other origins over its own-origin score; t "
            "distribution). 'gain kept' = (other - other origin alone) / (own - other origin alone): the share of "
            "what a vector adds to its own origin that it still adds to another ('retained' near 100 % can hide a "
            "task near chance). The test: Welch t-test of the vectors' own-origin scores against their mean scores on "
            "the other origins, Bonferroni over the tasks. Paper (Table 1): T5-base GLUE average 84.5 -> 84.0, but "
            "TREC 95.5 -> 26.5; LLaMA-3.1-8B average 89.6 -> 89.7.",
        )  # fmt: skip
        return Report({"cross_origin": summary, "sources": src_summary}, [table, src_table])


EXPERIMENT = _CrossOrigin()
KINDS = (CellKind("cross", _cross, version=1),)
