"""Fast, lean ingest of k6 output (``--out json`` NDJSON, summary exports) and k6's summary.

Why DuckDB: one streaming, multi-threaded pass over the NDJSON (plain or ``.gz``) turns every
line into a typed row, either of a Parquet cache beside the source (``read_points``,
``read_requests``) or of a narrow temporary table (a cold ``summarize`` of gzip or segments),
or straight into the aggregates (a cold ``summarize`` of one plain file); summaries are SQL
aggregates, so memory stays bounded by what the aggregates keep (like k6 itself, the values
of each trend), never by the file. k6.md §6 measured 0.38 s on a 349 MB file; our own
figures are in ``docs/ingest.md``.

Why a C reader too: a cold ``summarize`` of files exactly as k6 writes them is read by the
strict ``perflib._k6scan`` (:func:`_fast_summary`) at a third of DuckDB's JSON-parse cost,
with the statistics in numpy; it refuses any other file, which then takes DuckDB.

Statistics follow k6 (``metrics/sink.go``, v1.x): trend percentiles by linear interpolation
between closest ranks at index ``p·(n−1)`` (= ``numpy.percentile(method="linear")`` = DuckDB
``quantile_cont``), ``avg = sum/count``, rate = non-zero samples / samples, counter rate =
count / test-run duration, gauge value = last sample.

Heavy libraries (duckdb, pandas, pyarrow, rich) are imported inside functions, so
``perflib summarize`` pays only for what it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflib.errors import PerflibError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import numpy as np
    import pandas as pd

#: Tags the lab reads as columns (k6 default system tags that matter for analysis).
KNOWN_TAGS: tuple[str, ...] = (
    "name",
    "method",
    "status",
    "scenario",
    "group",
    "expected_response",
    "error_code",
    "check",
    "url",
    "proto",
)
#: Trend statistics k6 prints with ``--summary-trend-stats "avg,min,med,max,p(90),p(95),p(99),count"``.
TREND_STATS: tuple[str, ...] = ("count", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
_TREND_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
#: Sample values no k6 measurement can have, excluded from the statistics and counted
#: (docs/ingest.md, "Impossible values"): NaN, ±infinity, a negative duration or byte count,
#: a duration above a week, any value beyond ±1e15 (a byte count of a petabyte).
BAD_VALUE_KINDS: tuple[str, ...] = ("NaN", "infinite", "negative", "absurd")
MAX_TIME_MS = 7 * 86_400_000.0
MAX_ABS_VALUE = 1e15
#: ``contains`` of the metrics that cannot be negative (k6: durations in ms, bytes).
_NON_NEGATIVE = ("time", "data")
#: HTTP timing trends emitted once per request, all with the request's tags and end time.
HTTP_TIMINGS: tuple[str, ...] = (
    "http_req_duration",
    "http_req_blocked",
    "http_req_connecting",
    "http_req_tls_handshaking",
    "http_req_sending",
    "http_req_waiting",
    "http_req_receiving",
)
#: Per-endpoint ``{name:…}`` splits stop here: a script that does not set the ``name`` tag on
#: URLs with ids would otherwise produce one split per id.
MAX_NAME_SPLITS = 200
#: Bump when the cache layout changes, so stale caches are rebuilt rather than misread.
CACHE_VERSION = 2  # 2: Metric lines found in any key order/spacing
CACHE_SUFFIX = ".k6cache"
#: Longest line read (k6 lines are < 1 KiB); also DuckDB's ``maximum_object_size``, which sizes
#: its read buffers: 1 MiB buffers let two threads share an 80 MB file (16 MiB ones did not).
_MAX_LINE_BYTES = 1024 * 1024
#: Other k6 system tags kept as columns when present (``vu``/``iter`` go to metadata in v1).
SYSTEM_TAGS: tuple[str, ...] = ("error", "tls_version", "subproto", "service", "ip", "ocsp_status")

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class K6InputError(PerflibError, ValueError):
    """The input cannot be read as k6 output (missing, not k6 NDJSON, unreadable)."""


# --------------------------------------------------------------------------- percentiles


def percentile(values: Iterable[float] | np.ndarray, p: float | Sequence[float]) -> Any:
    """k6's percentile: linear interpolation between closest ranks at index ``p/100·(n−1)``.

    ``p`` is in percent (95 for p(95)), like ``numpy.percentile``. This is k6's ``TrendSink.P``
    (``metrics/sink.go``: ``i := pct*(count-1); j + (k-j)*(i-floor(i))``), which equals
    ``numpy.percentile(values, p, method="linear")``. An empty input gives NaN (k6 prints 0).
    """
    import numpy as np

    if not hasattr(values, "__len__"):
        values = list(values)
    arr = np.asarray(values, dtype="float64").ravel()
    ps = np.atleast_1d(np.asarray(p, dtype="float64"))
    if np.any((ps < 0) | (ps > 100)):
        raise ValueError(f"percentile p must be within [0, 100], got {p!r}")
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


# --------------------------------------------------------------------------- ingest


class FileIngest:
    """One k6 NDJSON file turned into a Parquet table of typed rows (its cache).

    A plain class, not a dataclass: ``dataclasses`` (with ``inspect``) costs ~10 ms to
    import, and a cold ``perflib summarize`` counts its start-up.
    """

    def __init__(
        self,
        *,
        source: Path,
        parquet: Path | None,
        table: str | None,
        lines: dict[str, int],
        kinds: dict[str, int],
        metrics: dict[str, dict[str, Any]],
        tags: list[str],
        warnings: list[str],
        start_ns: int | None,
        end_ns: int | None,
        from_cache: bool = False,
    ) -> None:
        self.source, self.parquet, self.table = source, parquet, table
        self.lines, self.kinds, self.metrics, self.tags = lines, kinds, metrics, tags
        self.warnings, self.start_ns, self.end_ns = warnings, start_ns, end_ns
        self.from_cache = from_cache

    def __repr__(self) -> str:
        return f"FileIngest(source={self.source!r}, lines={self.lines!r})"


class Ingest:
    """Every file of a source, with the temporary directories to remove afterwards."""

    def __init__(self, files: list[FileIngest], _tmpdirs: list[Path] | None = None) -> None:
        self.files = files
        self._tmpdirs = [] if _tmpdirs is None else _tmpdirs

    @property
    def parquets(self) -> list[Path]:
        return [f.parquet for f in self.files if f.parquet is not None]

    @property
    def lines(self) -> dict[str, int]:
        return {
            "parsed": sum(f.lines["parsed"] for f in self.files),
            "skipped": sum(f.lines["skipped"] for f in self.files),
        }

    @property
    def warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return _merge_meta(f.metrics for f in self.files)

    @property
    def start_ns(self) -> int | None:
        vals = [f.start_ns for f in self.files if f.start_ns is not None]
        return min(vals) if vals else None

    @property
    def end_ns(self) -> int | None:
        vals = [f.end_ns for f in self.files if f.end_ns is not None]
        return max(vals) if vals else None

    def cleanup(self) -> None:
        for d in self._tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        self._tmpdirs.clear()


def resolve_sources(source: Source) -> list[Path]:
    """The k6 NDJSON files a source names: a file, a list of segment files, or a run directory."""
    if hasattr(source, "k6_outputs"):  # a RunDir object
        source = list(source.k6_outputs) or [source.path]  # type: ignore[union-attr]
    if isinstance(source, str | os.PathLike):
        items: list[str | os.PathLike[str]] = [source]
    else:
        items = list(source)
    if not items:
        raise K6InputError("no k6 output given")
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            from perflib.rundir import MANIFEST, RunDir

            run = RunDir.open(p) if (p / MANIFEST).exists() else RunDir(p)
            found = run.k6_outputs
            if not found:
                raise K6InputError(f"{p}: no k6 output (k6*.ndjson[.gz]) in this directory")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise K6InputError(f"{p}: no such file or directory")
    return out


def _duckdb_module() -> Any:
    """DuckDB's compiled core (``_duckdb``), else the ``duckdb`` package.

    ``import duckdb`` spends ~0.1 s in pure-Python wrappers (``importlib.metadata`` for its
    version, the relational/expression helpers) that this module never uses; the compiled
    ``_duckdb`` it wraps imports in ~0.01 s and has the same connection API. Start-up is a
    large part of a ``perflib summarize`` run, so the CLI takes the fast path.
    """
    try:
        import _duckdb

        return _duckdb
    except ImportError:  # pragma: no cover - a DuckDB build without the split module
        import duckdb

        return duckdb


def _duckdb(tmp: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with bounded memory: big inputs spill to disk instead of growing."""
    con = _duckdb_module().connect(config={"preserve_insertion_order": False})
    limit = os.environ.get("PERFLIB_DUCKDB_MEMORY", "1GB")
    con.execute(f"SET memory_limit = '{limit}'")
    with contextlib.suppress(Exception):  # no ICU in this build: TIMESTAMPTZ is UTC already
        con.execute("SET TimeZone = 'UTC'")  # not $TZ: an offset-less time means UTC
    if tmp is not None:
        con.execute(f"SET temp_directory = '{_sql_str(tmp)}'")
    return con


