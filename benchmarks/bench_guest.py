"""Guest isolation: boot-to-healthy, QEMU's RSS on the host, a smoke run's wall time.

Baselines measured in the same run: the process emulation's start-to-healthy of the same
service and its smoke run's wall time (same profile, time scale and preset). QEMU's RSS is
set beside the guest's RAM (the preset). Targets: boot-to-healthy ≤ 60 s under TCG
(issue 15); QEMU's RSS near 0.5 GB plus what the guest touched (``tb-size=128``).
One guest at a time: the machine has two shared cores.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from perflib.guest.setup import GuestSetupError, ensure_image
from perflib.run.runner import run_profile
from perflib.run.stack import LocalStack
from perflib.run.vm import EmulationSettings

PRESET = "shared-cpu-1x:512mb"
PROFILE = "smoke"
TIME_SCALE = 0.5


def _process_start_s() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        stack = LocalStack(workdir=Path(tmp))
        try:
            stack.start()
            return time.monotonic() - t0
        finally:
            stack.stop()


def _run(isolation: str, out: Path) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    res = run_profile(
        PROFILE,
        vm=PRESET,
        emulation=EmulationSettings(isolation=isolation),  # type: ignore[arg-type]
        time_scale=TIME_SCALE,
        out=out,
        progress=False,
    )
    wall = time.monotonic() - t0
    return wall, json.loads((res.run_dir / "manifest.json").read_text())


def run() -> list[dict[str, Any]]:
    try:
        ensure_image(lambda m: print(f"guest-setup: {m}", file=sys.stderr))
    except GuestSetupError as exc:
        return [{"name": "guest isolation", "value": None, "unit": "", "target": f"skipped: {exc}"}]
    native_start = _process_start_s()
    with tempfile.TemporaryDirectory() as tmp:
        proc_wall, _ = _run("process", Path(tmp) / "process")
        guest_wall, m = _run("guest", Path(tmp) / "guest")
    g = m["vm"]["guest"]
    healthy = g["boot_to_healthy_s"]
    return [
        {
            "name": f"boot to healthy ({g['accelerator']})",
            "value": healthy,
            "unit": "s",
            "target": "≤ 60 s",
            "baseline": round(native_start, 2),
            "ratio": round(healthy / native_start, 1) if healthy else None,
        },
        {
            "name": "boot to agent ready",
            "value": g["boot_to_agent_s"],
            "unit": "s",
            "target": "",
        },
        {
            "name": "QEMU RSS on the host (max)",
            "value": g["qemu_rss_mb"],
            "unit": "MB",
            "target": "≈ 0.5 GB + guest use",
            "baseline": m["vm"]["memory_mb"],
            "ratio": round(g["qemu_rss_mb"] / m["vm"]["memory_mb"], 2)
            if g["qemu_rss_mb"]
            else None,
        },
        {
            "name": f"{PROFILE} run wall time, x{TIME_SCALE} (guest vs process)",
            "value": round(guest_wall, 1),
            "unit": "s",
            "target": "",
            "baseline": round(proc_wall, 1),
            "ratio": round(guest_wall / proc_wall, 1),
        },
    ]
