"""``perflib calibrate``: guests of each size measured; the table the process emulation uses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perflib.errors import PerflibError


def cli_calibrate(args: argparse.Namespace) -> int:
    """Exit 0 ok, 2 bad --sizes, 3 no guest here, 4 a guest failed (sizes done are kept)."""
    from perflib.guest.calibrate import calibrate
    from perflib.guest.calibration import TABLE

    try:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError:
        raise PerflibError(f"--sizes must be MB figures like 256,512, got {args.sizes!r}") from None

    def say(msg: str) -> None:
        print(f"calibrate: {msg}", file=sys.stderr, flush=True)

    print(calibrate(sizes, Path(args.out) if args.out else TABLE, say))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="boot Linux guests of each size and measure the room the app gets (data/ table)",
    )
    p.add_argument(
        "--sizes",
        default="256,512,1024,2048",
        help="guest sizes in MB, comma-separated (default 256,512,1024,2048)",
    )
    p.add_argument("--out", default=None, help="table path (default data/guest_memory.csv)")
