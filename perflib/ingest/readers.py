"""k6 points, requests and metric metadata as pandas frames, read from the Parquet cache."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

from perflib.ingest.cache import (
    _ingested,
    _load_cached,
)
from perflib.ingest.scan import (
    KNOWN_TAGS,
    MAX_TIME_MS,
    FileIngest,
    K6InputError,
    Source,
    _duckdb,
    _duckdb_module,
    _head_objects,
    _is_gzip,
    _merge_meta,
    _metric_lines_by_duckdb,
    _parse_metric_lines,
    _prescan,
    _sanitise,
    _Scan,
    _sql_ident,
    _sql_str,
    resolve_sources,
    tag_column,
)


def _points_sql(files: Sequence[FileIngest]) -> str:
    """Every file's Point rows as one relation; ``file`` tells segments apart.

    UNION ALL BY NAME: files may carry different custom-tag columns (missing → NULL).
    """
    parts = []
    for i, f in enumerate(files):
        if f.table is not None:
            rel = f'"{f.table}"'
        elif f.parquet is not None:
            rel = f"read_parquet('{_sql_str(f.parquet)}')"
        else:
            raise RuntimeError(f"internal error: {f.source} ingested into neither table nor file")
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
    (docs/guide.md#how-k6-measures: ``http_req_duration`` excludes blocked/connecting/TLS). ``failed`` is NA when
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
