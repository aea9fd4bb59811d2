"""Reading k6's bytes: the input contract (tags, sources, errors), line scanning and the DuckDB SQL
that turns NDJSON lines into typed rows. Every reader and summary path starts here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflib.errors import PerflibError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb


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


#: The trend statistics a summary gives when the run does not say (``perflib summarize
#: --stats`` or the run's own ``summaryTrendStats`` choose others: :mod:`.trendstats`); the
#: runner passes the same set to k6 as ``--summary-trend-stats`` (:data:`K6_TREND_STATS_ARG`).
TREND_STATS: tuple[str, ...] = ("count", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")

#: :data:`TREND_STATS` as k6's ``--summary-trend-stats`` argument, in k6's order.
K6_TREND_STATS_ARG = "avg,min,med,max,p(90),p(95),p(99),count"


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


#: Longest line read (k6 lines are < 1 KiB); also DuckDB's ``maximum_object_size``, which sizes
#: its read buffers: 1 MiB buffers let two threads share an 80 MB file (16 MiB ones did not).
_MAX_LINE_BYTES = 1024 * 1024


#: Other k6 system tags kept as columns when present (``vu``/``iter`` go to metadata in v1).
SYSTEM_TAGS: tuple[str, ...] = ("error", "tls_version", "subproto", "service", "ip", "ocsp_status")


Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class K6InputError(PerflibError, ValueError):
    """The input cannot be read as k6 output (missing, not k6 NDJSON, unreadable)."""


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
    numeric offset (k6 writes times in its local zone, docs/guide.md#how-k6-measures). ``Z`` times (k6 under UTC)
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


#: How k6 itself writes a Metric line (fixed struct field order, no spaces, docs/guide.md#how-k6-measures).
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


def _write_json(path: Path, doc: Any) -> None:
    """Write atomically (tmp + rename): a concurrent reader never sees half a cache file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)


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


def _tags_from_suffix(suffix: str) -> dict[str, str]:
    """Parse k6's ``key:value,key2:value2`` sub-metric selector (``metrics.ParseMetricName``)."""
    out: dict[str, str] = {}
    for part in suffix.split(","):
        if not part.strip():
            continue
        k, _, v = part.partition(":")
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


#: (statistics, line counts, warnings, metric declarations, impossible values excluded)
_SummaryParts = tuple[
    dict[str, dict[str, Any]],
    dict[str, int],
    list[str],
    dict[str, dict[str, Any]],
    dict[str, dict[str, int]],
]


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


def _sql_lit(value: str) -> str:
    """A SQL string literal."""
    return f"'{_sql_str(value)}'"


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
