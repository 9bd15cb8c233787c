"""tpv.metrics agrees with scikit-learn / scipy, and counts invalid predictions as wrong."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from tpv.errors import ConfigError
from tpv.metrics import (
    METRICS,
    accuracy,
    binary_f1,
    compute_metric,
    macro_f1,
    matthews_corrcoef,
    pearson,
    spearman,
)

settings.register_profile("tpv-metrics", max_examples=60, deadline=None)
settings.load_profile("tpv-metrics")
pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")


@st.composite
def classification(draw: st.DrawFn, *, max_classes: int = 5, invalid: bool = True) -> tuple[list[int], list[int]]:
    """(predictions, labels): labels in [0, n), predictions may also be -1 (invalid)."""
    n_classes = draw(st.integers(2, max_classes))
    size = draw(st.integers(1, 40))
    labels = draw(st.lists(st.integers(0, n_classes - 1), min_size=size, max_size=size))
    low = -1 if invalid else 0
    preds = draw(st.lists(st.integers(low, n_classes - 1), min_size=size, max_size=size))
    return preds, labels


def _flip_invalid(preds: list[int], labels: list[int]) -> list[int]:
    """What T5's *_with_invalid metrics do on binary tasks: an invalid prediction becomes the wrong class."""
    return [1 - y if p == -1 else p for p, y in zip(preds, labels)]


def _binary(labels: list[int]) -> bool:
    return set(labels) <= {0, 1}


@given(classification())
def test_accuracy_matches_sklearn(data: tuple[list[int], list[int]]) -> None:
    """accuracy == sklearn accuracy_score, -1 never matching a label."""
    preds, labels = data
    assert accuracy(preds, labels) == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)


@given(classification(max_classes=2))
def test_binary_f1_matches_sklearn_with_invalid_flipped(data: tuple[list[int], list[int]]) -> None:
    """f1 == sklearn f1_score(binary) after invalid predictions become the other class."""
    preds, labels = data
    expected = skm.f1_score(labels, _flip_invalid(preds, labels), zero_division=0)
    assert binary_f1(preds, labels) == pytest.approx(expected, abs=1e-12)


@given(classification())
def test_macro_f1_matches_sklearn(data: tuple[list[int], list[int]]) -> None:
    """macro_f1 == sklearn f1_score(average='macro') over the classes in labels and valid predictions."""
    preds, labels = data
    if _binary(labels):
        preds = _flip_invalid(preds, labels)
    classes = sorted(set(labels) | {p for p in preds if p >= 0})
    expected = skm.f1_score(labels, preds, labels=classes, average="macro", zero_division=0)
    assert macro_f1(preds, labels) == pytest.approx(expected, abs=1e-12)


@given(classification())
def test_matthews_matches_sklearn(data: tuple[list[int], list[int]]) -> None:
    """matthews == sklearn matthews_corrcoef (binary: invalid flipped; else -1 is its own class)."""
    preds, labels = data
    if _binary(labels):
        preds = _flip_invalid(preds, labels)
    assert matthews_corrcoef(preds, labels) == pytest.approx(skm.matthews_corrcoef(labels, preds), abs=1e-9)


scores = st.floats(-5, 5, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 2))


@given(st.lists(st.tuples(scores, scores), min_size=3, max_size=40))
def test_pearson_and_spearman_match_scipy(pairs: list[tuple[float, float]]) -> None:
    """pearson / spearman == scipy pearsonr / spearmanr (nan where scipy gives nan)."""
    preds, labels = [p for p, _ in pairs], [y for _, y in pairs]
    for ours, theirs in ((pearson, stats.pearsonr), (spearman, stats.spearmanr)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant input
            expected = float(theirs(preds, labels)[0])
        got = ours(preds, labels)
        if math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-9)


def test_constant_side_is_nan_despite_rounding() -> None:
    """A constant prediction gives nan even when its mean is not exactly representable (0.19 * 3 / 3)."""
    assert math.isnan(pearson([0.19, 0.19, 0.19], [0.0, 0.0, 1.0]))
    assert math.isnan(spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))


def test_invalid_predictions_count_as_wrong() -> None:
    """-1 and None are wrong for every classification metric, never right."""
    labels = [1, 0, 1, 0]
    assert accuracy([-1, None, 1, 0], labels) == 0.5
    assert binary_f1([-1, -1, -1, -1], labels) == 0.0
    assert matthews_corrcoef([-1, -1, -1, -1], labels) == -1.0
    expected = skm.f1_score([2, 1, 0], [2, -1, 0], labels=[0, 1, 2], average="macro", zero_division=0)
    assert macro_f1([2, -1, 0], [2, 1, 0]) == pytest.approx(expected)


def test_invalid_regression_prediction_scores_below_every_label() -> None:
    """A None/nan regression prediction becomes min(labels) - 1, as T5's STS-B default -1."""
    labels = [0.0, 2.5, 5.0, 4.0]
    assert pearson([None, 2.5, 5.0, float("nan")], labels) == pytest.approx(
        stats.pearsonr([-1.0, 2.5, 5.0, -1.0], labels)[0]
    )


def test_compute_metric_by_name() -> None:
    """compute_metric dispatches every metric name a TaskSpec may use."""
    assert set(METRICS) == {"accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman"}
    assert compute_metric("accuracy", [1, 0, -1], [1, 1, 0]) == pytest.approx(1 / 3)
    assert compute_metric("spearman", [1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


def test_metric_errors_are_config_errors() -> None:
    """Unknown names, length mismatches, empty input and bad labels raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        compute_metric("bleu", [1], [1])
    with pytest.raises(ConfigError, match="2 predictions but 1 labels"):
        accuracy([1, 0], [1])
    with pytest.raises(ConfigError, match="no labels"):
        accuracy([], [])
    with pytest.raises(ConfigError, match="binary"):
        binary_f1([0, 2], [0, 2])
    with pytest.raises(ConfigError, match="class indices"):
        accuracy([0], [-1])
    with pytest.raises(ConfigError, match="numbers"):
        pearson([1.0, 2.0], ["a", "b"])
