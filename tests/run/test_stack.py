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

from perflib.cli import main as cli_main
from perflib.cli.serve import cli_serve
from perflib.errors import PerflibError
from perflib.run.stack import LocalStack, StackError, free_port, port_in_use

REPO = Path(__file__).resolve().parents[2]


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
        with pytest.raises(PerflibError) as err:
            cli_serve(args)
        assert err.value.exit_code == 2 and f"port {port} is already in use" in str(err.value)
        assert cli_main(["serve", "--port", str(port)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"perflib serve: error: port {port} is already in use on 127.0.0.1; stop what listens "
        "there or choose another with --port"
    ]


@pytest.mark.parametrize(
    ("sig", "prometheus"),
    [(signal.SIGINT, False), (signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["ctrl-c", "sigterm-with-prometheus", "sighup"],
)
def test_perflib_serve_runs_until_stopped(sig: signal.Signals, prometheus: bool) -> None:
    """Every stop signal stops the whole tree (a local Prometheus too) and exits
    128 + signal; the service's log lines show in the terminal, prefixed, while
    service.log keeps them."""
    if prometheus:
        from perflib.sampling.prometheus import PrometheusBinaryNotFound, find_prometheus

        try:
            find_prometheus()
        except PrometheusBinaryNotFound as exc:
            pytest.skip(f"no Prometheus server: {exc}")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflib", "serve", "--port", str(port)]
        + (["--prometheus"] if prometheus else []),
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
        lead = "nonexistent-lead-for-serve-test"
        httpx.get(f"http://127.0.0.1:{port}/api/v1/leads/process", params={"id": lead}, timeout=30)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4 + prometheus  # service + 3 emulators (+ Prometheus)
        if prometheus:
            assert "prometheus  http://127.0.0.1:" in out
        log = next(line.split()[2] for line in lines if line.startswith("service log"))
        deadline = time.monotonic() + 10
        while "Step 1:" not in Path(log).read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the follower polls the log every 0.2 s
        proc.send_signal(sig)
        assert proc.wait(60) == 128 + sig
        assert all(_gone(c.pid) for c in children)
        assert not port_in_use(port)
        err = proc.stderr.read()
        step = next(x for x in Path(log).read_text().splitlines() if "Step 1:" in x)
        assert f"service | {step}" in err.splitlines(), err
        assert f"stopping ({sig.name})" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
