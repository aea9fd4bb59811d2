"""VM emulation against real subprocesses: a memory hog, a crasher, a CPU burner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perflib.fly.presets import PresetError, parse_preset
from perflib.run.vm import (
    BurstBalance,
    EmulationSettings,
    VmEmulator,
    cgroup_quota_available,
    oom_kill_line,
)
from perflib.rundir import EventLog, read_events

HOG = """
import sys, time
chunks = []
print("hog up", flush=True)
while True:
    chunks.append(bytearray(int(sys.argv[1]) * 1024 * 1024))
    time.sleep(0.05)
"""
BURNER = "while True: pass"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime from /proc/<pid>/stat: the kernel's count, independent of psutil."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _wait(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


# --- presets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "cpus", "mem", "valid"),
    [
        ("shared-cpu-1x:512mb", "shared", 1, 512, True),
        ("shared-cpu-1x", "shared", 1, 256, True),
        ("shared-cpu-2x", "shared", 2, 512, True),
        ("shared-cpu-1x:1gb", "shared", 1, 1024, True),
        ("performance-2x:4096mb", "performance", 2, 4096, True),
        ("performance-1x", "performance", 1, 2048, True),
        ("Shared-CPU-4x:2GB", "shared", 4, 2048, True),
        ("shared-cpu-1x:64mb", "shared", 1, 64, False),
        ("shared-cpu-1x:4096", "shared", 1, 4096, False),
    ],
)
def test_parse_presets(text: str, kind: str, cpus: int, mem: int, valid: bool) -> None:
    p = parse_preset(text, strict=False)
    assert (p.cpu_kind, p.cpus, p.memory_mb, p.fly_valid) == (kind, cpus, mem, valid)
    assert parse_preset(p.name, strict=False) == p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("shared-cpu-3x", "1, 2, 4, 6, 8"),
        ("dedicated-1x", "shared-cpu-Nx or performance-Nx"),
        ("shared-cpu-1x:lots", "cannot read memory size 'lots'"),
        ("shared-cpu-1x:0mb", "whole MB"),
        ("", "unknown preset ''"),
    ],
)
def test_bad_presets_say_why(text: str, match: str) -> None:
    with pytest.raises(PresetError, match=match):
        parse_preset(text, strict=False)


def test_baseline_is_flys_quota() -> None:
    assert parse_preset("shared-cpu-1x").cpu_capacity == pytest.approx(5 / 80)
    # 40 ms per 80 ms: fly.io/docs/machines/cpu-performance
    assert parse_preset("shared-cpu-8x").cpu_capacity == pytest.approx(0.5)
    assert parse_preset("performance-2x").cpu_capacity == 2


def test_burst_balance_model() -> None:
    b = BurstBalance(0.0625, initial_s=5, max_s=500)
    b.update(used_cpu_s=2.0, dt_s=2.0)  # 2 s at 100 %: spends 2 s, earns 0.125 s
    assert b.balance_s == pytest.approx(5 - 2 * (1 - 0.0625))
    b.update(used_cpu_s=10.0, dt_s=10.0)
    assert b.exhausted and b.balance_s == 0
    b.update(used_cpu_s=0.0, dt_s=10_000.0)  # idle accrues at baseline up to the cap
    assert b.balance_s == 500
    # the docs' example: a full 500 s balance lasts 500/(1-0.0625) ≈ 533 s at 100 %
    t = 500 / (1 - 0.0625)
    b.update(used_cpu_s=t - 1e-6, dt_s=t - 1e-6)
    assert not b.exhausted
    b.update(used_cpu_s=0.01, dt_s=0.01)
    assert b.exhausted


# --- memory ----------------------------------------------------------------------------


def test_memory_hog_is_oom_killed_logged_and_restarted(tmp_path: Path, procs) -> None:
    log = tmp_path / "service.log"
    events = EventLog(tmp_path / "events.jsonl")
    emu = VmEmulator(
        "shared-cpu-1x:128mb",
        EmulationSettings(guest_overhead_mb=40, cpu_quota=False, max_restarts=1),
        events=events,
        service_log=log,
    )

    def spawn() -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, "-c", HOG, "4"], stdout=log.open("a"), stderr=subprocess.STDOUT
        )
        procs.append(p)
        emu.attach(p)
        return p

    emu.restart = spawn
    first = spawn()
    with emu:
        assert _wait(lambda: emu.state.restarts >= 1 and emu.state.oom_kills >= 1)
        emu.wait_restarts()
        assert _wait(lambda: emu.state.restart_exhausted)  # the restarted hog dies too
    events.close()
    assert first.wait(5) == -9  # SIGKILL, as the kernel's OOM killer sends
    assert emu.process is not first and emu.process is not None
    ev = read_events(tmp_path / "events.jsonl")
    types = list(ev["type"])
    assert types[:2] == ["oom_killed", "restart"]
    kill = ev.iloc[0]["detail"]
    assert kill["pid"] == first.pid
    # killed just over the limit: app + overhead > 128 MB, and the app alone under it + a step
    assert kill["memory_mb"] > 128
    assert kill["app_rss_mb"] + 40 == pytest.approx(kill["memory_mb"], abs=0.01)
    assert kill["app_rss_mb"] < 128 - 40 + 4 * 3  # poll lag: a few 4 MB steps at most
    restart = ev.iloc[1]["detail"]
    assert restart["ok"] and restart["downtime_s"] >= 0 and restart["policy"] == "on-failure"
    text = log.read_text()
    assert f"Out of memory: Killed process {first.pid} (python" in text
    line = next(x for x in text.splitlines() if "Out of memory" in x)
    anon = int(line.split("anon-rss:")[1].split("kB")[0])
    assert anon / 1024 > 60  # the hog's anonymous memory, read from /proc at kill time
    assert "reboot: Restarting system" in text
    assert "restart_exhausted" in types
    assert emu.manifest()["result"]["oom_kills"] == 2


def test_no_memory_emulation_means_no_kill(tmp_path: Path, procs) -> None:
    p = subprocess.Popen([sys.executable, "-c", HOG + "\n", "4"], stdout=subprocess.DEVNULL)
    procs.append(p)
    emu = VmEmulator("shared-cpu-1x:64mb", EmulationSettings(memory=False, cpu_quota=False))
    emu.attach(p)
    with emu:
        assert _wait(lambda: (emu.memory_mb() or 0) > 64 + 20)
    assert p.poll() is None and emu.state.oom_kills == 0
    assert emu.manifest()["emulation"]["memory"] is False


def test_crash_restarts_on_failure_but_not_clean_exit(tmp_path: Path, procs) -> None:
    codes = iter([3, 0])

    def spawn() -> subprocess.Popen:
        code = next(codes)
        p = subprocess.Popen(
            [sys.executable, "-c", f"import time,sys; time.sleep(0.3); sys.exit({code})"]
        )
        procs.append(p)
        emu.attach(p)
        return p

    emu = VmEmulator("shared-cpu-1x", EmulationSettings(cpu_quota=False), restart=spawn)
    spawn()
    with emu:
        assert _wait(lambda: sum(e["type"] == "service_exit" for e in emu.state.events) == 2)
        time.sleep(0.5)
    exits = [e["detail"]["exit_code"] for e in emu.state.events if e["type"] == "service_exit"]
    assert exits == [3, 0]
    assert emu.state.restarts == 1  # on-failure: code 3 restarts, code 0 does not


def test_oom_line_reads_proc(procs) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", "import time; x = bytearray(30 << 20); time.sleep(30)"]
    )
    procs.append(p)
    time.sleep(0.5)
    line = oom_kill_line(p.pid, 12.5)
    assert line.startswith("[   12.500000] Out of memory: Killed process")
    status = dict(ln.split(":", 1) for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines())
    assert f"total-vm:{int(status['VmSize'].split()[0])}kB" in line
    assert int(line.split("anon-rss:")[1].split("kB")[0]) >= 30 * 1024
    assert line.endswith("oom_score_adj:0")


# --- CPU -------------------------------------------------------------------------------


def test_pin_to_one_core(procs) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    procs.append(p)
    emu = VmEmulator("shared-cpu-1x", EmulationSettings(cpu_quota=False))
    emu.attach(p)
    assert os.sched_getaffinity(p.pid) == set(emu.cores)
    assert len(emu.cores) == 1
    assert emu.cores[0] in os.sched_getaffinity(0)


QUOTA_METHODS = ["signals"] + (["cgroup"] if cgroup_quota_available() else [])


@pytest.mark.parametrize("method", QUOTA_METHODS)
def test_quota_throttles_a_cpu_burner_once_the_balance_is_spent(method: str, procs) -> None:
    p = subprocess.Popen([sys.executable, "-c", BURNER])
    procs.append(p)
    emu = VmEmulator(
        "shared-cpu-1x", EmulationSettings(initial_balance_s=0.3, quota_method=method, memory=False)
    )
    emu.attach(p)
    assert emu.quota_method == method
    with emu:
        assert _wait(lambda: emu.throttled, timeout=60)  # only after the balance is gone
        start_event = next(e for e in emu.state.events if e["type"] == "throttled")
        cpu_at_throttle = _cpu_seconds(p.pid)
        t0 = time.monotonic()
        time.sleep(3.0)
        used = _cpu_seconds(p.pid) - cpu_at_throttle
        wall = time.monotonic() - t0
    # throttled to 5 ms/80 ms: the kernel's count must stay far below a free-running burner
    # (generous: 4× the baseline share for the kernel's quota, 6× for the signal duty cycle
    # whose stops land late on a busy machine, plus one tick of /proc granularity)
    share = 0.25 if method == "cgroup" else 0.375
    assert used <= share * wall + 0.02, (used, wall)
    assert cpu_at_throttle >= 0.3 * 0.9  # it burst through the initial balance first
    assert emu.throttled_seconds() > 0.5 * wall
    assert start_event["detail"]["method"] == method
    assert any(e["type"] == "throttled" and e["detail"]["state"] == "end" for e in emu.state.events)
    assert p.poll() is None  # throttling released at stop: the burner runs again
    c0 = _cpu_seconds(p.pid)
    time.sleep(1.0)
    assert _cpu_seconds(p.pid) > c0


def test_performance_preset_has_no_quota() -> None:
    emu = VmEmulator("performance-1x")
    m = emu.manifest()
    assert m["emulation"]["cpu_quota"] is False and m["emulation"]["quota_method"] is None
    assert json.loads(json.dumps(m)) == m
