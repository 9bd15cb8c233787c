"""The registry of the experiments: the paper's (Belanec et al., arXiv 2408.01119), ``perf`` and ``calibration``.

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
``calibration``   prompt-tuning calibration: lr sweep, defaults over seeds, variants; untuned and LoRA references
                  (``calib_untuned``, ``calib_prompt``, ``calib_lora``)
``tasks``         every offline task's tuned prompt beside its zero-shot prompt: the untuned origin and a manual
                  instruction (``source`` + ``calib_untuned``, ``task_instruction``)
``transfer``      zero-shot cross-model prompt transfer (relative/PTfer, linear, Procrustes, FUSE) beside a random
                  prompt, the instruction and a prompt tuned on the target (``xfer_tune``, ``xfer_ref``,
                  ``xfer_move``)
================  ==========================================================================================

Cells of the same kind and parameters have the same id in every experiment, so running them into one results
root shares them: ``cross_origin``, ``fewshot`` and ``similarity`` reuse the tunings of ``sources``. Each module
exports its experiment (``EXPERIMENT``) and its cell functions (``KINDS``); this registry lists them all and
registers the cell functions with :mod:`tpv.bench.cells`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tpv.bench.cells import Cell, CellKind, register_kind
from tpv.bench.experiments import (
    calibration,
    cross_origin,
    fewshot,
    fewshot_cells,
    perf,
    similarity,
    sources,
    tasks,
    transfer,
)
from tpv.bench.experiments._common import source_cell, task_layout
from tpv.bench.experiments.fewshot import mixture_cell
from tpv.errors import ConfigError

if TYPE_CHECKING:
    from tpv.bench.config import Config
    from tpv.bench.report import Report

__all__ = [
    "CELL_FUNCTIONS",
    "EXPERIMENTS",
    "Experiment",
    "get_experiment",
    "mixture_cell",
    "register_cell_functions",
    "source_cell",
    "task_layout",
]


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


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        sources.EXPERIMENT,
        cross_origin.EXPERIMENT,
        fewshot.EXPERIMENT,
        similarity.EXPERIMENT,
        perf.EXPERIMENT,
        calibration.EXPERIMENT,
        tasks.EXPERIMENT,
        transfer.EXPERIMENT,
    )
}
"""The experiments by name."""

CELL_FUNCTIONS: tuple[CellKind, ...] = (
    *sources.KINDS,
    *fewshot_cells.KINDS,
    *cross_origin.KINDS,
    *similarity.KINDS,
    *perf.KINDS,
    *calibration.KINDS,
    *tasks.KINDS,
    *transfer.KINDS,
)
"""Every cell function of the experiments, with its version (part of every cell id of its kind)."""


def register_cell_functions() -> None:
    """Register :data:`CELL_FUNCTIONS` with :data:`tpv.bench.cells.CELL_KINDS` (done once when this loads)."""
    for spec in CELL_FUNCTIONS:
        register_kind(spec)


register_cell_functions()


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        ConfigError: unknown name (the known ones listed).
    """
    exp = EXPERIMENTS.get(name)
    if exp is None:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return exp
