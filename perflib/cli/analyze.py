"""``perflib analyze``: arguments and printing only (the analysis is :mod:`perflib.analysis.run`)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from perflib.errors import PerflibError

if TYPE_CHECKING:
    import argparse


# --------------------------------------------------------------------------- CLI


def _verdict_style(v: str) -> str:
    return {
        "pass": "green",
        "warn": "yellow",
        "alert": "bold yellow",
        "critical": "bold red",
        "no data": "dim",
    }.get(v, "")


def cli_analyze(args: argparse.Namespace) -> int:
    """``perflib analyze RUN_DIR [--slo FILE] [--json]``.

    Exit codes: 0 no verdict at or above the ``--fail-on`` level (default critical),
    1 at least one such verdict, 2 bad input (not a run directory, invalid SLO file,
    unreadable k6 output).
    """
    from rich.console import Console
    from rich.table import Table

    from perflib.analysis.run import analyze_run
    from perflib.analysis.slo import SEVERITY, load_slos
    from perflib.analysis.verdicts import _fmt

    err = Console(stderr=True, soft_wrap=True)
    try:
        slos = load_slos(getattr(args, "slo", None))
        analysis = analyze_run(args.run_dir, slos=slos)
    except PerflibError:
        raise  # SloError, RunDirError, K6InputError: the CLI prints one line, exit 2
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        err.print(f"[bold red]error:[/] {args.run_dir}: cannot analyse run: {exc}", highlight=False)
        return 2
    fail_on = getattr(args, "fail_on", None) or "critical"
    failing = [v for v in analysis.verdicts["verdict"] if SEVERITY.get(v, 0) >= SEVERITY[fail_on]]
    code = 1 if failing else 0
    if getattr(args, "json", False):
        print(json.dumps(analysis.to_dict(), indent=2, default=str))
        return code
    out = Console() if Console().is_terminal else Console(width=160)
    head = f"[bold]{analysis.run.name}[/]  profile={analysis.profile}  preset={analysis.run.preset}"
    done = analysis.completeness
    if done is not None and done.partial:
        share = "unknown" if done.share is None else f"{done.share:.0%}"
        head += f"  [bold red]PARTIAL RUN[/] (interrupted={done.interrupted}, profile ran: {share})"
    out.print(head)
    for w in analysis.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    figs = Table(title="Key figures", show_lines=False)
    figs.add_column("figure")
    figs.add_column("value", justify="right")
    for r in analysis.key_figures().itertuples():
        v = r.value
        txt = (
            "n/a"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:,.1f}" if isinstance(v, float) else str(v))
        )
        figs.add_row(r.figure, f"{txt} {r.unit}".strip())
    out.print(figs)
    table = Table(title=f"SLO verdicts ({analysis.slos.path})")
    for col in ("SLO", "target", "measured", "verdict", "evidence"):
        table.add_column(col, overflow="fold")
    for r in analysis.verdicts.itertuples():
        table.add_row(
            r.title,
            r.target,
            _fmt(r.measured, r.unit),
            f"[{_verdict_style(r.verdict)}]{r.verdict}[/]",
            r.evidence,
        )
    out.print(table)
    if analysis.step_attribution.dominant_step is not None:
        out.print(analysis.step_attribution.advice)
    if analysis.saturation.saturated:
        out.print(f"[bold yellow]saturated run:[/] {analysis.saturation.evidence}")
    if analysis.throttling is not None:
        out.print(f"shared CPU: {analysis.throttling.statement}", highlight=False, markup=False)
    m = analysis.memory
    leak = m.leak_note if m.leak_note.startswith("not testable") else (
        f"{m.leak_verdict} ({m.leak_note})"
    )  # fmt: skip
    out.print(f"memory leak: {leak}", highlight=False, markup=False)
    out.print(
        f"worst verdict: [{_verdict_style(analysis.worst_verdict)}]"
        f"{analysis.worst_verdict}[/] (exit {code})"
    )
    return code


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="SLO verdicts and key figures of a run directory")
    p.add_argument("run_dir")
    p.add_argument("--slo", default=None, help="SLO file (default data/slo.toml)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--fail-on",
        choices=["critical", "alert", "warn"],
        default="critical",
        help="exit 1 when any verdict is at least this severe (default critical)",
    )
