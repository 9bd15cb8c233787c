"""Cells: the benchmark's units of work, their stable ids and the registry of cell functions.

A cell knows its *kind* (a registered function), its parameters (plain JSON), the cells it reads (``deps``,
role -> cell id) and its stage. Its id is stable: the kind, a readable name and a hash of the kind's version, the
parameters and the dependencies' ids, so changing any setting a cell uses gives a new cell, and a cell whose
inputs did not change is never run twice::

    source-rotten_tomatoes-o0-3f2a1c9d

Cell functions receive their parameters and their dependencies' results *as data* (metrics and artifact bytes)
and return data, so the same function runs in this process or on a Ray worker of another machine. This module
knows no experiment: the experiments (:mod:`tpv.bench.experiments`) register their kinds here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tpv.errors import ConfigError

__all__ = [
    "CELL_KINDS",
    "Cell",
    "CellFn",
    "CellInput",
    "CellKind",
    "CellOutput",
    "cell_kind",
    "execute_cell",
    "get_kind",
    "make_cell",
    "register_kind",
]


def canonical_json(data: Any) -> str:
    """``data`` as canonical JSON (sorted keys, no spaces): what cell ids hash.

    Raises:
        ConfigError: ``data`` is not plain JSON (or holds NaN).
    """
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cell parameters must be plain JSON (no NaN): {exc}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")[:80] or "cell"


@dataclass(frozen=True)
class Cell:
    """One independent unit of work.

    Attributes:
        id: stable id ``<kind>-<name>-<hash8>`` (see :func:`make_cell`); names its results folder.
        kind: the registered cell function (see :data:`CELL_KINDS`).
        name: readable name, e.g. ``rotten_tomatoes/o0``.
        stage: the stage it belongs to (e.g. ``sources``, ``fewshot``), for listing and progress.
        params: plain-JSON parameters; part of the id.
        deps: role -> id of the cells whose results it reads; part of the id.
        estimate_s: expected seconds (dry runs and the ETA).
    """

    id: str
    kind: str
    name: str
    stage: str
    params: Mapping[str, Any]
    deps: Mapping[str, str] = field(default_factory=dict)
    estimate_s: float = 0.0


@dataclass(frozen=True)
class CellOutput:
    """What a cell function returns: metrics (plain JSON) and artifacts (file name -> bytes)."""

    metrics: Mapping[str, Any]
    artifacts: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class CellInput:
    """A finished dependency, as a cell function receives it."""

    id: str
    metrics: Mapping[str, Any]
    artifacts: Mapping[str, bytes]


CellFn = Callable[[Mapping[str, Any], Mapping[str, CellInput], Mapping[str, Any]], CellOutput]
"""``fn(params, inputs (role -> CellInput), env) -> CellOutput``. ``env`` holds settings that must not change
the results (torch threads), so it is not part of the id."""


@dataclass(frozen=True)
class CellKind:
    """A registered cell function and its version (bump it when the function's results change)."""

    name: str
    fn: CellFn
    version: int = 1


CELL_KINDS: dict[str, CellKind] = {}
"""Every cell kind by name; :mod:`tpv.bench.experiments` registers the paper's."""


def register_kind(spec: CellKind) -> CellKind:
    """Add a cell kind to :data:`CELL_KINDS` (a kind registered again is replaced).

    Raises:
        ConfigError: a name that is not lowercase letters, digits and ``_``.
    """
    _check_name(spec.name)
    CELL_KINDS[spec.name] = spec
    return spec


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"cell kind names are lowercase letters, digits and _; got {name!r}")


def cell_kind(name: str, *, version: int = 1) -> Callable[[CellFn], CellFn]:
    """Register a cell function under ``name`` (a decorator).

    Args:
        name: the kind's name (letters, digits, ``_``).
        version: part of every id of this kind: bump it to invalidate stored results.
    """
    _check_name(name)

    def register(fn: CellFn) -> CellFn:
        register_kind(CellKind(name, fn, version))
        return fn

    return register


def get_kind(kind: str) -> CellKind:
    """The registered kind called ``kind``.

    Raises:
        ConfigError: unknown kind (the registered ones listed).
    """
    spec = CELL_KINDS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown cell kind {kind!r}; registered kinds: {', '.join(sorted(CELL_KINDS))}")
    return spec


def make_cell(
    kind: str,
    name: str,
    params: Mapping[str, Any],
    *,
    stage: str,
    deps: Mapping[str, str] | None = None,
    estimate_s: float = 0.0,
) -> Cell:
    """A cell with its stable id.

    Args:
        kind: a registered cell kind.
        name: readable name (``/`` allowed; slugged in the id).
        params: plain-JSON parameters.
        stage: the stage's name.
        deps: role -> cell id.
        estimate_s: expected seconds.

    Returns:
        The cell; its id hashes the kind's version, ``params`` and ``deps``.

    Raises:
        ConfigError: unknown kind, or parameters that are not plain JSON.
    """
    spec = get_kind(kind)
    deps = dict(deps or {})
    digest = hashlib.sha256(
        canonical_json({"kind": kind, "version": spec.version, "params": params, "deps": deps}).encode()
    ).hexdigest()[:8]
    params = json.loads(canonical_json(params))  # a private plain copy
    return Cell(f"{kind}-{_slug(name)}-{digest}", kind, name, stage, params, deps, float(estimate_s))


def execute_cell(
    kind: str | CellKind,
    params: Mapping[str, Any],
    inputs: Mapping[str, CellInput],
    env: Mapping[str, Any] | None = None,
) -> CellOutput:
    """Run one cell function (the entry point executors call, in this process or on a worker).

    Args:
        kind: a registered kind's name, or the kind itself (what a worker that registered nothing receives).
        params: the cell's parameters.
        inputs: role -> finished dependency.
        env: run settings that do not change results (``threads``: torch threads).

    Raises:
        ConfigError: unknown kind.
        Exception: whatever the cell function raises.
    """
    spec = kind if isinstance(kind, CellKind) else get_kind(kind)
    env = dict(env or {})
    threads = env.get("threads")
    if isinstance(threads, int) and threads > 0:
        import torch

        torch.set_num_threads(threads)
    out = spec.fn(params, inputs, env)
    if not isinstance(out, CellOutput):
        raise TypeError(f"cell kind {spec.name!r} returned {type(out).__name__}, not a CellOutput")
    canonical_json(out.metrics)
    return out
