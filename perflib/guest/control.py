"""What the guest reports, turned into the run directory's samples and events.

The agent appends to files on the ``ctl`` share and the guest kernel writes to the serial
console (a host file); :class:`GuestMonitor` tails them in a thread:

- ``samples.log`` → ``samples.csv`` rows (``memory_used_mb`` = MemTotal − MemAvailable, as
  Fly's metrics report it; ``cpu_pct`` in percent of one vCPU) and ``guest-samples.csv``
  with what samples.csv has no column for (MemTotal, MemAvailable, page cache, app RSS);
- the console → ``oom_killed`` events, classified by :func:`perflib.fly.classify_log_message`
  (the one parser of Fly's OOM line), and ``kernel.log``;
- ``agent.log`` → ``service_exit`` / ``restart`` events of the on-failure supervisor;
- ``service.log`` → the run's ``service.log``.

Every guest line carries the guest's uptime; the host maps it to wall-clock time with the
boot instant estimated as the earliest ``seen − uptime`` (reading lags, never leads).
"""

from __future__ import annotations

import contextlib
import csv
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perflib.fly.events import classify_log_message
from perflib.rundir import EventLog, SampleWriter, iso

KIB_PER_MIB = 1024
_CONSOLE = re.compile(r"^\[\s*(?P<up>\d+\.\d+)\]\s?(?P<msg>.*)$")
GUEST_SAMPLE_COLUMNS = (
    "time",
    "mem_total_mb",
    "mem_available_mb",
    "memory_used_mb",
    "page_cache_mb",
    "app_rss_mb",
    "cpu_pct",
)


class Tail:
    """New complete lines of a growing file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *done, self._partial = data.split(b"\n")
        return [d.decode("utf-8", "replace").rstrip("\r") for d in done]


@dataclass
class GuestSample:
    uptime: float
    mem_total_kb: int
    mem_available_kb: int
    cached_kb: int
    app_rss_kb: int
    busy: int
    total: int

    @classmethod
    def parse(cls, line: str) -> GuestSample | None:
        parts = line.split()
        if len(parts) != 7:
            return None
        try:
            return cls(float(parts[0]), *(int(p) for p in parts[1:]))
        except ValueError:
            return None

    @property
    def used_mb(self) -> float:
        return (self.mem_total_kb - self.mem_available_kb) / KIB_PER_MIB


@dataclass
class MonitorState:
    """What the monitor saw, for the manifest and the caller's checks."""

    oom_kills: int = 0
    restarts: int = 0
    service_exits: int = 0
    restart_exhausted: bool = False
    peak_memory_mb: float = 0.0
    mem_total_mb: float | None = None
    last: GuestSample | None = None
    kernel_version: str | None = None
    vcpus: int = 1
    oom_events: list[dict[str, Any]] = field(default_factory=list)


