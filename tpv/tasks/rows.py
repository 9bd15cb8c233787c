"""Rows of the offline tasks, and the deterministic selection every builder follows.

A row is one example before rendering: its text fields and its label index. Every selection the builders make
(which synsets, which pairs, which classes are capped) is decided by :func:`_stable`, a hash, never by the
process's random state, so a task's data is the same on every machine.
"""

from __future__ import annotations

import hashlib

__all__ = ["Row"]

Row = tuple[dict[str, str], int]
"""One example before rendering: its text fields and its label index."""


def _stable(*parts: object) -> str:
    """A hex digest of ``parts``: the deterministic order every selection here follows."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


def _capped(rows: list[tuple[str, Row]], per_class: int) -> list[Row]:
    """At most ``per_class`` rows per label, the ones with the smallest stable keys."""
    rows = sorted(rows, key=lambda item: item[0])
    counts: dict[int, int] = {}
    out: list[Row] = []
    for _, row in rows:
        label = row[1]
        if counts.get(label, 0) < per_class:
            counts[label] = counts.get(label, 0) + 1
            out.append(row)
    return out
