"""Re-record the sample runs in data/runs (what every notebook shows on its defaults).

Real runs of this project's own service on the local stack, made with ``perflib run``'s
engine (:func:`perflib.run.runner.run_profile`) under the nominal upstream emulators, shortened
with a time scale so the committed data stays small (gzip NDJSON; < 2 MB in total):

    .venv/bin/python scripts/record_sample_runs.py            # all four, ~4 minutes
    .venv/bin/python scripts/record_sample_runs.py --only 01-smoke-1024mb

Each run is recorded into a temporary directory and moves into data/runs only when it
completed, so an interrupted re-recording never leaves a half-written sample behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "data" / "runs"

#: name -> (profile, preset, time scale). The guide's question is 512 MB vs 1 GB under load.
PLAN: dict[str, tuple[str, str, float]] = {
    "01-smoke-1024mb": ("smoke", "shared-cpu-1x:1024mb", 0.5),
    "02-load-1024mb": ("load", "shared-cpu-1x:1024mb", 0.25),
    "03-load-512mb": ("load", "shared-cpu-1x:512mb", 0.25),
    "04-stress-512mb": ("stress", "shared-cpu-1x:512mb", 0.15),
}
#: Files a sample run keeps (caches and k6's console log are left out).
KEEP = (
    "manifest.json",
    "k6.ndjson.gz",
    "k6-summary.json",
    "samples.csv",
    "events.jsonl",
    "service.log",
)
MAX_TOTAL_BYTES = 2 * 1024 * 1024
MAX_SERVICE_LOG_BYTES = 200_000


def record(name: str, profile: str, preset: str, time_scale: float) -> Path:
    from perflib.run import runner

    with tempfile.TemporaryDirectory(prefix="perflib-sample-") as tmp:
        res = runner.run_profile(profile, vm=preset, time_scale=time_scale, out=Path(tmp) / name)
        if res.status not in ("ok", "thresholds_failed", "oom_killed"):
            raise SystemExit(f"{name}: run failed ({res.status}): {res.message}")
        target = DEST / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for fname in KEEP:
            src = res.run_dir / fname
            if src.exists():
                shutil.copy2(src, target / fname)
        log = target / "service.log"
        if log.exists() and log.stat().st_size > MAX_SERVICE_LOG_BYTES:
            # keep the head: the Step timing lines of the first requests are what step
            # attribution needs; a truncation marker says the rest was cut
            head = log.read_bytes()[:MAX_SERVICE_LOG_BYTES]
            head = head[: head.rfind(b"\n") + 1]
            log.write_bytes(head + b"# [truncated by record_sample_runs.py]\n")
        return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="re-record data/runs")
    ap.add_argument("--only", nargs="*", choices=sorted(PLAN), help="record only these runs")
    args = ap.parse_args(argv)
    DEST.mkdir(parents=True, exist_ok=True)
    for name in args.only or PLAN:
        profile, preset, scale = PLAN[name]
        path = record(name, profile, preset, scale)
        size = sum(f.stat().st_size for f in path.iterdir())
        print(f"{path.relative_to(ROOT)}: {size / 1024:.0f} KiB")
    total = sum(f.stat().st_size for f in DEST.rglob("*") if f.is_file())
    print(f"data/runs total: {total / 1024:.0f} KiB")
    if total > MAX_TOTAL_BYTES:
        print(f"warning: sample runs exceed {MAX_TOTAL_BYTES // 1024} KiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
