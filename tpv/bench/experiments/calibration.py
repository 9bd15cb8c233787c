"""The calibration study: does prompt tuning learn, at which settings, and how close does it come to LoRA?

``tpv bench run calibration`` plans, per source task and origin seed:

================  ==========================================================================================
part              cells
================  ==========================================================================================
``untuned``       the untuned origin scored on validation and test (what the prompt adds)
``sweep``         prompt tuning at each learning rate of ``calibration.lrs`` (AdamW, the base settings)
``default``       prompt tuning with ``TrainConfig``'s defaults (``lr="auto"``...), at every origin seed
``lora``          LoRA (PEFT, r=8 on q/k/v/o) with the same data, steps, loss and scoring: what moving weights
                  reaches at the same budget
``variants``      one factor changed at a time: optimizer, origin init, schedule and warmup
``steps``         the defaults at each budget of ``calibration.step_budgets`` (is the default budget enough?)
================  ==========================================================================================

Each prompt cell records the validation curve (every ``train.eval_every`` steps), the test score of the kept
prompt, ``||tuned - origin|| / ||origin||``, the steps to 95 % of the final validation score and the guard's
warnings. The report puts the untuned origin and LoRA beside every row, and plots validation score against
steps (convergence) and against the learning rate. The prompt cells are
:class:`~tpv.bench.experiments._common.TrainingCell` s: with ``runtime.pack`` the sweep, the defaults and the
variants of one model train together (``tpv.train_many``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, make_cell
from tpv.bench.experiments._common import (
    TrainingCell,
    Tuning,
    build_origin,
    cached_tokenizer,
    cell_data,
    check_task,
    common_params,
    load_cell_model,
    pct,
    score_prompt,
    train_cost,
)
from tpv.bench.report import Report, Table, plot_curves
from tpv.bench.stats import Summary, compare, summarize

if TYPE_CHECKING:
    from tpv.bench.config import Config

__all__ = ["CALIBRATION", "EXPERIMENT", "KINDS", "steps_to_fraction"]

# The TrainConfig fields a "default" cell leaves at TrainConfig's defaults (the budget fields come from the config).
_DEFAULTED = ("lr", "optimizer", "weight_decay", "warmup", "schedule", "max_grad_norm", "loss")


def steps_to_fraction(curve: Sequence[tuple[int, float]], fraction: float = 0.95) -> int | None:
    """The first step whose score reaches ``fraction`` of the final score (the curve's last point).

    Args:
        curve: ``(step, score)`` pairs in step order.
        fraction: the share of the final score.

    Returns:
        The step, or ``None`` for an empty curve.
    """
    if not curve:
        return None
    final = curve[-1][1]
    return next(step for step, score in curve if score >= fraction * final)


# =============================================================================================================
# Planning
# =============================================================================================================


def _base(config: Config) -> dict[str, Any]:
    return config.train_options()


def _default_options(config: Config) -> dict[str, Any]:
    from tpv.engine.config import AUTO_LR

    opts = {k: v for k, v in _base(config).items() if k not in _DEFAULTED}
    return {**opts, "_defaults": {"auto_lr": dict(AUTO_LR)}}  # part of the id: a new factor is a new cell


def _estimate(config: Config, options: Mapping[str, Any]) -> float:
    from tpv.engine.config import TrainConfig

    cfg = TrainConfig(**{k: v for k, v in options.items() if not k.startswith("_")})
    evals = cfg.steps // cfg.eval_every if cfg.eval_every else 1
    per_eval = min(config.data.max_validation, cfg.eval_examples or config.data.max_validation)
    return train_cost(config, cfg.steps, evals * per_eval + config.data.max_test)


def _prompt_cell(config: Config, task: str, seed: int, setting: str, options: Mapping[str, Any],
                 prompt: Mapping[str, Any] | None = None) -> Cell:  # fmt: skip
    common = common_params(config)
    if prompt:
        common["prompt"] = {**common["prompt"], **dict(prompt)}
    params = {**common, "task": task, "origin": seed, "setting": setting, "train": dict(options)}
    return make_cell(
        "calib_prompt", f"{task}/{setting}/o{seed}", params, stage="prompt", estimate_s=_estimate(config, options)
    )


def _untuned_cells(config: Config) -> list[Cell]:
    cal, rt, base = config.calibration, config.runtime, _base(config)
    est = rt.model_load_seconds + (config.data.max_validation + config.data.max_test) / rt.eval_examples_per_second
    return [
        make_cell("calib_untuned", f"{task}/o{seed}", {**common_params(config), "task": task, "origin": seed,
                  "train": base}, stage="untuned", estimate_s=est)
        for task, seed in itertools.product(cal.tasks, config.prompt.origins)
    ]  # fmt: skip


def _sweep_cells(config: Config) -> list[Cell]:
    cal, base = config.calibration, _base(config)
    return [
        _prompt_cell(config, task, seed, f"lr={lr:g}", {**base, "lr": lr})
        for lr, task, seed in itertools.product(cal.lrs, cal.sweep_tasks or cal.tasks, cal.sweep_seeds)
    ]


def _lora_cells(config: Config) -> list[Cell]:
    cal, base = config.calibration, _base(config)
    lora = {"r": 8, "alpha": 16, "lr": 0.001, **cal.lora}
    return [
        make_cell("calib_lora", f"{task}/o{seed}", {**common_params(config), "task": task, "origin": seed,
                  "train": base, "lora": lora}, stage="lora", estimate_s=_estimate(config, base))
        for seed, task in itertools.product(config.prompt.origins, cal.tasks)
    ]  # fmt: skip


def _default_cells(config: Config) -> list[Cell]:
    return [
        _prompt_cell(config, task, seed, "default", _default_options(config))
        for seed, task in itertools.product(config.prompt.origins, config.calibration.tasks)
    ]


def _variant_cells(config: Config) -> list[Cell]:
    cal, base = config.calibration, _base(config)
    return [
        _prompt_cell(config, task, seed, name, {**base, **variant.train}, variant.prompt)
        for (name, variant), task, seed in itertools.product(
            cal.variants.items(), cal.variant_tasks or cal.tasks, cal.sweep_seeds
        )
    ]


def _budget_cells(config: Config) -> list[Cell]:
    cal, defaults = config.calibration, _default_options(config)
    return [
        _prompt_cell(config, task, seed, f"steps={steps}", {**defaults, "steps": steps})
        for steps, task, seed in itertools.product(cal.step_budgets, cal.budget_tasks or cal.tasks, cal.sweep_seeds)
    ]


_PARTS = {
    "untuned": _untuned_cells,
    "sweep": _sweep_cells,
    "lora": _lora_cells,
    "default": _default_cells,
    "variants": _variant_cells,
    "steps": _budget_cells,
}
"""Each part's cells, in plan order."""


def _plan(config: Config) -> list[Cell]:
    cal = config.calibration
    for task in cal.tasks:
        check_task(task)
    cells: list[Cell] = []
    for part, cells_of in _PARTS.items():
        if part in cal.parts:
            cells += cells_of(config)
    return cells


# =============================================================================================================
# Cells
# =============================================================================================================


def _make_origin(model: Any, tok: Any, pp: Mapping[str, Any], seed: int) -> Any:
    """The cell's origin (a text init gets the tokenizer it needs)."""
    from tpv.adapters import make_origin

    if pp["init"] != "text":
        return build_origin(model, pp, seed)
    return make_origin(model, "text", num_virtual_tokens=int(pp["num_virtual_tokens"]), seed=int(seed),
                       tokenizer=tok, **dict(pp["init_params"]))  # fmt: skip


def _curve(evals: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    return [[int(e["step"]), float(e["score"]), float(e["accuracy"])] for e in evals]


def _inputs(params: Mapping[str, Any]) -> tuple[Any, Any, Any, list[Any], list[Any], list[Any]]:
    """``(model, tokenizer, spec, train, validation, test)`` of a cell."""
    model = load_cell_model(params["model"])
    tok = cached_tokenizer(params["model"]["name"])
    spec, train_set, validation, test = cell_data(params["task"], params["data"])
    return model, tok, spec, train_set, validation, test


def _tuned_metrics(params: Mapping[str, Any], spec: Any, evals: Sequence[Mapping[str, Any]], best: float | None,
                   test: float, n_test: int, train_seconds: float, start: float) -> dict[str, Any]:  # fmt: skip
    """What every tuning cell records: its validation curve, best validation, steps to 95 %, test score, time."""
    curve = _curve(evals)
    return {
        "task": spec.name,
        "metric": spec.metric,
        "origin": params["origin"],
        "curve": curve,
        "best_validation": best,
        "final_validation": curve[-1][1] if curve else None,
        "steps_to_95": steps_to_fraction([(int(c[0]), c[1]) for c in curve]),
        "test": test,
        "n_test": n_test,
        "train_seconds": round(train_seconds, 2),
        "seconds": time.perf_counter() - start,
    }


def _untuned(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Score the untuned origin on the validation and test sets."""
    start = time.perf_counter()
    model, tok, spec, _train, validation, test = _inputs(params)
    origin = build_origin(model, params["prompt"], params["origin"])
    opts = params["train"]
    metrics = {
        "task": spec.name,
        "metric": spec.metric,
        "origin": params["origin"],
        "validation": score_prompt(model, tok, origin.tensor, validation, spec, opts),
        "test": score_prompt(model, tok, origin.tensor, test, spec, opts),
        "n_validation": len(validation),
        "n_test": len(test),
        "seconds": time.perf_counter() - start,
    }
    return CellOutput(metrics)


def _prepare_prompt(params: Mapping[str, Any], inputs: Mapping[str, CellInput], model: Any, tok: Any) -> Tuning:
    """A prompt cell's tuning: its task's data, from its origin, with its settings."""
    origin = _make_origin(model, tok, params["prompt"], params["origin"])
    spec, train_set, validation, test = cell_data(params["task"], params["data"])
    opts = {k: v for k, v in params["train"].items() if not k.startswith("_")}
    return Tuning(train_set, validation, spec.label_words, origin, None, opts, spec.name, spec.metric,
                  state={"spec": spec, "test": test})  # fmt: skip


def _finish_prompt(params: Mapping[str, Any], tuning: Tuning, run: Any, tok: Any, start: float) -> CellOutput:
    """Record a tuned prompt's curve, test score, norm ratio and warnings."""
    from tpv.engine import TrainConfig

    spec, test, opts = tuning.state["spec"], tuning.state["test"], tuning.options
    cfg = TrainConfig(**opts)
    score = score_prompt(run.model, tok, None, test, spec, opts)
    metrics = _tuned_metrics(params, spec, run.evals, run.best_score, score, len(test), run.seconds, start)
    metrics.update({
        "setting": params["setting"],
        "init": params["prompt"]["init"],
        "optimizer": cfg.optimizer,
        "schedule": cfg.schedule,
        "warmup": cfg.warmup,
        "lr": run.lr,
        "lr_rule": run.lr_choice.get("rule"),
        "embedding_scale": run.lr_choice.get("embedding_scale"),
        "norm_ratio": run.norm_ratio,
        "warnings": run.warnings,
        "loss": [round(h["loss"], 4) for h in run.history],
        "n_train": len(tuning.train),
        "n_validation": len(tuning.validation),
        "steps": run.steps,
    })  # fmt: skip
    return CellOutput(metrics)


PROMPT = TrainingCell(_prepare_prompt, _finish_prompt)
"""The ``calib_prompt`` cell: tune one prompt with the cell's settings and record it (packable)."""


def _lora(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Fine-tune LoRA at the prompt's budget; record its curve and test score."""
    from tpv.engine import TrainConfig
    from tpv.engine.lora import train_lora

    start = time.perf_counter()
    model, tok, spec, train_set, validation, test = _inputs(params)
    opts = dict(params["train"])
    lora = params["lora"]
    cfg = TrainConfig(**{**opts, "lr": float(lora["lr"]), "seed": int(params["origin"])})
    run = train_lora(model, tok, train_set, label_words=spec.label_words, validation=validation, metric=spec.metric,
                     config=cfg, r=int(lora["r"]), alpha=int(lora["alpha"]))  # fmt: skip
    score = score_prompt(run.model, tok, None, test, spec, opts)
    metrics = _tuned_metrics(params, spec, run.evals, run.best_score, score, len(test), run.seconds, start)
    metrics.update({"lr": run.lr, "r": int(lora["r"]), "trainable_parameters": run.trainable_parameters})
    return CellOutput(metrics)


# =============================================================================================================
# The report
# =============================================================================================================


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan


def _by(results: Mapping[str, Mapping[str, Any]], cells: Sequence[Cell], kind: str) -> list[dict[str, Any]]:
    return [dict(results[c.id]["metrics"]) for c in cells if c.kind == kind and c.id in results]


class _Calibration:
    name = "calibration"
    description = "Prompt-tuning calibration: lr sweep, defaults over seeds, variants; untuned and LoRA references."

    def plan(self, config: Config) -> list[Cell]:
        return _plan(config)

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        untuned = _by(results, cells, "calib_untuned")
        prompts = _by(results, cells, "calib_prompt")
        loras = _by(results, cells, "calib_lora")
        tasks = list(config.calibration.tasks)
        ref_untuned = {t: summarize([m["test"] for m in untuned if m["task"] == t]) for t in tasks}
        ref_lora = {t: summarize([m["test"] for m in loras if m["task"] == t]) for t in tasks}

        def ref_cols(task: str) -> list[str]:
            return [ref_untuned[task].format() if ref_untuned[task].n else "–",
                    ref_lora[task].format() if ref_lora[task].n else "–"]  # fmt: skip

        # 1. every prompt row (setting x task), mean over its seeds, with the references beside it
        rows: list[list[Any]] = []
        summary: dict[str, Any] = {"rows": [], "untuned": {}, "lora": {}}
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for m in prompts:
            groups.setdefault((m["setting"], m["task"]), []).append(m)
        order = {name: i for i, name in enumerate(self._settings(config))}
        for (setting, task), ms in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
            val = summarize([m["best_validation"] for m in ms if m["best_validation"] is not None])
            test = summarize([m["test"] for m in ms])
            ratio = summarize([m["norm_ratio"] for m in ms])
            s95 = [m["steps_to_95"] for m in ms if m["steps_to_95"] is not None]
            n_test = ms[0]["n_test"]
            lora = ref_lora[task].mean if ref_lora[task].n else math.nan
            of_lora = test.mean / lora if lora and math.isfinite(lora) else math.nan
            gain = test.mean - ref_untuned[task].mean if ref_untuned[task].n else math.nan
            warned = sum(1 for m in ms if m["warnings"])
            rows.append([setting, task, f"{ms[0]['lr']:.3g}", len(ms), val.format(), test.format(),
                         f"{100 * _se(test.mean, n_test):.1f}", f"{ratio.mean:.2f}",
                         f"{sum(s95) / len(s95):.0f}" if s95 else "–", *ref_cols(task),
                         "–" if not math.isfinite(gain) else f"{100 * gain:+.1f}", pct(of_lora),
                         f"{warned}/{len(ms)}"])  # fmt: skip
            summary["rows"].append({"setting": setting, "task": task, "lr": ms[0]["lr"], "seeds": len(ms),
                                    "validation": val.to_dict(), "test": test.to_dict(), "norm_ratio": ratio.mean,
                                    "steps_to_95": s95, "gain_over_untuned": gain, "of_lora": of_lora,
                                    "warned": warned, "n_test": n_test,
                                    "per_seed": [m["test"] for m in ms]})  # fmt: skip
        self._against_defaults(summary["rows"], rows)
        for t in tasks:
            summary["untuned"][t] = ref_untuned[t].to_dict()
            summary["lora"][t] = ref_lora[t].to_dict()
        table = Table(
            "Prompt tuning by setting, beside the untuned origin and LoRA at the same budget",
            [
                "setting",
                "task",
                "lr",
                "seeds",
                "best validation",
                "test",
                "s.e.",
                "‖τ‖/‖origin‖",
                "steps to 95 %",
                "untuned (test)",
                "LoRA r=8 (test)",
                "gain vs untuned",
                "% of LoRA",
                "warned",
                "− defaults",
            ],
            rows,
            "Scores in % (the task's metric), mean ± std over origin seeds; s.e. = binomial standard error of one "
            "test score. 'lr' is the peak learning rate used (resolved for lr='auto'). 'steps to 95 %': first "
            "evaluation reaching 95 % of the final validation score. 'warned': runs the guard warned about "
            "(norm ratio > 5 or validation at chance). The steps=N rows (the defaults at a larger budget) are set "
            "beside LoRA at the base budget (train.steps). '− defaults': the row's mean test score minus the "
            "defaults' on the same task, in points (p: two-sided Welch t-test over the seeds, Bonferroni-adjusted "
            "over every row with at least 2 seeds; * significant at 0.05).",
        )
        lora_seeds = {t: [m["test"] for m in loras if m["task"] == t] for t in tasks}
        headline = self._headline(config, summary, ref_untuned, ref_lora, lora_seeds)
        figures = self._plots(config, prompts, untuned, loras, report_dir)
        return Report({"calibration": summary}, [headline, table], figures)

    @staticmethod
    def _against_defaults(records: list[dict[str, Any]], rows: list[list[Any]]) -> None:
        """Test every setting against the defaults on its task (Welch, Bonferroni over the rows tested).

        The result goes into each record (``vs_defaults``) and, as the last column, into each table row.
        """
        defaults = {r["task"]: r["per_seed"] for r in records if r["setting"] == "default"}
        tested = [i for i, r in enumerate(records) if r["setting"] != "default" and r["task"] in defaults
                  and len(r["per_seed"]) > 1 and len(defaults[r["task"]]) > 1]  # fmt: skip
        results = compare([(records[i]["per_seed"], defaults[records[i]["task"]]) for i in tested])
        found = dict(zip(tested, results))
        for i, (record, row) in enumerate(zip(records, rows)):
            r = found.get(i)
            if r is None or not math.isfinite(r.p):
                row.append("–")
                continue
            record["vs_defaults"] = r.to_dict()
            row.append(f"{100 * (r.mean_a - r.mean_b):+.1f} (p {r.p_adjusted:.2g}{'*' if r.significant else ''})")

    def _headline(self, config: Config, summary: dict[str, Any], untuned: Mapping[str, Summary],
                  lora: Mapping[str, Summary], lora_seeds: Mapping[str, Sequence[float]]) -> Table:  # fmt: skip
        """Per task: the defaults beside the references, the old default lr 0.3 and the sweep's best rate.

        The defaults are tested against LoRA and against lr 0.3 (Welch over seeds, Bonferroni over the table's
        tests); the tests are also recorded in ``summary["tests"]``.
        """

        def fmt(s: Mapping[str, Any]) -> str:
            return f"{Summary(**s).format()} ({s['n']})"

        rows: list[dict[str, Any]] = summary["rows"]
        pairs: list[tuple[str, str, Sequence[float], Sequence[float]]] = []  # (task, against, defaults, other)
        for task in config.calibration.tasks:
            mine = {r["setting"]: r for r in rows if r["task"] == task}
            if "default" in mine:
                pairs.append((task, "LoRA", mine["default"]["per_seed"], lora_seeds[task]))
                if "lr=0.3" in mine:
                    pairs.append((task, "lr=0.3", mine["default"]["per_seed"], mine["lr=0.3"]["per_seed"]))
        results = compare([(a, b) for _t, _w, a, b in pairs])
        tests = {(t, w): r for (t, w, _a, _b), r in zip(pairs, results)}
        summary["tests"] = [{"task": t, "defaults_vs": w, **r.to_dict()} for (t, w), r in tests.items()]

        def diff(task: str, against: str) -> str:
            r = tests.get((task, against))
            if r is None or not math.isfinite(r.p):
                return "–"
            star = "*" if r.significant else ""
            return f"{100 * (r.mean_a - r.mean_b):+.1f} (p {r.p_adjusted:.2g}{star})"

        out = []
        for task in config.calibration.tasks:
            mine = {r["setting"]: r for r in rows if r["task"] == task}
            d = mine.get("default")
            sweep = [r for name, r in mine.items() if name.startswith("lr=")]
            best = max(sweep, key=lambda r: r["test"]["mean"], default=None)
            old = mine.get("lr=0.3")
            out.append([
                task,
                untuned[task].format() if untuned[task].n else "–",
                fmt(d["test"]) if d else "–",
                f"{d['norm_ratio']:.2f}" if d else "–",
                f"{lora[task].format()} ({lora[task].n})" if lora[task].n else "–",
                pct(d["of_lora"]) if d else "–",
                diff(task, "LoRA"),
                f"{100 * d['gain_over_untuned']:+.1f}" if d and math.isfinite(d["gain_over_untuned"]) else "–",
                f"{fmt(old['test'])}, ratio {old['norm_ratio']:.1f}" if old else "–",
                diff(task, "lr=0.3"),
                f"{best['setting']}: {fmt(best['test'])}" if best else "–",
            ])  # fmt: skip
        return Table(
            "Per task: the defaults beside the references",
            ["task", "untuned origin", "defaults (seeds)", "‖τ‖/‖origin‖", "LoRA r=8 (seeds)", "% of LoRA",
             "defaults − LoRA", "gain vs untuned", "old default lr 0.3 (seeds)", "defaults − lr 0.3",
             "best of the sweep (seeds)"],
            out,
            "Test scores in %, mean ± std over origin seeds (their number in brackets). 'defaults': TrainConfig's "
            "defaults (lr auto). '% of LoRA' and 'gain vs untuned' compare the means. 'defaults − LoRA' and "
            f"'defaults − lr 0.3': difference of the means in points (p: two-sided Welch t-test over the seeds, "
            f"Bonferroni-adjusted over the table's {len(pairs)} tests; * significant at 0.05). 'best of the sweep': "
            "the AdamW rate with the highest mean test score.",
        )  # fmt: skip

    def _settings(self, config: Config) -> list[str]:
        cal = config.calibration
        return [f"lr={lr:g}" for lr in cal.lrs] + ["default", *cal.variants, *(f"steps={n}" for n in cal.step_budgets)]

    def _plots(self, config: Config, prompts: list[dict[str, Any]], untuned: list[dict[str, Any]],
               loras: list[dict[str, Any]], report_dir: Path) -> list[str]:  # fmt: skip
        figures: list[str] = []
        sweep = [m for m in prompts if m["setting"].startswith("lr=")]
        if sweep:
            curves: dict[str, list[tuple[float, float, float]]] = {}
            for task in config.calibration.tasks:
                by_lr: dict[float, list[float]] = {}
                for m in sweep:
                    if m["task"] == task:
                        by_lr.setdefault(float(m["lr"]), []).append(float(m["test"]))
                if by_lr:
                    curves[task] = [(lr, summarize(v).mean, summarize(v).std) for lr, v in by_lr.items()]
            path = plot_curves(curves, report_dir / "lr_sweep.png", title="Prompt tuning: test score vs learning rate",
                               xlabel="peak learning rate (AdamW)", ylabel="test score (%)", xscale="log")  # fmt: skip
            figures.append(path.name)
        budgets: dict[str, list[tuple[float, float, float]]] = {}
        for task in config.calibration.tasks:
            by_steps: dict[int, list[float]] = {}
            for m in prompts:
                if m["task"] == task and (m["setting"] == "default" or m["setting"].startswith("steps=")):
                    by_steps.setdefault(int(m["steps"]), []).append(float(m["test"]))
            if len(by_steps) > 1:
                budgets[task] = [(float(n), summarize(v).mean, summarize(v).std) for n, v in sorted(by_steps.items())]
                lora = summarize([float(m["test"]) for m in loras if m["task"] == task])
                if lora.n:
                    budgets[f"LoRA r=8: {task}"] = [(float(config.train.get("steps", 200)), lora.mean, lora.std)]
        if budgets:
            title = "Prompt tuning with the defaults: test score vs step budget"
            path = plot_curves(budgets, report_dir / "steps.png", title=title, xlabel="steps (batch 8)",
                               ylabel="test score (%)", xscale="linear")  # fmt: skip
            figures.append(path.name)
        for task in config.calibration.tasks:
            curves = {}
            start = [m["validation"] for m in untuned if m["task"] == task]
            for m in prompts:
                if m["task"] != task or m["origin"] != config.calibration.sweep_seeds[0]:
                    continue
                pts = [(0.0, start[0], 0.0)] if start else []
                curves[m["setting"]] = pts + [(float(s), v, 0.0) for s, v, _a in m["curve"]]
            for m in loras:
                if m["task"] == task and m["origin"] == config.calibration.sweep_seeds[0]:
                    curves["LoRA r=8"] = [(float(s), v, 0.0) for s, v, _a in m["curve"]]
            if curves:
                path = plot_curves(curves, report_dir / f"curve_{task}.png", title=f"{task}: validation vs steps",
                                   xlabel="steps", ylabel="validation score (%)", xscale="linear")  # fmt: skip
                figures.append(path.name)
        return figures


EXPERIMENT = CALIBRATION = _Calibration()
"""The calibration experiment (``tpv bench run calibration``)."""
KINDS = (
    CellKind("calib_untuned", _untuned, version=1),
    PROMPT.kind("calib_prompt", version=1),
    CellKind("calib_lora", _lora, version=1),
)