def _sql_str(value: str | Path) -> str:
    return str(value).replace("'", "''")


def _time_ns_sql(t: str) -> str:
    """RFC3339Nano (any fraction length, ``Z`` or ``±hh:mm``) → int64 ns since epoch, UTC.

    DuckDB's TIMESTAMPTZ keeps µs only, and its TIMESTAMP_NS cast keeps ns but ignores a
    numeric offset (k6 writes times in its local zone, k6.md §1). ``Z`` times (k6 under UTC)
    need the one cast; otherwise the offset is the TIMESTAMP_NS/TIMESTAMPTZ difference
    rounded to whole minutes (the TIMESTAMPTZ cast's µs rounding cannot reach a minute).
    That is ~3× cheaper per row than slicing the offset out of the string; the connection's
    ``TimeZone`` is UTC (:func:`_duckdb`), so a time without offset stays UTC.
    """
    ns = f"TRY_CAST({t} AS TIMESTAMP_NS)"
    offset_min = (
        f"CAST(round((epoch_us(CAST({ns} AS TIMESTAMP)) - epoch_us(TRY_CAST({t} AS TIMESTAMPTZ)))"
        " / 60e6) AS BIGINT)"
    )
    return (
        f"(CASE WHEN ends_with({t}, 'Z') THEN epoch_ns({ns}) "
        f"ELSE epoch_ns({ns}) - {offset_min} * 60000000000 END)"
    )


def tag_column(tag: str) -> str:
    """Column of a tag in the Parquet cache (prefixed so a tag cannot shadow ``value``…)."""
    return f"tag_{tag}"


def _select_sql(src: Path, compression: str, tags: Sequence[str]) -> str:
    """One streaming pass: every non-blank line → one typed row (``kind`` says what it was).

    DuckDB's NDJSON reader parses each line once into the declared struct (unknown keys,
    e.g. ``metadata`` or undeclared custom tags, are not materialised); ``ignore_errors``
    turns a line that is not JSON into an all-NULL row, which we count instead of losing.
    """
    struct = ", ".join(f'"{_sql_ident(t)}" VARCHAR' for t in tags)
    columns = (
        "{'metric': 'VARCHAR', 'type': 'VARCHAR', 'data': 'STRUCT(\"time\" VARCHAR, "
        f"value DOUBLE, name VARCHAR, tags STRUCT({_sql_str(struct)}))'}}"
    )
    reader = (
        f"read_json('{_sql_str(src)}', format='newline_delimited', columns={columns}, "
        f"ignore_errors=true, compression='{compression}', "
        f"maximum_object_size={_MAX_LINE_BYTES})"
    )
    tag_cols = ",\n  ".join(
        f'data.tags."{_sql_ident(t)}" AS "{_sql_ident(tag_column(t))}"' for t in tags
    )
    return f"""
WITH f AS (
  SELECT metric, type, data, {_time_ns_sql("data.time")} AS time_ns FROM {reader}
),
k AS (
  SELECT *,
    CASE WHEN type = 'Point' AND metric IS NOT NULL AND data.value IS NOT NULL
              AND time_ns IS NOT NULL THEN 'point'
         WHEN type = 'Metric' THEN 'metric'
         WHEN type = 'Point' THEN 'bad_point'
         ELSE 'invalid' END AS kind
  FROM f
)
SELECT kind, metric, time_ns, data.value AS value,
  CASE WHEN kind = 'metric' THEN data.name END AS decl_name,
  {tag_cols}
FROM k
"""


def _sql_ident(name: str) -> str:
    return name.replace('"', '""')


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


#: How k6 itself writes a Metric line (fixed struct field order, no spaces, k6.md §1).
_METRIC_PREFIX = b'{"type":"Metric"'
#: Bytes every line declaring a metric contains unless it spells "Metric" with ``\\u`` escapes
#: (k6's own prefix, ``"type": "Metric"``, keys in any order: all contain them).
_METRIC_VALUE = b'"Metric"'


class _Scan:
    """What a cheap byte-level pass learns before the parse (no JSON decoding of Points)."""

    def __init__(self) -> None:
        self.lines = 0  # physical lines, the unterminated last one included
        self.ends_with_newline = True
        self.metric_lines: list[bytes] = []
        self.head = b""  # the first chunk: custom tag keys are sampled from it
        self.gzip_complete = True
        self.gzip_error: str | None = None
        self.produced = 0
        #: Some line holds a ``\\u`` escape, so a Metric line may hide from the byte search.
        self.escapes = False


def _chunks(path: Path, gz: bool, scan: _Scan, size: int = 8 * 1024 * 1024) -> Iterator[bytes]:
    """The file's bytes (decompressed), noting in ``scan`` a gzip stream that stops early."""
    with path.open("rb") as fh:
        if not gz:
            while data := fh.read(size):
                scan.produced += len(data)
                yield data
            return
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while True:
            data = fh.read(size)
            if not data:
                scan.gzip_complete = d.eof
                return
            try:
                out = d.decompress(data)
                while d.eof and d.unused_data:  # concatenated gzip members
                    rest = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    out += d.decompress(rest)
            except zlib.error as exc:
                scan.gzip_complete = False
                scan.gzip_error = str(exc)
                return
            scan.produced += len(out)
            yield out


def _prescan(path: Path, gz: bool, chunk_size: int = 1024 * 1024) -> _Scan:
    """Count lines and collect the (few) Metric lines with byte searches only.

    Fast path: k6 writes every Metric line as ``{"type":"Metric",…``. General path: any other
    line holding the bytes ``"Metric"`` (keys re-ordered, spaces after ``:``, a tag value) is
    decoded and kept only if its ``type`` is ``Metric``, so re-serialised files are read the
    same and a Point is never taken for a declaration. Only ``\\u``-escaped spellings escape
    both searches: ``escapes`` records that they may exist, and :func:`_parse_into` checks the
    result against DuckDB's own count of Metric rows.
    """
    scan = _Scan()
    tail = b""  # the unfinished line carried over from the previous chunk
    for data in _chunks(path, gz, scan, chunk_size):
        if not scan.head:
            scan.head = data
        scan.lines += data.count(b"\n")
        # One-byte memchr first: ``b"\\u" in data`` alone costs more than the rest of the scan.
        if not scan.escapes and b"\\" in data:
            scan.escapes = b"\\u" in data or (tail[-1:] == b"\\" and data[:1] == b"u")
        nl = data.find(b"\n")
        if nl == -1:
            tail = (tail + data)[: _MAX_LINE_BYTES + 1]  # longer lines are dropped anyway
            continue
        first = tail + data[:nl] if tail else data[:nl]
        _collect_metric_lines(first + b"\n", 0, len(first), scan.metric_lines)
        cut = data.rfind(b"\n")
        _collect_metric_lines(data, nl + 1, cut, scan.metric_lines)
        tail = data[cut + 1 :]
    if tail:  # what follows the last newline: the file does not end with one
        scan.ends_with_newline = False
        scan.lines += 1
        # A cut line: json.loads rejects it (and the parse counts it as invalid).
        _collect_metric_lines(tail + b"\n", 0, len(tail), scan.metric_lines)
    return scan


