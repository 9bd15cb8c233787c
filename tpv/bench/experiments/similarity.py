"""Experiment ``similarity`` (the paper's Figure 2): cosine similarities of vectors and prompts.

Within and across tasks and origins, from the ``source`` tunings (one ``similarity`` cell reads them all).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpv.bench.cells import Cell, CellInput, CellKind, CellOutput, make_cell
from tpv.bench.experiments._common import (
    CELL_VECTOR_FILE,
    build_origin,
    common_params,
    load_cell_model,
    metrics_of,
    source_cell,
    task_layout,
    vector_from,
)
from tpv.bench.experiments.sources import source_table
from tpv.bench.report import Report, Table, plot_heatmap

if TYPE_CHECKING:
    import torch

    from tpv.bench.config import Config
    from tpv.vector import TaskPromptVector

__all__ = ["EXPERIMENT", "KINDS"]


_PAIR_GROUPS = ("same_task_other_origin", "other_task_same_origin", "other_both")


def _pair_group(same_task: bool, same_origin: bool) -> str | None:
    """Which mean a pair of labels counts in (a label with itself counts in none)."""
    if same_task:
        return None if same_origin else "same_task_other_origin"
    return "other_task_same_origin" if same_origin else "other_both"


def _group_means(mat: torch.Tensor, tasks: Sequence[str], seeds: Sequence[str]) -> dict[str, float | None]:
    """Mean similarity of each group of pairs (:data:`_PAIR_GROUPS`); ``None`` for an empty group."""
    groups: dict[str, list[float]] = {key: [] for key in _PAIR_GROUPS}
    for i, j in itertools.combinations(range(len(tasks)), 2):
        key = _pair_group(tasks[i] == tasks[j], seeds[i] == seeds[j])
        if key:
            groups[key].append(float(mat[i, j]))
    return {k: (sum(v) / len(v) if v else None) for k, v in groups.items()}


def _similarity(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    """Cosine similarities of vectors and prompts across tasks and origins."""
    import torch

    from tpv.vector import cosine_matrix

    model = load_cell_model(params["model"])
    origins = {s: build_origin(model, params["prompt"], s) for s in params["origins"]}
    labels: list[str] = []
    vectors: list[TaskPromptVector] = []
    prompts: list[torch.Tensor] = []
    for role in sorted(inputs, key=lambda r: (r.split("@")[1], r)):
        task, seed = role.split("@")
        vec = vector_from(inputs[role].artifacts[CELL_VECTOR_FILE])
        labels.append(f"{task}@o{seed.removeprefix('o')}")
        vectors.append(vec)
        prompts.append(vec.apply_to(origins[int(seed.removeprefix("o"))]))
    vmat = cosine_matrix(vectors)
    pmat = cosine_matrix(prompts)
    omat = cosine_matrix([o.tensor for o in origins.values()]) if len(origins) > 1 else torch.ones(1, 1)
    tasks = [lab.split("@")[0] for lab in labels]
    seeds = [lab.split("@")[1] for lab in labels]

    return CellOutput(
        {
            "labels": labels,
            "vectors": vmat.tolist(),
            "prompts": pmat.tolist(),
            "origins": omat.tolist(),
            "origin_labels": [f"o{s}" for s in origins],
            "vector_means": _group_means(vmat, tasks, seeds),
            "prompt_means": _group_means(pmat, tasks, seeds),
            "norm_ratios": {
                lab: v.norm() / float(origins[int(lab.split("@o")[1])].tensor.double().norm())
                for lab, v in zip(labels, vectors)
            },
        }
    )


class _Similarity:
    name = "similarity"
    description = "Cosine similarity of vectors and prompts within and across tasks and origins (paper Figure 2)."

    def plan(self, config: Config) -> list[Cell]:
        sources, _t, _p = task_layout(config)
        cells = [source_cell(config, t, o) for t in sources for o in config.prompt.origins]
        deps = {f"{c.params['task']}@o{c.params['origin']}": c.id for c in cells}
        params = {**common_params(config), "origins": list(config.prompt.origins)}
        sim = make_cell("similarity", "all", params, stage="similarity", deps=deps, estimate_s=5.0)
        return [*cells, sim]

    def summarize(
        self, config: Config, cells: Sequence[Cell], results: Mapping[str, Mapping[str, Any]], report_dir: Path
    ) -> Report:
        found = metrics_of(results, cells, "similarity")
        src_table, src_summary = source_table(config, cells, results)
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


EXPERIMENT = _Similarity()
KINDS = (CellKind("similarity", _similarity, version=2),)
