"""The lab's statistics, each written once: every figure perflib prints comes from here.

* :func:`percentile` — k6's definition, Hyndman & Fan (1996) type 7.
* :func:`percentile_ci` — distribution-free CI of a percentile from binomial order statistics.
* :func:`bootstrap_diff_ci` — bootstrap CI of a difference of a statistic between two samples.
* :func:`mann_whitney_p` — Mann–Whitney U two-sided p value.
* :func:`fisher_exact_p` — Fisher's exact test on a 2×2 table.
* :func:`equivalence` — two one-sided tests (TOST, Schuirmann 1987) on a difference's CI.
* :func:`theil_sen` — Theil–Sen slope with the Sen (1968) confidence interval.
* :func:`sample_weights`, :func:`spans_above`, :func:`longest_span_above` — time above a
  threshold in a sampled series, with a gap limit.

**Missing values.** NaN is a missing measurement, not a value: :func:`percentile` and
:func:`percentile_ci` exclude NaN before ranking (``[1, 2, 3, nan]`` has median 2.0, as
``numpy.nanpercentile`` gives), and :func:`spans_above` treats a NaN sample as not above the
threshold (it ends a span). Callers that must report how many values were missing count them
with :func:`finite` (which returns the count beside the values). k6 itself never writes NaN
(its NDJSON is JSON, which has no NaN), so k6's own summary and ours agree on every k6 file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: `perflib summarize` never pays for it
    import pandas as pd

__all__ = [
    "Equivalence",
    "TheilSen",
    "bootstrap_diff_ci",
    "equivalence",
    "finite",
    "fisher_exact_p",
    "longest_span_above",
    "mann_whitney_p",
    "percentile",
    "percentile_ci",
    "sample_weights",
    "spans_above",
    "theil_sen",
]


def finite(values: Iterable[float] | np.ndarray) -> tuple[np.ndarray, int]:
    """``(values without NaN as float64, number of NaN removed)`` — the NaN policy's one home."""
    if not hasattr(values, "__len__"):
        values = list(values)
    arr = np.asarray(values, dtype="float64").ravel()
    keep = ~np.isnan(arr)
    return arr[keep], int(arr.size - keep.sum())


def percentile(
    values: Iterable[float] | np.ndarray, p: float | Sequence[float], *, axis: int | None = None
) -> Any:
    """k6's percentile: linear interpolation between closest ranks at index ``p/100·(n−1)``.

    This is Hyndman & Fan (1996), "Sample quantiles in statistical packages", definition 7 —
    k6's ``TrendSink.P`` (``metrics/sink.go``: ``i := pct*(count-1); j + (k-j)*(i-floor(i))``),
    ``numpy.percentile(method="linear")`` and DuckDB's ``quantile_cont``. ``p`` is in percent
    (95 for p(95)). NaN is excluded (module docstring); an empty input gives NaN (k6 prints
    0). A scalar ``p`` gives a float, a sequence an array. With ``axis`` (the vectorised form
    :func:`bootstrap_diff_ci` needs) the values are an n-d array reduced along that axis.
    """
    ps = np.atleast_1d(np.asarray(p, dtype="float64"))
    if np.any((ps < 0) | (ps > 100)):
        raise ValueError(f"percentile p must be within [0, 100], got {p!r}")
    if axis is not None:
        arr2 = np.asarray(values, dtype="float64")
        with np.errstate(invalid="ignore"):
            return np.nanpercentile(arr2, p, axis=axis, method="linear")
    arr, _ = finite(values)
    n = arr.size
    if n == 0:
        out = np.full(ps.shape, np.nan)
    else:
        i = ps / 100.0 * (n - 1)
        lo = np.floor(i).astype(np.int64)
        hi = np.ceil(i).astype(np.int64)
        # Only the closest ranks are needed: a partition on them (O(n)), not a full sort.
        arr = np.partition(arr, np.unique(np.concatenate([lo, hi])))
        j, k = arr[lo], arr[hi]
        with np.errstate(invalid="ignore"):  # equal neighbours, ±inf too (inf − inf is nan)
            out = np.where(k == j, j, j + (k - j) * (i - lo))
    return float(out[0]) if np.ndim(p) == 0 else out


