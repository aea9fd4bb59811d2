"""The local stack: the service and its three upstream emulators, each in its own process.

Separate processes so the lab can measure (and pin, throttle, OOM-kill and restart) the
service alone, exactly as a Fly Machine would see it. Ports are free ones picked at start
unless given, the database is a fresh SQLite file in the work directory unless given, and
every process is stopped on ``stop()``, on leaving the ``with`` block, and at interpreter
exit (``atexit``) as a safety net.

    with LocalStack() as stack:
        httpx.get(stack.base_url + "/health")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from perflib.errors import PerflibError

UPSTREAMS: tuple[str, ...] = ("c2s", "diretrix", "work")
#: service env var holding each emulator's base URL
BASE_URL_ENV = {"c2s": "C2S_BASE_URL", "diretrix": "DIRETRIX_BASE_URL", "work": "WORK_API_URL"}
#: service credential env var -> the emulator env var that must carry the same value
CREDENTIAL_ENV = {
    "C2S_TOKEN": "EMULATOR_C2S_TOKEN",
    "DIRETRIX_USER": "EMULATOR_DIRETRIX_USER",
    "DIRETRIX_PASS": "EMULATOR_DIRETRIX_PASS",
    "WORK_API": "EMULATOR_WORK_TOKEN",
}
#: variables of the parent environment that must not leak into the service's configuration
SERVICE_ENV_VARS = (
    "C2S_BASE_URL",
    "C2S_TOKEN",
    "DIRETRIX_BASE_URL",
    "DIRETRIX_USER",
    "DIRETRIX_PASS",
    "WORK_API_URL",
    "WORK_API",
    "WORKER_API_KEY",
    "DATABASE_URL",
    "DB_URL",
    "DB_SCHEMA",
    "PORT",
    "BIND_HOST",
)


class StackError(PerflibError, RuntimeError):
    """A part of the stack did not come up; the message names it and quotes its log."""

    exit_code = 1


@dataclass(frozen=True)
class AppSpec:
    """The app an emulated VM runs: this project's service unless ``cmd`` names another.

    ``cmd`` is a shell command (``--app-cmd``); it gets ``PORT`` and the upstream URLs in
    its environment and must listen on ``port`` (``--app-port``) and answer ``health_path``.
    """

    cmd: str | None = None
    port: int | None = None
    health_path: str = "/health"

    @classmethod
    def from_args(cls, args: Any) -> AppSpec | None:
        """``--app-cmd/--app-port/--health-path`` → a spec (None: the service, defaults);
        ValueError names the bad option."""
        cmd, port = getattr(args, "app_cmd", None), getattr(args, "app_port", None)
        path = getattr(args, "health_path", None) or "/health"
        if cmd is None and port is None and path == "/health":
            return None
        if cmd is not None and port is None:
            raise ValueError("--app-cmd needs --app-port (the port the app listens on)")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"--app-port must be 1-65535, got {port}")
        if not path.startswith("/"):
            raise ValueError(f"--health-path must start with '/', got {path!r}")
        return cls(cmd=cmd, port=port, health_path=path)

    def argv(self, python: str, host: str, port: int) -> list[str]:
        if self.cmd is None:
            return [python, "-m", "service", "--host", host, "--port", str(port)]
        return ["/bin/sh", "-c", self.cmd]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port`` (or we may not bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers do: a port whose old connections linger in TIME_WAIT is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def log_tail(path: Path | None, lines: int = 20) -> str:
    """The last lines of a log file ('' when there is none)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(fh.tell() - 16_384, 0))
        text = fh.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


#: loopback polls must never go through an HTTP(S)_PROXY from the environment
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def terminate(proc: subprocess.Popen, timeout: float = 10) -> int | None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            return None