def _collect_metric_lines(buf: bytes, begin: int, end: int, out: list[bytes]) -> None:
    """Append the Metric lines among the complete lines ``buf[begin:end]``.

    ``begin`` starts a line and ``buf[end]`` is a newline.
    """
    pos = begin
    while (i := buf.find(_METRIC_VALUE, pos, end)) != -1:
        start = buf.rfind(b"\n", begin, i) + 1 or begin
        stop = buf.find(b"\n", i, end + 1)
        line = buf[start:stop]
        pos = stop + 1
        if len(line) > _MAX_LINE_BYTES:
            continue  # not a k6 line: _sanitise drops and counts it
        if line.startswith(_METRIC_PREFIX) or _is_metric_line(line):
            out.append(line)


def _is_metric_line(line: bytes) -> bool:
    """The general path: decode the line and look at its ``type`` (cut lines count as Metric
    when they start like one, so the parse reports them rather than this scan hiding them)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "Metric"


def _sanitise(src: Path, dest: Path, gz: bool) -> tuple[int, list[str]]:
    """Stream ``src`` into a plain NDJSON copy DuckDB can read, for inputs it refuses.

    Handles a gzip stream cut mid-way (k6 killed: keeps what decompresses), lines too long
    for the reader and invalid UTF-8; every dropped line is counted and described, so
    nothing is lost silently. Memory stays bounded (chunked I/O).
    """
    scan = _Scan()
    too_long = bad_utf8 = 0
    with dest.open("wb") as out:
        pending = b""
        skipping = False  # inside an overlong line (already counted) until its newline
        for data in _chunks(src, gz, scan):
            if skipping:
                nl = data.find(b"\n")
                if nl == -1:
                    continue
                data, skipping = data[nl + 1 :], False
            pending += data
            parts = pending.split(b"\n")
            pending = parts.pop()
            keep: list[bytes] = []
            for line in parts:
                if len(line) > _MAX_LINE_BYTES:
                    too_long += 1
                    continue
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    bad_utf8 += 1
                    continue
                keep.append(line)
            if keep:
                out.write(b"\n".join(keep) + b"\n")
            if len(pending) > _MAX_LINE_BYTES:
                too_long += 1
                pending, skipping = b"", True
        if pending:
            # The unterminated last line, usually cut mid-way: the parser judges (and counts) it.
            try:
                pending.decode("utf-8")
                out.write(pending + b"\n")
            except UnicodeDecodeError:
                bad_utf8 += 1
    notes = []
    if too_long:
        notes.append(
            f"{src.name}: skipped {too_long} line(s) longer than "
            f"{_MAX_LINE_BYTES // 1048576} MiB (not k6 lines)"
        )
    if bad_utf8:
        notes.append(f"{src.name}: skipped {bad_utf8} line(s) that are not UTF-8 text")
    return too_long + bad_utf8, notes


def _cache_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"version": CACHE_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_dir(path: Path) -> Path:
    """Where the Parquet cache of a k6 output lives: ``<file>.k6cache/`` beside it."""
    return path.with_name(path.name + CACHE_SUFFIX)


def _load_cached(path: Path) -> FileIngest | None:
    cdir = cache_dir(path)
    parquet = cdir / "points.parquet"
    try:
        meta = json.loads((cdir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != _cache_key(path) or not parquet.exists():
        return None
    return FileIngest(
        source=path,
        parquet=parquet,
        table=None,
        lines=meta["lines"],
        kinds=meta["kinds"],
        metrics=meta["metrics"],
        tags=meta["tags"],
        warnings=meta["warnings"],
        start_ns=meta["start_ns"],
        end_ns=meta["end_ns"],
        from_cache=True,
    )


def _sample_tag_keys(head: bytes, limit: int = 5000) -> set[str]:
    """Tag keys seen in the first Point lines (scenario and request custom tags show up early).

    DuckDB reads tags into a struct of declared keys, so custom keys must be named before
    the parse; sub-metric declarations name the ones summaries need, this sample the rest.
    """
    keys: set[str] = set()
    for obj in _head_objects(head, limit):
        if obj.get("type") != "Point" or not isinstance(obj.get("data"), dict):
            continue
        tags = obj["data"].get("tags")
        if isinstance(tags, dict):
            keys.update(str(k) for k in tags)
    return keys


def _head_objects(head: bytes, limit: int = 5000) -> Iterator[dict[str, Any]]:
    """The JSON objects among the first complete lines, whatever their key order or spacing."""
    for line in head.split(b"\n")[:limit]:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # junk, or the line the chunk cut: the parse judges it
        if isinstance(obj, dict):
            yield obj


def _parse_metric_lines(lines: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}
    for raw in lines:
        try:
            data = json.loads(raw)["data"]
            if not isinstance(data["name"], str):
                continue  # not a k6 declaration (k6 names are strings): nothing to declare
            metrics[data["name"]] = {
                "type": data.get("type"),
                "contains": data.get("contains"),
                "thresholds": list(data.get("thresholds") or []),
                "submetrics": [
                    {
                        "name": s.get("name"),
                        "suffix": s.get("suffix"),
                        "tags": {str(k): str(v) for k, v in (s.get("tags") or {}).items()},
                    }
                    for s in (data.get("submetrics") or [])
                ],
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a cut Metric line: the parse counts it as an invalid line
    return metrics


def _declared_names(lines: Iterable[bytes]) -> list[str | None]:
    """Sorted ``data.name`` of the lines that decode to a Metric object (``None`` if absent)."""
    names: list[str | None] = []
    for raw in lines:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue  # a cut line: DuckDB reads it as invalid too
        if isinstance(obj, dict) and obj.get("type") == "Metric":
            data = obj.get("data")
            name = data.get("name") if isinstance(data, dict) else None
            names.append(None if name is None else str(name))
    return _sorted_names(names)


def _sorted_names(names: Iterable[str | None]) -> list[str | None]:
    return sorted(names, key=lambda n: (n is None, n or ""))


def _metric_lines_by_duckdb(
    con: duckdb.DuckDBPyConnection, src: Path, compression: str
) -> dict[str, dict[str, Any]]:
    """The general path for Metric lines: DuckDB's JSON reader finds them, however spelled."""
    reader = (
        f"read_json('{_sql_str(src)}', format='newline_delimited', "
        "columns={'type': 'VARCHAR', 'data': 'JSON'}, ignore_errors=true, "
        f"compression='{compression}', maximum_object_size={_MAX_LINE_BYTES})"
    )
    rows = con.execute(f"SELECT data FROM {reader} WHERE type = 'Metric'").fetchall()
    return _parse_metric_lines(
        json.dumps({"data": json.loads(r[0])}).encode() for r in rows if r[0] is not None
    )


