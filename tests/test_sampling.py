"""few_shot: k per class, stratified, deterministic per seed, nested across the paper's shot counts."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.errors import ConfigError
from tpv.tasks import SHOTS, Example, few_shot

POOL = [Example(f"text {i}", i % 3) for i in range(3 * 1_100)]


def test_k_per_class() -> None:
    """few_shot(pool, k) holds exactly k examples of every class."""
    shots = few_shot(POOL, 25, seed=0)
    assert Counter(ex.label for ex in shots) == {0: 25, 1: 25, 2: 25}
    assert len({ex.text for ex in shots}) == 75


def test_same_seed_same_draw_other_seed_other_draw() -> None:
    """The draw depends only on the pool and the seed."""
    assert few_shot(POOL, 10, seed=3) == few_shot(list(POOL), 10, seed=3)
    assert few_shot(POOL, 10, seed=3) != few_shot(POOL, 10, seed=4)


def test_shots_are_nested_prefixes_across_the_paper_counts() -> None:
    """For 0/5/10/.../1000 shots each draw is a prefix of the next (so also a subset)."""
    draws = [few_shot(POOL, k, seed=1) for k in SHOTS]
    for small, large in itertools.pairwise(draws):
        assert large[: len(small)] == small
    assert SHOTS == (0, 5, 10, 25, 50, 100, 250, 500, 1000)


def test_classes_interleave_round_robin() -> None:
    """The result cycles through the classes in label order."""
    assert [ex.label for ex in few_shot(POOL, 2, seed=0)] == [0, 1, 2, 0, 1, 2]


def test_zero_shots_is_empty() -> None:
    """k=0 returns no example (even from an empty pool)."""
    assert few_shot([], 0) == []


def test_too_few_examples_raise_unless_allowed() -> None:
    """A class with fewer than k examples raises ConfigError naming it; allow_fewer takes what there is."""
    pool = [Example("a", 0), Example("b", 0), Example("c", 1)]
    with pytest.raises(ConfigError, match="class 1 has 1 examples"):
        few_shot(pool, 2)
    assert Counter(ex.label for ex in few_shot(pool, 2, allow_fewer=True)) == {0: 2, 1: 1}


def test_bad_k_raises() -> None:
    """Negative or non-int k raises ConfigError; an empty pool with k > 0 too."""
    for k in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="k must be"):
            few_shot(POOL, k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        few_shot([], 3)


def test_regression_pools_take_k_in_all() -> None:
    """With float labels (STS-B) k examples are drawn in all."""
    pool = [Example(f"p{i}", i / 10) for i in range(50)]
    assert len(few_shot(pool, 7, seed=0)) == 7
    assert few_shot(pool, 7, seed=0) == few_shot(pool, 9, seed=0)[:7]


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=1, max_size=80),
    k_small=st.integers(0, 5),
    extra=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_nesting_law(labels: list[int], k_small: int, extra: int, seed: int) -> None:
    """For any pool, few_shot(k) is a prefix of few_shot(k + extra) and each class has min(k, its size)."""
    pool = [Example(f"x{i}", y) for i, y in enumerate(labels)]
    small = few_shot(pool, k_small, seed, allow_fewer=True)
    large = few_shot(pool, k_small + extra, seed, allow_fewer=True)
    assert large[: len(small)] == small
    sizes = Counter(labels)
    assert Counter(ex.label for ex in small) == {c: min(k_small, n) for c, n in sizes.items() if min(k_small, n)}
