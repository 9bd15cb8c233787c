"""Experiment ``fewshot`` (the paper's Table 2 and few-shot curves): few-shot initialization of target tasks.

Targets are initialized from the random origin, the best single source prompt (SPoT), the multi-task mixture
prompt (SPoT multi), ``origin + tau_A + tau_B`` (TPV) and tpv's best (searched coefficients or a merge method), at
several shot counts and seeds; Welch t-tests with Bonferroni correction against the best SPoT. Per target and seed
the plan holds the sources' ``source`` tunings, a ``mixture`` tuning, a ``select`` cell (inits chosen on target
validation data) and one ``fewshot`` cell per (init, shots) (the cell functions: :mod:`.fewshot_cells`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, make_cell
from tpv.bench.experiments._common import (
    common_params,
    eval_params,
    metrics_of,
    pct,
    source_cell,
    task_layout,
    train_cost,
    train_steps,
    validation_evals,
)
from tpv.bench.report import Report, Table, plot_curves
from tpv.bench.stats import compare, summarize
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.bench.config import Config, FewShotInit, FewShotSection

__all__ = ["EXPERIMENT", "INIT_LABELS", "mixture_cell"]

INIT_LABELS = {
    "random": "random origin",
    "spot_best": "SPoT (best source)",
    "spot_multi": "SPoT (multi-task)",
    "tpv": "TPV (origin + Σ τ)",
    "tpv_best": "tpv best (search/merge)",
}
"""How the report names each few-shot init."""

Scores = Mapping[tuple[str, str, int], Mapping[int, float]]
"""(target, init, shots) -> seed -> test score."""


# -- planning ---------------------------------------------------------------------------------------------------


def mixture_cell(config: Config, tasks: Sequence[str], origin: int) -> Cell:
    """The cell that tunes one prompt on the mixture of ``tasks`` (SPoT multi-task) from origin ``origin``."""
    opts = config.train_options()
    params = {**common_params(config), "tasks": sorted(tasks), "origin": origin, "train": opts}
    est = train_cost(
        config, train_steps(opts), validation_evals(opts, config.data.max_validation) + config.data.max_test
    )
    return make_cell("mixture", f"{'+'.join(sorted(tasks))}/o{origin}", params, stage="mixtures", estimate_s=est)


def _select_cell(config: Config, target: str, seed: int, sources: Sequence[str], deps: Mapping[str, str],
                 mixture: Cell | None, shots: int | None = None) -> Cell:  # fmt: skip
    """The cell choosing ``target``'s inits at ``seed`` from its sources' tunings (``deps``) and the mixture.

    ``shots`` (selection ``"shots"``): the choice sees only the k training shots per class of that seed's few-shot
    cells (none at k = 0: the fixed rules); ``None``: the first ``selection_examples`` validation examples.
    """
    fs, rt = config.fewshot, config.runtime
    n_cand = 2 + len(sources) + len(fs.merge_methods) + len(fs.grid) * (1 + 2 * len(sources))
    n_examples = fs.selection_examples if shots is None else min(fs.selection_examples, shots * _classes(target))
    est = rt.model_load_seconds + n_cand * n_examples / rt.eval_examples_per_second / 4
    select_deps = dict(deps)
    if mixture is not None:
        select_deps["mixture"] = mixture.id
    selection: dict[str, Any] = {
        "search": fs.search,
        "grid": list(fs.grid),
        "merge_methods": list(fs.merge_methods),
        "selection_examples": fs.selection_examples,
    }
    if shots is not None:  # keys absent in the validation selection: its cells keep their ids
        selection.update({"shots": shots, "sources": list(sources)})
        if shots == 0:
            selection["zero_shot_combination"] = fs.zero_shot_combination
        elif fs.dtvg_warmup_steps:  # absent when off: the cells planned before it keep their ids
            warmup = {**config.train_options(fewshot=True), "steps": fs.dtvg_warmup_steps, "eval_every": 0}
            selection["dtvg_warmup"] = warmup
            est += fs.dtvg_warmup_steps * rt.seconds_per_step
    params = {
        **common_params(config),
        "target": target,
        "origin": seed,
        "fewshot": selection,
        "eval": eval_params(config.train_options()),
    }
    name = f"{target}/o{seed}" if shots is None else f"{target}/k{shots}/o{seed}"
    return make_cell("select", name, params, stage="select", deps=select_deps, estimate_s=est)


def _dtvg_cell(m: Mapping[str, Any]) -> str:
    """A selection's DTVG group and its accuracy on the shots ('–' where it was not tried, 'none' if empty)."""
    if "dtvg" not in m:
        return "–"
    group = m["dtvg"]["group"]
    return f"{'+'.join(group)} ({pct(m['validation_accuracy'].get('dtvg'))})" if group else "none"


