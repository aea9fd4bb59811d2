"""Run every ``benchmarks/bench_*.py`` and print one table.

Each module exposes ``run() -> list[dict]`` with rows ``name, value, unit, target,
baseline, ratio``: the baseline is measured in the same run (never a stored number), so a
ratio means the same on any machine. A failing benchmark is reported, not fatal to the rest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("only", nargs="*", help="benchmark module names (default: all)")
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    args = parser.parse_args(argv)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if any(o in m for o in args.only)]
    console = Console(stderr=True)
    rows: list[dict] = []
    failed = 0
    for name in modules:
        console.log(f"running {name} …")
        try:
            for row in importlib.import_module(f"benchmarks.{name}").run():
                rows.append({"benchmark": name.removeprefix("bench_"), **row})
        except Exception:
            failed += 1
            console.print(f"[red]{name} failed[/red]\n{traceback.format_exc()}")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        table = Table(title="perflib benchmarks (ratio = value / baseline measured in this run)")
        for col in ("benchmark", "name", "value", "unit", "baseline", "ratio", "target"):
            table.add_column(
                col, justify="right" if col in ("value", "baseline", "ratio") else "left"
            )
        for row in rows:
            table.add_row(
                *(
                    _fmt(row.get(c))
                    for c in ("benchmark", "name", "value", "unit", "baseline", "ratio", "target")
                )
            )
        Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