class LocalStack:
    """Service + C2S/Diretrix/Work emulators as local processes, wired together."""

    def __init__(
        self,
        *,
        port: int | None = None,
        upstreams: str = "nominal",
        database_url: str | None = None,
        workdir: Path | None = None,
        service_log: Path | None = None,
        service_env: Mapping[str, str] | None = None,
        on_service_start: Callable[[subprocess.Popen], None] | None = None,
        emulator_env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = 60.0,
        python: str | None = None,
        app: AppSpec | None = None,
    ) -> None:
        if upstreams not in ("nominal", "degraded"):
            raise ValueError(f"upstreams must be 'nominal' or 'degraded', not {upstreams!r}")
        self.upstreams = upstreams
        self.host = host
        self.app = app or AppSpec()
        self.port = port if port is not None else self.app.port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self._database_url = database_url
        self._service_log = Path(service_log) if service_log is not None else None
        self.service_env = dict(service_env or {})
        self.emulator_env = dict(emulator_env or {})
        self.on_service_start = on_service_start
        self.ready_timeout = ready_timeout
        self.python = python or sys.executable
        self.service: subprocess.Popen | None = None
        self.emulators: dict[str, subprocess.Popen] = {}
        self.emulator_ports: dict[str, int] = {}
        self._logs: list[TextIO] = []
        self._started = False
        self._stopped = False

    # --- addresses ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise StackError("the stack has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.base_url + self.app.health_path

    @property
    def emulator_urls(self) -> dict[str, str]:
        return {u: f"http://{self.host}:{p}" for u, p in self.emulator_ports.items()}

    @property
    def service_log(self) -> Path:
        if self._service_log is None:
            raise StackError("no service log yet: call start() first")
        return self._service_log

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            if self.workdir is None:
                raise StackError("no database yet: call start() first")
            return f"sqlite+aiosqlite:///{self.workdir / 'service.db'}"
        return self._database_url

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="perflib-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._service_log is None:
            self._service_log = self.workdir / "service.log"
        self._service_log.parent.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)

    def start(self) -> None:
        """Start the three emulators, then the service; return once all answer 200."""
        if self._started and not self._stopped:
            raise StackError("stack already started")
        self._stopped = False
        self._started = True
        self._prepare()
        atexit.register(self.stop)
        try:
            for name in UPSTREAMS:
                self._start_emulator(name)
            # The service does not call upstreams at start-up: boot all four at once.
            self._spawn_service()
            for name in UPSTREAMS:
                self._wait_ready(
                    f"{name} emulator",
                    f"{self.emulator_urls[name]}/_emulator/health",
                    self.emulators[name],
                    self._emulator_log(name),
                )
            assert self.service is not None
            self._wait_ready("service", self.health_url, self.service, self.service_log)
        except BaseException:
            self.stop()
            raise

    def _emulator_log(self, name: str) -> Path:
        assert self.workdir is not None
        return self.workdir / f"emulator-{name}.log"

    def _credential_env(self) -> dict[str, str]:
        """Emulators accept whatever credentials the service was given."""
        env = {}
        for svc_var, emu_var in CREDENTIAL_ENV.items():
            if svc_var in self.service_env:
                env[emu_var] = self.service_env[svc_var]
        return env

    def _start_emulator(self, name: str) -> None:
        port = free_port(self.host)
        self.emulator_ports[name] = port
        env = dict(os.environ) | self._credential_env() | self.emulator_env
        log = self._emulator_log(name).open("ab")
        self._logs.append(log)  # type: ignore[arg-type]
        self.emulators[name] = subprocess.Popen(
            [
                self.python,
                "-m",
                "service.emulators",
                name,
                "--host",
                self.host,
                "--port",
                str(port),
                "--profile",
                self.upstreams,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not them
        )

    def service_environment(self) -> dict[str, str]:
        """The environment the service process gets (parent env minus service config, + ours)."""
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS}
        env |= {BASE_URL_ENV[u]: url for u, url in self.emulator_urls.items()}
        env |= {
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        env.setdefault("LOG_LEVEL", "info")
        env |= self.service_env
        return env

    def start_service(self) -> subprocess.Popen:
        """(Re)start only the service; ``on_service_start(proc)`` runs right after the spawn."""
        if not self.emulators:
            raise StackError("start() the stack before start_service()")
        proc = self._spawn_service()
        self._wait_ready("service", self.health_url, proc, self.service_log)
        return proc

    def _spawn_service(self) -> subprocess.Popen:
        if self.service is not None and self.service.poll() is None:
            self.stop_service()
        log = self.service_log.open("ab")
        self._logs.append(log)  # type: ignore[arg-type]
        proc = subprocess.Popen(
            self.app.argv(self.python, self.host, self.port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.service_environment(),
            start_new_session=True,
        )
        self.service = proc
        if self.on_service_start is not None:
            self.on_service_start(proc)
        return proc

    def _wait_ready(self, what: str, url: str, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{what} exited with code {proc.returncode} before answering {url}; "
                    f"last lines of {log}:\n{log_tail(log)}"
                )
            if _http_ok(url):
                return
            time.sleep(0.1)
        raise StackError(
            f"{what} did not answer 200 on {url} within {self.ready_timeout:g} s; "
            f"last lines of {log}:\n{log_tail(log)}"
        )

    def stop_service(self, timeout: float = 10) -> int | None:
        """Stop the service (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        if self.service is None:
            return None
        return terminate(self.service, timeout)

    def stop(self) -> None:
        """Stop everything; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self.stop_service()
        for proc in self.emulators.values():
            with contextlib.suppress(ProcessLookupError):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        for proc in self.emulators.values():
            terminate(proc, 5)
        for fh in self._logs:
            with contextlib.suppress(Exception):
                fh.close()
        self._logs.clear()

    def describe(self) -> dict[str, Any]:
        """Where everything is (for manifests and ``perflib serve``)."""
        return {
            "base_url": self.base_url,
            "emulators": self.emulator_urls,
            "upstreams": self.upstreams,
            "database_url": self.database_url,
            "service_log": str(self.service_log),
            "workdir": str(self.workdir),
        }


# --- perflib serve ---------------------------------------------------------------------------
