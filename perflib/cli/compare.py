"""``perflib compare``: arguments and printing only (the comparison is :mod:`perflib.sizing.compare`)."""

from __future__ import annotations

import argparse
import sys


def cli_compare(args: argparse.Namespace) -> int:
    """``perflib compare RUN_DIR...``: 0 ok, 2 bad input."""
    from perflib.cli.recommend import guide_option_1_line, print_decision
    from perflib.sizing.compare import compare_presets

    comp = compare_presets(
        args.run_dirs,
        region=getattr(args, "region", "iad") or "iad",
        price_set=getattr(args, "price_set", None),
    )
    if getattr(args, "json", False):
        for w in comp.warnings:  # the JSON carries them too; stderr so a person sees them
            print(f"warning: {w}", file=sys.stderr)
        print(comp.to_json())
        return 0
    from rich.console import Console

    con = Console(width=max(Console().width, 170))
    for w in comp.warnings:
        con.print(f"warning: {w}", style="bold yellow", highlight=False, markup=False)
    rec = comp.recommendation
    if rec.decision is not None:
        print_decision(con, rec.decision, title=f"Decision: {comp.table['profile'].iloc[0]} runs")
    con.print("Evidence", style="bold")
    for label, res in comp.latency.items():
        verdict = "; ".join(res.get("verdicts", [])) or str(res.get("reason", ""))
        con.print(f"latency {comp.baseline} → {label}: {verdict}", highlight=False)
        if res.get("throttling_note"):  # a throttled side confounds the latency above
            con.print(f"  {res['throttling_note']}", highlight=False, markup=False)
    for reason in rec.reasons:
        con.print(f"• {reason}", highlight=False, markup=False)
    if rec.guide_option_1:
        con.print(f"guide Option 1: {guide_option_1_line(rec.guide_option_1)}", highlight=False)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs of one profile at different presets")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--region", default="iad")
    p.add_argument("--price-set", default=None)
    p.add_argument("--json", action="store_true")
