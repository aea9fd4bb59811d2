"""``perflib report``: notebooks executed on runs and rendered to HTML."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perflib.report.build import ReportResult


def cli_report(args: argparse.Namespace) -> int:
    """``perflib report [RUN_DIR...] [--out DIR]``."""
    from rich.console import Console

    from perflib.report import secrets
    from perflib.report.build import build_report

    console = Console(stderr=True, soft_wrap=True)
    try:
        result = build_report(
            args.run_dirs or None,
            Path(args.out) if args.out else None,
            slo_file=getattr(args, "slo", None),
            price_set=getattr(args, "price_set", None),
            timeout=getattr(args, "timeout", 600),
            show_code=getattr(args, "show_code", False),
            jobs=getattr(args, "jobs", None),
            console=console,
            force=bool(getattr(args, "force", False)),
        )
    except secrets.SecretParameterError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    # ReportInputError / RunDirError (PerflibError): the CLI prints the one line, exit 2
    return _finish(result, console)


def _finish(result: ReportResult, console: Any) -> int:
    failed = [n for n in result.notebooks if not n.ok]
    for n in failed:
        console.print(f"[red]notebook {n.name} failed[/]: {n.error} (see {n.output})")
    if result.html:
        print(result.html)  # stdout: the one thing scripts need
    console.print(f"report directory: {result.out_dir}")
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="execute the notebooks on runs and render an HTML report")
    p.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="run directories (default: the recorded sample runs in data/)",
    )
    p.add_argument("--out", default=None, help="report directory (default reports/<timestamp>)")
    p.add_argument(
        "--force", action="store_true", help="write into --out even when it is not empty"
    )
    p.add_argument("--price-set", default=None)
    p.add_argument("--slo", default=None)
    p.add_argument("--timeout", type=int, default=600, help="per-cell execution timeout (s)")
    p.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks executed at once, each in its own kernel (default 2)",
    )
