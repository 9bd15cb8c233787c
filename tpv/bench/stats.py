"""Statistics of benchmark results: mean +- std over seeds, Welch t-tests, Bonferroni correction.

The paper reports the mean and standard deviation over seeds (or origins) and compares TPV with the best SPoT
baseline by Welch's t-test (unequal variances) with a Bonferroni correction over the comparisons. The t
statistic and the Welch-Satterthwaite degrees of freedom are computed here; the p-value comes from scipy's
Student t distribution, so :func:`welch_ttest` agrees with ``scipy.stats.ttest_ind(a, b, equal_var=False)``.

Degenerate cases scipy leaves as NaN are decided explicitly: two samples with zero variance and equal means give
``t = 0, p = 1``; with different means ``t = +-inf, p = 0``. Fewer than two values on a side cannot be tested
(``p = NaN``), and the comparison is reported as untested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tpv.errors import ConfigError

__all__ = ["Summary", "WelchResult", "bonferroni", "compare", "summarize", "welch_ttest"]


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of ``n`` values."""

    mean: float
    std: float
    n: int

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"84.5 ± 1.2"`` (values scaled by ``scale``, e.g. accuracies as percentages)."""
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready ``{"mean", "std", "n"}``."""
        return {"mean": self.mean, "std": self.std, "n": self.n}

    def ci95(self) -> float:
        """Half-width of the 95 % confidence interval of the mean: ``t(0.975, n - 1) * std / sqrt(n)``.

        Returns:
            The half-width (0 for a single value; NaN for none).
        """
        if self.n == 0:
            return math.nan
        if self.n == 1:
            return 0.0
        from scipy.stats import t as student_t

        return float(student_t.ppf(0.975, self.n - 1)) * self.std / math.sqrt(self.n)


def _finite(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if any(not math.isfinite(v) for v in out):
        raise ConfigError(f"{what}: values must be finite, got {out}")
    return out


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of ``values``.

    Args:
        values: the measurements (e.g. one test score per seed).

    Returns:
        The summary; an empty input gives ``Summary(nan, nan, 0)``.

    Raises:
        ConfigError: a value is NaN or infinite.
    """
    xs = _finite(values, "summarize")
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, 0.0, 1)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Summary(mean, math.sqrt(var), n)


@dataclass(frozen=True)
class WelchResult:
    """One Welch t-test of ``a`` against ``b`` (``t > 0`` when ``a``'s mean is higher).

    Attributes:
        t: the t statistic.
        df: Welch-Satterthwaite degrees of freedom.
        p: two-sided p-value (NaN when a side has fewer than 2 values).
        p_adjusted: the Bonferroni-adjusted p-value (``min(1, p * m)``); equals ``p`` until corrected.
        significant: ``p_adjusted < alpha``.
        mean_a: mean of ``a``.
        mean_b: mean of ``b``.
    """

    t: float
    df: float
    p: float
    p_adjusted: float
    significant: bool
    mean_a: float
    mean_b: float

    def to_dict(self) -> dict[str, float | bool | None]:
        """JSON-ready fields (NaN and infinities become ``None``)."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "t": clean(self.t),
            "df": clean(self.df),
            "p": clean(self.p),
            "p_adjusted": clean(self.p_adjusted),
            "significant": self.significant,
            "mean_a": clean(self.mean_a),
            "mean_b": clean(self.mean_b),
        }


def welch_ttest(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> WelchResult:
    """Two-sided Welch t-test (unequal variances) of the means of ``a`` and ``b``.

    Args:
        a: the first sample (e.g. TPV-initialized scores over seeds).
        b: the second sample (e.g. the best SPoT's scores).
        alpha: significance level for :attr:`WelchResult.significant` (before any correction).

    Returns:
        The result; ``t``, ``df`` and ``p`` equal ``scipy.stats.ttest_ind(a, b, equal_var=False)`` for samples with
        variance.

    Raises:
        ConfigError: non-finite values or ``alpha`` outside ``(0, 1)``.
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return WelchResult(math.nan, math.nan, math.nan, math.nan, False, sa.mean, sb.mean)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    diff = sa.mean - sb.mean
    se2 = va + vb
    if se2 == 0.0:
        if diff == 0.0:
            return WelchResult(0.0, math.nan, 1.0, 1.0, False, sa.mean, sb.mean)
        return WelchResult(math.copysign(math.inf, diff), math.nan, 0.0, 0.0, True, sa.mean, sb.mean)
    t = diff / math.sqrt(se2)
    df = se2**2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    from scipy.stats import t as student_t

    p = float(min(1.0, 2.0 * student_t.sf(abs(t), df)))
    return WelchResult(t, df, p, p, p < alpha, sa.mean, sb.mean)


def bonferroni(pvalues: Sequence[float], *, alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Bonferroni correction: ``p_adj = min(1, p * m)`` over the ``m`` tested (non-NaN) p-values.

    Args:
        pvalues: raw p-values; NaN marks an untested comparison (not counted in ``m``, stays NaN).
        alpha: family-wise significance level.

    Returns:
        ``(adjusted, significant)``, one entry per input.
    """
    m = sum(1 for p in pvalues if not math.isnan(p))
    adjusted = [p if math.isnan(p) else min(1.0, p * m) for p in pvalues]
    return adjusted, [(not math.isnan(p)) and p < alpha for p in adjusted]


def compare(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], *, alpha: float = 0.05) -> list[WelchResult]:
    """Welch t-tests of several ``(a, b)`` pairs with a Bonferroni correction over the family.

    Args:
        pairs: the comparisons, e.g. (TPV scores, best SPoT scores) for every target and shot count.
        alpha: family-wise significance level.

    Returns:
        One result per pair, with ``p_adjusted`` and ``significant`` after the correction.
    """
    raw = [welch_ttest(a, b, alpha=alpha) for a, b in pairs]
    adjusted, significant = bonferroni([r.p for r in raw], alpha=alpha)
    return [
        WelchResult(r.t, r.df, r.p, adj, sig, r.mean_a, r.mean_b) for r, adj, sig in zip(raw, adjusted, significant)
    ]