def _classes(task: str) -> int:
    from tpv.tasks import get_task

    return len(get_task(task).label_words)


def fewshot_steps(fs: FewShotSection, shots: int, classes: int, batch_size: int) -> int:
    """The few-shot budget rule: ``ceil(epochs * shots * classes / batch_size)`` clipped to the step bounds.

    Args:
        fs: the few-shot section (``epochs``, ``min_steps``, ``max_steps``; ``epochs`` must be set).
        shots: training examples per class.
        classes: the target's classes.
        batch_size: examples per step.

    Returns:
        Steps of one few-shot run (the same for every init).
    """
    assert fs.epochs is not None
    return min(fs.max_steps, max(fs.min_steps, math.ceil(fs.epochs * shots * classes / batch_size)))


def _init_deps(init: str, mixture: Cell | None, select: Cell | None) -> dict[str, str]:
    """Where a few-shot cell's init comes from: the mixture (SPoT multi), the selection, or nowhere (random)."""
    if init == "spot_multi" and mixture is not None:
        return {"init": mixture.id}
    if init != "random" and select is not None:
        return {"init": select.id}
    return {}


def _fewshot_cell(config: Config, target: str, init: str, k: int, seed: int, deps: Mapping[str, str]) -> Cell:
    """The cell training ``target`` on ``k`` examples per class from ``init`` (k = 0: scoring the init)."""
    fs = config.fewshot
    opts = config.train_options(fewshot=True)
    if fs.epochs is not None and k:
        opts["steps"] = fewshot_steps(fs, k, _classes(target), int(opts.get("batch_size", 8)))
    params = {
        **common_params(config),
        "target": target,
        "init": init,
        "shots": k,
        "seed": seed,
        "train": opts if k else {},
        "validate": fs.use_validation if k else False,
        "eval": eval_params(opts),
    }
    n_val = config.data.max_validation if fs.use_validation else 0
    evals = config.data.max_test + (validation_evals(opts, n_val) if k else 0)
    est = train_cost(config, train_steps(opts) if k else 0, evals)
    return make_cell("fewshot", f"{target}/{init}/k{k}/s{seed}", params, stage="fewshot", deps=deps, estimate_s=est)


def _target_cells(config: Config, target: str, sources: Sequence[str], seed: int) -> list[Cell]:
    """Every cell of one target at one seed, dependencies first."""
    fs = config.fewshot
    tunings = [source_cell(config, s, seed) for s in sources]
    deps = {f"source:{s}": c.id for s, c in zip(sources, tunings)}
    mixture = mixture_cell(config, sources, seed) if "spot_multi" in fs.inits else None
    needs_select = any(i in fs.inits for i in ("spot_best", "tpv", "tpv_best"))
    selects: dict[int | None, Cell] = {}
    if needs_select and fs.selection == "shots":
        selects = {k: _select_cell(config, target, seed, sources, deps, mixture, k) for k in fs.shots}
    elif needs_select:
        selects = {None: _select_cell(config, target, seed, sources, deps, mixture)}
    trainings = [_fewshot_cell(config, target, init, k, seed,
                               _init_deps(init, mixture, selects.get(k if fs.selection == "shots" else None)))
                 for init in fs.inits for k in fs.shots]  # fmt: skip
    return [*tunings, *(c for c in (mixture,) if c is not None), *selects.values(), *trainings]


# -- summaries --------------------------------------------------------------------------------------------------


def _scores(cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]]) -> tuple[Scores, dict[str, str]]:
    """The few-shot test scores by (target, init, shots) and seed, and each target's metric."""
    scores: dict[tuple[str, str, int], dict[int, float]] = {}
    metric_of: dict[str, str] = {}
    for _c, m in metrics_of(results, cells, "fewshot"):
        scores.setdefault((m["target"], m["init"], int(m["shots"])), {})[int(m["seed"])] = float(m["test"])
        metric_of[m["target"]] = m["metric"]
    return scores, metric_of


def _target_table(
    fs: FewShotSection, target: str, metric: str, scores: Scores
) -> tuple[Table, dict[str, list[tuple[float, float, float]]], dict[str, Any]]:
    """One target's table (init x shots), its curves (label -> (shots, mean, std)) and its summary by init."""
    rows = []
    curves: dict[str, list[tuple[float, float, float]]] = {}
    by_init: dict[str, Any] = {}
    for init in fs.inits:
        row: list[Any] = [INIT_LABELS[init]]
        for k in fs.shots:
            s = summarize(list(scores.get((target, init, k), {}).values()))
            row.append(s.format())
            if not s.n:
                continue
            curves.setdefault(INIT_LABELS[init], []).append((float(k), s.mean, s.ci95()))
            by_init.setdefault(init, {})[str(k)] = {**s.to_dict(), "ci95": s.ci95(),
                                                     "per_seed": scores[(target, init, k)]}  # fmt: skip
        rows.append(row)
    table = Table(
        f"Few-shot: {target} ({metric}, %), by shots per class",
        ["init", *(str(k) for k in fs.shots)],
        rows,
        f"mean ± std over seeds {list(fs.seeds)}; shots = training examples per class. The plot's bands: 95 % "
        "confidence intervals of the mean (t distribution over the seeds).",
    )
    return table, curves, by_init


