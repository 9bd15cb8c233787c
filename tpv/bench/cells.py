"""Cells: the benchmark's units of work, their stable ids and the registry of cell functions.

A cell knows its *kind* (a registered function), its parameters (plain JSON), the cells it reads (``deps``,
role -> cell id) and its stage. Its id is stable: the kind, a readable name and a hash of the kind's version, the
parameters and the dependencies' ids, so changing any setting a cell uses gives a new cell, and a cell whose
inputs did not change is never run twice::

    source-rotten_tomatoes-o0-3f2a1c9d

Cell functions receive their parameters and their dependencies' results *as data* (metrics and artifact bytes)
and return data, so the same function runs in this process or on a Ray worker of another machine. This module
knows no experiment: the experiments (:mod:`tpv.bench.experiments`) register their kinds here.

A kind may also register a *pack function* (:data:`PackFn`): several of its cells run as one unit (one model
loaded, one ``tpv.train_many`` call), each returning what the cell function returns for it. Packing is a way of
running cells, never part of what they are: a cell's id, parameters and stored files are the same packed or not.
Cells share a pack only when their :meth:`CellKind.pack_group` is equal (same kind and model, by default).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
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
    "NotPackableError",
    "PackFn",
    "PackMember",
    "cell_kind",
    "execute_cell",
    "execute_pack",
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


PackMember = tuple[Mapping[str, Any], Mapping[str, CellInput]]
"""One cell of a pack, as its pack function receives it: ``(params, inputs)``."""

PackFn = Callable[[Sequence[PackMember], Mapping[str, Any]], list[CellOutput]]
"""``pack(members, env) -> outputs``: run several cells of one kind as one unit; one output per member, in order,
each what the kind's cell function returns for that member (up to float rounding). It raises
:class:`NotPackableError` when its members cannot share a pack; anything else it raises fails the pack as a whole (the
executor then runs the members one by one, see :func:`tpv.bench.executors.run_pack`)."""


class NotPackableError(ConfigError):
    """Cells that cannot share a pack (say, a model ``tpv.train_many`` does not pack yet): they run one by one."""


@dataclass(frozen=True)
class CellKind:
    """A registered cell function and its version (bump it when the function's results change).

    Attributes:
        name: the kind's name (part of every id of its cells).
        fn: the cell function, ``fn(params, inputs, env) -> CellOutput``.
        version: part of every id of this kind: bump it to invalidate stored results.
        pack: optional pack function running several cells of this kind as one unit (see :data:`PackFn`).
        pack_key: ``pack_key(params) -> plain JSON``: what cells must share to go in one pack (default: the
            ``model`` parameters). Only read when ``pack`` is set.
    """

    name: str
    fn: CellFn
    version: int = 1
    pack: PackFn | None = None
    pack_key: Callable[[Mapping[str, Any]], Any] | None = None

    def pack_group(self, params: Mapping[str, Any]) -> str | None:
        """The group cells of this kind with these parameters pack with (``None``: this kind never packs).

        Raises:
            ConfigError: a pack key that is not plain JSON.
        """
        if self.pack is None:
            return None
        key = self.pack_key(params) if self.pack_key is not None else params.get("model")
        return canonical_json({"kind": self.name, "key": key})


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
    env = _apply_env(env)
    return _checked(spec, spec.fn(params, inputs, env))


def execute_pack(
    kind: str | CellKind, members: Sequence[PackMember], env: Mapping[str, Any] | None = None
) -> list[CellOutput]:
    """Run several cells of one kind as one unit through the kind's pack function.

    Args:
        kind: a registered kind's name, or the kind itself.
        members: each cell's ``(params, inputs)``.
        env: run settings that do not change results (``threads``).

    Returns:
        One output per member, in order.

    Raises:
        ConfigError: unknown kind, or a kind without a pack function.
        NotPackableError: the members cannot share a pack (run them one by one with :func:`execute_cell`).
        TypeError: the pack function returned the wrong number or type of outputs.
        Exception: whatever the pack function raises.
    """
    spec = kind if isinstance(kind, CellKind) else get_kind(kind)
    if spec.pack is None:
        raise ConfigError(f"cell kind {spec.name!r} has no pack function; run its cells one by one")
    env = _apply_env(env)
    outs = list(spec.pack(list(members), env))
    if len(outs) != len(members):
        raise TypeError(
            f"cell kind {spec.name!r}: its pack function returned {len(outs)} outputs for {len(members)} cells"
        )
    return [_checked(spec, out) for out in outs]


def _apply_env(env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run environment as a dict, after applying what it sets in this process (torch threads)."""
    out = dict(env or {})
    threads = out.get("threads")
    if isinstance(threads, int) and threads > 0:
        import torch

        torch.set_num_threads(threads)
    return out


def _checked(spec: CellKind, out: Any) -> CellOutput:
    if not isinstance(out, CellOutput):
        raise TypeError(f"cell kind {spec.name!r} returned {type(out).__name__}, not a CellOutput")
    canonical_json(out.metrics)
    return out
