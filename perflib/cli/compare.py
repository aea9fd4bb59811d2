"""``perflib compare``: arguments and printing only (the comparison is :mod:`perflib.sizing.compare`)."""

from __future__ import annotations

import argparse
import sys


def cli_compare(args: argparse.Namespace) -> int:
    """``perflib compare RUN_DIR...``: 0 ok, 2 bad input."""
    from perflib.cli.recommend import guide_option_1_line
    from perflib.fly.presets import PricingError
    from perflib.sizing.compare import compare_presets

    try:
        comp = compare_presets(
            args.run_dirs,
            region=getattr(args, "region", "iad") or "iad",
            price_set=getattr(args, "price_set", None),
        )
    except PricingError as exc:  # SizingError (a PerflibError): the CLI prints it, exit 2
        print(f"perflib compare: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        for w in comp.warnings:  # the JSON carries them too; stderr so a person sees them
            print(f"warning: {w}", file=sys.stderr)
        print(comp.to_json())
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 120))
    for w in comp.warnings:
        con.print(f"warning: {w}", style="bold yellow", highlight=False, markup=False)
    t = Table(title=f"Preset comparison ({comp.price_set}, {comp.region})")
    cols = {
        "preset": "preset",
        "peak_memory_mb": "peak MB",
        "p95_memory_mb": "p95 MB",
        "headroom_pct": "headroom %",
        "oom_kills": "OOM",
        "p95_latency_ms": "p95 ms",
        "error_rate": "errors",
        "monthly_cost_usd": "$/30 d",
        "saving_vs_baseline_usd": "saving $",
    }
    for header in cols.values():
        t.add_column(header)
    for row in comp.table.to_dict("records"):
        t.add_row(*["–" if row[c] is None else str(row[c]) for c in cols])
    con.print(t)
    for label, res in comp.latency.items():
        verdict = "; ".join(res.get("verdicts", [])) or str(res.get("reason", ""))
        con.print(f"latency {comp.baseline} → {label}: {verdict}", highlight=False)
    for reason in comp.recommendation.reasons:
        con.print(f"• {reason}", highlight=False, markup=False)
    rec = comp.recommendation
    cost = f"${rec.monthly_cost_usd:.2f}/30 d" if rec.monthly_cost_usd is not None else "–"
    con.print(f"recommended: {rec.headline} ({cost})", highlight=False, markup=False)
    if rec.guide_option_1:
        con.print(f"guide Option 1: {guide_option_1_line(rec.guide_option_1)}", highlight=False)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs of one profile at different presets")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--region", default="iad")
    p.add_argument("--price-set", default=None)
    p.add_argument("--json", action="store_true")
