"""The guest's host-side parts on synthetic inputs with known answers (no QEMU needed)."""

from __future__ import annotations

import argparse
import csv
import lzma
from pathlib import Path
from types import SimpleNamespace

import pytest

from perflib.guest.boot import GUEST_HOST, app_script, minimal_roots
from perflib.guest.calibration import COLUMNS, load_table, write_table
from perflib.guest.control import GuestMonitor
from perflib.guest.isolation import representative, to_guest_env
from perflib.guest.setup import GuestSetupError, extract_vmlinux
from perflib.report.build import vm_model
from perflib.run.stack import AppSpec
from perflib.rundir import EventLog, SampleWriter, read_events, read_samples

OOM = (
    "Out of memory: Killed process 321 (python3) total-vm:160000kB, anon-rss:109568kB, "
    "file-rss:4096kB, shmem-rss:0kB, UID:0 pgtables:300kB oom_score_adj:0"
)


def _row(mb: int, overhead: float) -> dict[str, object]:
    return {c: "" for c in COLUMNS} | {
        "measured_on": "2026-12-07",
        "kernel_version": "6.1.0-test",
        "memory_mb": mb,
        "usable_mb": mb - overhead,
        "overhead_mb": overhead,
    }


def test_table_interpolates_and_extrapolates(tmp_path):
    path = write_table([_row(512, 60.0), _row(256, 40.0), _row(1024, 100.0)], tmp_path / "t.csv")
    table = load_table(path)
    assert table is not None
    assert [p[0] for p in table.points()] == [256.0, 512.0, 1024.0]  # sorted
    assert table.overhead_mb(256) == 40.0
    assert table.overhead_mb(384) == 50.0  # halfway between 40 and 60
    assert table.overhead_mb(768) == 80.0
    assert table.overhead_mb(2048) == 180.0  # 100 + (2048-1024) * 40/512
    assert table.overhead_mb(128) == 30.0  # 40 - 128 * 20/256
    assert table.usable_mb(384) == 334.0
    assert "2026-12-07" in table.label and "6.1.0-test" in table.label
    assert load_table(tmp_path / "missing.csv") is None


def test_process_emulation_takes_its_overhead_from_the_shipped_table():
    from perflib.run.vm import GUEST_OVERHEAD_MB, EmulationSettings, VmEmulator

    table = load_table()
    vm = VmEmulator("shared-cpu-1x:512mb", EmulationSettings(cpu_quota=False))
    if table is None:
        assert vm.settings.guest_overhead_mb == GUEST_OVERHEAD_MB
        return
    assert vm.settings.guest_overhead_mb == table.overhead_mb(512)
    assert vm.overhead_source == table.label
    assert vm.manifest()["emulation"]["guest_overhead_source"] == table.label
    fixed = VmEmulator("shared-cpu-1x:512mb", EmulationSettings(guest_overhead_mb=12.5))
    assert fixed.settings.guest_overhead_mb == 12.5


def test_guest_env_forwards_loopback_ports_only():
    env = {
        "C2S_BASE_URL": "http://127.0.0.1:4001",
        "WORK_API_URL": "http://localhost:4003/api",
        "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/db",
        "OTHER": "https://example.org:443/x",
        "SQLITE": "sqlite+aiosqlite:////tmp/perflib-stack-x/service.db",
    }
    out, ports = to_guest_env(env, Path("/tmp/perflib-stack-x"))
    assert ports == [4001, 4003, 5432]
    assert out["C2S_BASE_URL"] == f"http://{GUEST_HOST}:4001"
    assert out["WORK_API_URL"] == f"http://{GUEST_HOST}:4003/api"
    assert out["DATABASE_URL"] == f"postgresql+asyncpg://postgres@{GUEST_HOST}:5432/db"
    assert out["OTHER"] == env["OTHER"]
    assert out["SQLITE"] == "sqlite+aiosqlite:////var/tmp/service.db"


def test_minimal_roots_and_app_script():
    roots = minimal_roots([Path("/usr"), Path("/usr/lib"), Path("/a/b/.venv"), Path("/a/b")])
    assert roots == (Path("/usr"), Path("/a/b"))
    script = app_script(["/x/python", "-m", "service"], {"A": "it's"}, Path("/a b"))
    assert "export A='it'\"'\"'s'" in script
    assert "cd '/a b'" in script and script.rstrip().endswith("exec /x/python -m service")


def _monitor(tmp_path: Path) -> tuple[GuestMonitor, SimpleNamespace]:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    guest = SimpleNamespace(ctl=ctl, console=tmp_path / "console.log", started_at=None)
    return GuestMonitor(guest, run_dir=tmp_path, memory_limit_mb=256), guest