def percentile_ci(values: Any, p: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the ``p`` percentile from binomial order statistics.

    The number of samples below the true quantile is Binomial(n, p/100), so the order
    statistics of ranks ``l = B⁻¹(α/2)`` and ``u = B⁻¹(1 − α/2) + 1`` bracket it with
    probability ≥ ``confidence`` (Hahn & Meeker, *Statistical Intervals*, 1991, §5.2; asv's
    ``statistics.quantile_ci``). A side that needs a rank outside 1..n is NaN: too few samples
    to bound it (a p99 from 50 requests has no upper bound). It assumes independent samples.
    """
    from scipy.stats import binom

    x, _ = finite(values)
    x = np.sort(x)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    q = p / 100.0
    lo_rank = int(binom.ppf(alpha / 2, n, q))  # 1-based rank of the lower bound
    hi_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    lo = float(x[lo_rank - 1]) if lo_rank >= 1 else math.nan
    hi = float(x[hi_rank - 1]) if hi_rank <= n else math.nan
    return lo, hi


def bootstrap_diff_ci(
    x: np.ndarray,
    y: np.ndarray,
    stat: Callable[..., np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
    method: str,
    seed: int,
) -> tuple[float, float]:
    """CI of ``stat(y) − stat(x)`` by the bootstrap (Efron & Tibshirani, *An Introduction to
    the Bootstrap*, 1993; ``method`` "percentile" or "BCa", ch. 14), resampling each sample
    independently (``scipy.stats.bootstrap``, ``paired=False``). ``stat(values, axis)`` must
    be vectorised. NaN bounds with fewer than two values on a side."""
    from scipy.stats import bootstrap

    if x.size < 2 or y.size < 2:
        return math.nan, math.nan

    def diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return stat(b, axis) - stat(a, axis)

    batch = max(1, int(2e7 // max(x.size + y.size, 1)))
    res = bootstrap(
        (x, y),
        diff,
        vectorized=True,
        paired=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        batch=batch,
        rng=np.random.default_rng(seed),
    )
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def mann_whitney_p(b: np.ndarray, a: np.ndarray) -> float:
    """Two-sided p value of the Mann–Whitney U test (Mann & Whitney 1947) that ``b`` and
    ``a`` come from the same distribution (``scipy.stats.mannwhitneyu``); NaN when a side is
    empty. Like every per-request test it assumes independent samples."""
    from scipy.stats import mannwhitneyu

    if np.size(a) == 0 or np.size(b) == 0:
        return math.nan
    return float(mannwhitneyu(b, a, alternative="two-sided").pvalue)


def fisher_exact_p(table: Sequence[Sequence[int]]) -> float:
    """Two-sided p value of Fisher's exact test on a 2×2 table (Fisher 1922;
    ``scipy.stats.fisher_exact``): are the failure rates of two sides different?"""
    from scipy.stats import fisher_exact

    return float(fisher_exact([list(r) for r in table]).pvalue)


@dataclass(frozen=True)
class Equivalence:
    """The outcome of :func:`equivalence`: a difference judged against a margin ±``margin``.

    ``verdict`` is ``"unchanged"`` (the CI lies inside the margin), ``"slower"`` /
    ``"faster"`` (the CI lies wholly beyond +margin / −margin) or ``"inconclusive"``
    (the CI straddles a margin edge); ``n_to_decide`` is the total number of observations a
    side would need for the current estimate to decide, ``None`` when already decided or
    when no size would (an estimate on the margin edge, no CI).
    """

    delta: float
    ci_low: float
    ci_high: float
    margin: float
    alpha: float
    n: int  # observations per side now (the smaller side)
    verdict: str
    n_to_decide: int | None
    method: str = (
        "two one-sided tests (Schuirmann 1987): equivalent at level α when the (1 − 2α) CI "
        "of the difference lies inside ±margin; n to decide from CI half-width ∝ 1/√n"
    )

    @property
    def ci_level(self) -> float:
        return 1.0 - 2.0 * self.alpha

    @property
    def more_to_decide(self) -> int | None:
        """Observations per side to add (``n_to_decide − n``), None when not applicable."""
        return None if self.n_to_decide is None else max(0, self.n_to_decide - self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ci_level": self.ci_level,
            "margin": self.margin,
            "alpha": self.alpha,
            "n": self.n,
            "n_to_decide": self.n_to_decide,
            "more_to_decide": self.more_to_decide,
            "method": self.method,
        }


def equivalence(
    delta: float, ci_low: float, ci_high: float, margin: float, *, alpha: float, n: int
) -> Equivalence:
    """Judge a difference against ±``margin`` by two one-sided tests (TOST).

    Schuirmann (1987), "A comparison of the two one-sided tests procedure and the power
    approach for assessing the equivalence of average bioavailability": rejecting both
    H₀⁻: Δ ≤ −margin and H₀⁺: Δ ≥ +margin at level α is the same as the (1 − 2α) confidence
    interval ``[ci_low, ci_high]`` lying inside (−margin, +margin) — so the caller passes
    that interval (e.g. :func:`bootstrap_diff_ci` at ``confidence = 1 − 2α``). A CI wholly
    beyond one edge is a change larger than the margin ("slower" above, "faster" below);
    anything else is "inconclusive".

    How many observations would decide: the CI half-width ``h`` shrinks as 1/√n (the
    standard error of a percentile or a mean does), so keeping the centre ``c`` the CI
    decides once ``h' = | margin − |c| |``, at ``n · (h / h')²`` per side. An estimate — the
    centre moves as data arrive.
    """
    if not all(math.isfinite(v) for v in (ci_low, ci_high, margin)) or margin <= 0:
        return Equivalence(delta, ci_low, ci_high, margin, alpha, n, "inconclusive", None)
    if -margin < ci_low and ci_high < margin:
        verdict = "unchanged"
    elif ci_low > margin:
        verdict = "slower"
    elif ci_high < -margin:
        verdict = "faster"
    else:
        verdict = "inconclusive"
    needed = None
    if verdict == "inconclusive" and n > 0:
        centre, half = (ci_low + ci_high) / 2.0, (ci_high - ci_low) / 2.0
        target = abs(margin - abs(centre))
        if target > 0 and half > 0:
            needed = int(math.ceil(n * (half / target) ** 2))
    return Equivalence(delta, ci_low, ci_high, margin, alpha, n, verdict, needed)


@dataclass(frozen=True)
class TheilSen:
    """A Theil–Sen fit: slope, its CI, intercept."""

    slope: float
    low: float
    high: float
    intercept: float


def theil_sen(y: np.ndarray, x: np.ndarray, confidence: float = 0.95) -> TheilSen:
    """Theil (1950) / Sen (1968) slope: the median of all pairwise slopes, robust to spikes
    and outliers; the CI comes from Kendall's tau distribution (Sen 1968), via
    ``scipy.stats.theilslopes``. The CI assumes independent residuals (autocorrelated series
    such as memory samples make it optimistic)."""
    from scipy.stats import theilslopes

    res = theilslopes(y, x, alpha=confidence)
    return TheilSen(
        float(res.slope), float(res.low_slope), float(res.high_slope), float(res.intercept)
    )


# --------------------------------------------------------------------------- time above


def _epoch_s(times: pd.Series | Sequence[Any]) -> np.ndarray:
    """Seconds since the epoch as floats, whatever the datetime resolution (ns, us, …)."""
    import pandas as pd

    t = pd.to_datetime(pd.Series(times), utc=True)
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64")


def sample_weights(times: pd.Series, max_gap_s: float) -> np.ndarray:
    """Seconds each sample stands for: the time to the next sample — the step-function
    ("sample and hold") reading of a sampled series, so n samples 1 s apart cover n s.

    The last sample, and a sample followed by a gap longer than ``max_gap_s`` (unknown time,
    not time at the sampled value), stand for the median interval instead (the sampler's
    nominal period), never more than ``max_gap_s``. A lone sample stands for 0 s.
    """
    t = _epoch_s(times)
    if t.size == 0:
        return np.array([])
    dt = np.diff(t)
    nominal = min(float(np.median(dt)), max_gap_s) if dt.size else 0.0
    dt = np.where(dt > max_gap_s, nominal, dt)
    return np.append(dt, nominal)


def spans_above(
    times: pd.Series,
    values: pd.Series,
    threshold: float,
    *,
    max_gap_s: float,
    inclusive: bool = False,
) -> pd.DataFrame:
    """Unbroken runs of samples strictly above ``threshold``, and how long each lasted.

    A sample stands for its interval (:func:`sample_weights`), so a run's ``span_s`` is the
    sum of its samples' intervals: 60 one-second samples above 800 MB last 60 s (first to
    last sample is 59 s, plus the last sample's own second). A sample at or below the
    threshold (below it with ``inclusive``), a missing value, or a gap longer than
    ``max_gap_s`` ends a run. Columns:
    ``start``, ``end`` (first / last sample above), ``span_s``, ``samples``, ``max``.
    """
    import pandas as pd

    cols = ["start", "end", "span_s", "samples", "max"]
    if len(times) == 0:
        return pd.DataFrame(columns=cols)
    t = pd.Series(pd.to_datetime(pd.Series(times), utc=True)).reset_index(drop=True)
    v = pd.to_numeric(pd.Series(values), errors="coerce").astype("float64").reset_index(drop=True)
    above = ((v >= threshold) if inclusive else (v > threshold)).to_numpy()
    secs = _epoch_s(t)
    gap = np.append(True, np.diff(secs) > max_gap_s)
    w = sample_weights(t, max_gap_s)
    # run boundaries: a run starts where `above` begins or a gap breaks it
    starts = above & (gap | ~np.append(False, above[:-1]))
    run_id = np.cumsum(starts)
    rows = []
    for rid in np.unique(run_id[above]):
        idx = np.flatnonzero(above & (run_id == rid))
        i, j = int(idx[0]), int(idx[-1])
        rows.append(
            {
                "start": t[i],
                "end": t[j],
                "span_s": float(w[i : j + 1].sum()),
                "samples": j - i + 1,
                "max": float(v[i : j + 1].max()),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def longest_span_above(
    times: pd.Series,
    values: pd.Series,
    threshold: float,
    *,
    max_gap_s: float,
    inclusive: bool = False,
) -> float:
    """The longest :func:`spans_above` span in seconds (0 when the series never exceeds it)."""
    sp = spans_above(times, values, threshold, max_gap_s=max_gap_s, inclusive=inclusive)
    return float(sp["span_s"].max()) if len(sp) else 0.0