def _best_spot(scores: Scores, target: str, k: int, spots: Sequence[str]) -> str | None:
    """The SPoT variant with the higher mean at ``target`` and ``k`` shots (``None``: none has a score)."""
    means = {i: summarize(list(scores.get((target, i, k), {}).values())).mean for i in spots}
    valid = {i: v for i, v in means.items() if math.isfinite(v)}
    return max(valid, key=lambda i: valid[i]) if valid else None


LOW_SHOTS = 10
"""The low-shot regime of the issue's checks: shot counts up to 10 per class (0, 5, 10)."""


def _low_shots(fs: FewShotSection) -> list[int]:
    """The shot counts of the low-shot regime (all of them when none is that low)."""
    return [k for k in fs.shots if k <= LOW_SHOTS] or list(fs.shots)


def _mean_over_shots(fs: FewShotSection, scores: Scores, target: str, init: str,
                     shots: Sequence[int] | None = None) -> float:  # fmt: skip
    """The mean over shot counts (default: all) of ``init``'s per-shot means (the seeds averaged first)."""
    vals = [summarize(list(scores.get((target, init, k), {}).values())).mean for k in (shots or fs.shots)]
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


class _FewShot:
    name = "fewshot"
    description = "Few-shot initialization of target tasks from random, SPoT, SPoT multi, TPV and tpv's best."

    def plan(self, config: Config) -> list[Cell]:
        _sources, targets, per_target = task_layout(config)
        if not targets:
            raise ConfigError("fewshot needs target tasks: set tasks.groups or tasks.targets")
        cells: dict[str, Cell] = {}
        for target in targets:
            for seed in config.fewshot.seeds:
                for c in _target_cells(config, target, per_target[target], seed):
                    cells[c.id] = c
        return list(cells.values())

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        fs = config.fewshot
        scores, metric_of = _scores(cells, results)
        targets = list(dict.fromkeys(t for t, _i, _k in scores))
        tables: list[Table] = []
        figures: list[str] = []
        summary: dict[str, Any] = {"targets": {}, "tests": [], "checks": {}}
        for target in targets:
            table, curves, by_init = _target_table(fs, target, metric_of[target], scores)
            summary["targets"][target] = {"metric": metric_of[target], "inits": by_init}
            tables.append(table)
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
        keys: list[tuple[str, int, FewShotInit, str]] = []
        pairs = []
        for target in targets:
            for k in fs.shots:
                against: list[str] = []
                if "best_spot" in fs.baselines:
                    best_spot = _best_spot(scores, target, k, spots)
                    against += [best_spot] if best_spot is not None else []
                if "random" in fs.baselines and "random" in fs.inits:
                    against.append("random")
                for base in against:
                    for init in fs.compare:
                        a = list(scores.get((target, init, k), {}).values())
                        b = list(scores.get((target, base, k), {}).values())
                        if a and b and init != base:
                            keys.append((target, k, init, base))
                            pairs.append((a, b))
        results = compare(pairs, alpha=config.stats.alpha)
        rows = []
        for (target, k, init, base), r in zip(keys, results):
            entry = {"target": target, "shots": k, "init": init, "baseline": base, **r.to_dict()}
            if base != "random":
                entry["best_spot"] = base
            summary["tests"].append(entry)
            sig = "yes" if r.significant else "no"
            p = "–" if math.isnan(r.p) else f"{r.p:.3g}"
            padj = "–" if math.isnan(r.p_adjusted) else f"{r.p_adjusted:.3g}"
            rows.append([target, k, INIT_LABELS[init], INIT_LABELS[base], pct(r.mean_a), pct(r.mean_b),
                         f"{r.t:.2f}" if math.isfinite(r.t) else str(r.t), p, padj, sig])  # fmt: skip
        only_spot = list(fs.baselines) == ["best_spot"]
        return Table(
            "Welch t-tests against the best SPoT (Bonferroni-corrected)"
            if only_spot
            else "Welch t-tests against the baselines (Bonferroni-corrected over all of them)",
            [
                "target",
                "shots",
                "init",
                "best SPoT" if only_spot else "baseline",
                "init mean",
                "SPoT mean" if only_spot else "baseline mean",
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
        selections = metrics_of(results, cells, "select")
        by_shots = any("shots" in m for _c, m in selections)
        with_dtvg = any("dtvg" in m for _c, m in selections)
        for _c, m in selections:
            va = m["validation_accuracy"]
            best_source = va.get(f"source:{m['spot_best']}")
            details = json.dumps(m.get("tpv_best_info", {}))
            rows.append(
                [m["target"], m["origin"], *([m.get("shots", "–")] if by_shots else []), m["spot_best"], m["tpv_best"],
                 details, pct(va.get("random")), pct(best_source), pct(va.get("tpv")), pct(va.get(m["tpv_best"])),
                 *([_dtvg_cell(m)] if with_dtvg else [])]
            )  # fmt: skip
        if by_shots:
            return Table(
                "Init selection on the k training shots of each cell (accuracy on them, %)",
                ["target", "seed", "shots", "best source", "tpv best", "tpv best details", "random", "best source",
                 "TPV sum", "tpv best", *(["DTVG group (accuracy)"] if with_dtvg else [])],
                rows,
                "spot_best and tpv_best are chosen on the k training shots per class only (at most "
                "fewshot.selection_examples of them), before training; at 0 shots by fixed rules (the target's "
                "first source; fewshot.zero_shot_combination)."
                + (" 'DTVG group': the sources grouped around a prompt warmed up on the k shots "
                   "(fewshot.dtvg_warmup_steps), one of tpv best's candidates." if with_dtvg else ""),
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
            return _mean_over_shots(fs, scores, target, init)

        checks: dict[str, Any] = {}
        rows: list[list[Any]] = []
        low = _low_shots(fs)
        low_text = f"{', '.join(map(str, low))} shots"
        if "tpv" in fs.inits and "random" in fs.inits:
            gains = {t: _mean_over_shots(fs, scores, t, "tpv", low) - _mean_over_shots(fs, scores, t, "random", low)
                     for t in targets}  # fmt: skip
            avg = [g for g in gains.values() if math.isfinite(g)]
            mean_gain = 100 * sum(avg) / len(avg) if avg else math.nan
            checks["low_shots"] = low
            checks["tpv_minus_random_points"] = {t: 100 * g for t, g in gains.items()}
            checks["tpv_beats_random_by_10_points"] = bool(avg) and mean_gain >= 10
            for t, g in gains.items():
                rows.append([f"TPV − random, mean over {low_text}: {t}", f"{100 * g:+.1f} points", "≥ +10 points",
                             "yes" if math.isfinite(g) and g >= 0.1 else "no"])  # fmt: skip
            rows.append([f"TPV − random, mean over {low_text} and targets", f"{mean_gain:+.1f} points",
                         "≥ +10 points", "yes" if checks["tpv_beats_random_by_10_points"] else "no"])  # fmt: skip
        if "tpv_best" in fs.inits and "random" in fs.inits and targets:
            rows += self._above_random(config, targets, scores, low, checks)
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
            "Means over the shot counts of each init's per-shot means (the seeds averaged first). 'Significantly "
            "above random': Welch t-test of the per-seed means over the low shot counts, Bonferroni over the targets.",
        )

    def _above_random(self, config: Config, targets: Sequence[str], scores: Scores, low: Sequence[int],
                      checks: dict[str, Any]) -> list[list[Any]]:  # fmt: skip
        """The tpv best init against the random origin per target (per-seed means over the low shot counts)."""

        def per_seed(target: str, init: str) -> list[float]:
            by_k = [scores.get((target, init, k), {}) for k in low]
            seeds = sorted(set.intersection(*(set(d) for d in by_k))) if by_k else []
            return [sum(d[s] for d in by_k) / len(by_k) for s in seeds]

        results = compare([(per_seed(t, "tpv_best"), per_seed(t, "random")) for t in targets],
                          alpha=config.stats.alpha)  # fmt: skip
        above = {t: bool(r.significant and r.mean_a > r.mean_b) for t, r in zip(targets, results)}
        checks["tpv_best_above_random"] = {t: {**r.to_dict(), "above": above[t]} for t, r in zip(targets, results)}
        checks["tpv_best_above_random_two_thirds"] = sum(above.values()) * 3 >= 2 * len(above)
        rows: list[list[Any]] = []
        for t, r in zip(targets, results):
            padj = "–" if math.isnan(r.p_adjusted) else f"{r.p_adjusted:.3g}"
            measured = f"{pct(r.mean_a)} vs {pct(r.mean_b)} (p Bonferroni {padj})"
            rows.append([f"tpv best vs random, significantly above: {t}", measured, "", "yes" if above[t] else "no"])
        rows.append(["targets where tpv best is significantly above random", f"{sum(above.values())} of {len(above)}",
                     "≥ two thirds", "yes" if checks["tpv_best_above_random_two_thirds"] else "no"])  # fmt: skip
        return rows


EXPERIMENT = _FewShot()