def _parse_into(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    workdir: Path,
    *,
    parquet: Path | None = None,
    table: str | None = None,
    narrow: bool = False,
    extra_tags: Iterable[str] = (),
    scan: _Scan | None = None,
) -> FileIngest:
    """Prescan + one DuckDB pass over ``path`` into a Parquet file or a temporary table.

    ``narrow`` keeps only the tags a summary needs (``name`` and the sub-metrics' tags, plus
    ``extra_tags``: those other segments' sub-metrics use): the cold ``summarize`` path, which
    aggregates in SQL without writing the full Parquet. ``scan`` is the file's prescan, when
    the caller already made it.
    Raises :class:`K6InputError` when the file is not k6 output at all.
    """
    duckdb = _duckdb_module()
    read_errors = (duckdb.IOException, duckdb.InvalidInputException)
    gz = _is_gzip(path)
    warnings: list[str] = []
    scan = scan or _prescan(path, gz)
    metrics = _parse_metric_lines(scan.metric_lines)

    def tags_for(metrics: Mapping[str, dict[str, Any]]) -> list[str]:
        needed = _summary_tags(metrics, extra_tags)
        if narrow:
            return needed
        extra = (set(needed) | _sample_tag_keys(scan.head)) - set(KNOWN_TAGS) - set(SYSTEM_TAGS)
        return [*KNOWN_TAGS, *SYSTEM_TAGS, *sorted(extra)]

    tags = tags_for(metrics)

    def statement(src: Path, compression: str) -> str:
        select = _select_sql(src, compression, tags)
        if parquet is not None:
            return (
                f"COPY ({select}) TO '{_sql_str(parquet)}' "
                "(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 122880)"
            )
        return f'CREATE TEMP TABLE "{table}" AS {select}'

    def drop() -> None:
        if table:
            con.execute(f'DROP TABLE IF EXISTS "{table}"')

    sanitised_drop = 0
    clean = workdir / f"sanitised.{os.getpid()}.{path.name}.ndjson"
    try:
        size = path.stat().st_size
        with _progress(f"reading {path.name} ({size / 1048576:,.0f} MiB)", size):
            src, compression = path, ("gzip" if gz else "none")
            if not scan.gzip_complete:
                warnings.append(
                    f"{path.name}: gzip stream "
                    + (f"corrupt ({scan.gzip_error})" if scan.gzip_error else "truncated")
                    + f" after {scan.produced:,} bytes of output (k6 killed?): every complete "
                    "line before the cut was read"
                )
                sanitised_drop, notes = _sanitise(path, clean, gz)
                warnings.extend(notes)
                src, compression = clean, "none"
            try:
                con.execute(statement(src, compression))
            except read_errors as exc:
                if src == clean:
                    raise K6InputError(f"{path}: cannot be read as k6 NDJSON: {exc}") from exc
                sanitised_drop, notes = _sanitise(path, clean, gz)  # overlong line, bad UTF-8
                warnings.extend(notes)
                drop()
                src, compression = clean, "none"
                try:
                    con.execute(statement(src, compression))
                except read_errors as exc2:
                    raise K6InputError(f"{path}: cannot be read as k6 NDJSON: {exc2}") from exc
            rel = f"read_parquet('{_sql_str(parquet)}')" if parquet is not None else f'"{table}"'
            # One scan for the line accounting, the time span and DuckDB's Metric rows.
            query = f"""SELECT kind, count(*), min(time_ns), max(time_ns),
                list(decl_name) FILTER (WHERE kind = 'metric') FROM {rel} GROUP BY kind"""
            found = con.execute(query).fetchall()
            # The byte scan must have found exactly the Metric lines DuckDB parsed; if not
            # (``\\u``-escaped spellings), DuckDB's reading of them is the one that counts.
            decls = [n for r in found if r[0] == "metric" for n in (r[4] or [])]
            if _sorted_names(decls) != _declared_names(scan.metric_lines):
                metrics = _metric_lines_by_duckdb(con, src, compression)
                if tags_for(metrics) != tags:
                    tags = tags_for(metrics)
                    drop()
                    con.execute(statement(src, compression))
                    found = con.execute(query).fetchall()
        kinds = {r[0]: r[1] for r in found}
        span = next(((r[2], r[3]) for r in found if r[0] == "point"), None)
    finally:
        clean.unlink(missing_ok=True)

    kinds, parsed, skipped = _account(path, kinds, scan, sanitised_drop, warnings)
    return FileIngest(
        source=path,
        parquet=parquet,
        table=table,
        lines={"parsed": parsed, "skipped": skipped},
        kinds=kinds,
        metrics=metrics,
        tags=tags,
        warnings=warnings,
        start_ns=span[0] if span else None,
        end_ns=span[1] if span else None,
    )


def _account(
    path: Path, found: Mapping[str, int], scan: _Scan, sanitised_drop: int, warnings: list[str]
) -> tuple[dict[str, int], int, int]:
    """Line accounting: DuckDB's rows per kind + the physical line count → parsed/skipped.

    ``parsed + skipped`` is the file's physical line count; raises :class:`K6InputError` when
    no line at all is k6 output. Appends the skip warnings to ``warnings``.
    """
    rows = sum(found.values())
    kinds = {k: int(v) for k, v in found.items()}
    # DuckDB's reader yields no row for an empty or whitespace-only line: count them here.
    kinds["blank"] = max(scan.lines - rows - sanitised_drop, 0)
    kinds["dropped"] = sanitised_drop
    parsed = kinds.get("point", 0) + kinds.get("metric", 0)
    skipped = sum(v for k, v in kinds.items() if k not in ("point", "metric"))
    non_blank = parsed + skipped - kinds["blank"]
    if parsed == 0 and non_blank > 0:
        raise K6InputError(
            f"{path}: not k6 --out json output: none of its {non_blank:,} non-blank lines is a "
            "k6 Metric or Point line (expected NDJSON lines like "
            '{"metric":"http_reqs","type":"Point","data":{…}})'
        )
    warnings.extend(_skip_warnings(path, kinds, scan))
    if kinds.get("point", 0) == 0:
        warnings.append(f"{path.name}: no k6 samples")
    return kinds, parsed, skipped


