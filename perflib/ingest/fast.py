"""The strict fast reader of a cold summary: ``perflib.ingest._k6scan`` (C, zlib) reads k6's one line
shape at a third of DuckDB's JSON-parse cost and refuses any other file (docs/ingest.md)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from perflib.ingest.aggregate import (
    _NOT_GAUGE,
    _assemble,
)
from perflib.ingest.cache import (
    _progress,
)
from perflib.ingest.scan import (
    _MAX_LINE_BYTES,
    MAX_NAME_SPLITS,
    TREND_STATS,
    _declared_subs,
    _head_metric_lines,
    _is_gzip,
    _json_string,
    _merge_meta,
    _parse_metric_lines,
    _sub_key,
    _summary_tags,
    _SummaryParts,
    _value_limits,
)
from perflib.ingest.trendstats import trend_percentiles

#: Bigger files go to DuckDB, whose ``memory_limit`` bounds them: the fast reader keeps every
#: sample's value (8 bytes, about 3 % of k6's NDJSON) until the statistics are computed.
_FAST_MAX_BYTES = 4 * 1024**3


def fast_reader() -> Any | None:
    """The compiled strict reader :mod:`perflib.ingest._k6scan`, or None.

    None when the extension was not built (an install without a C compiler) or when
    ``PERFLIB_K6_FAST=0`` asks for DuckDB's reader on every file (to compare, or to rule the
    fast reader out). ``summarize`` is correct either way; only its speed differs.
    """
    if os.environ.get("PERFLIB_K6_FAST", "1") == "0":
        return None
    try:
        from perflib.ingest import _k6scan
    except ImportError:
        return None
    return _k6scan


def _fast_summary(
    paths: Sequence[Path], trend_stats: Sequence[str] = TREND_STATS
) -> _SummaryParts | None:
    """Cold summary of k6 files (plain or gzip, one or several segments) read by the strict C
    scanner (``perflib/ingest/_k6scan.c``).

    Why: DuckDB's JSON parse alone costs about 0.23 CPU-s on an 84 MB file; the scanner reads
    k6's one line shape in about a third of that, so the whole summary no longer needs two free
    cores to be 10x faster than pandas (docs/ingest.md). The scanner only turns bytes into
    per-series value columns; the statistics are numpy's, with :func:`perflib.stats.percentile`.

    It accepts nothing but lines exactly as k6 writes them, so there is nothing to skip or
    count: every physical line is parsed. For any other file (a cut last line or gzip stream,
    a blank line, re-serialised JSON, a sub-metric on a tag the heads did not announce…) it
    returns None and the DuckDB readers take over with their line accounting;
    ``PERFLIB_K6_FAST=0`` forces that.
    """
    from perflib.stats import percentile

    pcts = trend_percentiles(trend_stats)
    scanner = fast_reader()
    if scanner is None:
        return None
    gz = [_is_gzip(p) for p in paths]
    sizes = [p.stat().st_size for p in paths]
    # Memory: 8 bytes per sample (~3 % of the NDJSON; gzip inflates about 10x).
    if sum(n * (10 if z else 1) for n, z in zip(sizes, gz, strict=True)) > _FAST_MAX_BYTES:
        return None
    # The tag keys to read: ``name`` (per-endpoint splits) and every key a sub-metric declared
    # in a file's head filters on (k6 declares a metric just before its first sample); a later
    # declaration needing another key hands the files over below.
    guess = _merge_meta(
        _parse_metric_lines(_head_metric_lines(p, z)) for p, z in zip(paths, gz, strict=True)
    )
    keys = _summary_tags(guess)
    # The scanner matches keys byte for byte and rejects escaped ones: only plain keys.
    if len(keys) > 32 or any(json.dumps(k, ensure_ascii=False)[1:-1] != k for k in keys):
        return None

    import importlib
    import threading

    # numpy's import (~0.05 s) runs while the scanner, which releases the GIL, reads.
    threading.Thread(target=importlib.import_module, args=("numpy",), daemon=True).start()
    size = sum(sizes)
    scans = []
    with _progress(f"reading {paths[0].name} ({size / 1048576:,.0f} MiB)", size):
        for path, z in zip(paths, gz, strict=True):
            fd = os.open(path, os.O_RDONLY)
            try:
                got = scanner.scan(fd, z, tuple(k.encode() for k in keys), _MAX_LINE_BYTES)
            finally:
                os.close(fd)
            if isinstance(got, str):
                return None  # e.g. "line 9: the last line is unterminated": DuckDB counts it
            scans.append(got)

    metas = []
    for _, metric_lines, *_ in scans:
        # Every Metric line must decode (a cut one is for the general path to count).
        declared = set()
        for raw in metric_lines:
            try:
                declared.add(json.loads(raw)["data"]["name"])
            except (ValueError, KeyError, TypeError):
                return None
        meta = _parse_metric_lines(metric_lines)  # file order: a re-declaration wins, as in k6
        if set(meta) != declared:
            return None
        metas.append(meta)
    meta = dict(sorted(_merge_meta(metas).items()))
    if any(k not in keys for _, _, tags in _declared_subs(meta, meta) for k in tags):
        return None  # a sub-metric declared after the heads filters on a tag that was not read

    import numpy as np

    # Every series of every file, decoded: (metric, tag values by key, values, (time, line) of
    # the latest sample, its value, compensated sum and its compensation).
    series: list[tuple[str, tuple[str | None, ...], np.ndarray, tuple[int, int], float, float,
                       float]] = []  # fmt: skip
    for _, _, metric_names, raw_values, file_series, *_ in scans:
        names = [m.decode() for m in metric_names]  # plain UTF-8: the scanner checked
        values = [[_json_string(r) for r in raw] for raw in raw_values]
        for mid, ids, blob, t_last, line, v_last, total, comp in file_series:
            tags = tuple(values[k][i] if i >= 0 else None for k, i in enumerate(ids))
            column = np.frombuffer(blob, np.float64)
            low, high = _value_limits(meta.get(names[mid]))
            if column.size and not (column.min() >= low and column.max() <= high):
                return None  # NaN, ±inf, negative or absurd: DuckDB excludes and counts them
            series.append((names[mid], tags, column, (t_last, line), v_last, total, comp))

    def agg(members: Sequence[int], metric: str) -> tuple[Any, ...]:
        """``(n, total, min, max, quantiles, non-zero, last)``, as the DuckDB queries give."""
        kind = (meta.get(metric) or {}).get("type")
        cols = [series[i][2] for i in members]
        v = cols[0] if len(cols) == 1 else np.concatenate(cols)
        q = None
        if kind not in ("rate", "counter", "gauge"):  # trend, or undeclared: as a trend
            q = [float(x) for x in percentile(v, list(pcts))] if pcts else []
        last = None
        if kind not in _NOT_GAUGE:  # the latest sample; on a tie the later line, as in k6
            last = series[max(members, key=lambda i: series[i][3])][4]
        # Each series' compensated sum, added exactly: large values that cancel do not
        # swallow small ones (DuckDB's fsum does the same).
        parts = [x for i in members for x in series[i][5:7]]
        try:
            total = math.fsum(parts)
        except (OverflowError, ValueError):  # beyond ±1.8e308, or inf − inf: as DuckDB says
            total = float(sum(parts))
        return (int(v.size), total, float(v.min()), float(v.max()), q,
                int(np.count_nonzero(v)), last)  # fmt: skip

    whole: dict[str, list[int]] = {}
    split: dict[str, dict[str | None, list[int]]] = {}
    for i, (metric, tags, *_) in enumerate(series):
        whole.setdefault(metric, []).append(i)
        if metric.startswith("http_req"):
            split.setdefault(metric, {}).setdefault(tags[0], []).append(i)
    rows: list[tuple[Any, ...]] = [(m, None, True, *agg(s, m)) for m, s in whole.items()]
    for metric, by_name in split.items():
        named = len(by_name) - (None in by_name)
        for name, members in by_name.items():
            # Past the limit _assemble only counts the splits (and warns), and it ignores
            # samples without a name: skip the work.
            omitted = named > MAX_NAME_SPLITS or name is None
            stats = (0, 0.0, None, None, None, 0, None) if omitted else agg(members, metric)
            rows.append((metric, name, False, *stats))
    sub_aggs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for sub, parent, want in _declared_subs(whole, meta):
        at = [(keys.index(k), v) for k, v in want.items()]
        members = [i for i in whole[parent] if all(series[i][1][j] == v for j, v in at)]
        if members:
            sub_aggs[_sub_key(sub, parent, want)] = agg(members, parent)

    warnings: list[str] = []
    starts = [s[5] for s in scans if s[5] is not None]
    if not starts:
        return None  # no samples at all: the general path words the warnings
    span = max(s[6] for s in scans if s[6] is not None) - min(starts)
    result = _assemble(rows, sub_aggs, meta, max(span, 0) / 1e9, warnings, trend_stats)
    return result, {"parsed": sum(s[0] for s in scans), "skipped": 0}, warnings, meta, {}
