"""The task registry: one table of :class:`TaskSpec` by name, and one of :class:`TaskGroup`.

Built in: the 8 GLUE tasks of the paper, 5 SuperGLUE tasks, the paper's 12 datasets in their three groups (NLI,
topic classification, sentiment; MNLI, QNLI and SST-2 are the GLUE entries), all loaded from the Hugging Face hub
for users with internet (or from local files with ``data_files=``), and the offline suite of
:mod:`tpv.tasks.offline`. Register your own with :func:`register_task`.

About 630 lines, most of them the catalogue itself (one ``TaskSpec`` literal per hub task, each with its template,
label words, licence and citation): data, not logic, and easiest to review in one place.
"""

from __future__ import annotations

import difflib
import re

from tpv.errors import ConfigError, TaskError
from tpv.tasks.offline import OFFLINE_GROUPS, OFFLINE_SPECS
from tpv.tasks.spec import TaskGroup, TaskSpec

__all__ = [
    "HUB_SPECS",
    "get_group",
    "get_task",
    "list_groups",
    "list_tasks",
    "register_group",
    "register_task",
]

_TASKS: dict[str, TaskSpec] = {}
_GROUPS: dict[str, TaskGroup] = {}


def _key(name: str) -> str:
    """Lookup key: case, dashes, underscores and spaces ignored ("SST-2" finds "sst2")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task to the registry.

    Args:
        spec: the task.
        replace: allow replacing a registered task of the same name.

    Returns:
        The spec (so this can decorate a module-level constant).

    Raises:
        ConfigError: the name is taken (or only differs from a registered name by case or punctuation) and
            ``replace`` is False.
    """
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"register_task expects a TaskSpec; got {type(spec).__name__}")
    clash = next((name for name in _TASKS if _key(name) == _key(spec.name)), None)
    if clash is not None and not replace:
        raise ConfigError(f"a task named {clash!r} is already registered; pass replace=True to replace it")
    if clash is not None:
        del _TASKS[clash]
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The registered task called ``name`` (case, dashes and underscores ignored).

    Args:
        name: e.g. ``"rotten_tomatoes"``, ``"sst2"`` or ``"SST-2"``.

    Returns:
        Its spec.

    Raises:
        TaskError: no such task; the message lists the closest names.
    """
    if name in _TASKS:
        return _TASKS[name]
    key = _key(str(name))
    for registered, spec in _TASKS.items():
        if _key(registered) == key:
            return spec
    close = difflib.get_close_matches(str(name).lower(), list(_TASKS), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise TaskError(f"unknown task {name!r}{hint} (`tpv tasks list` shows all {len(_TASKS)} tasks)")


def list_tasks(group: str | None = None) -> list[TaskSpec]:
    """Registered tasks, in registration order.

    Args:
        group: only the members of this group (a :class:`TaskGroup` name such as ``"offline-topic"``, or a
            task's ``group`` field such as ``"glue"``).

    Returns:
        The specs.

    Raises:
        TaskError: unknown group.
    """
    if group is None:
        return list(_TASKS.values())
    if group in _GROUPS:
        return [_TASKS[name] for name in _GROUPS[group].tasks if name in _TASKS]
    members = [spec for spec in _TASKS.values() if spec.group == group]
    if not members:
        raise TaskError(f"unknown group {group!r}; groups: {', '.join(list_group_names())}")
    return members


def register_group(group: TaskGroup, *, replace: bool = False) -> TaskGroup:
    """Add a group of tasks (every member must be registered).

    Args:
        group: the group.
        replace: allow replacing a registered group of the same name.

    Returns:
        The group.

    Raises:
        ConfigError: the name is taken, or a member is not a registered task.
    """
    if group.name in _GROUPS and not replace:
        raise ConfigError(f"a group named {group.name!r} is already registered; pass replace=True to replace it")
    missing = [name for name in group.tasks if name not in _TASKS]
    if missing:
        raise ConfigError(f"group {group.name!r} names unregistered task(s) {missing}; register them first")
    _GROUPS[group.name] = group
    return group


def get_group(name: str) -> TaskGroup:
    """The registered group called ``name``.

    Raises:
        TaskError: no such group; the message lists the groups.
    """
    group = _GROUPS.get(name)
    if group is None:
        raise TaskError(f"unknown group {name!r}; groups: {', '.join(_GROUPS)}")
    return group


def list_groups() -> list[TaskGroup]:
    """Registered groups, in registration order."""
    return list(_GROUPS.values())


def list_group_names() -> list[str]:
    """Names of the registered groups and of every task's ``group`` field."""
    names = list(_GROUPS)
    for spec in _TASKS.values():
        if spec.group not in names:
            names.append(spec.group)
    return names


# ---------------------------------------------------------------------------------------------------------------
# Built-in hub tasks
# ---------------------------------------------------------------------------------------------------------------

_GLUE = "nyu-mll/glue"
_SUPERGLUE = "aps/super_glue"
_NLI3 = (" yes", " maybe", " no")
_YES_NO = (" no", " yes")
_POLARITY = (" negative", " positive")
_GLUE_LICENCE = "GLUE: each task under its source's licence (see gluebenchmark.com)"
_SUPERGLUE_LICENCE = "SuperGLUE: each task under its source's licence (see super.gluebenchmark.com)"


def _hub(name: str, group: str, path: str, subset: str | None = None, **kwargs: object) -> TaskSpec:
    return TaskSpec(
        name=name,
        group=group,
        source="hub",
        hub_path=path,
        hub_subset=subset,
        install="pip install datasets  # and internet access to the Hugging Face hub",
        **kwargs,  # type: ignore[arg-type]
    )


HUB_SPECS: tuple[TaskSpec, ...] = (
    # --- GLUE (the paper's 8) ---------------------------------------------------------------------------------
    _hub(
        "mnli",
        "glue",
        _GLUE,
        "mnli",
        hub_splits=("train", "validation_matched"),
        text_fields=("premise", "hypothesis"),
        template="Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=_NLI3,
        label_names=("entailment", "neutral", "contradiction"),
        metric="accuracy",
        description="Multi-genre natural language inference: entailment, neutral or contradiction.",
        licence="mostly OANC (free), some CC BY-SA 3.0 / CC BY 3.0",
        size="393k train, 9.8k validation (matched)",
        balance="balanced (about 1/3 each)",
        citation="Williams et al., NAACL 2018",
    ),
    _hub(
        "qnli",
        "glue",
        _GLUE,
        "qnli",
        text_fields=("question", "sentence"),
        template="Question: {question}\nSentence: {sentence}\nDoes the sentence answer the question?\nAnswer:",
        label_words=(" yes", " no"),
        label_names=("entailment", "not_entailment"),
        metric="accuracy",
        description="Does the sentence contain the answer to the question (from SQuAD)?",
        licence="CC BY-SA 4.0",
        size="105k train, 5.5k validation",
        balance="balanced",
        citation="Wang et al., ICLR 2019 (GLUE); Rajpurkar et al., EMNLP 2016 (SQuAD)",
    ),
    _hub(
        "qqp",
        "glue",
        _GLUE,
        "qqp",
        text_fields=("question1", "question2"),
        template="Question 1: {question1}\nQuestion 2: {question2}\nDo the two questions ask the same thing?\nAnswer:",
        label_words=_YES_NO,
        label_names=("not_duplicate", "duplicate"),
        metric="f1",
        description="Are two Quora questions paraphrases?",
        licence="Quora's terms (non-commercial research)",
        size="364k train, 40k validation",
        balance="63% not duplicate, 37% duplicate",
        citation="Iyer et al., 2017 (First Quora Dataset Release)",
    ),
    _hub(
        "sst2",
        "glue",
        _GLUE,
        "sst2",
        text_fields=("sentence",),
        template="Sentence: {sentence}\nSentiment:",
        label_words=_POLARITY,
        label_names=("negative", "positive"),
        metric="accuracy",
        description="Binary sentiment of movie review phrases and sentences (Stanford Sentiment Treebank).",
        licence="unspecified research use (SST)",
        size="67k train, 872 validation",
        balance="56% positive",
        citation="Socher et al., EMNLP 2013",
    ),
    _hub(
        "stsb",
        "glue",
        _GLUE,
        "stsb",
        text_fields=("sentence1", "sentence2"),
        template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nHow similar are the sentences (0 to 5)?\nAnswer:",
        label_words=(),
        label_names=(),
        metric="pearson",
        description="Semantic textual similarity, a score from 0 to 5 (regression; Spearman also reported).",
        licence="CC BY-SA 4.0 (mixed sources)",
        size="5.7k train, 1.5k validation",
        balance="scores spread over 0-5",
        citation="Cer et al., SemEval 2017",
    ),
    _hub(
        "mrpc",
        "glue",
        _GLUE,
        "mrpc",
        text_fields=("sentence1", "sentence2"),
        template="Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDo the sentences mean the same thing?\nAnswer:",
        label_words=_YES_NO,
        label_names=("not_equivalent", "equivalent"),
        metric="f1",
        description="Are two news sentences paraphrases (Microsoft Research Paraphrase Corpus)?",
        licence="Microsoft Research (research use)",
        size="3.7k train, 408 validation",
        balance="68% equivalent",
        citation="Dolan & Brockett, IWP 2005",
    ),
    _hub(
        "rte",
        "glue",
        _GLUE,
        "rte",
        text_fields=("sentence1", "sentence2"),
        template="Premise: {sentence1}\nHypothesis: {sentence2}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=(" yes", " no"),
        label_names=("entailment", "not_entailment"),
        metric="accuracy",
        description="Recognizing textual entailment (RTE1-3, 5), two classes.",
        licence="research use (PASCAL RTE)",
        size="2.5k train, 277 validation",
        balance="balanced",
        citation="Dagan et al., 2006 and later RTE challenges",
    ),
    _hub(
        "cola",
        "glue",
        _GLUE,
        "cola",
        text_fields=("sentence",),
        template="Sentence: {sentence}\nIs this sentence grammatical?\nAnswer:",
        label_words=_YES_NO,
        label_names=("unacceptable", "acceptable"),
        metric="matthews",
        description="Is the sentence grammatically acceptable (Corpus of Linguistic Acceptability)?",
        licence="research use (CoLA)",
        size="8.6k train, 1k validation",
        balance="70% acceptable",
        citation="Warstadt et al., TACL 2019",
    ),
    # --- SuperGLUE ----------------------------------------------------------------------------------------------
    _hub(
        "boolq",
        "superglue",
        _SUPERGLUE,
        "boolq",
        text_fields=("passage", "question"),
        template="Passage: {passage}\nQuestion: {question}?\nAnswer:",
        label_words=_YES_NO,
        label_names=("False", "True"),
        metric="accuracy",
        description="Yes/no questions about a Wikipedia passage.",
        licence="CC BY-SA 3.0",
        size="9.4k train, 3.3k validation",
        balance="62% yes",
        citation="Clark et al., NAACL 2019",
    ),
    _hub(
        "cb",
        "superglue",
        _SUPERGLUE,
        "cb",
        text_fields=("premise", "hypothesis"),
        template="Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=(" yes", " no", " maybe"),
        label_names=("entailment", "contradiction", "neutral"),
        metric="macro_f1",
        description="CommitmentBank: three-way entailment of embedded clauses (scored by macro F1, as SuperGLUE).",
        licence="research use (CommitmentBank)",
        size="250 train, 56 validation",
        balance="unbalanced: few neutral",
        citation="de Marneffe et al., Sinn und Bedeutung 2019",
    ),
    _hub(
        "superglue_rte",
        "superglue",
        _SUPERGLUE,
        "rte",
        text_fields=("premise", "hypothesis"),
        template="Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=(" yes", " no"),
        label_names=("entailment", "not_entailment"),
        metric="accuracy",
        description="SuperGLUE's copy of RTE (same data as GLUE's 'rte', other field names).",
        licence="research use (PASCAL RTE)",
        size="2.5k train, 277 validation",
        balance="balanced",
        citation="Dagan et al., 2006 and later RTE challenges",
    ),
    _hub(
        "wic",
        "superglue",
        _SUPERGLUE,
        "wic",
        text_fields=("word", "sentence1", "sentence2"),
        template='Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word "{word}" used with the '
        "same meaning in both sentences?\nAnswer:",
        label_words=_YES_NO,
        label_names=("False", "True"),
        metric="accuracy",
        description="Word-in-Context: is a word used in the same sense in two sentences?",
        licence="CC BY-NC 4.0",
        size="5.4k train, 638 validation",
        balance="balanced",
        citation="Pilehvar & Camacho-Collados, NAACL 2019",
    ),
    _hub(
        "copa",
        "superglue",
        _SUPERGLUE,
        "copa",
        text_fields=("premise", "question", "choice1", "choice2"),
        template="Premise: {premise}\nWhat was the {question}?\nFirst: {choice1}\nSecond: {choice2}\nAnswer:",
        label_words=(" first", " second"),
        label_names=("choice1", "choice2"),
        metric="accuracy",
        description="Choice of plausible alternatives: which choice is the cause (or effect) of the premise?",
        licence="BSD 2-Clause",
        size="400 train, 100 validation",
        balance="balanced",
        citation="Roemmele et al., AAAI Spring Symposium 2011",
    ),
    # --- The paper's other datasets -------------------------------------------------------------------------------
    _hub(
        "scitail",
        "paper-nli",
        "allenai/scitail",
        "tsv_format",
        text_fields=("premise", "hypothesis"),
        template="Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=(" yes", " no"),
        label_names=("entails", "neutral"),
        metric="accuracy",
        description="Science-question entailment: entails or neutral.",
        licence="Apache-2.0",
        size="23k train, 1.3k validation",
        balance="about 40% entails",
        citation="Khot et al., AAAI 2018",
    ),
    _hub(
        "snli",
        "paper-nli",
        "stanfordnlp/snli",
        text_fields=("premise", "hypothesis"),
        template="Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?\nAnswer:",
        label_words=_NLI3,
        label_names=("entailment", "neutral", "contradiction"),
        metric="accuracy",
        description="Stanford natural language inference over image captions (pairs without a gold label dropped).",
        licence="CC BY-SA 4.0",
        size="550k train, 10k validation",
        balance="balanced",
        citation="Bowman et al., EMNLP 2015",
    ),
    _hub(
        "dbpedia",
        "paper-topic",
        "fancyzhx/dbpedia_14",
        hub_splits=("train", "test"),
        text_fields=("title", "content"),
        template="Title: {title}\nText: {content}\nTopic:",
        label_words=(
            " company",
            " school",
            " artist",
            " athlete",
            " politician",
            " transport",
            " building",
            " nature",
            " village",
            " animal",
            " plant",
            " album",
            " film",
            " book",
        ),
        label_names=(
            "Company",
            "EducationalInstitution",
            "Artist",
            "Athlete",
            "OfficeHolder",
            "MeanOfTransportation",
            "Building",
            "NaturalPlace",
            "Village",
            "Animal",
            "Plant",
            "Album",
            "Film",
            "WrittenWork",
        ),
        metric="accuracy",
        description="DBpedia ontology class of a Wikipedia abstract (14 classes).",
        licence="CC BY-SA 3.0",
        size="560k train, 70k test",
        balance="balanced (40k per class)",
        citation="Zhang et al., NeurIPS 2015",
    ),
    _hub(
        "trec_coarse",
        "paper-topic",
        "CogComp/trec",
        hub_splits=("train", "test"),
        label_field="coarse_label",
        text_fields=("text",),
        template="Question: {text}\nAnswer type:",
        label_words=(" abbreviation", " entity", " description", " human", " location", " number"),
        label_names=("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
        metric="accuracy",
        description="Answer type of a question (TREC, 6 coarse classes).",
        licence="research use (TREC QA)",
        size="5.5k train, 500 test",
        balance="unbalanced: 1.6% abbreviation, up to 23% entity",
        citation="Li & Roth, COLING 2002",
    ),
    _hub(
        "ag_news",
        "paper-topic",
        "fancyzhx/ag_news",
        hub_splits=("train", "test"),
        text_fields=("text",),
        template="Article: {text}\nTopic:",
        label_words=(" world", " sports", " business", " science"),
        label_names=("World", "Sports", "Business", "Sci/Tech"),
        metric="accuracy",
        description="Topic of a news article (AG's corpus, 4 classes).",
        licence="non-commercial research use",
        size="120k train, 7.6k test",
        balance="balanced",
        citation="Zhang et al., NeurIPS 2015",
    ),
    _hub(
        "yahoo_answers",
        "paper-topic",
        "community-datasets/yahoo_answers_topics",
        hub_splits=("train", "test"),
        label_field="topic",
        text_fields=("question_title", "question_content", "best_answer"),
        template="Question: {question_title} {question_content}\nAnswer: {best_answer}\nTopic:",
        label_words=(
            " society",
            " science",
            " health",
            " education",
            " computers",
            " sports",
            " business",
            " entertainment",
            " family",
            " politics",
        ),
        label_names=(
            "Society & Culture",
            "Science & Mathematics",
            "Health",
            "Education & Reference",
            "Computers & Internet",
            "Sports",
            "Business & Finance",
            "Entertainment & Music",
            "Family & Relationships",
            "Politics & Government",
        ),
        metric="accuracy",
        max_chars=1000,
        description="Topic of a Yahoo! Answers question and its best answer (10 classes).",
        licence="Yahoo! Webscope terms (non-commercial research)",
        size="1.4M train, 60k test",
        balance="balanced",
        citation="Zhang et al., NeurIPS 2015",
    ),
    _hub(
        "yelp_polarity",
        "paper-sentiment",
        "fancyzhx/yelp_polarity",
        hub_splits=("train", "test"),
        text_fields=("text",),
        template="Review: {text}\nSentiment:",
        label_words=_POLARITY,
        label_names=("negative", "positive"),
        metric="accuracy",
        max_chars=1000,
        description="Polarity of a Yelp review (1-2 stars negative, 3-4 positive).",
        licence="Yelp Dataset terms (non-commercial research)",
        size="560k train, 38k test",
        balance="balanced",
        citation="Zhang et al., NeurIPS 2015",
    ),
    _hub(
        "sst5",
        "paper-sentiment",
        "SetFit/sst5",
        text_fields=("text",),
        template="Sentence: {text}\nSentiment:",
        label_words=(" terrible", " bad", " okay", " good", " great"),
        label_names=("very negative", "negative", "neutral", "positive", "very positive"),
        metric="accuracy",
        description="Fine-grained (5-class) sentiment of movie review sentences (Stanford Sentiment Treebank).",
        licence="unspecified research use (SST)",
        size="8.5k train, 1.1k validation",
        balance="13% / 26% / 19% / 27% / 15%",
        citation="Socher et al., EMNLP 2013",
    ),
    _hub(
        "imdb",
        "paper-sentiment",
        "stanfordnlp/imdb",
        hub_splits=("train", "test"),
        text_fields=("text",),
        template="Review: {text}\nSentiment:",
        label_words=_POLARITY,
        label_names=("neg", "pos"),
        metric="accuracy",
        max_chars=1000,
        description="Polarity of a full IMDB movie review (the offline suite's imdb_reviews is its train split).",
        licence="research use (Large Movie Review Dataset)",
        size="25k train, 25k test",
        balance="balanced",
        citation="Maas et al., ACL 2011",
    ),
)
"""Built-in tasks loaded from the Hugging Face hub."""

_HUB_GROUPS: tuple[TaskGroup, ...] = (
    TaskGroup(
        "glue",
        "The paper's 8 GLUE tasks.",
        tasks=("mnli", "qnli", "qqp", "sst2", "stsb", "mrpc", "rte", "cola"),
    ),
    TaskGroup("superglue", "SuperGLUE tasks.", tasks=("boolq", "cb", "superglue_rte", "wic", "copa")),
    TaskGroup(
        "paper-nli",
        "The paper's natural language inference group.",
        sources=("mnli", "qnli"),
        targets=("scitail", "snli"),
    ),
    TaskGroup(
        "paper-topic",
        "The paper's topic classification group.",
        sources=("dbpedia", "trec_coarse"),
        targets=("ag_news", "yahoo_answers"),
    ),
    TaskGroup(
        "paper-sentiment",
        "The paper's sentiment group.",
        sources=("sst2", "yelp_polarity"),
        targets=("sst5", "imdb"),
    ),
)

for _spec in (*HUB_SPECS, *OFFLINE_SPECS):
    register_task(_spec)
for _group in (*_HUB_GROUPS, *OFFLINE_GROUPS):
    register_group(_group)
del _spec, _group
