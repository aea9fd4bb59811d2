"""k6's statistics from aggregate rows, shared by every summary path (``metrics/sink.go``, v1.x):
trend percentiles by :func:`perflib.stats.percentile`, ``avg = sum/count``, rate = non-zero
samples / samples, counter rate = count / test-run duration, gauge value = last sample."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perflib.ingest.scan import (
    MAX_NAME_SPLITS,
    TREND_STATS,
    _declared_subs,
    _sub_key,
)
from perflib.ingest.trendstats import percentile_of, trend_percentiles

#: Types whose metric is certainly not a gauge (the gauge flag is on for any other type).
_NOT_GAUGE = ("trend", "rate", "counter")


def _assemble(
    rows: Sequence[Sequence[Any]],
    sub_aggs: Mapping[tuple[Any, ...], Sequence[Any]],
    meta: Mapping[str, dict[str, Any]],
    duration_s: float,
    warnings: list[str],
    trend_stats: Sequence[str] = TREND_STATS,
) -> dict[str, dict[str, Any]]:
    """k6's statistics from the aggregate rows ``(metric, name tag, whole, *aggregates)`` and
    the sub-metric aggregates (keyed by :func:`_sub_key`): shared by both summary paths.
    Trends get ``trend_stats``, in that order; their quantiles in the aggregates are
    :func:`trend_percentiles` of them."""
    seen = sorted({r[0] for r in rows})
    types: dict[str, str] = {}
    for m in seen:
        t = (meta.get(m) or {}).get("type")
        if t not in ("trend", "rate", "counter", "gauge"):
            warnings.append(f"metric {m!r} has no k6 Metric declaration: summarised as a trend")
            t = "trend"
        types[m] = t

    stats: dict[str, dict[str, Any]] = {}
    splits: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
    for metric, name, whole, *agg in rows:
        if whole:
            stats[metric] = _stats(types[metric], *agg, duration_s, trend_stats)
        elif name is not None and metric.startswith("http_req") and types[metric] != "gauge":
            splits.setdefault(metric, []).append((name, tuple(agg)))

    # Sub-metrics k6 declared (thresholds, expected_response:true): arbitrary tag filters.
    declared: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, parent, tags in _declared_subs(seen, meta):
        declared.add((parent, tuple(sorted(tags.items()))))
        agg = sub_aggs.get(_sub_key(name, parent, tags), (0, 0.0, None, None, None, 0, None))
        stats[name] = _stats(types[parent], *agg, duration_s, trend_stats)

    for metric, values in sorted(splits.items()):
        if len(values) > MAX_NAME_SPLITS:
            warnings.append(
                f"{metric}: {len(values)} distinct name tags; per-endpoint splits omitted "
                f"(limit {MAX_NAME_SPLITS}: set the name tag on URLs that carry ids)"
            )
            continue
        for name, agg in sorted(values):
            if (metric, (("name", name),)) not in declared:
                stats[f"{metric}{{name:{name}}}"] = _stats(
                    types[metric], *agg, duration_s, trend_stats
                )

    order = {m: i for i, m in enumerate(seen)}
    return dict(
        sorted(
            stats.items(), key=lambda kv: (order.get(kv[0].split("{")[0], 0), "{" in kv[0], kv[0])
        )
    )


def _stats(
    kind: str,
    n: int,
    total: float | None,
    lo: float | None,
    hi: float | None,
    q: Sequence[float] | None,
    nonzero: int,
    last: float | None,
    duration_s: float,
    trend_stats: Sequence[str] = TREND_STATS,
) -> dict[str, Any]:
    if kind == "trend":
        if n == 0:
            return dict.fromkeys(trend_stats, 0)
        pcts = trend_percentiles(trend_stats)
        if pcts and (q is None or len(q) != len(pcts) or any(v is None for v in q)):
            # Never stand in min for the percentiles: a trend always gets its quantiles.
            raise RuntimeError("internal error: trend aggregated without its percentiles")
        at = dict(zip(pcts, q or (), strict=True))
        plain = {"count": n, "avg": (total or 0.0) / n, "min": lo, "max": hi}
        return {s: plain[s] if s in plain else at[percentile_of(s)] for s in trend_stats}
    if kind == "rate":
        return {"rate": nonzero / n if n else 0.0, "passes": nonzero, "fails": n - nonzero}
    if kind == "counter":
        count = total or 0.0
        return {"count": count, "rate": count / duration_s if duration_s > 0 else 0.0}
    return {
        "value": last if last is not None else 0.0,
        "min": lo if lo is not None else 0.0,
        "max": hi if hi is not None else 0.0,
    }
