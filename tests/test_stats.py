"""perflib.stats: one percentile, one span rule, each checked against an independent computation.

The former disagreements (issue 13) are settled here: the NaN percentile and the 60-sample
span have one answer; tests/sizing/test_sizing.py checks the span and the OOM count through
`analyze` and `recommend`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perflib import stats

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def test_percentile_is_k6_linear_interpolation() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 101, 1000):
        values = rng.lognormal(3, 1, n)
        for p in (0, 1, 50, 90, 95, 99, 99.9, 100):
            assert stats.percentile(values, p) == pytest.approx(
                np.percentile(values, p, method="linear"), rel=1e-12
            )
    # k6's formula by hand on a tiny sample: index 0.95*(4-1)=2.85 → 30 + 0.85*(40-30).
    assert stats.percentile([40, 10, 30, 20], 95) == pytest.approx(38.5)
    # [1..10], p95 → index 8.55 → 9.55
    assert stats.percentile(np.arange(1.0, 11.0), 95) == pytest.approx(9.55)
    assert stats.percentile(iter([1.0, 2.0]), 50) == 1.5
    assert list(stats.percentile([1, 2, 3], [0, 50, 100])) == [1, 2, 3]
    assert math.isnan(stats.percentile([], 95))
    with pytest.raises(ValueError):
        stats.percentile([1, 2], 101)


def test_nan_is_excluded_everywhere_with_one_answer() -> None:
    # Before issue 13: 2.5 from the k6 module's percentile (NaN sorted last), 2.0 from analysis.
    vals = [1.0, 2.0, 3.0, math.nan]
    assert stats.percentile(vals, 50) == 2.0 == float(np.nanpercentile(vals, 50))
    assert stats.percentile(np.array(vals), [50])[0] == 2.0
    # the vectorised form (bootstrap) follows the same policy, row by row
    grid = np.array([vals, [4.0, math.nan, 6.0, 5.0]])
    assert list(stats.percentile(grid, 50, axis=-1)) == [2.0, 5.0]
    kept, dropped = stats.finite(vals)
    assert list(kept) == [1.0, 2.0, 3.0] and dropped == 1
    assert all(math.isnan(v) for v in stats.percentile_ci([math.nan], 95))


def test_percentile_ci_covers_the_true_quantile() -> None:
    from scipy.stats import expon

    rng = np.random.default_rng(11)
    truth = float(expon.ppf(0.95))
    covered = 0
    for _ in range(400):
        lo, hi = stats.percentile_ci(rng.exponential(size=300), 95)
        covered += lo <= truth <= hi
    # order-statistic intervals are conservative: coverage ≥ 95 % up to sampling error
    assert covered / 400 >= 0.93
    # ranks: n = 8 cannot bound a p95 from above; the lower bound is the 6th smallest
    lo, hi = stats.percentile_ci(np.arange(1.0, 9.0), 95)
    assert lo == 6.0 and math.isnan(hi)
    assert all(math.isnan(v) for v in stats.percentile_ci([], 95))


def _series(values: list[float], step_s: float = 1.0) -> tuple[pd.Series, pd.Series]:
    t = pd.Series([T0 + pd.Timedelta(seconds=i * step_s) for i in range(len(values))])
    return t, pd.Series(values, dtype="float64")


def test_sixty_one_second_samples_last_sixty_seconds() -> None:
    # the case: 60 one-second samples above 800 MB last 60 s (a sample stands for
    # its interval), not 59 s (first to last sample)
    t, v = _series([500.0] * 5 + [850.0] * 60 + [500.0] * 5)
    sp = stats.spans_above(t, v, 800.0, max_gap_s=5.0)
    assert list(sp["span_s"]) == [60.0] and list(sp["samples"]) == [60]
    assert stats.longest_span_above(t, v, 800.0, max_gap_s=5.0) == 60.0
    # strictly above; NaN ends a span; one sample lasts one interval
    assert stats.longest_span_above(t, pd.Series([800.0] * 70), 800.0, max_gap_s=5.0) == 0.0
    t2, v2 = _series([900.0, 900.0, math.nan, 900.0, 500.0])
    assert list(stats.spans_above(t2, v2, 800.0, max_gap_s=5.0)["span_s"]) == [2.0, 1.0]


def test_a_gap_breaks_a_span_and_is_not_counted() -> None:
    t, v = _series([900.0] * 10)
    t = pd.concat([t, t.iloc[-1:] + pd.Timedelta(seconds=30)], ignore_index=True)
    v = pd.concat([v, pd.Series([900.0])], ignore_index=True)
    sp = stats.spans_above(t, v, 800.0, max_gap_s=5.0)
    assert list(sp["span_s"]) == [10.0, 1.0]  # the sample before the gap stands for 1 s
    w = stats.sample_weights(t, 5.0)
    assert w.sum() == pytest.approx(11.0)


def test_theil_sen_recovers_a_known_slope() -> None:
    rng = np.random.default_rng(5)
    x = np.arange(200.0)
    y = 3.0 * x + 10 + rng.normal(0, 1, x.size)
    y[::17] += 500  # outliers do not move a median of slopes
    fit = stats.theil_sen(y, x)
    assert fit.low <= 3.0 <= fit.high and fit.slope == pytest.approx(3.0, abs=0.02)


def test_mann_whitney_and_bootstrap_see_a_shift_not_noise() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.exponential(1.0, 800), rng.exponential(1.5, 800)
    assert stats.mann_whitney_p(b, a) < 1e-6
    assert math.isnan(stats.mann_whitney_p(b, np.array([])))

    def p95(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return stats.percentile(v, 95, axis=axis)

    lo, hi = stats.bootstrap_diff_ci(
        a, b, p95, n_resamples=500, confidence=0.95, method="percentile", seed=0
    )
    true_delta = 1.5 * math.log(20) - math.log(20)  # exponential p95 = scale·ln 20
    assert lo > 0 and lo <= true_delta <= hi
    assert stats.fisher_exact_p([[5, 95], [5, 95]]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- equivalence


def _p95_tost(x: np.ndarray, y: np.ndarray, margin_pct: float = 10.0) -> stats.Equivalence:
    """TOST on Δp95 with the bootstrap's 90 % CI (α = 0.05 per side)."""

    def p95(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return stats.percentile(v, 95, axis=axis)

    lo, hi = stats.bootstrap_diff_ci(
        x, y, p95, n_resamples=1000, confidence=0.90, method="percentile", seed=3
    )
    base = float(np.percentile(x, 95))
    delta = float(np.percentile(y, 95)) - base
    return stats.equivalence(
        delta, lo, hi, margin_pct / 100 * base, alpha=0.05, n=min(x.size, y.size)
    )


def test_tost_equal_distributions_are_unchanged() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.lognormal(6.8, 0.4, 20_000), rng.lognormal(6.8, 0.4, 20_000)
    eq = _p95_tost(x, y)
    assert eq.verdict == "unchanged"
    assert -eq.margin < eq.ci_low and eq.ci_high < eq.margin
    assert eq.ci_level == pytest.approx(0.90) and eq.n_to_decide is None


def test_tost_a_30_percent_shift_is_slower_and_faster_backwards() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.lognormal(6.8, 0.4, 5000), 1.3 * rng.lognormal(6.8, 0.4, 5000)
    assert _p95_tost(x, y).verdict == "slower"
    assert _p95_tost(y, x).verdict == "faster"
    eq = _p95_tost(x, y)
    assert eq.ci_low > eq.margin  # the whole CI beyond +10 % of the baseline p95


def test_tost_too_few_requests_is_inconclusive_with_a_size_that_decides() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.lognormal(6.8, 0.4, 60), rng.lognormal(6.8, 0.4, 60)
    eq = _p95_tost(x, y)
    assert eq.verdict == "inconclusive"
    assert eq.n_to_decide is not None and eq.n_to_decide > eq.n
    # the estimate is the 1/√n rule: half-width × √(n / n') reaches |margin − |centre||
    centre, half = (eq.ci_low + eq.ci_high) / 2, (eq.ci_high - eq.ci_low) / 2
    scaled = half * math.sqrt(eq.n / eq.n_to_decide)
    assert scaled <= abs(eq.margin - abs(centre)) + 1e-9
    assert eq.more_to_decide == eq.n_to_decide - eq.n


def test_tost_edges_follow_the_interval_only() -> None:
    e = stats.equivalence
    assert e(0.0, -9.0, 9.0, 10.0, alpha=0.05, n=100).verdict == "unchanged"
    assert e(15.0, 11.0, 19.0, 10.0, alpha=0.05, n=100).verdict == "slower"
    assert e(-15.0, -19.0, -11.0, 10.0, alpha=0.05, n=100).verdict == "faster"
    # significant (excludes 0) but not beyond the margin: inconclusive, not "unchanged"
    straddle = e(8.0, 5.0, 11.0, 10.0, alpha=0.05, n=100)
    assert straddle.verdict == "inconclusive"
    assert straddle.n_to_decide == math.ceil(100 * (3.0 / 2.0) ** 2)
    assert e(0.0, math.nan, math.nan, 10.0, alpha=0.05, n=1).verdict == "inconclusive"
