"""LocalSampler against real processes, checked against /proc read independently."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perflib.run.vm import EmulationSettings, VmEmulator
from perflib.rundir import EventLog, SampleWriter, read_samples
from perflib.sampling.local import LocalSampler

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOLD = "import time; x = bytearray(48 << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
BURN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"


def _vmrss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def _spawn(code: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code])
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_memory_is_tree_rss_plus_guest_overhead(tmp_path: Path, spawn) -> None:
    parent = spawn(
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', {HOLD!r}])\n"
        "x = bytearray(16 << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
    )
    time.sleep(1.5)  # both allocated
    import psutil

    (child,) = psutil.Process(parent.pid).children()
    expected = _vmrss_mb(parent.pid) + _vmrss_mb(child.pid) + 25.0
    s = LocalSampler(parent, memory_limit_mb=256, guest_overhead_mb=25.0)
    (row,) = s.poll()
    assert row["memory_used_mb"] == pytest.approx(expected, abs=2.0)
    assert row["memory_used_mb"] > 48 + 16 + 25
    assert row["memory_limit_mb"] == 256
    assert row["source"] == "local"
    assert row["cpu_pct"] is None  # no interval yet
    assert row["cpu_throttled_pct"] is None  # nothing emulates a quota


def test_cpu_pct_matches_proc_times(tmp_path: Path, spawn) -> None:
    p = spawn(BURN)
    s = LocalSampler(p.pid, interval=0.25)
    sink = SampleWriter(tmp_path / "samples.csv")
    c0 = _cpu_s(p.pid)
    s.start(sink, EventLog(tmp_path / "events.jsonl"))
    time.sleep(2.0)
    s.stop()
    c1 = _cpu_s(p.pid)
    sink.close()
    df = read_samples(tmp_path / "samples.csv")
    assert len(df) >= 4
    dt = df["time"].diff().dt.total_seconds()
    sampled_cpu_s = float((df["cpu_pct"] / 100 * dt).sum())
    # the sampled CPU-seconds add up to what the kernel counted over the same window
    assert sampled_cpu_s == pytest.approx(c1 - c0, abs=0.15 + 0.1 * (c1 - c0))
    assert df["cpu_pct"].dropna().between(0, 100 * os.cpu_count() + 5).all()


def test_vm_view_limit_throttling_and_restart_gap(tmp_path: Path, spawn) -> None:
    p = spawn(BURN)
    emu = VmEmulator(
        "shared-cpu-1x:512mb",
        EmulationSettings(initial_balance_s=0.2, memory=False, guest_overhead_mb=30),
    )
    emu.attach(p)
    s = LocalSampler(emu, interval=0.25)
    assert s.memory_limit_mb == 512 and s.guest_overhead_mb == 30
    sink = SampleWriter(tmp_path / "samples.csv")
    with emu:
        s.start(sink, EventLog(tmp_path / "events.jsonl"))
        deadline = time.monotonic() + 30
        while not emu.throttled and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        s.stop()
    sink.close()
    df = read_samples(tmp_path / "samples.csv")
    assert (df["memory_limit_mb"] == 512).all()
    assert df["cpu_throttled_pct"].notna().all()  # a quota is emulated: 0 is a known value
    assert df["cpu_throttled_pct"].max() > 50  # throttled most of the time once the balance is gone
    throttled_s = float(
        (df["cpu_throttled_pct"] / 100 * df["time"].diff().dt.total_seconds()).sum()
    )
    assert throttled_s == pytest.approx(emu.throttled_seconds(), abs=0.6)
    p.kill()
    p.wait()
    (row,) = s.poll()  # the VM is "rebooting": memory and CPU unknown, limit still known
    assert row["memory_used_mb"] is None and row["cpu_pct"] is None
    assert row["memory_limit_mb"] == 512


def test_bad_metric_rejected() -> None:
    with pytest.raises(ValueError, match="memory_metric"):
        LocalSampler(1, memory_metric="vss")


def test_pss_follows_the_vm_setting(spawn) -> None:
    p = spawn(HOLD)
    time.sleep(1.0)
    emu = VmEmulator(
        "shared-cpu-1x:512mb",
        EmulationSettings(
            memory_metric="pss", cpu_quota=False, cpu_pin=False, guest_overhead_mb=10
        ),
    )
    emu.attach(p)
    s = LocalSampler(emu)
    assert s.memory_metric == "pss"
    (row,) = s.poll()
    rollup = Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines()
    pss_kb = next(int(x.split()[1]) for x in rollup if x.startswith("Pss:"))
    assert row["memory_used_mb"] == pytest.approx(pss_kb / 1024 + 10, abs=1.0)
