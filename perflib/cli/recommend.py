"""``perflib recommend``: arguments and printing only (the recommendation is :mod:`perflib.sizing`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perflib.sizing.decision import Decision
    from perflib.sizing.recommend import Recommendation

# ----------------------------------------------------------------- CLI


def _print_recommendation(rec: Recommendation) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 170))
    for w in rec.warnings:
        con.print(f"warning: {w}", style="bold yellow", highlight=False, markup=False)
    if rec.decision is not None and rec.decision.tested:
        print_decision(con, rec.decision)
    title = "The guide's rules" + (" (FROM A PARTIAL RUN)" if rec.partial else "")
    t = Table(title=title, show_header=False)
    tested = "" if rec.recommended_tested else " — not tested: see 'worth testing next'"
    t.add_row("cheapest the rules allow", rec.headline + tested)
    t.add_row(
        "monthly cost", f"${rec.monthly_cost_usd:.2f}" if rec.monthly_cost_usd is not None else "–"
    )
    t.add_row("current", f"{rec.current_preset} (${rec.current_monthly_cost_usd:.2f}/30 d)")
    if rec.monthly_savings_usd is not None:
        t.add_row(
            "saving" if rec.monthly_savings_usd >= 0 else "extra cost",
            f"${abs(rec.monthly_savings_usd):.2f}/30 d",
        )
    label = rec.decision.price_label if rec.decision else f"price set {rec.price_set}"
    t.add_row("price set", f"{label} ({rec.region})")
    if rec.second_opinion:
        so = rec.second_opinion
        t.add_row(
            "VPA-style", f"{so.target_mb:.0f} MB → {so.preset} (confidence {so.confidence:.4f})"
        )
    if rec.pool:
        t.add_row("DB pool", f"{rec.pool.connections} connections")
    if rec.guide_option_1:
        t.add_row("guide: 512 MB?", guide_option_1_line(rec.guide_option_1))
    con.print(t)
    for r in rec.reasons:
        con.print(f"• {r}", highlight=False, markup=False)
    if rec.next_steps:
        con.print("Next steps:", style="bold")
        for i, step in enumerate(rec.next_steps, 1):
            con.print(f"{i}. {step}", highlight=False, markup=False)
    if rec.second_opinion:
        con.print(rec.second_opinion.caveat, style="yellow", highlight=False)


def print_decision(con: Any, decision: Decision, title: str = "Decision") -> None:
    """The decision table (one row per tested preset), its sentence, what to test next."""
    from rich.table import Table

    t = Table(title=f"{title} ({decision.price_label}; {decision.region})")
    df = decision.table()
    for col in df.columns:
        t.add_column(col, no_wrap=col not in ("usable MB (÷ 1.3)", "verdict", "OOM kills"))
    for row in df.itertuples(index=False):
        t.add_row(*map(str, row))
    con.print(t)
    con.print(decision.sentence, style="bold", highlight=False, markup=False)
    for line in decision.next_lines():
        con.print(f"Worth testing next: {line}", highlight=False, markup=False)
    if decision.cpu_note:
        con.print(decision.cpu_note, highlight=False, markup=False)
    con.print(decision.memory_note, highlight=False, markup=False)


def guide_option_1_line(opt: Mapping[str, Any]) -> str:
    """One line for humans: the guide's Option 1 verdict, its criteria and the saving."""
    crit = "; ".join(f"{c['criterion']}: {c['status']}" for c in opt["criteria"])
    return (
        f"{opt['preset']}: {opt['verdict']} ({crit}); ${opt['monthly_cost_usd']:.2f}/30 d, "
        f"saves ${opt['monthly_savings_usd']:.2f} vs current"
    )


def cli_recommend(args: argparse.Namespace) -> int:
    """``perflib recommend``: 0 ok, 2 bad input (message on stderr)."""
    from perflib.sizing.guide import SizingError
    from perflib.sizing.recommend import recommend

    run_dirs = list(getattr(args, "run_dirs", None) or [])
    samples = getattr(args, "samples", None)
    events = getattr(args, "events", None)
    if not run_dirs and not samples:
        raise SizingError("give RUN_DIR... or --samples FILE.csv")
    if events and not samples:
        raise SizingError("--events needs --samples")
    rec = recommend(
        run_dirs or None,
        samples=samples,
        events=events,
        current=getattr(args, "current", None),
        region=getattr(args, "region", "iad") or "iad",
        instances=getattr(args, "instances", 1) or 1,
        ha=bool(getattr(args, "ha", False)),
        price_set=getattr(args, "price_set", None),
        monthly_requests=getattr(args, "monthly_requests", None),
    )
    if getattr(args, "json", False):
        for w in rec.warnings:  # the JSON carries them too; stderr so a person sees them
            print(f"warning: {w}", file=sys.stderr)
        print(rec.to_json())
    else:
        _print_recommendation(rec)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="right-size the Fly VM from runs or samples")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    p.add_argument("--samples", default=None, metavar="FILE.csv")
    p.add_argument("--events", default=None, metavar="FILE.jsonl")
    p.add_argument(
        "--current",
        default=None,
        metavar="PRESET",
        help="preset the app runs on now (default: from the runs, else shared-cpu-1x:1024mb)",
    )
    p.add_argument("--region", default="iad")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--price-set", default=None, help="price set date or name (default newest)")
    p.add_argument("--ha", action="store_true", help="require high availability (>= 2 instances)")
    p.add_argument(
        "--monthly-requests",
        type=float,
        default=None,
        metavar="N",
        help="production requests per 30 days, to add egress to the costs",
    )
    p.add_argument("--json", action="store_true")