def ingest_file(path: Path, *, cache: bool = True, workdir: Path | None = None) -> FileIngest:
    """Parse one k6 NDJSON file into Parquet (cached beside it unless ``cache`` is False).

    The cache is keyed on the source's size and mtime: a rewritten or appended file is
    parsed again. ``workdir`` receives the Parquet when not caching.
    """
    path = Path(path)
    if not path.is_file():
        raise K6InputError(f"{path}: no such file")
    if cache:
        hit = _load_cached(path)
        if hit is not None:
            return hit
    key = _cache_key(path)
    cdir: Path | None = None
    if cache:
        cdir = cache_dir(path)
        try:
            cdir.mkdir(exist_ok=True)
        except OSError:
            cache = False  # read-only location: parse into a temporary directory instead
    if not cache or cdir is None:
        cdir = Path(tempfile.mkdtemp(prefix="k6ingest-", dir=workdir))
    tmp_parquet = cdir / f"points.{os.getpid()}.parquet.tmp"
    con = _duckdb(cdir)
    try:
        result = _parse_into(path, con, cdir, parquet=tmp_parquet)
    except BaseException:
        tmp_parquet.unlink(missing_ok=True)
        if not cache:
            shutil.rmtree(cdir, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                cdir.rmdir()  # only if empty: leave no trace of a file that is not k6 output
        raise
    finally:
        con.close()
    parquet = cdir / "points.parquet"
    tmp_parquet.replace(parquet)
    result.parquet = parquet
    if cache:
        meta = {
            "key": key,
            "source": path.name,
            "lines": result.lines,
            "kinds": result.kinds,
            "metrics": result.metrics,
            "tags": result.tags,
            "warnings": result.warnings,
            "start_ns": result.start_ns,
            "end_ns": result.end_ns,
        }
        _write_json(cdir / "meta.json", meta)
    return result


def _write_json(path: Path, doc: Any) -> None:
    """Write atomically (tmp + rename): a concurrent reader never sees half a cache file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)


def _skip_warnings(path: Path, kinds: Mapping[str, int], scan: _Scan) -> list[str]:
    out: list[str] = []
    name = path.name
    if kinds.get("blank"):
        out.append(f"{name}: skipped {kinds['blank']} blank line(s)")
    if kinds.get("invalid"):
        hint = ""
        if not scan.ends_with_newline:
            hint = " — the last line is unterminated: cut mid-write (k6 killed?)"
        out.append(
            f"{name}: skipped {kinds['invalid']} line(s) that are not valid JSON or "
            f"not shaped like a k6 Metric/Point line{hint}"
        )
    if kinds.get("bad_point"):
        out.append(
            f"{name}: skipped {kinds['bad_point']} Point line(s) without a metric name, "
            "a numeric value or an RFC 3339 time"
        )
    return out


def _merge_meta(metas: Iterable[Mapping[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for meta in metas:
        for name, m in meta.items():
            if name not in merged:
                merged[name] = {
                    **m,
                    "thresholds": list(m["thresholds"]),
                    "submetrics": list(m["submetrics"]),
                }
                continue
            cur = merged[name]
            cur["thresholds"] += [t for t in m["thresholds"] if t not in cur["thresholds"]]
            names = {s["name"] for s in cur["submetrics"]}
            cur["submetrics"] += [s for s in m["submetrics"] if s["name"] not in names]
    return merged


def ingest(source: Source, *, cache: bool = True) -> Ingest:
    """Parse (or load from cache) every file of ``source``; call ``.cleanup()`` when done."""
    paths = resolve_sources(source)
    tmpdirs: list[Path] = []
    if not cache:
        tmpdirs.append(Path(tempfile.mkdtemp(prefix="perflib-k6-")))
    try:
        files = [
            ingest_file(p, cache=cache, workdir=tmpdirs[0] if tmpdirs else None) for p in paths
        ]
    except BaseException:
        for d in tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        raise
    return Ingest(files, tmpdirs)


@contextlib.contextmanager
def _ingested(source: Source | Ingest, cache: bool = True) -> Iterator[Ingest]:
    if isinstance(source, Ingest):
        yield source
        return
    ing = ingest(source, cache=cache)
    try:
        yield ing
    finally:
        ing.cleanup()


@contextlib.contextmanager
def _progress(label: str, size: int) -> Iterator[None]:
    """A spinner on stderr for long parses (only when stderr is a terminal)."""
    if size < 32 * 1024 * 1024 or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(label):
        yield


def _points_sql(files: Sequence[FileIngest]) -> str:
    """Every file's Point rows as one relation; ``file`` tells segments apart.

    UNION ALL BY NAME: files may carry different custom-tag columns (missing → NULL).
    """
    parts = []
    for i, f in enumerate(files):
        rel = f"read_parquet('{_sql_str(f.parquet)}')" if f.table is None else f'"{f.table}"'
        parts.append(f"SELECT *, {i} AS file FROM {rel} WHERE kind = 'point'")
    return "(" + " UNION ALL BY NAME ".join(parts) + ")"


# --------------------------------------------------------------------------- frames


def read_points(
    source: Source, metrics: Sequence[str] | None = None, *, cache: bool = True
) -> pd.DataFrame:
    """One row per k6 Point: ``time`` (UTC, ns), ``metric``, ``value`` and tags as categoricals.

    ``time`` is k6's sample time: for HTTP metrics the END of the request. Besides
    :data:`KNOWN_TAGS` (always present, NA when missing), the other system tags (``error``,
    ``tls_version`` …) and custom tags used by sub-metrics become columns when some row has
    them. ``metrics`` restricts the rows (pushed down to the Parquet scan).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    with _ingested(source, cache) as ing:
        schema = pa.unify_schemas([pq.read_schema(p) for p in ing.parquets])
        strings = [f.name for f in schema if pa.types.is_string(f.type) and f.name != "kind"]
        # Strings stay dictionary-encoded from the Parquet pages to the categoricals: a
        # fraction of the memory and time of materialising one Python-visible string per row.
        schema = pa.schema(
            [
                pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in strings else f
                for f in schema
            ]
        )
        fmt = ds.ParquetFileFormat(read_options={"dictionary_columns": strings})
        dataset = ds.dataset([str(p) for p in ing.parquets], format=fmt, schema=schema)
        flt = ds.field("kind") == "point"
        if metrics is not None:
            flt = flt & ds.field("metric").isin(pa.array([str(m) for m in metrics], pa.string()))
        tag_cols = [c for c in schema.names if c.startswith("tag_")]
        table = dataset.to_table(columns=["time_ns", "metric", "value", *tag_cols], filter=flt)
        table = table.unify_dictionaries()
    df = pd.DataFrame(
        {"time": pd.to_datetime(table.column("time_ns").to_numpy(), unit="ns", utc=True)}
    )
    df["metric"] = _categorical(table.column("metric"))
    df["value"] = table.column("value").to_numpy().astype("float64")
    for col in tag_cols:
        tag = col[len("tag_") :]
        values = table.column(col)
        if tag in KNOWN_TAGS or values.null_count < len(values):
            name = tag if tag not in ("time", "metric", "value") else f"{tag}_tag"
            df[name] = _categorical(values)
    return df


def _categorical(col: Any) -> pd.Categorical:
    """A pyarrow string or dictionary column as a pandas categorical (NA kept), no Python loop."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    cat = pd.Categorical.from_codes(codes, categories=arr.dictionary.to_pylist())
    return cat.remove_unused_categories()


def read_requests(source: Source, *, cache: bool = True) -> pd.DataFrame:
    """One row per HTTP request, its 9 samples pivoted (they share tags and end time).

    ``start_time = time − (blocked + connecting + tls + sending + waiting + receiving)``
    (k6.md §1: ``http_req_duration`` excludes blocked/connecting/TLS). ``failed`` is NA when
    k6 did not emit ``http_req_failed`` (response callback disabled). A timing no request can
    have (NaN, ±inf, negative, above ``MAX_TIME_MS``) is read as unknown (NaN), as
    :func:`summarize` excludes it, and counted in ``attrs["excluded_values"]``.
    """
    import pandas as pd

    timings = {
        "http_req_duration": "duration_ms",
        "http_req_blocked": "blocked_ms",
        "http_req_connecting": "connecting_ms",
        "http_req_tls_handshaking": "tls_ms",
        "http_req_sending": "sending_ms",
        "http_req_waiting": "waiting_ms",
        "http_req_receiving": "receiving_ms",
    }
    out_tags = ["name", "method", "status", "scenario", "group", "error_code", "expected_response"]
    ok = f"value >= 0 AND value <= {MAX_TIME_MS!r}"  # NaN fails it (DuckDB orders NaN last)
    pivots = ",\n".join(
        f"max(value) FILTER (WHERE metric = '{m}' AND {ok}) AS {c}" for m, c in timings.items()
    )
    names = ", ".join(f"'{m}'" for m in timings)
    wanted = ", ".join(f"'{m}'" for m in [*timings, "http_req_failed", "http_reqs"])
    with _ingested(source, cache) as ing:
        con = _duckdb()
        try:
            cols = [r[0] for r in con.execute(f"DESCRIBE {_points_sql(ing.files)}").fetchall()]
            # Every tag is part of the request's identity (the 9 samples share all of them).
            keys = ", ".join(f'"{_sql_ident(c)}"' for c in cols if c.startswith("tag_"))
            sel = ", ".join(f'"tag_{t}" AS "{t}"' for t in out_tags)
            df = con.execute(f"""
                SELECT time_ns, {sel}, {pivots},
                  CAST(max(value) FILTER (WHERE metric = 'http_req_failed') AS BOOLEAN) AS failed,
                  count(*) FILTER (WHERE metric = 'http_reqs') AS n_reqs,
                  count(*) FILTER (WHERE metric IN ({names}) AND NOT ({ok})) AS n_bad
                FROM {_points_sql(ing.files)}
                WHERE metric IN ({wanted})
                GROUP BY time_ns, file, {keys}
                HAVING count(*) FILTER (WHERE metric = 'http_req_duration') > 0
                ORDER BY time_ns
            """).df()
        finally:
            con.close()
    shared = int((df["n_reqs"] > 1).sum()) if len(df) else 0
    if shared:
        import warnings

        warnings.warn(
            f"{shared} request rows merge several requests that ended at the same "
            "nanosecond with the same tags",
            stacklevel=2,
        )
    out = pd.DataFrame({"time": pd.to_datetime(df["time_ns"].to_numpy(), unit="ns", utc=True)})
    phases = ["blocked_ms", "connecting_ms", "tls_ms", "sending_ms", "waiting_ms", "receiving_ms"]
    total_ns = (df[phases].astype("float64").sum(axis=1, min_count=1) * 1e6).round()
    out["start_time"] = out["time"] - pd.to_timedelta(total_ns.to_numpy(), unit="ns")
    for c in timings.values():
        out[c] = df[c].astype("float64").to_numpy()
    out["failed"] = pd.array(df["failed"], dtype="boolean")
    for t in out_tags:
        out[t] = pd.Categorical(df[t])
    out.attrs["excluded_values"] = int(df["n_bad"].sum()) if len(df) else 0
    return out


def read_metric_meta(source: Source, *, cache: bool = True) -> dict[str, dict[str, Any]]:
    """k6's declaration of each metric: ``type``, ``contains``, ``thresholds``, ``submetrics``.

    Only the Metric lines are needed, so this is the byte-level prescan (or the cache), not
    a full parse.
    """
    metas = []
    for p in resolve_sources(source):
        if not p.is_file():
            raise K6InputError(f"{p}: not a file")
        hit = _load_cached(p) if cache else None
        if hit is not None:
            metas.append(hit.metrics)
            continue
        scan = _prescan(p, _is_gzip(p))
        if (
            not scan.metric_lines
            and scan.head.strip()
            and not any(o.get("type") == "Point" for o in _head_objects(scan.head))
        ):
            raise K6InputError(f"{p}: not k6 --out json output (no Metric or Point line)")
        if scan.escapes:  # a ``\\u``-escaped Metric line would hide from the byte scan
            metas.append(_metric_meta_general(p, scan))
            continue
        metas.append(_parse_metric_lines(scan.metric_lines))
    return _merge_meta(metas)


def _metric_meta_general(path: Path, scan: _Scan) -> dict[str, dict[str, Any]]:
    """Metric lines found by DuckDB's JSON reader (any spelling), like :func:`_parse_into`:
    a cut gzip stream, an overlong line or bad UTF-8 are read through the sanitised copy."""
    duckdb = _duckdb_module()
    read_errors = (duckdb.IOException, duckdb.InvalidInputException)
    gz = _is_gzip(path)
    tmp = Path(tempfile.mkdtemp(prefix="perflib-k6-"))
    con = _duckdb(tmp)
    try:
        if scan.gzip_complete:
            try:
                return _metric_lines_by_duckdb(con, path, "gzip" if gz else "none")
            except read_errors:
                pass
        clean = tmp / "sanitised.ndjson"
        _sanitise(path, clean, gz)
        try:
            return _metric_lines_by_duckdb(con, clean, "none")
        except read_errors as exc:
            raise K6InputError(f"{path}: cannot be read as k6 NDJSON: {exc}") from exc
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- summary


def _submetric_filter(tags: Mapping[str, str], columns: set[str]) -> str:
    conds = []
    for k, v in tags.items():
        col = tag_column(k)
        if col not in columns:
            return "FALSE"  # a tag no sample carries: the sub-metric is empty, as in k6
        conds.append(f"\"{_sql_ident(col)}\" = '{_sql_str(str(v))}'")
    return " AND ".join(conds) if conds else "TRUE"


def _tags_from_suffix(suffix: str) -> dict[str, str]:
    """Parse k6's ``key:value,key2:value2`` sub-metric selector (``metrics.ParseMetricName``)."""
    out: dict[str, str] = {}
    for part in suffix.split(","):
        if not part.strip():
            continue
        k, _, v = part.partition(":")
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def summarize(source: Source | Ingest, *, cache: bool = True) -> dict[str, Any]:
    """k6's end-of-test statistics recomputed from raw NDJSON, in docs/contracts.md's JSON shape.

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
    return _summary_and_meta(source, cache)[0]


def _summary_cache_path(paths: Sequence[Path]) -> Path:
    return cache_dir(paths[0]) / "summary.json"


def _summary_cache_keys(paths: Sequence[Path]) -> list[Any]:
    return [[str(p.resolve()), _cache_key(p)] for p in paths]


def _summary_and_meta(
    source: Source | Ingest, cache: bool
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
                if doc.get("keys") == _summary_cache_keys(paths):
                    return doc["summary"], doc["meta"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass
    tmp = Path(tempfile.mkdtemp(prefix="perflib-k6-"))
    try:
        direct = None
        if paths is not None and not (cache and any(_load_cached(p) for p in paths)):
            # The common cold case: the strict C reader (plain, gzip, segments); else, for one
            # plain file, one DuckDB pass; else (None) the general path.
            direct = _fast_summary(paths)
            if direct is None and len(paths) == 1 and not _is_gzip(paths[0]):
                direct = _direct_summary(paths[0], tmp)
        if direct is not None:
            result, lines, warnings, meta, excluded = direct
            return _store_summary(
                {"metrics": result, "lines": lines, "warnings": warnings, "excluded": excluded},
                meta,
                paths,
                cache,
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
            result, excluded = _summarize(con, ing, meta, warnings)
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _store_summary(
        {"metrics": result, "lines": ing.lines, "warnings": warnings, "excluded": excluded},
        meta,
        paths,
        cache,
    )


def _store_summary(
    summary: dict[str, Any],
    meta: dict[str, dict[str, Any]],
    paths: Sequence[Path] | None,
    cache: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Cache the summary beside the source (unless told not to), and return it."""
    if cache and paths is not None:
        try:
            _summary_cache_path(paths).parent.mkdir(exist_ok=True)
            _write_json(
                _summary_cache_path(paths),
                {"keys": _summary_cache_keys(paths), "summary": summary, "meta": meta},
            )
        except OSError:
            pass  # read-only location: the summary is simply not cached
    return summary, meta


#: The line kinds of :func:`_direct_sql`, by the small int it groups on (cheaper than text).
_DIRECT_KINDS = ("point", "metric", "bad_point", "invalid")
#: Types whose metric is certainly not a gauge (the gauge flag is on for any other type).
_NOT_GAUGE = ("trend", "rate", "counter")


def _direct_sql(
    path: Path,
    tags: Sequence[str],
    subs: Sequence[tuple[str, str, dict[str, str]]],
    guess: Mapping[str, dict[str, Any]],
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
    qs = ", ".join(str(q) for q in _TREND_QUANTILES)
    aggs = _VALUE_AGGS.format(qs=qs, trend=f"kind = {kinds['point']} AND is_trend")
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
    path: Path, tmp: Path
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
            out["query"] = _direct_sql(path, tags, subs, guess)
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
    result = _assemble(rows, sub_aggs, meta, duration_s, warnings)
    dropped = _excluded_warnings(excluded, meta, warnings)
    return result, {"parsed": parsed, "skipped": skipped}, warnings, meta, dropped


#: Bigger files go to DuckDB, whose ``memory_limit`` bounds them: the fast reader keeps every
#: sample's value (8 bytes, about 3 % of k6's NDJSON) until the statistics are computed.
_FAST_MAX_BYTES = 4 * 1024**3

#: (statistics, line counts, warnings, metric declarations, impossible values excluded)
_SummaryParts = tuple[
    dict[str, dict[str, Any]],
    dict[str, int],
    list[str],
    dict[str, dict[str, Any]],
    dict[str, dict[str, int]],
]


def fast_reader() -> Any | None:
    """The compiled strict reader :mod:`perflib._k6scan`, or None.

    None when the extension was not built (an install without a C compiler) or when
    ``PERFLIB_K6_FAST=0`` asks for DuckDB's reader on every file (to compare, or to rule the
    fast reader out). ``summarize`` is correct either way; only its speed differs.
    """
    if os.environ.get("PERFLIB_K6_FAST", "1") == "0":
        return None
    try:
        from perflib import _k6scan
    except ImportError:
        return None
    return _k6scan


def _fast_summary(paths: Sequence[Path]) -> _SummaryParts | None:
    """Cold summary of k6 files (plain or gzip, one or several segments) read by the strict C
    scanner (``perflib/_k6scan.c``).

    Why: DuckDB's JSON parse alone costs about 0.23 CPU-s on an 84 MB file; the scanner reads
    k6's one line shape in about a third of that, so the whole summary no longer needs two free
    cores to be 10x faster than pandas (docs/ingest.md). The scanner only turns bytes into
    per-series value columns; the statistics are numpy's, with :func:`percentile`.

    It accepts nothing but lines exactly as k6 writes them, so there is nothing to skip or
    count: every physical line is parsed. For any other file (a cut last line or gzip stream,
    a blank line, re-serialised JSON, a sub-metric on a tag the heads did not announce…) it
    returns None and the DuckDB readers take over with their line accounting;
    ``PERFLIB_K6_FAST=0`` forces that.
    """
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
            q = [float(x) for x in percentile(v, [100 * p for p in _TREND_QUANTILES])]
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
    result = _assemble(rows, sub_aggs, meta, max(span, 0) / 1e9, warnings)
    return result, {"parsed": sum(s[0] for s in scans), "skipped": 0}, warnings, meta, {}


def _head_metric_lines(path: Path, gz: bool) -> list[bytes]:
    """The Metric lines among the complete lines of the file's first MiB (after gunzip)."""
    try:
        head = next(_chunks(path, gz, _Scan(), 128 * 1024 if gz else _MAX_LINE_BYTES), b"")
    except OSError:
        return []
    head = head[:_MAX_LINE_BYTES]
    out: list[bytes] = []
    cut = head.rfind(b"\n")
    if cut > 0:
        _collect_metric_lines(head, 0, cut, out)
    return out


def _json_string(raw: bytes) -> str:
    """A JSON string body as the scanner returns it (escapes only decoded when present)."""
    return json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()


def _decl_obj(decl: Mapping[str, Any]) -> dict[str, Any]:
    """A Metric line's ``data`` object back from DuckDB's row (JSON fields decoded)."""
    obj: dict[str, Any] = {} if decl["name"] is None else {"name": decl["name"]}
    for key in ("type", "contains", "thresholds", "submetrics"):
        obj[key] = None if decl[key] is None else json.loads(decl[key])
    return obj


def _value_limits(decl: Mapping[str, Any] | None) -> tuple[float, float]:
    """(lowest, highest) plausible value of a metric, from its declared ``contains``."""
    contains = (decl or {}).get("contains")
    low = 0.0 if contains in _NON_NEGATIVE else -MAX_ABS_VALUE
    return low, MAX_TIME_MS if contains == "time" else MAX_ABS_VALUE


def _bad_value_sql(meta: Mapping[str, dict[str, Any]]) -> str:
    """SQL: the index in BAD_VALUE_KINDS of ``value`` when it is impossible, else NULL."""
    time_ = [_sql_lit(m) for m, d in meta.items() if d.get("contains") == "time"]
    nonneg = [_sql_lit(m) for m, d in meta.items() if d.get("contains") in _NON_NEGATIVE]
    is_time = f"metric IN ({', '.join(time_)})" if time_ else "FALSE"
    is_nonneg = f"metric IN ({', '.join(nonneg)})" if nonneg else "FALSE"
    # The first test passes nearly every sample for every metric, so the metric lists are
    # only looked at for the rare rest (NaN fails it: DuckDB orders NaN above everything).
    return (
        f"CASE WHEN value >= 0 AND value <= {MAX_TIME_MS!r} THEN NULL "
        f"WHEN isnan(value) THEN 0 WHEN isinf(value) THEN 1 "
        f"WHEN {is_nonneg} AND value < 0 THEN 2 "
        f"WHEN abs(value) > CASE WHEN {is_time} THEN {MAX_TIME_MS!r} ELSE {MAX_ABS_VALUE!r} END "
        f"THEN 3 END"
    )


#: The aggregates of one group, over the plausible values only (``value`` is NULL for the
#: impossible ones), then the count of each impossible kind.
_VALUE_AGGS = """count(value) AS n, fsum(value) AS total, min(value) AS lo, max(value) AS hi,
    quantile_cont(value, [{qs}]) FILTER (WHERE {trend}) AS q,
    count(*) FILTER (WHERE value <> 0) AS nonzero,
    arg_max(value, time_ns) FILTER (WHERE is_gauge AND value IS NOT NULL) AS last"""
_BAD_AGGS = ", ".join(f"count(*) FILTER (WHERE bad = {i})" for i in range(len(BAD_VALUE_KINDS)))


def _excluded_warnings(
    excluded: Mapping[str, Sequence[int]], meta: Mapping[str, dict[str, Any]], warnings: list[str]
) -> dict[str, dict[str, int]]:
    """The summary's ``excluded`` entry and one warning per metric with impossible values."""
    out: dict[str, dict[str, int]] = {}
    for metric, counts in sorted(excluded.items()):
        if not any(counts):
            continue
        out[metric] = {k: int(n) for k, n in zip(BAD_VALUE_KINDS, counts, strict=True) if n}
        low, high = _value_limits(meta.get(metric))
        unit = {"time": " ms", "data": " bytes"}.get((meta.get(metric) or {}).get("contains"), "")
        what = ", ".join(f"{n} {k}" for k, n in out[metric].items())
        warnings.append(
            f"{metric}: {sum(out[metric].values())} impossible value(s) excluded from its "
            f"statistics ({what}; plausible: {low:g} to {high:g}{unit})"
        )
    return out


def _summarize(
    con: duckdb.DuckDBPyConnection,
    ing: Ingest,
    meta: dict[str, dict[str, Any]],
    warnings: list[str],
) -> dict[str, dict[str, Any]]:
    con.execute(f"CREATE TEMP VIEW pts AS {_points_sql(ing.files)}")
    columns = {r[0] for r in con.execute("DESCRIBE pts").fetchall()}
    qs = ", ".join(str(q) for q in _TREND_QUANTILES)
    # Percentiles only for trends, the last value only for gauges: each costs a pass.
    aggs = _VALUE_AGGS.format(qs=qs, trend="is_trend")

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
    result = _assemble(rows, sub_aggs, meta, _run_duration_s(ing), warnings)
    return result, _excluded_warnings(excluded, meta, warnings)


def _declared_subs(
    parents: Iterable[str], meta: Mapping[str, dict[str, Any]]
) -> list[tuple[str, str, dict[str, str]]]:
    """``(name, parent, tag filter)`` of every sub-metric k6 declared for ``parents``."""
    out = []
    for parent in parents:
        for s in (meta.get(parent) or {}).get("submetrics", []):
            tags = s.get("tags") or _tags_from_suffix(s.get("suffix") or "")
            out.append((s["name"], parent, tags))
    return out


def _summary_tags(meta: Mapping[str, dict[str, Any]], extra: Iterable[str] = ()) -> list[str]:
    """The tags a summary reads: ``name`` (per-endpoint splits), then every tag a declared
    sub-metric filters on (and ``extra``), sorted."""
    keys = {k for _, _, tags in _declared_subs(meta, meta) for k in tags} | set(extra)
    return ["name", *sorted(keys - {"name"})]


def _sub_key(name: str, parent: str, tags: Mapping[str, str]) -> tuple[Any, ...]:
    return (name, parent, tuple(sorted(tags.items())))


def _assemble(
    rows: Sequence[Sequence[Any]],
    sub_aggs: Mapping[tuple[Any, ...], Sequence[Any]],
    meta: Mapping[str, dict[str, Any]],
    duration_s: float,
    warnings: list[str],
) -> dict[str, dict[str, Any]]:
    """k6's statistics from the aggregate rows ``(metric, name tag, whole, *aggregates)`` and
    the sub-metric aggregates (keyed by :func:`_sub_key`): shared by both summary paths."""
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
            stats[metric] = _stats(types[metric], *agg, duration_s)
        elif name is not None and metric.startswith("http_req") and types[metric] != "gauge":
            splits.setdefault(metric, []).append((name, tuple(agg)))

    # Sub-metrics k6 declared (thresholds, expected_response:true): arbitrary tag filters.
    declared: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, parent, tags in _declared_subs(seen, meta):
        declared.add((parent, tuple(sorted(tags.items()))))
        agg = sub_aggs.get(_sub_key(name, parent, tags), (0, 0.0, None, None, None, 0, None))
        stats[name] = _stats(types[parent], *agg, duration_s)

    for metric, values in sorted(splits.items()):
        if len(values) > MAX_NAME_SPLITS:
            warnings.append(
                f"{metric}: {len(values)} distinct name tags; per-endpoint splits omitted "
                f"(limit {MAX_NAME_SPLITS}: set the name tag on URLs that carry ids)"
            )
            continue
        for name, agg in sorted(values):
            if (metric, (("name", name),)) not in declared:
                stats[f"{metric}{{name:{name}}}"] = _stats(types[metric], *agg, duration_s)

    order = {m: i for i, m in enumerate(seen)}
    return dict(
        sorted(
            stats.items(), key=lambda kv: (order.get(kv[0].split("{")[0], 0), "{" in kv[0], kv[0])
        )
    )


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


def _sql_lit(value: str) -> str:
    """A SQL string literal."""
    return f"'{_sql_str(value)}'"


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
) -> dict[str, Any]:
    if kind == "trend":
        if n == 0:
            return dict.fromkeys(TREND_STATS, 0) | {"count": 0}
        if q is None or any(v is None for v in q):
            # Never stand in min for the percentiles: a trend always gets its quantiles.
            raise RuntimeError("internal error: trend aggregated without its percentiles")
        med, p90, p95, p99 = q
        return {
            "count": n,
            "avg": (total or 0.0) / n,
            "min": lo,
            "med": med,
            "max": hi,
            "p(90)": p90,
            "p(95)": p95,
            "p(99)": p99,
        }
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


def read_summary_export(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """k6's own summary as ``{metric: {k6 stat keys}}``, from either file shape it writes.

    Legacy ``--summary-export`` (flat values, rate under ``value``) and ``handleSummary``'s
    ``data`` (``metrics.X.values``) both become ``{"rate", "passes", "fails"}`` etc.; the
    legacy file's inverted thresholds (``true`` = failed) are dropped here, not misread.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise K6InputError(f"{p}: no such file") from exc
    except ValueError as exc:
        raise K6InputError(f"{p}: not a k6 summary (invalid JSON: {exc})") from exc
    metrics = doc.get("metrics") if isinstance(doc, dict) else None
    if isinstance(metrics, list):
        raise K6InputError(f"{p}: the new machine-readable summary (v1.5+) is not supported")
    if not isinstance(metrics, dict):
        raise K6InputError(f"{p}: not a k6 summary (no 'metrics' object)")
    out: dict[str, dict[str, Any]] = {}
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("values"), dict):  # handleSummary shape
            values = dict(m["values"])
        else:  # legacy flat shape
            values = {k: v for k, v in m.items() if k != "thresholds"}
            if "passes" in values and "fails" in values and "value" in values:
                values["rate"] = values.pop("value")
        out[name] = values
    return out


# --------------------------------------------------------------------------- CLI


def _fmt(value: Any, contains: str | None) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if contains == "time":
        ms = float(value)
        if ms == 0:
            return "0s"
        if ms < 1:
            return f"{ms * 1000:.2f}µs"
        if ms < 1000:
            return f"{ms:.2f}ms"
        return f"{ms / 1000:.2f}s"
    if contains == "data":
        b = float(value)
        for unit in ("B", "kB", "MB", "GB"):
            if abs(b) < 1000 or unit == "GB":
                return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
            b /= 1000
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{int(value)}" if isinstance(value, float) else str(value)


def _render(summary: Mapping[str, Any], meta: Mapping[str, dict[str, Any]]) -> None:
    """The summary as an aligned text table on stdout.

    Plain padding, not ``rich.table``: measuring and folding ~100 rows of cells cost rich
    ~0.25 s with its import, a third of a cold ``perflib summarize`` of an 80 MB file.
    """
    rows: list[tuple[str, str, str]] = []
    for name, stats in summary["metrics"].items():
        parent = name.split("{")[0]
        m = meta.get(parent) or {}
        kind, contains = m.get("type", "?"), m.get("contains")
        if kind == "rate":
            text = f"{stats['rate'] * 100:.2f}%  {stats['passes']} true / {stats['fails']} false"
        elif kind == "counter":
            text = f"count={_fmt(stats['count'], contains)}  rate={stats['rate']:.2f}/s"
        else:
            text = "  ".join(
                f"{k}={stats[k] if k == 'count' else _fmt(stats[k], contains)}" for k in stats
            )
        rows.append((name if name == parent else f"  {name}", kind, text))
    header = ("metric", "type", "statistics")
    w0 = max(len(r[0]) for r in [header, *rows])
    w1 = max(len(r[1]) for r in [header, *rows])
    w2 = max(len(r[2]) for r in [header, *rows])
    out = ["k6 summary (recomputed from raw samples)"]
    out.append(f"{header[0]:<{w0}}  {header[1]:<{w1}}  {header[2]}")
    out.append(f"{'─' * w0}  {'─' * w1}  {'─' * w2}")
    out.extend(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)
    lines = summary["lines"]
    excluded = sum(sum(c.values()) for c in (summary.get("excluded") or {}).values())
    out.append(
        f"lines: {lines['parsed']:,} parsed, {lines['skipped']:,} skipped"
        + (f"; {excluded:,} impossible value(s) excluded (see the warnings)" if excluded else "")
    )
    sys.stdout.write("\n".join(out) + "\n")


def cli_summarize(args: argparse.Namespace) -> int:
    """``perflib summarize PATH [--json] [--no-cache]``: 0 ok (warnings on stderr), 2 bad input."""
    # numpy's import starts one OpenBLAS thread per core (about 0.06 CPU-s here); summarize does
    # no linear algebra. Set only in this process, and only when the user has not chosen.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        summary, meta = _summary_and_meta(args.path, cache=not getattr(args, "no_cache", False))
    except PerflibError:
        raise  # K6InputError, RunDirError: the CLI prints one line, exit 2
    except FileNotFoundError as exc:
        print(f"perflib summarize: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # duckdb.Error (e.g. out of memory): say what, no traceback
        if type(exc).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
            raise
        print(
            f"perflib summarize: DuckDB failed: {exc}\n(raise PERFLIB_DUCKDB_MEMORY, "
            f"now {os.environ.get('PERFLIB_DUCKDB_MEMORY', '1GB')}, if it ran out of memory)",
            file=sys.stderr,
        )
        return 1
    for w in summary["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _render(summary, meta)
    return 0
