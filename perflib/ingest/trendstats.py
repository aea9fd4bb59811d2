"""k6's summary trend statistics (``summaryTrendStats`` / ``--summary-trend-stats``): parsing
them with k6's rules and finding the ones a run was recorded with.

Why: k6 prints, for every trend, exactly the statistics the run asked for (``p(99.9)``
included) and spells each key as asked; a recomputed summary that prints a fixed set
cannot be compared with k6's own. The parse follows k6 v1.x (``lib/options.go``
``validateSummaryTrendStats`` and ``metrics/sink.go``): ``avg``, ``min``, ``med``,
``max``, ``count`` and ``p(N)`` with 0 ≤ N ≤ 100, the key kept as written (``p(99.90)``
stays ``p(99.90)``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perflib.ingest.scan import TREND_STATS, K6InputError

#: The statistics that are not percentiles.
PLAIN_STATS: tuple[str, ...] = ("avg", "min", "med", "max", "count")

#: k6's own default (``avg,min,med,max,p(90),p(95)``), for a run whose summary says nothing.
K6_DEFAULT_TREND_STATS: tuple[str, ...] = ("avg", "min", "med", "max", "p(90)", "p(95)")


def percentile_of(stat: str) -> float | None:
    """The percentile (0–100) a stat names (``med`` is 50), or None for avg/min/max/count."""
    if stat == "med":
        return 50.0
    if stat.startswith("p(") and stat.endswith(")"):
        return float(stat[2:-1])
    return None


def parse_trend_stats(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The stats of ``"avg,min,med,max,p(90),p(99.9),count"`` (or a list of them), checked as
    k6 checks them; a :class:`K6InputError` in k6's words names the first bad one."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        stat = str(raw).strip()
        if stat in PLAIN_STATS:
            pass
        elif stat.startswith("p(") and stat.endswith(")"):
            try:
                pct = float(stat[2:-1])
            except ValueError:
                pct = math.nan
            if not (0.0 <= pct <= 100.0):
                raise K6InputError(
                    f"invalid percentile trend stat value {stat!r}, "
                    "provide a number between 0 and 100"
                )
        else:
            raise K6InputError(f"invalid trend stat {stat!r}, unknown format")
        if stat not in out:
            out.append(stat)
    if not out:
        raise K6InputError("no trend stats given (e.g. 'avg,min,med,max,p(90),p(99.9),count')")
    return tuple(out)


def trend_percentiles(stats: Sequence[str]) -> tuple[float, ...]:
    """The distinct percentiles (0–100, ascending) the stats need computed."""
    return tuple(sorted({p for s in stats if (p := percentile_of(s)) is not None}))


def _k6_order(keys: Sequence[str]) -> tuple[str, ...]:
    """Stats found as keys of a JSON object (k6 writes them in Go's random map order) in the
    order k6's default list uses: avg, min, med, max, the percentiles ascending, count."""
    pcts = sorted((s for s in keys if s.startswith("p(")), key=lambda s: percentile_of(s) or 0)
    return (
        tuple(s for s in ("avg", "min", "med", "max") if s in keys)
        + tuple(pcts)
        + (("count",) if "count" in keys else ())
    )


def run_trend_stats(path: str | Path) -> tuple[str, ...] | None:
    """The trend stats a run was recorded with, or None when it does not say.

    ``path``: a run directory, or a k6 file inside one. In order: the manifest's
    ``summary_trend_stats``; k6's summary files (``k6_summaries``, else ``k6-summary.json``):
    ``options.summaryTrendStats`` of ``handleSummary`` data, else the keys k6 wrote for
    ``http_req_duration`` (or ``iteration_duration``), exactly the stats it computed.
    """
    from perflib.rundir import MANIFEST

    p = Path(path)
    run = p if p.is_dir() else p.parent
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # no or bad manifest: the summary files
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    declared = manifest.get("summary_trend_stats") if isinstance(manifest, dict) else None
    if declared:
        return parse_trend_stats(declared)
    names = (manifest.get("k6_summaries") if isinstance(manifest, dict) else None) or []
    for name in [*names, "k6-summary.json"]:
        stats = _stats_in_summary(run / str(name))
        if stats:
            return stats
    return None


def _stats_in_summary(path: Path) -> tuple[str, ...] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    options = doc.get("options")
    if isinstance(options, dict) and options.get("summaryTrendStats"):
        return parse_trend_stats(options["summaryTrendStats"])
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict):
        return None
    # k6's built-in trends: their keys are exactly the stats k6 computed for every trend
    for name in ("http_req_duration", "iteration_duration"):
        m = metrics.get(name)
        if not isinstance(m, dict):
            continue
        values = m["values"] if isinstance(m.get("values"), dict) else m
        keys = [str(k) for k in values if k != "thresholds"]
        try:
            return parse_trend_stats(_k6_order(keys)) if keys else None
        except K6InputError:
            return None
    return None


__all__ = [
    "K6_DEFAULT_TREND_STATS",
    "PLAIN_STATS",
    "TREND_STATS",
    "parse_trend_stats",
    "percentile_of",
    "run_trend_stats",
    "trend_percentiles",
]
