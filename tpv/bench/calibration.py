"""The calibration study's old location: see :mod:`tpv.bench.experiments.calibration` (kept as an alias)."""

from __future__ import annotations

from tpv.bench.experiments.calibration import CALIBRATION, steps_to_fraction

__all__ = ["CALIBRATION", "steps_to_fraction"]
