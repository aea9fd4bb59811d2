"""Fast, lean ingest of k6 output (``--out json`` NDJSON, summary exports) and k6's summary.

Why DuckDB: one streaming, multi-threaded pass over the NDJSON (plain or ``.gz``) turns every
line into a typed row, either of a Parquet cache beside the source (:mod:`.cache`, read back by
:mod:`.readers`) or of a narrow temporary table (a cold :func:`summarize` of gzip or segments),
or straight into the aggregates (a cold summary of one plain file); summaries are SQL
aggregates, so memory stays bounded by what the aggregates keep (like k6 itself, the values
of each trend), never by the file. Our figures are in ``docs/ingest.md``.

Why a C reader too: a cold summary of files exactly as k6 writes them is read by the strict
``perflib.ingest._k6scan`` (:mod:`.fast`) at a third of DuckDB's JSON-parse cost, with the
statistics in numpy; it refuses any other file, which then takes DuckDB.

Modules, in data-flow order: :mod:`.scan` (sources, line scanning, SQL), :mod:`.cache`
(Parquet cache), :mod:`.readers` (points, requests, metadata), :mod:`.fast`, :mod:`.aggregate`
and :mod:`.summary` (k6's summary), :mod:`.export` (k6's own summary files).

Heavy libraries (duckdb, pandas, pyarrow, rich) are imported inside functions, so
``perflib summarize`` pays only for what it uses.
"""

from __future__ import annotations

from perflib.ingest.cache import CACHE_SUFFIX, CACHE_VERSION, cache_dir, ingest, ingest_file
from perflib.ingest.export import read_summary_export
from perflib.ingest.fast import fast_reader
from perflib.ingest.readers import read_metric_meta, read_points, read_requests
from perflib.ingest.scan import (
    BAD_VALUE_KINDS,
    HTTP_TIMINGS,
    KNOWN_TAGS,
    MAX_ABS_VALUE,
    MAX_NAME_SPLITS,
    MAX_TIME_MS,
    SYSTEM_TAGS,
    TREND_STATS,
    FileIngest,
    Ingest,
    K6InputError,
    Source,
    resolve_sources,
    tag_column,
)
from perflib.ingest.summary import summarize

__all__ = [
    "BAD_VALUE_KINDS",
    "MAX_ABS_VALUE",
    "MAX_TIME_MS",
    "CACHE_SUFFIX",
    "CACHE_VERSION",
    "HTTP_TIMINGS",
    "KNOWN_TAGS",
    "MAX_NAME_SPLITS",
    "SYSTEM_TAGS",
    "TREND_STATS",
    "FileIngest",
    "Ingest",
    "K6InputError",
    "Source",
    "cache_dir",
    "fast_reader",
    "ingest",
    "ingest_file",
    "read_metric_meta",
    "read_points",
    "read_requests",
    "read_summary_export",
    "resolve_sources",
    "summarize",
    "tag_column",
]
