"""Word lists to fit FUSE maps on: WordNet lemmas, the system dictionary, a file, or a given list.

See :mod:`tpv.fuse.fit` for how the words are used (tokenized in-sentence by both tokenizers, grouped by target
subtoken count).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tpv.errors import ConfigError
from tpv.tasks.offline import WORDNET_DIRS, find_wordnet_dir

__all__ = ["DICT_WORDS", "WordList", "read_word_list", "resolve_words", "wordnet_words"]

DICT_WORDS = "/usr/share/dict/words"
_WORD = re.compile(r"^[a-z]+(?:['-][a-z]+)*$")


@dataclass(frozen=True)
class WordList:
    """Words to fit on, with where they came from.

    Attributes:
        words: distinct words, sorted.
        source: human-readable provenance (recorded in every fitted map).
    """

    words: tuple[str, ...]
    source: str

    @property
    def sha256(self) -> str:
        """Hash of the words (first 16 hex digits), part of the cache key."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()[:16]


def wordnet_words(folder: str | os.PathLike[str] | None = None) -> WordList:
    """The single-word lemmas of WordNet 3.0 (all four parts of speech).

    Args:
        folder: the WordNet database folder; default ``$WNSEARCHDIR`` or ``/usr/share/wordnet``.

    Returns:
        Lower-case lemmas made of letters with inner hyphens or apostrophes (multi-word lemmas, numbers and
        abbreviations with dots are left out), sorted.

    Raises:
        ConfigError: WordNet is not installed (the message holds the install command).
    """
    where = Path(folder) if folder is not None else find_wordnet_dir()
    if where is None or not Path(where, "index.noun").is_file():
        raise ConfigError(
            f"no WordNet database found (looked in {folder or ', '.join(['$WNSEARCHDIR', *WORDNET_DIRS])}). "
            "Fix: sudo apt-get install wordnet-base, or pass words='dict' or a word-list file"
        )
    words: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(Path(where, f"index.{pos}"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" "):  # the licence header
                    continue
                lemma = line.split(" ", 1)[0]
                if _WORD.match(lemma):
                    words.add(lemma)
    return WordList(tuple(sorted(words)), f"WordNet 3.0 lemmas ({where}/index.*, Princeton University)")


def read_word_list(path: str | os.PathLike[str]) -> WordList:
    """Words from a text file, one a line (blank lines and lines with spaces skipped).

    Raises:
        ConfigError: the file does not exist or holds no word.
    """
    p = Path(path)
    if not p.is_file():
        hint = " Fix: sudo apt-get install wamerican" if str(p) == DICT_WORDS else ""
        raise ConfigError(f"word list {str(p)!r} does not exist.{hint}")
    words = {w.strip() for w in p.read_text(encoding="utf-8", errors="replace").splitlines()}
    words = {w for w in words if w and not any(c.isspace() for c in w)}
    if not words:
        raise ConfigError(f"word list {str(p)!r} holds no word (one word a line expected)")
    return WordList(tuple(sorted(words)), f"word list {p}")


def resolve_words(words: str | os.PathLike[str] | Sequence[str] | WordList) -> WordList:
    """Turn a ``words=`` option into a :class:`WordList`.

    Args:
        words: ``"wordnet"``, ``"dict"`` (``/usr/share/dict/words``), a path to a one-word-a-line file, a
            sequence of words, or a :class:`WordList`.

    Returns:
        The word list.

    Raises:
        ConfigError: unknown source, missing file, or no words.
    """
    if isinstance(words, WordList):
        return words
    if isinstance(words, str) and words == "wordnet":
        return wordnet_words()
    if isinstance(words, str) and words == "dict":
        return read_word_list(DICT_WORDS)
    if isinstance(words, str | os.PathLike):
        return read_word_list(words)
    if isinstance(words, Sequence):
        items = sorted({w for w in words if isinstance(w, str) and w.strip()})
        if not items:
            raise ConfigError("words= holds no word")
        return WordList(tuple(items), f"given list of {len(items)} words")
    raise ConfigError(f"words must be 'wordnet', 'dict', a path or a list of words, got {type(words).__name__}")
