"""The offline suite's WordNet tasks, read directly from WordNet 3.0's ``data.*`` files (the ``wndb`` format).

Glosses labelled by lexicographer file (supersense) or topic domain, and word pairs built from WordNet's relations
and example sentences (a WiC-style task, hypernymy, gloss matching, antonymy). Parsing takes about 2 seconds and
is done once per process (:func:`_load_wordnet`); the folder is found by :func:`tpv.tasks.locate.find_wordnet_dir`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tpv.tasks.locate import _require
from tpv.tasks.rows import Row, _capped, _stable

__all__ = ["SynsetKey"]

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