class GuestMonitor:
    """Tails a guest's control files into a run's samples, events and logs."""

    def __init__(
        self,
        guest: Any,  # perflib.guest.boot.Guest (duck-typed: ctl, console, started_at)
        *,
        events: EventLog | None = None,
        sink: SampleWriter | None = None,
        run_dir: Path | None = None,
        memory_limit_mb: float | None = None,
        interval: float = 0.5,
    ) -> None:
        self.guest = guest
        self.events = events
        self.sink = sink
        self.run_dir = run_dir
        self.limit = memory_limit_mb
        self.interval = interval
        self.state = MonitorState()
        self._boot_epoch: float | None = None
        self._tails = {
            "samples": Tail(guest.ctl / "samples.log"),
            "agent": Tail(guest.ctl / "agent.log"),
            "console": Tail(guest.console),
            "service": Tail(guest.ctl / "service.log"),
        }
        self._prev: GuestSample | None = None
        self._last_cpu: float | None = None
        self._guest_csv: Any = None
        self._writer: Any = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- time ----------------------------------------------------------------------------
    def _seen(self, uptime: float) -> None:
        estimate = time.time() - uptime
        if self._boot_epoch is None or estimate < self._boot_epoch:
            self._boot_epoch = estimate

    def when(self, uptime: float) -> datetime:
        base = self._boot_epoch if self._boot_epoch is not None else self.guest.started_at
        return datetime.fromtimestamp((base or time.time()) + uptime, UTC)

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="guest-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a half-written line is read next time
                self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.poll()  # the last lines
        if self._guest_csv is not None:
            self._guest_csv.close()
            self._guest_csv = self._writer = None

    # --- one pass ------------------------------------------------------------------------
    def poll(self) -> None:
        with self._lock:
            for line in self._tails["agent"].lines():
                self._agent_line(line)
            for line in self._tails["console"].lines():
                self._console_line(line)
            for line in self._tails["samples"].lines():
                self._sample_line(line)
            lines = self._tails["service"].lines()
            if lines and self.run_dir is not None:
                with (self.run_dir / "service.log").open("a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")

    def _record(self, type_: str, detail: dict[str, Any], uptime: float) -> dict[str, Any]:
        event = {"time": iso(self.when(uptime)), "type": type_, "detail": detail}
        if self.events is not None:
            self.events.record(type_, detail, time=self.when(uptime))
        return event

    def _agent_line(self, line: str) -> None:
        parts = line.split()
        if len(parts) < 2:
            return
        try:
            up = float(parts[0])
        except ValueError:
            return
        self._seen(up)
        what, args = parts[1], parts[2:]
        if what == "ready" and args:
            started = getattr(self.guest, "started_at", None)
            if started is not None and self._boot_epoch is not None:
                self.guest.ready_after_s = round(self._boot_epoch + up - started, 2)
            self.state.kernel_version = args[0]
            self.state.vcpus = int(args[1]) if len(args) > 1 and args[1].isdigit() else 1
        elif what == "exit" and args:
            code = int(args[0])
            self.state.service_exits += 1
            detail: dict[str, Any] = {"exit_code": code, "source": "guest_agent"}
            if code > 128:
                detail["signal"] = code - 128
            self._record("service_exit", detail, up)
        elif what == "restart" and args:
            self.state.restarts = int(args[0])
            detail = {"attempt": int(args[0]), "policy": "on-failure", "source": "guest_agent"}
            self._record("restart", detail, up)
        elif what == "exhausted":
            self.state.restart_exhausted = True

    def _console_line(self, line: str) -> None:
        if self.run_dir is not None:
            with (self.run_dir / "kernel.log").open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        m = _CONSOLE.match(line)
        if not m:
            return
        up = float(m.group("up"))
        kind, detail = classify_log_message(m.group("msg"))
        if kind != "oom_killed" or detail.get("reason") != "kernel_oom_killer":
            return
        self.state.oom_kills += 1
        detail |= {
            "source": "guest_kernel",
            "limit_mb": self.limit,
            "mem_total_mb": self.state.mem_total_mb,
            "message": m.group("msg")[:300],
        }
        self.state.oom_events.append(self._record("oom_killed", detail, up))

    def attach_sink(self, sink: SampleWriter) -> None:
        """Samples go to ``sink`` from now on, starting with the latest one (the idle state
        before the load, as the process emulation's first synchronous reading)."""
        with self._lock:
            self.sink = sink
            if self.state.last is not None:
                self._write(self.state.last, self._last_cpu)

    def _write(self, s: GuestSample, cpu: float | None) -> None:
        if self.sink is None:
            return
        self.sink.write(
            {
                "time": self.when(s.uptime),
                "memory_used_mb": s.used_mb,
                "memory_limit_mb": float(self.limit) if self.limit else None,
                "cpu_pct": cpu,
                "cpu_throttled_pct": None,
                "source": "guest",
            }
        )

    def _sample_line(self, line: str) -> None:
        s = GuestSample.parse(line)
        if s is None:
            return
        self._seen(s.uptime)
        cpu = None
        prev, self._prev = self._prev, s
        if prev is not None and s.total > prev.total:
            cpu = 100.0 * self.state.vcpus * (s.busy - prev.busy) / (s.total - prev.total)
        self.state.last, self._last_cpu = s, cpu
        self.state.mem_total_mb = s.mem_total_kb / KIB_PER_MIB
        self.state.peak_memory_mb = max(self.state.peak_memory_mb, s.used_mb)
        when = self.when(s.uptime)
        self._write(s, cpu)
        if self._writer is None and self.run_dir is not None:
            self._guest_csv = (self.run_dir / "guest-samples.csv").open("a", newline="")
            self._writer = csv.writer(self._guest_csv)
            self._writer.writerow(GUEST_SAMPLE_COLUMNS)
        if self._writer is not None:
            self._writer.writerow(
                [
                    iso(when),
                    f"{s.mem_total_kb / KIB_PER_MIB:.3f}",
                    f"{s.mem_available_kb / KIB_PER_MIB:.3f}",
                    f"{s.used_mb:.3f}",
                    f"{s.cached_kb / KIB_PER_MIB:.3f}",
                    f"{s.app_rss_kb / KIB_PER_MIB:.3f}",
                    "" if cpu is None else f"{cpu:.3f}",
                ]
            )
            self._guest_csv.flush()
