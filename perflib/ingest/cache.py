"""The Parquet cache beside each k6 file: one parse of the NDJSON (DuckDB) into typed rows that
the readers reuse, with every skipped or cut line accounted for (docs/ingest.md)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

from perflib.ingest.scan import (
    KNOWN_TAGS,
    SYSTEM_TAGS,
    FileIngest,
    Ingest,
    K6InputError,
    Source,
    _declared_names,
    _duckdb,
    _duckdb_module,
    _is_gzip,
    _metric_lines_by_duckdb,
    _parse_metric_lines,
    _prescan,
    _sample_tag_keys,
    _sanitise,
    _Scan,
    _select_sql,
    _sorted_names,
    _sql_str,
    _summary_tags,
    _write_json,
    resolve_sources,
)

#: Bump when the cache layout changes, so stale caches are rebuilt rather than misread.
CACHE_VERSION = 2  # 2: Metric lines found in any key order/spacing


CACHE_SUFFIX = ".k6cache"


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
