"""k6's end-of-test summary computed from the NDJSON: the DuckDB paths (a direct aggregate pass or
the Parquet cache), assembled exactly as k6 does (``metrics/sink.go``, v1.x): trend percentiles
by :func:`perflib.stats.percentile` (DuckDB ``quantile_cont`` in SQL is the same definition),
``avg = sum/count``, rate = non-zero samples / samples, counter rate = count / test-run
duration, gauge value = last sample."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

from perflib.ingest.aggregate import (
    _NOT_GAUGE,
    _assemble,
)
from perflib.ingest.cache import (
    _account,
    _cache_key,
    _load_cached,
    _parse_into,
    _progress,
    cache_dir,
)
from perflib.ingest.fast import (
    _fast_summary,
)
from perflib.ingest.readers import (
    _points_sql,
    _submetric_filter,
)
from perflib.ingest.scan import (
    _BAD_AGGS,
    _MAX_LINE_BYTES,
    _NON_NEGATIVE,
    _VALUE_AGGS,
    BAD_VALUE_KINDS,
    TREND_STATS,
    Ingest,
    K6InputError,
    Source,
    _bad_value_sql,
    _decl_obj,
    _declared_subs,
    _duckdb,
    _duckdb_module,
    _excluded_warnings,
    _head_metric_lines,
    _is_gzip,
    _parse_metric_lines,
    _prescan,
    _Scan,
    _sql_ident,
    _sql_lit,
    _sql_str,
    _sub_key,
    _summary_tags,
    _time_ns_sql,
    _write_json,
    resolve_sources,
)
from perflib.ingest.trendstats import parse_trend_stats, trend_percentiles


def summarize(
    source: Source | Ingest, *, cache: bool = True, trend_stats: str | Sequence[str] | None = None
) -> dict[str, Any]:
    """k6's end-of-test statistics recomputed from raw NDJSON, in docs/contracts.md's JSON shape.

    ``trend_stats``: the statistics of every trend, in k6's ``--summary-trend-stats`` syntax
    (``"avg,min,med,max,p(90),p(99.9),count"`` or a list; keys spelled as given, as k6
    does); default :data:`TREND_STATS`. :func:`perflib.ingest.trendstats.run_trend_stats`
    finds the ones a run was recorded with.

    Covers every metric, every sub-metric k6 declared (thresholds, ``expected_response:true``)
    and per-endpoint ``{name:…}`` splits of HTTP metrics. Counter ``rate`` divides by the span
    from the first to the last sample (:func:`_run_duration_s`: k6 divides by its run clock,
    a few ms longer in short runs; docs/ingest.md gives the tolerance).

    On a cold cache, files in k6's exact byte shape are read by the strict C reader and
    summarised with numpy (:func:`_fast_summary`). Otherwise aggregation runs in DuckDB: from
    the Parquet cache when ``read_points`` already built it, else in one pass straight from
    one plain NDJSON file (:func:`_direct_summary`), else from the NDJSON into a narrow
    temporary table (only the tags a summary needs; it spills
    to disk past the memory limit). Memory holds the aggregates and, like
    k6, the values of each trend, never the file. The result is cached beside the source.
    """
    stats = TREND_STATS if trend_stats is None else parse_trend_stats(trend_stats)
    return _summary_and_meta(source, cache, stats)[0]


def _summary_cache_path(paths: Sequence[Path]) -> Path:
    return cache_dir(paths[0]) / "summary.json"


def _summary_cache_keys(paths: Sequence[Path], trend_stats: Sequence[str]) -> list[Any]:
    return [[str(p.resolve()), _cache_key(p)] for p in paths] + [list(trend_stats)]


def _value_aggs(trend_stats: Sequence[str], trend: str) -> str:
    """The aggregate columns of both DuckDB paths: the trend quantiles ``trend_stats`` need
    (none: a NULL list, as ``quantile_cont`` refuses an empty one)."""
    pcts = trend_percentiles(trend_stats)
    qs = ", ".join(repr(p / 100) for p in pcts)
    aggs = _VALUE_AGGS.format(qs=qs or "0.5", trend=trend)
    if not pcts:
        aggs = aggs.replace(f"quantile_cont(value, [0.5]) FILTER (WHERE {trend})", "NULL")
    return aggs


def _summary_and_meta(
    source: Source | Ingest, cache: bool, trend_stats: Sequence[str] = TREND_STATS
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    paths: list[Path] | None = None
    if not isinstance(source, Ingest):
        paths = resolve_sources(source)
        for p in paths:
            if not p.is_file():
                raise K6InputError(f"{p}: not a file")
        if cache:
            try:
                doc = json.loads(_summary_cache_path(paths).read_text(encoding="utf-8"))
                if doc.get("keys") == _summary_cache_keys(paths, trend_stats):
                    return doc["summary"], doc["meta"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass
    tmp = Path(tempfile.mkdtemp(prefix="perflib-k6-"))
    try:
        direct = None
        if paths is not None and not (cache and any(_load_cached(p) for p in paths)):
            # The common cold case: the strict C reader (plain, gzip, segments); else, for one
            # plain file, one DuckDB pass; else (None) the general path.
            direct = _fast_summary(paths, trend_stats)
            if direct is None and len(paths) == 1 and not _is_gzip(paths[0]):
                direct = _direct_summary(paths[0], tmp, trend_stats)
        if direct is not None:
            result, lines, warnings, meta, excluded = direct
            return _store_summary(
                {"metrics": result, "lines": lines, "warnings": warnings, "excluded": excluded},
                meta,
                paths,
                cache,
                trend_stats,
            )
        con = _duckdb(tmp)
        try:
            if isinstance(source, Ingest):
                ing = source
            else:
                assert paths is not None
                # A segment may hold samples of a sub-metric that only another one declares:
                # every table keeps the tags of all the segments' sub-metrics. The prescans
                # made for that are handed to the parse.
                hits = [_load_cached(p) if cache else None for p in paths]
                scans = [
                    None if hit or len(paths) == 1 else _prescan(p, _is_gzip(p))
                    for p, hit in zip(paths, hits, strict=True)
                ]
                extra: set[str] = set()
                for hit, scan in zip(hits, scans, strict=True):
                    if hit is not None:
                        extra.update(_summary_tags(hit.metrics))
                    elif scan is not None:
                        extra.update(_summary_tags(_parse_metric_lines(scan.metric_lines)))
                ing = Ingest(
                    [
                        hit
                        or _parse_into(
                            p, con, tmp, table=f"k6_{i}", narrow=True, extra_tags=extra, scan=scan
                        )
                        for i, (p, hit, scan) in enumerate(zip(paths, hits, scans, strict=True))
                    ]
                )
            meta = ing.metrics
            warnings = list(ing.warnings)
            result, excluded = _summarize(con, ing, meta, warnings, trend_stats)
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _store_summary(
        {"metrics": result, "lines": ing.lines, "warnings": warnings, "excluded": excluded},
        meta,
        paths,
        cache,
        trend_stats,
    )


def _store_summary(
    summary: dict[str, Any],
    meta: dict[str, dict[str, Any]],
    paths: Sequence[Path] | None,
    cache: bool,
    trend_stats: Sequence[str],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Cache the summary beside the source (unless told not to), and return it."""
    if cache and paths is not None:
        try:
            _summary_cache_path(paths).parent.mkdir(exist_ok=True)
            _write_json(
                _summary_cache_path(paths),
                {
                    "keys": _summary_cache_keys(paths, trend_stats),
                    "summary": summary,
                    "meta": meta,
                },
            )
        except OSError:
            pass  # read-only location: the summary is simply not cached
    return summary, meta


