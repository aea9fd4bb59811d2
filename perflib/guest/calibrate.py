"""``perflib calibrate``: what a guest of each size leaves for the app, measured.

For each size a guest boots with the service (as ``--isolation guest`` runs it); once the
service is healthy the guest's ``MemTotal`` and its use besides the service are read, then
a memory hog starts next to the service and grows 2 MiB at a time until the guest kernel's
OOM killer takes it. The hog's RSS at that point plus the service's idle RSS is what the
app may use in the terms of the process emulation's watcher (``usable_mb``); the table in ``data/guest_memory.csv`` is what the process emulation
uses instead of a guessed overhead (:mod:`perflib.guest.calibration`).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflib.errors import PerflibError
from perflib.fly.presets import parse_preset
from perflib.guest.boot import GuestError
from perflib.guest.calibration import write_table
from perflib.guest.isolation import GuestStack, GuestVm
from perflib.guest.setup import GuestSetupError
from perflib.rundir import EventLog

SIZES = (256, 512, 1024, 2048)
HOG_STEP_MIB = 2
#: A guest can stall minutes in reclaim before the OOM killer acts (seen once: 8.5 min).
OOM_TIMEOUT_S = 900.0
EXIT_GUEST_FAILED = 4

#: Grows by HOG_STEP_MIB of written (resident) pages at a time; prints its pid, then its
#: VmRSS in kB after each step, so the last line is its RSS when the kernel killed it.
HOG = """
import os, time
print(os.getpid(), flush=True)
chunks = []
def rss():
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
while True:
    chunks.append(b'\\x01' * ({step} * 1048576))
    print(rss(), flush=True)
    time.sleep(0.01)
"""


@contextlib.contextmanager
def service_guest(
    memory_mb: int,
    workdir: Path,
    *,
    progress: Callable[[str], None] | None = None,
    events: EventLog | None = None,
    run_dir: Path | None = None,
    accel: str = "auto",
) -> Iterator[GuestVm]:
    """A guest of ``memory_mb`` running the service, healthy on the host's loopback."""
    vm = GuestVm(
        parse_preset(f"shared-cpu-1x:{memory_mb}mb", strict=False), events=events, run_dir=run_dir
    )
    stack: GuestStack = vm.make_stack(workdir=workdir, progress=progress)
    stack.accel = accel
    try:
        stack.start()
        vm.start()
        yield vm
    finally:
        vm.stop()
        stack.stop()


def hog_until_killed(vm: GuestVm, timeout: float = OOM_TIMEOUT_S) -> dict[str, Any]:
    """Start a hog beside the service; wait for the guest kernel to kill it."""
    guest, mon = vm.guest, vm.monitor
    assert guest is not None and mon is not None
    service_pid = (guest.ctl / "service.pid").read_text().strip()
    kills_before = mon.state.oom_kills
    python = sys.executable
    (guest.ctl / "hog.py").write_text(HOG.format(step=HOG_STEP_MIB))
    stem = guest.submit(f"exec {python} /ctl/hog.py\n")
    deadline = time.monotonic() + timeout
    res = None
    while time.monotonic() < deadline and res is None:
        time.sleep(0.5)
        guest._check_alive()
        res = guest.result(stem)
    if res is None:
        raise GuestError(f"no OOM kill within {timeout:.0f} s")
    rc, out = res
    lines = out.split()
    hog_pid = int(lines[0]) if lines else None
    hog_rss = [int(x) for x in lines[1:] if x.isdigit()]
    t_end = time.monotonic() + 10  # the console line may reach the host a moment later
    while time.monotonic() < t_end:
        mon.poll()
        if mon.state.oom_kills > kills_before:
            break
        time.sleep(0.2)
    kills = mon.state.oom_events[kills_before:]
    victim = kills[-1]["detail"] if kills else {}
    last = mon.state.last
    return {
        "hog_pid": hog_pid,
        "hog_exit": rc,
        "hog_kill_rss_mb": (hog_rss[-1] / 1024) if hog_rss else None,
        "oom_events": kills,
        "victim_pid": victim.get("pid"),
        "service_pid_before": service_pid,
        "service_pid_after": (guest.ctl / "service.pid").read_text().strip(),
        "service_rss_mb": last.app_rss_kb / 1024 if last else None,
    }


def measure(memory_mb: int, workdir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """One table row for a guest of ``memory_mb``."""
    with service_guest(memory_mb, workdir, progress=progress) as vm:
        assert vm.monitor is not None and vm.guest is not None
        time.sleep(5)  # a few samples of the idle service
        vm.monitor.poll()
        idle = vm.monitor.state.last
        assert idle is not None
        progress(f"{memory_mb} MB: healthy after {vm.healthy_after_s} s; starting the hog")
        hog = hog_until_killed(vm)
        if (
            hog["victim_pid"] != hog["hog_pid"]
            or hog["service_pid_after"] != hog["service_pid_before"]
        ):
            raise GuestError(f"{memory_mb} MB: the OOM killer did not take the hog alone: {hog}")
        # The watcher of the process emulation sees the service's RSS without memory
        # pressure (as here at idle, and as on the host: within 1 %); under pressure the
        # guest kernel first reclaims the service's clean file pages, so its RSS at the
        # kill is lower. The kill point in the watcher's terms is idle RSS + the hog's.
        service_rss = idle.app_rss_kb / 1024
        usable = service_rss + hog["hog_kill_rss_mb"]
        row = {
            "measured_on": datetime.now(UTC).date().isoformat(),
            "kernel_version": vm.monitor.state.kernel_version,
            "accelerator": vm.guest.accelerator,
            "memory_mb": memory_mb,
            "mem_total_mb": round(idle.mem_total_kb / 1024, 1),
            "idle_used_mb": round(idle.used_mb - idle.app_rss_kb / 1024, 1),
            "service_rss_mb": round(service_rss, 1),
            "service_rss_at_kill_mb": round(hog["service_rss_mb"], 1),
            "used_with_service_mb": round(idle.used_mb, 1),
            "hog_kill_rss_mb": round(hog["hog_kill_rss_mb"], 1),
            "usable_mb": round(usable, 1),
            "overhead_mb": round(memory_mb - usable, 1),
        }
        progress(
            f"{memory_mb} MB: MemTotal {row['mem_total_mb']} MB, hog killed at "
            f"{row['hog_kill_rss_mb']} MB beside the service ({row['service_rss_mb']} MB): "
            f"usable {row['usable_mb']} MB"
        )
        return row


def calibrate(sizes: list[int], out: Path, progress: Callable[[str], None]) -> Path:
    """Boot one guest per size (one at a time) and write the table after each size.

    Raises GuestSetupError (no guest here) or PerflibError (exit 4: a guest failed; the
    sizes done so far stay in ``out``)."""
    if not sizes or any(s < 128 for s in sizes):
        raise PerflibError(f"sizes must be at least 128 MB each, got {sizes}")
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="perflib-calibrate-"))
    try:
        for size in sizes:
            rows.append(measure(size, work / f"{size}mb", progress))
            write_table(rows, out)  # partial results are kept
    except GuestSetupError:
        raise  # exit 3 (cannot install) or 4 (cannot build)
    except (GuestError, OSError, RuntimeError) as exc:
        done = f"; the sizes done so far are in {out}" if rows else ""
        raise PerflibError(
            f"calibration failed: {exc}{done}", exit_code=EXIT_GUEST_FAILED
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
