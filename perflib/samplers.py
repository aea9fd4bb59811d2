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