def test_monitor_turns_guest_reports_into_samples_and_events(tmp_path):
    mon, guest = _monitor(tmp_path)
    mon.events = EventLog(tmp_path / "events.jsonl")
    sink = SampleWriter(tmp_path / "samples.csv")
    (guest.ctl / "agent.log").write_text(
        "5.00 ready 6.1.0-test 2\n5.10 start 150\n40.00 exit 137\n40.05 restart 1\n"
    )
    # kB; cpu jiffies: 2 vCPUs, busy +50 of total +200 → 50 % of one vCPU
    (guest.ctl / "samples.log").write_text(
        "10.0 210740 181904 50000 80000 1000 4000\n11.0 210740 118804 52000 82000 1050 4200\n"
        "12.0 210740 11"  # a half-written line: read next time
    )
    guest.console.write_text(f"[   12.000000] perflib\n[   39.500000] {OOM}\nnot a kernel line\n")
    (guest.ctl / "service.log").write_text("INFO started\n")
    mon.poll()
    mon.attach_sink(sink)  # the latest sample goes to samples.csv at once
    with (guest.ctl / "samples.log").open("a") as fh:
        fh.write("8804 52000 82000 1100 4400\n")  # the rest of the half-written line
    mon.poll()
    sink.close()
    mon.events.close()
    st = mon.state
    assert st.kernel_version == "6.1.0-test" and st.vcpus == 2
    assert st.oom_kills == 1 and st.restarts == 1 and st.service_exits == 1
    assert st.mem_total_mb == pytest.approx(210740 / 1024)
    ev = read_events(tmp_path / "events.jsonl")
    assert list(ev["type"]) == ["service_exit", "restart", "oom_killed"]
    oom = ev[ev["type"] == "oom_killed"].iloc[0]["detail"]
    assert oom["pid"] == 321 and oom["anon_rss_mb"] == pytest.approx(109568 / 1024, abs=1e-3)
    assert oom["source"] == "guest_kernel" and oom["limit_mb"] == 256
    assert ev[ev["type"] == "service_exit"].iloc[0]["detail"]["signal"] == 9
    samples = read_samples(tmp_path / "samples.csv")
    assert len(samples) == 2
    assert samples["memory_used_mb"].iloc[0] == pytest.approx((210740 - 118804) / 1024, abs=1e-3)
    assert samples["cpu_pct"].iloc[0] == pytest.approx(2 * 100 * 50 / 200)
    assert set(samples["source"]) == {"guest"}
    with (tmp_path / "guest-samples.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and float(rows[0]["app_rss_mb"]) == pytest.approx(80000 / 1024, abs=1e-3)
    assert float(rows[1]["page_cache_mb"]) == pytest.approx(52000 / 1024, abs=1e-3)
    assert "Out of memory: Killed process 321" in (tmp_path / "kernel.log").read_text()
    assert (tmp_path / "service.log").read_text() == "INFO started\n"
    # event times follow the guest's uptime: the OOM (39.5 s) 0.5 s before the exit (40 s);
    # the boot instant is re-estimated from the host's clock as lines arrive (a little slack)
    t = {r.type: r.time for r in ev.itertuples()}
    assert (t["service_exit"] - t["oom_killed"]).total_seconds() == pytest.approx(0.5, abs=0.25)


def test_extract_vmlinux_finds_the_xz_payload(tmp_path):
    elf = b"\x7fELF" + bytes(range(256)) * 40
    blob = b"MZ" + b"\0" * 100 + b"\xfd7zXZ\x00junk" + lzma.compress(elf) + b"\0" * 64
    (tmp_path / "vmlinuz").write_bytes(blob)
    out = extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
    assert out.read_bytes() == elf
    (tmp_path / "bad").write_bytes(b"no payload here")
    with pytest.raises(GuestSetupError, match="no ELF payload"):
        extract_vmlinux(tmp_path / "bad", tmp_path / "x")


def test_app_spec_from_args():
    ns = argparse.Namespace
    assert AppSpec.from_args(ns(app_cmd=None, app_port=None, health_path=None)) is None
    spec = AppSpec.from_args(ns(app_cmd="./srv", app_port=9000, health_path="/hz"))
    assert spec == AppSpec(cmd="./srv", port=9000, health_path="/hz")
    assert spec.argv("py", "h", 1) == ["/bin/sh", "-c", "./srv"]
    assert AppSpec().argv("py", "h", 1) == ["py", "-m", "service", "--host", "h", "--port", "1"]
    for bad, msg in (
        (ns(app_cmd="x", app_port=None, health_path=None), "needs --app-port"),
        (ns(app_cmd="x", app_port=70000, health_path=None), "1-65535"),
        (ns(app_cmd=None, app_port=None, health_path="hz"), "must start with '/'"),
    ):
        with pytest.raises(ValueError, match=msg):
            AppSpec.from_args(bad)


def test_cli_rejects_app_cmd_without_port(capsys):
    from perflib.cli import main

    assert main(["run", "smoke", "--app-cmd", "./srv"]) == 2
    assert "--app-cmd needs --app-port" in capsys.readouterr().err


def test_vm_model_and_representative():
    tcg = {
        "vm": {
            "isolation": "guest",
            "guest": {"accelerator": "tcg", "mem_total_mb": 457.4},
            "representative": representative("tcg"),
        }
    }
    assert vm_model(tcg) == (
        "Linux guest (tcg, MemTotal 457 MB); CPU and latency not representative (TCG)"
    )
    assert representative("kvm")["latency"] is True and representative("tcg")["cpu"] is False
    proc = {"vm": {"emulation": {"guest_overhead_mb": 55.0, "guest_overhead_source": "t.csv"}}}
    assert vm_model(proc) == "process emulation, 55 MB overhead (t.csv)"
    from perflib.analysis.run import representative as rep_of

    assert rep_of(tcg)["latency"] is False and rep_of({})["cpu"] is True


def test_setup_without_root_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    from perflib.guest import setup

    monkeypatch.setenv("PERFLIB_GUEST_DIR", str(tmp_path))
    monkeypatch.setattr(
        setup.shutil, "which", lambda cmd: "/usr/bin/apt-get" if cmd == "apt-get" else None
    )
    monkeypatch.setattr(setup.os, "geteuid", lambda: 1000)
    assert setup.main([]) == setup.EXIT_CANNOT_INSTALL == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: guest set-up needs root to install qemu-system-x86")
    assert not list(tmp_path.iterdir())  # nothing half-built
