"""`perflib run` from where users stand, and every way it is stopped.

Real k6, the real local stack (service + three emulators) and real signals. The processes a
run started are found through the process tree (psutil, captured before the signal), never
by name, and each must be gone afterwards.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perflib.run.runner import EXIT_UNREACHABLE, REMOTE_HEALTH_TIMEOUT, free_port
from perflib.rundir import RunDir, read_events
from perflib.tooling import REPO_ROOT

pytestmark = [pytest.mark.k6, pytest.mark.slow]
PERFLIB = [sys.executable, "-m", "perflib"]
#: short upstream latencies: the signal tests need a run in progress, not realistic timings
FAST = os.environ | {"EMULATOR_LATENCY_SCALE": "0.05"}


def http_reqs(path: Path) -> int:
    """http_reqs Points in a k6 NDJSON.gz, counted with gzip + json (not perflib.ingest)."""
    n = 0
    with gzip.open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            if obj.get("type") == "Point" and obj.get("metric") == "http_reqs":
                n += int(obj["data"]["value"])
    return n


def assert_complete(run: Path) -> None:
    """Everything a finished run directory holds, and k6's two records of it agree."""
    m = RunDir.open(run).manifest
    assert m["exit"]["status"] in ("ok", "thresholds_failed"), m["exit"]
    for name in ("k6.ndjson.gz", "k6-summary.json", "k6.log", "samples.csv", "events.jsonl"):
        assert (run / name).is_file(), name
    assert (run / "service.log").stat().st_size > 0
    n = http_reqs(run / "k6.ndjson.gz")
    assert n > 0
    assert json.loads((run / "k6-summary.json").read_text())["metrics"]["http_reqs"]["count"] == n


def test_defaults_from_the_repository_root() -> None:
    """`perflib run smoke --time-scale 0.1` exactly as the docs show it (default --out)."""
    proc = subprocess.run(
        [*PERFLIB, "run", "smoke", "--time-scale", "0.1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=FAST,
    )
    run = Path(proc.stdout.strip().splitlines()[-1])
    try:
        assert proc.returncode == 0, proc.stderr
        assert run.is_absolute() and run.parent == REPO_ROOT / "runs"
        assert run.name.endswith("-smoke")
        assert_complete(run)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def test_relative_out_from_an_unrelated_directory(tmp_path: Path) -> None:
    """A relative --out is relative to where the user stands, for every child process."""
    proc = subprocess.run(
        [*PERFLIB, "run", "smoke", "--time-scale", "0.1", "--out", "runs/monthly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=FAST,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "runs" / "monthly")
    assert_complete(tmp_path / "runs" / "monthly")
    assert not (REPO_ROOT / "tests" / "runs").exists()  # k6's cwd got nothing


def _wait_for_k6(out: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        mf = out / "manifest.json"
        if mf.exists() and json.loads(mf.read_text()).get("k6_started_at"):
            time.sleep(2)  # some requests on the wire
            return
        time.sleep(0.1)
    raise AssertionError("k6 never started")


def _tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _assert_interrupted(out: Path, sig: signal.Signals) -> None:
    m = RunDir.open(out).manifest
    assert m["exit"]["status"] == "interrupted" and m["ended_at"]
    assert m["exit"]["code"] == 128 + sig
    assert m["exit"]["signal"] == sig.name and m["exit"]["during"] == "k6"
    assert m["exit"]["message"].startswith(f"interrupted by {sig.name} during k6 after ")
    assert m["exit"]["k6"] is not None  # k6 stopped by itself: its output is complete
    n = http_reqs(out / "k6.ndjson.gz")
    assert n > 0
    assert json.loads((out / "k6-summary.json").read_text())["metrics"]["http_reqs"]["count"] == n
    events = read_events(out / "events.jsonl")
    assert "interrupted" in set(events["type"])
    assert "service_exit" in set(events["type"])


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["int", "term", "hup"]
)
def test_each_stop_signal_stops_the_whole_run(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*PERFLIB, "run", "smoke", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=FAST,
    )
    try:
        _wait_for_k6(out, proc)
        tree = _tree(proc.pid)
        assert len(tree) >= 5  # k6, the service, three emulators
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, stderr
        assert stdout.strip().splitlines()[-1] == str(out)
        survivors = [p for p in tree if not _gone(p)]
        assert not survivors, survivors
        _assert_interrupted(out, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_stops_a_background_run_without_job_control(tmp_path: Path) -> None:
    """A non-interactive shell starts `cmd &` with SIGINT ignored; the run still stops on it."""
    out = tmp_path / "bg"
    script = f"{sys.executable} -m perflib run smoke --out {out} >/dev/null 2>&1 & echo $!; wait $!"
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True, env=FAST)
    try:
        assert shell.stdout is not None
        pid = int(shell.stdout.readline())
        run = psutil.Process(pid)
        _wait_for_k6(out, shell)
        tree = _tree(pid)
        assert len(tree) >= 5
        os.kill(pid, signal.SIGINT)
        assert shell.wait(120) == 128 + signal.SIGINT  # `wait $!` returns the run's code
        assert _gone(run)
        assert not [p for p in tree if not _gone(p)]
        _assert_interrupted(out, signal.SIGINT)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_report_job_stops_its_run_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "job"
    proc = subprocess.Popen(
        [*PERFLIB, "report-job", "--time-scale", "1", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=FAST,
    )
    try:
        first = out / "runs" / "01-smoke-1024mb"
        _wait_for_k6(first, proc)
        tree = _tree(proc.pid)
        assert len(tree) >= 5
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        assert not [p for p in tree if not _gone(p)]
        _assert_interrupted(first, signal.SIGTERM)
        assert not (out / "runs" / "02-load-1024mb").exists()  # the job stopped there
        assert not (out / "report.html").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_base_url_that_does_not_answer_is_one_error_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "u"
    proc = subprocess.run(
        [*PERFLIB, "run", "smoke", "--base-url", url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_UNREACHABLE
    errors = [x for x in proc.stderr.splitlines() if "error" in x]
    assert errors == [
        f"perflib run: error: target {url} not reachable: GET /health → Connection refused "
        f"(gave it {REMOTE_HEALTH_TIMEOUT:g} s) ({out / 'manifest.json'})"
    ], proc.stderr
    assert proc.stdout.strip() == str(out)
    m = RunDir.open(out).manifest
    assert m["exit"]["status"] == "error" and m["exit"]["code"] == EXIT_UNREACHABLE


def test_a_signal_during_the_notebooks_stops_their_workers_and_kernels(tmp_path: Path) -> None:
    """`perflib report` (and report-job's report step) under SIGTERM: no notebook worker or
    kernel outlives it, and nothing waits for the running notebooks to finish."""
    proc = subprocess.Popen(
        [*PERFLIB, "report", "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, tree = time.monotonic() + 180, []
        while time.monotonic() < deadline and proc.poll() is None:
            tree = _tree(proc.pid)
            # two spawned workers, each with a kernel below it
            if len(tree) >= 4 and any(p.children() for p in psutil.Process(proc.pid).children()):
                break
            time.sleep(0.2)
        assert len(tree) >= 4, "no notebook kernels seen"
        time.sleep(1)
        tree = _tree(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert err.strip().splitlines()[-1] == "perflib report: interrupted (SIGTERM)"
        assert not [p for p in tree if not _gone(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
