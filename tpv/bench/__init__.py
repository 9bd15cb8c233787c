"""The benchmark harness: the paper's experiments as resumable cells, run in-process or on Ray.

Layers, lowest first; each imports only those below it:

* :mod:`~tpv.bench.config` (YAML configs, validated) and :mod:`~tpv.bench.stats` (mean ± std, Welch t-tests,
  Bonferroni);
* the cell engine, which knows no experiment and no report: :mod:`~tpv.bench.cells` (cells, ids, the registry of
  cell functions), :mod:`~tpv.bench.store` (finished cells on disk), :mod:`~tpv.bench.executors` (in-process,
  Ray) and :mod:`~tpv.bench.runner` (waves, resume, gathering);
* :mod:`~tpv.bench.report` (JSON, markdown, PNG from an experiment's summary of the results);
* :mod:`~tpv.bench.experiments` (the paper's experiments, one module each, and their registry);
* :mod:`~tpv.bench.api` (plan -> run -> report: :func:`run`, :func:`report`).

The command line is ``tpv bench run CONFIG`` (:mod:`tpv.cli.bench`).

Example:
    >>> from tpv.bench import load_config, run  # doctest: +SKIP
    >>> config, layers = load_config("sources", overrides=["prompt.origins=[0,1]"])  # doctest: +SKIP
    >>> summary = run(config, "benchmarks/results", layers=layers)  # doctest: +SKIP
"""

from __future__ import annotations

from tpv.bench.api import report, run, run_experiment
from tpv.bench.config import Config, load_config
from tpv.bench.runner import RunSummary

__all__ = ["Config", "RunSummary", "load_config", "report", "run", "run_experiment"]
