"""``perflib store index|list|upgrade``: the results store from the command line."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from perflib.errors import PerflibError


def cli_store(args: argparse.Namespace) -> int:
    """``perflib store index|list|upgrade``: 0 ok, 1 a run could not be indexed, 2 bad input."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from perflib.rundir import validate_run
    from perflib.store.results import Store, StoreError

    # a pipe gets a wide table (rich would fold it to 80 columns); a terminal its own width
    console = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True, soft_wrap=True)
    try:
        store = Store(args.database_url, upgrade=args.action != "upgrade")
    except StoreError as exc:  # the CLI prints the one error line
        raise PerflibError(str(exc), exit_code=2) from None
    with store:
        if args.action == "upgrade":
            try:
                rev = store.upgrade()
            except StoreError as exc:
                raise PerflibError(str(exc), exit_code=2) from None
            console.print(f"results store at {store.safe_url}: schema revision {rev}")
            return 0
        if args.action == "index":
            if not args.run_dirs:
                raise PerflibError("`perflib store index` needs at least one RUN_DIR")
            missing = [p for p in args.run_dirs if not (Path(p) / "manifest.json").is_file()]
            if missing:
                raise PerflibError(
                    "not a run directory (no manifest.json)", path=", ".join(missing)
                )
            for p in args.run_dirs:  # a malformed file: one line naming it (the CLI), exit 2
                validate_run(p)
            status = 0
            for p in args.run_dirs:
                try:
                    res = store.index_run(p)
                except Exception as exc:  # noqa: BLE001 - report per run, keep going
                    err.print(f"[red]failed[/] {p}: {type(exc).__name__}: {exc}")
                    status = 1
                    continue
                verb = "indexed" if res.created else "updated"
                console.print(
                    f"{verb} {res.run_id} ({res.metrics} statistics, {res.slo_verdicts} SLO verdicts)"
                )
                for note in res.notes:
                    err.print(f"  [yellow]note:[/] {note}")
            return status
        df = store.runs_frame()
        table = Table(title=f"{len(df)} runs in {store.safe_url}")
        for head in ("started (UTC)", "profile", "preset", "exit", "requests", "p95 ms",
                     "errors %", "peak MB", "SLO", "recommended"):  # fmt: skip
            table.add_column(head, overflow="fold")
        for rec in df.to_dict("records"):
            started = rec["started_at"]
            table.add_row(
                "—" if pd.isna(started) else started.strftime("%Y-%m-%d %H:%M:%S"),
                _fmt(rec["profile"]),
                _fmt(rec["preset"]).replace("shared-cpu-", "s-").replace("performance-", "p-"),
                _fmt(rec["exit_status"]),
                _fmt(rec["requests"]),
                _fmt(rec["p95_ms"]),
                _fmt(None if pd.isna(rec["error_rate"]) else 100 * rec["error_rate"]),
                _fmt(rec["memory_peak_mb"]),
                _fmt(rec["worst_verdict"]),
                _fmt(rec["recommended_preset"]).replace("shared-cpu-", "s-"),
            )
        console.print(table)
        if len(df):
            console.print("presets: s- = shared-cpu-, p- = performance-", style="dim")
        return 0


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="index run directories in the results store")
    p.add_argument("action", choices=["index", "list", "upgrade"])
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default PERFLIB_DATABASE_URL or a SQLite file)",
    )
