"""Resource samplers: where memory and CPU figures come from during a run.

Every sampler writes the same ``samples.csv`` rows (see :mod:`perflib.rundir`), so the
analysis never knows whether a figure came from ``/proc`` on this machine, from Fly's
managed Prometheus or from a self-hosted one. Adding a source means adding a class that
implements :class:`Sampler`; the runner drives them all the same way.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from perflib.rundir import EventLog, SampleWriter


class Sampler(ABC):
    """Lifecycle shared by all samplers: ``start(sink, events)`` before load, ``stop()`` after.

    Live samplers poll in a background thread; window samplers (Prometheus ``query_range``)
    remember the start time and fetch the whole window in ``stop()``.
    """

    source: ClassVar[str]

    @abstractmethod
    def start(self, sink: SampleWriter, events: EventLog) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...


class PollingSampler(Sampler):
    """A sampler that takes a reading every ``interval`` seconds in a daemon thread."""

    def __init__(self, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError("sample interval must be positive")
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink: SampleWriter | None = None
        self._events: EventLog | None = None
        self.errors: list[str] = []

    @abstractmethod
    def poll(self) -> Iterable[Mapping[str, Any]]:
        """Take one reading; return zero or more samples.csv rows."""

    def start(self, sink: SampleWriter, events: EventLog) -> None:
        self._sink, self._events = sink, events
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"sampler-{self.source}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        assert self._sink is not None
        while not self._stop.is_set():
            try:
                for row in self.poll():
                    self._sink.write(row)
            except Exception as exc:  # a sampler must never take the run down
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None


# --- local sampler (runner helper) -------------------------------------------------------


class LocalSampler(PollingSampler):
    """The service as an emulated Fly VM sees it, read from ``/proc`` with psutil.

    ``memory_used_mb`` is the service's process tree (RSS, or PSS) plus the guest-OS
    overhead the VM would add, so it compares with Fly's ``mem_total - mem_available``;
    ``cpu_pct`` is the tree's CPU time over the interval in percent of one vCPU;
    ``cpu_throttled_pct`` is the share of the interval the VM emulator's quota held the
    service (empty when nothing emulates a quota). A restarting service (after an OOM
    kill) yields a row with unknown memory and CPU, like a Machine that is rebooting.
    """

    source: ClassVar[str] = "local"

    def __init__(
        self,
        target: Any,
        *,
        vm: Any | None = None,
        memory_limit_mb: float | None = None,
        guest_overhead_mb: float | None = None,
        memory_metric: str | None = None,
        interval: float = 1.0,
    ) -> None:
        """``target``: a VmEmulator, a Popen, a pid or a callable returning the current pid."""
        super().__init__(interval)
        from perflib.run.vm import VmEmulator  # local: keeps `import perflib.sampling.local` light

        if isinstance(target, VmEmulator):
            vm = vm or target
        self.vm = vm
        self._target = target
        if memory_limit_mb is None and vm is not None:
            memory_limit_mb = float(vm.preset.memory_mb)
        if guest_overhead_mb is None:
            guest_overhead_mb = vm.settings.guest_overhead_mb if vm is not None else 0.0
        if memory_metric is None:  # measure as the VM emulator does
            memory_metric = vm.settings.memory_metric if vm is not None else "rss"
        if memory_metric not in ("rss", "pss"):
            raise ValueError(f"memory_metric must be 'rss' or 'pss', not {memory_metric!r}")
        self.memory_limit_mb = memory_limit_mb
        self.guest_overhead_mb = float(guest_overhead_mb)
        self.memory_metric = memory_metric
        self._procs: dict[int, Any] = {}
        self._cpu: dict[int, float] = {}
        self._last: float | None = None
        self._last_throttled: float | None = None
        self.polls = 0

    def start(self, sink: SampleWriter, events: EventLog) -> None:
        """First reading synchronously, so the samples begin before the load does."""
        self._write(sink, self.poll())
        super().start(sink, events)

    def _loop(self) -> None:
        assert self._sink is not None
        while not self._stop.wait(self.interval):
            self._write(self._sink, self.poll())

    def stop(self) -> None:
        """A last reading after the load, so the samples cover the whole k6 window."""
        running = self._thread is not None
        super().stop()
        if running and self._sink is not None:
            self._write(self._sink, self.poll())

    def _write(self, sink: SampleWriter, rows: Iterable[Mapping[str, Any]]) -> None:
        try:
            for row in rows:
                sink.write(row)
        except Exception as exc:  # a sampler must never take the run down
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _pid(self) -> int | None:
        t = self._target
        if self.vm is not None and t is self.vm:
            proc = self.vm.process
            return None if proc is None or proc.poll() is not None else proc.pid
        if callable(t):
            return t()
        if hasattr(t, "poll"):
            return None if t.poll() is not None else t.pid
        return int(t)

    def _tree(self, pid: int) -> list[Any]:
        import psutil

        from perflib.run.vm import tree_pids

        if pid not in self._procs:  # a new service process (restart): start afresh
            self._procs, self._cpu = {}, {}
        tree = []
        cache: dict[int, Any] = {}
        for p in tree_pids(pid):
            proc = self._procs.get(p)
            if proc is None:
                try:
                    proc = psutil.Process(p)
                except psutil.Error:
                    if p == pid:
                        raise
                    continue
            cache[p] = proc
            tree.append(proc)
        self._procs = cache
        return tree

    def poll(self) -> Iterable[Mapping[str, Any]]:
        import time as _time

        import psutil

        from perflib.rundir import utcnow

        now = _time.monotonic()
        dt = None if self._last is None else now - self._last
        self._last = now
        self.polls += 1
        row: dict[str, Any] = {
            "time": utcnow(),
            "memory_limit_mb": self.memory_limit_mb,
            "source": self.source,
            "memory_used_mb": None,
            "cpu_pct": None,
            "cpu_throttled_pct": None,
        }
        throttled = None if self.vm is None else self.vm.throttled_seconds()
        if throttled is not None and self._last_throttled is not None and dt:
            row["cpu_throttled_pct"] = min(100.0, 100.0 * (throttled - self._last_throttled) / dt)
        elif throttled is not None and dt is None:
            row["cpu_throttled_pct"] = 0.0
        self._last_throttled = throttled
        pid = self._pid()
        if pid is None:
            self._procs, self._cpu = {}, {}
            return [row]
        try:
            tree = self._tree(pid)
        except psutil.Error:
            self._procs, self._cpu = {}, {}
            return [row]
        mem = 0
        used = 0.0
        seen: dict[int, float] = {}
        for p in tree:
            try:
                with p.oneshot():
                    mem += (
                        p.memory_full_info().pss
                        if self.memory_metric == "pss"
                        else p.memory_info().rss
                    )
                    t = p.cpu_times()
            except psutil.Error:
                continue
            total = t.user + t.system
            seen[p.pid] = total
            if p.pid in self._cpu:
                used += max(0.0, total - self._cpu[p.pid])
        first = not self._cpu
        self._cpu = seen
        row["memory_used_mb"] = mem / (1024 * 1024) + self.guest_overhead_mb
        if dt and not first:
            row["cpu_pct"] = 100.0 * used / dt
        return [row]
