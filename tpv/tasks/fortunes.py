"""The offline suite's fortunes task: quotes of the ``fortunes`` package, labelled by the topic file they are in."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tpv.errors import TaskError
from tpv.tasks.locate import FORTUNES_INSTALL, _require
from tpv.tasks.rows import Row, _capped, _stable

__all__: list[str] = []

_FORTUNE_TOPICS = (
    ("computers", " computers"),
    ("politics", " politics"),
    ("science", " science"),
    ("art", " art"),
    ("literature", " books"),
    ("law", " law"),
    ("education", " school"),
    ("food", " food"),
)
_OVERSTRIKE = re.compile(r".\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _fortune_records(path: Path) -> Iterable[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for record in re.split(r"\n%\n", text):
        cleaned = _CONTROL.sub("", _OVERSTRIKE.sub("", record))
        cleaned = " ".join(cleaned.split())
        if 10 <= len(cleaned) <= 500:
            yield cleaned


def _fortune_topics() -> list[Row]:
    name = "fortune_topics"
    folder = _require(name)
    keyed: list[tuple[str, Row]] = []
    for label, (topic, _) in enumerate(_FORTUNE_TOPICS):
        path = folder / topic
        if not path.is_file():
            raise TaskError(f"task {name!r}: the fortune file {path} is missing; reinstall it with: {FORTUNES_INSTALL}")
        for quote in _fortune_records(path):
            keyed.append((_stable(name, quote), ({"quote": quote}, label)))
    return _capped(keyed, per_class=250)
