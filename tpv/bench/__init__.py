"""The benchmark harness: the paper's experiments as resumable cells, run in-process or on Ray.

Layers, outermost last: :mod:`~tpv.bench.config` (YAML configs, validated), :mod:`~tpv.bench.runner` (cells,
stages, resumable storage), :mod:`~tpv.bench.executors` (in-process, Ray), :mod:`~tpv.bench.stats` (mean ± std,
Welch t-tests, Bonferroni), :mod:`~tpv.bench.report` (JSON, markdown, PNG) and :mod:`~tpv.bench.experiments`
(the paper's experiments). The command line is ``tpv bench run CONFIG`` (:mod:`tpv.cli.bench`).

Example:
    >>> from tpv.bench import load_config, run  # doctest: +SKIP
    >>> config, layers = load_config("sources", overrides=["prompt.origins=[0,1]"])  # doctest: +SKIP
    >>> summary = run(config, "benchmarks/results", layers=layers)  # doctest: +SKIP
"""

from __future__ import annotations

from tpv.bench.config import Config, load_config
from tpv.bench.runner import RunSummary, run

__all__ = ["Config", "RunSummary", "load_config", "run"]