#: The line kinds of :func:`_direct_sql`, by the small int it groups on (cheaper than text).
_DIRECT_KINDS = ("point", "metric", "bad_point", "invalid")


def _direct_sql(
    path: Path,
    tags: Sequence[str],
    subs: Sequence[tuple[str, str, dict[str, str]]],
    guess: Mapping[str, dict[str, Any]],
    trend_stats: Sequence[str] = TREND_STATS,
) -> str:
    """The single aggregate query of :func:`_direct_summary` (see there for why)."""
    struct = ", ".join(f'"{_sql_ident(t)}" VARCHAR' for t in tags)
    # Metric lines' declarations come back from the same pass; JSON-typed, they accept any
    # value, so no Point line turns invalid because of them.
    columns = (
        "{'metric': 'VARCHAR', 'type': 'VARCHAR', 'data': 'STRUCT(\"time\" VARCHAR, "
        "value DOUBLE, name VARCHAR, type JSON, contains JSON, thresholds JSON, "
        f"submetrics JSON, tags STRUCT({_sql_str(struct)}))'}}"
    )
    reader = (
        f"read_json('{_sql_str(path)}', format='newline_delimited', columns={columns}, "
        f"ignore_errors=true, compression='none', maximum_object_size={_MAX_LINE_BYTES})"
    )
    # One hash join on the metric fans each sample out to the rows it is aggregated in: -1 the
    # metric itself, -2 its per-endpoint split (HTTP trends/rates/counters), i >= 0 each
    # declared sub-metric whose tag filter it passes. The same join brings the declared type
    # flags. A single GROUP BY then replaces GROUPING SETS, which materialised every row
    # (a CTE) and grouped it twice. Undeclared metrics miss the join: -1 only, trend and
    # gauge flags both on (their type is not known yet); an undeclared ``http_req*`` metric
    # hands the file over (:func:`_direct_summary`).
    fan: list[tuple[str, int, bool, bool]] = []
    for m, d in guess.items():
        t = d.get("type")
        is_trend, is_gauge = t not in ("rate", "counter", "gauge"), t not in _NOT_GAUGE
        fan.append((m, -1, is_trend, is_gauge))
        if m.startswith("http_req") and t != "gauge":
            fan.append((m, -2, is_trend, is_gauge))
    for i, (_, parent, _) in enumerate(subs):
        t = (guess.get(parent) or {}).get("type")
        fan.append((parent, i, t not in ("rate", "counter", "gauge"), t not in _NOT_GAUGE))
    conds = " OR ".join(
        ["s.sub < 0"]
        + [
            f"(s.sub = {i} AND "
            + (
                " AND ".join(
                    f'data.tags."{_sql_ident(k)}" = {_sql_lit(str(v))}' for k, v in t.items()
                )
                or "TRUE"
            )
            + ")"
            for i, (_, _, t) in enumerate(subs)
        ]
    )
    join = ""
    if fan:
        values = ", ".join(
            f"({_sql_lit(m)}, {i}, {str(a).upper()}, {str(b).upper()})" for m, i, a, b in fan
        )
        join = (
            f"LEFT JOIN (VALUES {values}) s(parent, sub, is_trend, is_gauge) "
            f"ON f.metric = s.parent AND ({conds})"
        )
    sub = "coalesce(s.sub, -1)" if fan else "-1"
    trend = "coalesce(s.is_trend, TRUE)" if fan else "TRUE"
    gauge = "coalesce(s.is_gauge, TRUE)" if fan else "TRUE"
    split = 'CASE WHEN s.sub = -2 THEN data.tags."name" END' if fan else "NULL::VARCHAR"
    kinds = {k: i for i, k in enumerate(_DIRECT_KINDS)}
    aggs = _value_aggs(trend_stats, f"kind = {kinds['point']} AND is_trend")
    return f"""
WITH f AS (SELECT metric, type, data, {_time_ns_sql("data.time")} AS time_ns FROM {reader}),
k AS (
  SELECT metric, time_ns, data.value AS value, {split} AS tag_name,
    CASE WHEN type = 'Point' AND metric IS NOT NULL AND data.value IS NOT NULL
              AND time_ns IS NOT NULL THEN {kinds["point"]}
         WHEN type = 'Metric' THEN {kinds["metric"]}
         WHEN type = 'Point' THEN {kinds["bad_point"]}
         ELSE {kinds["invalid"]} END AS kind,
    CASE WHEN type = 'Metric' THEN struct_pack(name := data.name, type := data.type,
      contains := data.contains, thresholds := data.thresholds,
      submetrics := data.submetrics) END AS decl,
    {sub} AS sub, {trend} AS is_trend, {gauge} AS is_gauge
  FROM f {join}
),
checked AS (
  SELECT * REPLACE (CASE WHEN bad IS NULL THEN value END AS value)
  FROM (SELECT *, {_bad_value_sql(guess)} AS bad FROM k)
)
SELECT kind, sub, metric, tag_name, {aggs},
  min(time_ns), max(time_ns), list(decl) FILTER (WHERE decl IS NOT NULL), count(*), {_BAD_AGGS}
FROM checked
GROUP BY kind, sub, metric, tag_name
"""


