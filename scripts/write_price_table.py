"""Regenerate data/fly_pricing.csv from the price sets and published prices (data/fly_*.csv).

Usage: ``.venv/bin/python scripts/write_price_table.py`` (prints the table); ``--write`` writes it.
"""

from __future__ import annotations

import argparse

from perflib.cost import generate_price_table, write_price_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="regenerate data/fly_pricing.csv")
    ap.add_argument("--write", action="store_true", help="write the file (default: print it)")
    args = ap.parse_args(argv)
    if args.write:
        print(write_price_table())
    else:
        print(generate_price_table().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
