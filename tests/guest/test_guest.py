"""A real Linux guest (QEMU, Debian kernel): serves on the host's loopback, its kernel
OOM-kills a hog beside the service, a guest run leaves a complete run directory, and the
calibrated process emulation kills where the guest's kernel does.

One guest boot (256 MB) is shared by the first three tests (session fixture); the smoke run
boots its own. Boots take about a minute under TCG and a reclaim stall can take minutes,
hence the generous time-outs. Skipped only where the guest cannot be set up (no root, no
Debian packages); CI runs as root on the project's machine, so it runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from perflib.guest.calibrate import HOG, hog_until_killed, service_guest
from perflib.guest.calibration import load_table
from perflib.guest.setup import GuestSetupError, ensure_image
from perflib.run.vm import EmulationSettings, VmEmulator
from perflib.rundir import EventLog, read_events

pytestmark = [pytest.mark.guest, pytest.mark.slow]
GUEST_MB = 256
_SHARED: list = []  # the shared guest, so a later test can stop it before booting its own
BOOT_TIMEOUT = 1500  # set-up on a fresh machine (~80 s) + boot (~60-120 s) + a stall


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="session")
def guest_image():
    try:
        return ensure_image(lambda m: print(f"guest-setup: {m}", file=sys.stderr))
    except GuestSetupError as exc:
        pytest.skip(f"a Linux guest cannot be set up on this machine: {exc}")


@pytest.fixture(scope="session")
def guest_vm(guest_image, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("guest-run")
    events = EventLog(run_dir / "events.jsonl")
    with service_guest(GUEST_MB, run_dir / "work", events=events, run_dir=run_dir) as vm:
        _SHARED.append(vm)
        yield vm, run_dir
    events.close()


@pytest.fixture(scope="session")
def guest_oom(guest_vm):
    vm, _ = guest_vm
    return hog_until_killed(vm)


@pytest.mark.timeout(BOOT_TIMEOUT)
def test_guest_serves_health_on_host_loopback_and_is_closed_off(guest_vm, guest_image):
    vm, _ = guest_vm
    url = vm.stack.base_url
    assert urlparse(url).hostname == "127.0.0.1"
    status, body = _get(url + "/health")
    assert status == 200 and body["status"] == "healthy"
    # the service runs under the guest's kernel, with the guest's (smaller) MemTotal
    rc, out = vm.guest.run("uname -r; grep MemTotal /proc/meminfo; cat /ctl/service.pid")
    assert rc == 0
    kernel, memtotal, pid = out.split("\n")[:3]
    assert kernel == guest_image.kernel_version
    mem_total_kb = int(memtotal.split()[1])
    assert 150 * 1024 < mem_total_kb < GUEST_MB * 1024
    assert vm.guest.run(f"test -d /proc/{pid}")[0] == 0
    # an upstream emulator is reachable through its explicit forward...
    emu = urlparse(vm.stack.emulator_urls["c2s"]).port
    rc, out = vm.guest.run(_fetch_in_guest(f"http://10.0.2.100:{emu}/_emulator/health"), 300)
    assert rc == 0 and out.startswith("200"), out
    # ...but nothing else on the host: the same port at the host's address is closed
    rc, out = vm.guest.run(_fetch_in_guest(f"http://10.0.2.2:{emu}/_emulator/health"), 300)
    assert rc != 0 and "200" not in out, out


def _fetch_in_guest(url: str) -> str:
    """A shell command for the guest: GET url with the interpreter (busybox's static wget
    cannot resolve through the host's NSS libraries); prints the status."""
    code = f"import urllib.request as u; print(u.urlopen('{url}', timeout=20).status)"
    return f'exec {sys.executable} -c "{code}"\n'


@pytest.mark.timeout(BOOT_TIMEOUT)
def test_guest_kernel_oom_kills_the_hog_and_the_service_survives(guest_vm, guest_oom):
    vm, run_dir = guest_vm
    res = guest_oom
    assert res["hog_exit"] == 137  # SIGKILL
    assert res["victim_pid"] == res["hog_pid"]
    assert res["service_pid_after"] == res["service_pid_before"]
    # a hog next to an ~80 MB service in a 256 MB guest dies well below 256 MB
    assert 40 < res["hog_kill_rss_mb"] < GUEST_MB - res["service_rss_mb"]
    vm.monitor.poll()
    ev = read_events(run_dir / "events.jsonl")
    ooms = ev[ev["type"] == "oom_killed"]
    assert len(ooms) == 1
    detail = ooms.iloc[0]["detail"]
    assert detail["pid"] == res["hog_pid"] and detail["source"] == "guest_kernel"
    assert detail["message"].startswith(f"Out of memory: Killed process {res['hog_pid']} ")
    kernel_log = (run_dir / "kernel.log").read_text()
    assert f"Out of memory: Killed process {res['hog_pid']} (python" in kernel_log
    assert not (ev["type"] == "service_exit").any()  # the service was not touched
    assert _get(vm.stack.base_url + "/health")[0] == 200


NATIVE_WRAPPER = """
import os, subprocess, sys, time, urllib.request
svc = subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1",
                        "--port", os.environ["PORT"]], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{os.environ['PORT']}/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
time.sleep(1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(BOOT_TIMEOUT)
def test_calibrated_process_emulation_kills_at_the_guests_point(guest_oom, tmp_path):
    table = load_table()
    assert table is not None, "data/guest_memory.csv missing: run `perflib calibrate`"
    # the service and a hog that grows beside it (the hog is the wrapper, the service its
    # child), as in the guest, under the process emulation of the same size
    hog = (
        HOG.replace("print(os.getpid(), flush=True)", "")
        .format(step=2)
        .replace("time.sleep(0.01)", "time.sleep(0.05)")
    )
    script = tmp_path / "hog.py"
    script.write_text(NATIVE_WRAPPER + hog)
    env = os.environ | {
        "PORT": str(_free_port()),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    events = EventLog(tmp_path / "events.jsonl")
    settings = EmulationSettings(cpu_pin=False, cpu_quota=False, max_restarts=0, poll_interval=0.02)
    vm = VmEmulator(f"shared-cpu-1x:{GUEST_MB}mb", settings, events=events)
    assert vm.overhead_source == table.label  # the table, not the 40 MB guess
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    try:
        vm.attach(proc)
        vm.start()
        deadline = time.monotonic() + 300
        while vm.state.oom_kills == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        vm.stop()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)
        proc.wait(10)
        events.close()
    assert vm.state.oom_kills == 1
    kill = read_events(tmp_path / "events.jsonl").query("type == 'oom_killed'").iloc[0]["detail"]
    assert kill["pid"] == proc.pid  # the hog, not the service
    process_kill_mb = kill["victim_rss_mb"]
    guest_kill_mb = guest_oom["hog_kill_rss_mb"]
    assert abs(process_kill_mb - guest_kill_mb) <= 0.10 * guest_kill_mb, (
        process_kill_mb,
        guest_kill_mb,
    )


@pytest.mark.k6
@pytest.mark.timeout(BOOT_TIMEOUT)
def test_guest_smoke_run_leaves_a_complete_run_directory(guest_image, tmp_path):
    from perflib.run.runner import run_profile

    for shared in _SHARED:  # one guest at a time on a 2-core machine: stop the shared one
        shared.stop()
        shared.stack.stop()

    out = tmp_path / "run"
    res = run_profile(
        "smoke",
        vm=f"shared-cpu-1x:{GUEST_MB}mb",
        emulation=EmulationSettings(isolation="guest"),
        time_scale=0.2,
        out=out,
        progress=False,
    )
    assert res.exit_code in (0, 99), res.message  # TCG latency may fail k6 thresholds
    m = json.loads((out / "manifest.json").read_text())
    assert m["isolation"] == "guest" and m["vm"]["isolation"] == "guest"
    g = m["vm"]["guest"]
    assert g["accelerator"] in ("tcg", "kvm") and g["kernel_version"]
    assert 150 < g["mem_total_mb"] < GUEST_MB
    assert m["vm"]["representative"]["memory"] is True
    if g["accelerator"] == "tcg":
        assert m["vm"]["representative"]["latency"] is False
    for name in ("k6.ndjson.gz", "k6-summary.json", "samples.csv", "events.jsonl"):
        assert (out / name).stat().st_size > 0, name
    assert "Uvicorn running" in (out / "service.log").read_text()
    assert "Linux version" in (out / "kernel.log").read_text()
    import pandas as pd

    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) >= 3 and set(samples["source"]) == {"guest"}
    inside = pd.read_csv(out / "guest-samples.csv")
    # memory_used_mb is MemTotal - MemAvailable of the guest, sample by sample
    diff = inside["mem_total_mb"] - inside["mem_available_mb"] - inside["memory_used_mb"]
    assert diff.abs().max() < 0.01
    assert (inside["mem_total_mb"] == g["mem_total_mb"]).all()
    assert inside["app_rss_mb"].max() > 30  # the Python service's RSS, read in the guest
    assert samples["memory_used_mb"].between(30, GUEST_MB).all()
    ev = read_events(out / "events.jsonl")
    assert (ev["type"] == "k6_exit").any()
    assert Path(out).name in str(res.run_dir)