def _direct_summary(
    path: Path, tmp: Path, trend_stats: Sequence[str] = TREND_STATS
) -> tuple[dict[str, dict[str, Any]], dict[str, int], list[str], dict[str, dict[str, Any]]] | None:
    """Cold summary of one plain NDJSON file in ONE DuckDB pass, straight from ``read_json``.

    Why: on a cold cache the time goes into reading the file, so it is read once. No table
    is written and no byte pre-pass looks for Metric lines: DuckDB returns the declarations
    from the same pass (any key order, any ``\\u`` spelling), while this thread counts the
    physical lines for the accounting (DuckDB releases the GIL). The sub-metric filters must
    be in the query, so they come from the Metric lines of the first MiB (k6 declares a
    metric just before its first sample) and are checked against DuckDB's declarations
    afterwards. Returns None, for the general path (:func:`_parse_into`), when they differ
    (a sub-metric declared later), when a metric is declared twice, or when DuckDB refuses
    the file (an overlong line, bad UTF-8: the general path sanitises and counts them).
    """
    import threading

    duckdb = _duckdb_module()
    read_errors = (duckdb.IOException, duckdb.InvalidInputException)
    out: dict[str, Any] = {}
    ready = threading.Event()

    def work() -> None:
        try:
            con = _duckdb(tmp)  # connects while this thread reads the head and builds the query
            try:
                ready.wait()
                if "query" in out:
                    out["rows"] = con.execute(out["query"]).fetchall()
            finally:
                con.close()
        except BaseException as exc:  # re-raised (or judged) in the calling thread
            out["error"] = exc

    worker = threading.Thread(target=work, name="perflib-k6-summary", daemon=True)
    worker.start()
    try:
        try:
            guess = _parse_metric_lines(_head_metric_lines(path, gz=False))
            subs = _declared_subs(guess, guess)
            tags = _summary_tags(guess)
            out["query"] = _direct_sql(path, tags, subs, guess, trend_stats)
        finally:
            ready.set()  # on an error too: the worker then closes its connection and ends

        size = path.stat().st_size
        with _progress(f"reading {path.name} ({size / 1048576:,.0f} MiB)", size):
            scan = _Scan()
            last = b""
            # One reused 1 MiB buffer: fresh 8 MiB reads cost a page fault per 4 KiB every time.
            # Newlines = length lost by deleting them: ``replace`` finds them with memchr, 3x less
            # CPU than ``bytes.count`` (a byte-by-byte loop), and this thread shares the 2 cores
            # with DuckDB's.
            buf = bytearray(_MAX_LINE_BYTES)
            with path.open("rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    chunk = buf if n == len(buf) else buf[:n]
                    scan.lines += n - len(chunk.replace(b"\n", b""))
                    last = buf[n - 1 : n]
            if last not in (b"", b"\n"):  # what follows the last newline: an unterminated line
                scan.lines += 1
                scan.ends_with_newline = False
            worker.join()  # inside the spinner: the query may still be running
    finally:
        worker.join()  # on an error too: no DuckDB thread outlives the call

    if "error" in out:
        if isinstance(out["error"], read_errors):
            return None
        raise out["error"]

    found: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    sub_aggs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    decls: list[dict[str, Any]] = []
    first = last_ns = None
    excluded: dict[str, Sequence[int]] = {}
    nbad = len(BAD_VALUE_KINDS)
    for code, sub, metric, name, *rest in out["rows"]:
        agg, (t0, t1, dl, lines), bad = rest[:7], rest[7:-nbad], rest[-nbad:]
        kind = _DIRECT_KINDS[code]
        if sub == -1:
            found[kind] = found.get(kind, 0) + lines
            decls.extend(dl or [])
        if kind != "point":
            continue
        if sub == -1:
            excluded[metric] = bad
        if sub >= 0:
            sub_aggs[_sub_key(*subs[sub])] = tuple(agg)
            continue
        rows.append((metric, name, sub == -1, *agg))
        if sub == -1:
            first = t0 if first is None else min(first, t0)
            last_ns = t1 if last_ns is None else max(last_ns, t1)

    names = [d["name"] for d in decls]
    if len(set(names)) != len(names):
        return None  # declared twice: the general path keeps k6's order (the last one wins)
    meta = _parse_metric_lines(
        json.dumps({"data": _decl_obj(d)}).encode()
        for d in sorted(decls, key=lambda d: (d["name"] is None, d["name"] or ""))
    )
    late = {
        m
        for m in meta.keys() - guess.keys()
        if meta[m]["submetrics"] or meta[m].get("contains") in _NON_NEGATIVE
    }
    if late or any(meta.get(m) != d for m, d in guess.items()):
        return None  # the query's sub-metric filters, type flags or value limits were not final
    if any(m.startswith("http_req") and m not in guess for m, _, whole, *_ in rows if whole):
        return None  # an HTTP metric the query did not split per endpoint (declared late)

    warnings: list[str] = []
    _, parsed, skipped = _account(path, found, scan, 0, warnings)
    duration_s = max(last_ns - first, 0) / 1e9 if first is not None else 0.0
    result = _assemble(rows, sub_aggs, meta, duration_s, warnings, trend_stats)
    dropped = _excluded_warnings(excluded, meta, warnings)
    return result, {"parsed": parsed, "skipped": skipped}, warnings, meta, dropped


def _summarize(
    con: duckdb.DuckDBPyConnection,
    ing: Ingest,
    meta: dict[str, dict[str, Any]],
    warnings: list[str],
    trend_stats: Sequence[str] = TREND_STATS,
) -> dict[str, dict[str, Any]]:
    con.execute(f"CREATE TEMP VIEW pts AS {_points_sql(ing.files)}")
    columns = {r[0] for r in con.execute("DESCRIBE pts").fetchall()}
    # Percentiles only for trends, the last value only for gauges: each costs a pass.
    aggs = _value_aggs(trend_stats, "is_trend")

    def none_of(*kinds: str) -> str:
        """``metric`` is not declared as one of ``kinds`` (undeclared, or another type)."""
        names = [_sql_lit(m) for m, d in meta.items() if d.get("type") in kinds]
        # Not ``NOT IN (NULL)`` when there is none: that is NULL, and FILTER drops NULL.
        return f"metric NOT IN ({', '.join(names)})" if names else "TRUE"

    # As _direct_sql and _assemble: whatever is not a rate, counter or gauge is a trend
    # (undeclared, or of a type k6 does not have); whatever is not a trend, rate or counter
    # may be a gauge.
    flags = f"{none_of('rate', 'counter', 'gauge')} AS is_trend, {none_of(*_NOT_GAUGE)} AS is_gauge"
    # Impossible values (NaN, ±inf, negative durations…) become NULL, counted per kind.
    checked = (
        "SELECT * REPLACE (CASE WHEN bad IS NULL THEN value END AS value) "
        f"FROM (SELECT *, {_bad_value_sql(meta)} AS bad FROM pts)"
    )
    con.execute(f"CREATE TEMP VIEW checked AS {checked}")
    # One scan: every metric, and every metric split by the name tag (HTTP ones kept below).
    got_rows = con.execute(f"""
        SELECT metric, tag_name, GROUPING(tag_name) AS whole, {aggs}, {_BAD_AGGS}
        FROM (SELECT *, {flags} FROM checked)
        GROUP BY GROUPING SETS ((metric), (metric, tag_name))
    """).fetchall()
    nbad = len(BAD_VALUE_KINDS)
    rows = [r[:-nbad] for r in got_rows]
    excluded = {r[0]: r[-nbad:] for r in got_rows if r[2]}
    seen = sorted({r[0] for r in rows})
    subs = _declared_subs(seen, meta)
    sub_aggs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if subs:
        # One scan: each sample is repeated once per sub-metric it belongs to (k6 adds it to
        # every matching sub-metric's sink too).
        which = ", ".join(
            f"CASE WHEN metric = {_sql_lit(parent)} AND "
            f"({_submetric_filter(tags, columns)}) THEN {i} END"
            for i, (_, parent, tags) in enumerate(subs)
        )
        parents = ", ".join(sorted({_sql_lit(parent) for _, parent, _ in subs}))
        got = {
            r[0]: r[1:]
            for r in con.execute(f"""
                SELECT sub, {aggs} FROM (
                    SELECT unnest(list_filter([{which}], lambda x: x IS NOT NULL)) AS sub,
                           {flags}, time_ns, value
                    FROM checked WHERE metric IN ({parents}))
                GROUP BY sub""").fetchall()
        }
        sub_aggs = {_sub_key(*s): got[i] for i, s in enumerate(subs) if i in got}
    result = _assemble(rows, sub_aggs, meta, _run_duration_s(ing), warnings, trend_stats)
    return result, _excluded_warnings(excluded, meta, warnings)


def _run_duration_s(ing: Ingest) -> float:
    """The test-run duration k6 divides counters by, estimated from the samples.

    k6 divides by its run clock (``state.testRunDurationMs``), which starts at
    ``MarkStarted()`` in ``execution/scheduler.go`` ``Run`` (before ``setup()``) and stops
    after ``teardown()``. The NDJSON has no run clock: the span from the first to the last
    sample is a lower bound that misses the first request's latency and setup/teardown.
    The ``vus`` ticks cannot tighten it: their ticker starts in ``Init``, before the VUs are
    initialised, so ``first tick − 1 s`` lands before the run clock by the VU-init time.
    Segments run in parallel: the earliest first and the latest last sample over all files.
    """
    first, last = ing.start_ns, ing.end_ns  # each file's Point span, noted at parse time
    if first is None or last is None:
        return 0.0
    return max(last - first, 0) / 1e9
