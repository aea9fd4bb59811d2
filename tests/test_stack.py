"""LocalStack and ``perflib serve``: real processes, free ports, clean shutdown."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from perflib.run.stack import LocalStack, StackError, cli_serve, free_port, port_in_use

REPO = Path(__file__).resolve().parent.parent


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stack_lifecycle_restart_and_idempotent_stop(tmp_path: Path) -> None:
    started: list[subprocess.Popen] = []
    stack = LocalStack(workdir=tmp_path, on_service_start=started.append)
    with stack, httpx.Client(timeout=10) as http:
        first = stack.service
        assert first is not None and started == [first]
        assert first.pid != os.getpid()
        assert "service" in psutil.Process(first.pid).cmdline()
        health = http.get(f"{stack.base_url}/health")
        assert health.status_code == 200 and health.json()["db"] == "ok"
        for name, url in stack.emulator_urls.items():
            assert http.get(f"{url}/_emulator/health").json()["upstream"] == name
        assert stack.database_url == f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        assert (tmp_path / "service.db").exists()
        assert stack.service_log == tmp_path / "service.log"
        assert "Application startup complete" in stack.service_log.read_text()
        # every part is its own process
        pids = {first.pid, *(p.pid for p in stack.emulators.values())}
        assert len(pids) == 4

        second = stack.start_service()  # replaces the running service
        assert second is stack.service and second.pid != first.pid
        assert started == [first, second]
        assert _gone(first.pid)
        assert http.get(f"{stack.base_url}/health").status_code == 200
        # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught (not a SIGKILL)
        assert stack.stop_service(timeout=10) == -signal.SIGTERM
    everything = [second, *stack.emulators.values()]
    assert all(p.poll() is not None for p in everything)
    stack.stop()  # second stop: a no-op


def test_a_service_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    stack = LocalStack(workdir=tmp_path, service_env={"LOG_LEVEL": "loud"}, ready_timeout=60)
    with pytest.raises(StackError) as err:
        stack.start()
    msg = str(err.value)
    assert msg.startswith("service exited with code 2 before answering")
    assert "LOG_LEVEL must be one of" in msg  # the tail of the service's own log
    # start() cleaned up after itself
    assert all(p.poll() is not None for p in stack.emulators.values())


def test_emulator_credentials_follow_the_service_env(tmp_path: Path) -> None:
    stack = LocalStack(workdir=tmp_path, service_env={"C2S_TOKEN": "abc-123"})
    assert stack._credential_env() == {"EMULATOR_C2S_TOKEN": "abc-123"}
    stack.port = 1234
    stack.emulator_ports = {"c2s": 1, "diretrix": 2, "work": 3}
    env = stack.service_environment()
    assert env["C2S_TOKEN"] == "abc-123"
    assert env["C2S_BASE_URL"] == "http://127.0.0.1:1"
    assert env["WORK_API_URL"] == "http://127.0.0.1:3"
    assert env["PORT"] == "1234"


def test_serve_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_in_use(port)
        args = argparse.Namespace(
            port=port, upstreams="nominal", database_url=None, vm=None, prometheus=False
        )
        assert cli_serve(args) == 2
    err = capsys.readouterr().err
    assert f"port {port} is already in use" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_perflib_serve_runs_until_stopped(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflib", "serve", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        out = "".join(lines)
        assert f"service     http://127.0.0.1:{port}" in out, out
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # service + 3 emulators
        proc.send_signal(sig)
        assert proc.wait(60) == 0
        assert all(_gone(c.pid) for c in children)
        assert not port_in_use(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
