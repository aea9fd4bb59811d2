"""``perflib summarize``: arguments and printing only (the summary is :mod:`perflib.ingest.summary`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from perflib.errors import PerflibError

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


def _trend_stats(args: argparse.Namespace) -> tuple[str, ...]:
    """``--stats``, else the stats the run was recorded with, else ``TREND_STATS``."""
    from perflib.ingest.scan import TREND_STATS
    from perflib.ingest.trendstats import parse_trend_stats, run_trend_stats

    if getattr(args, "stats", None) is not None:
        return parse_trend_stats(args.stats)
    return run_trend_stats(args.path) or TREND_STATS


def cli_summarize(args: argparse.Namespace) -> int:
    """``perflib summarize PATH [--json] [--no-cache] [--stats STATS]``: 0 ok (warnings on
    stderr), 2 bad input (a bad path or a bad ``--stats``)."""
    # numpy's import starts one OpenBLAS thread per core (about 0.06 CPU-s here); summarize does
    # no linear algebra. Set only in this process, and only when the user has not chosen.
    from perflib.ingest.summary import _summary_and_meta

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        stats = _trend_stats(args)
        summary, meta = _summary_and_meta(args.path, not getattr(args, "no_cache", False), stats)
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summarize", help="k6's summary statistics from raw k6 output")
    p.add_argument("path", help="k6 NDJSON file (.gz too) or a run directory")
    p.add_argument("--json", action="store_true", help="print JSON (shape in docs/contracts.md)")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write the cache")
    p.add_argument(
        "--stats",
        metavar="STATS",
        default=None,
        help="trend statistics, k6's --summary-trend-stats syntax, e.g. "
        "'avg,min,med,max,p(90),p(99.9),count' (default: the run's own summaryTrendStats, "
        "else count,avg,min,med,max,p(90),p(95),p(99))",
    )
