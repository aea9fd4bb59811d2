"""``/health``: a database ping that pool contention cannot starve, and write health.

Why a dedicated engine: at 200 clients the request pool (``DB_POOL_SIZE``) is fully checked
out for seconds while the database is fine; a ping queued behind it answered 503 and Fly took
the machine out of rotation. The checker owns a one-connection engine of its own (short busy
time-out on SQLite), so it measures the database, not the pool.

Why write health: a database that answers ``SELECT 1`` can still refuse every write (full
disk, a locked table). Every write of the pipeline reports to :class:`WriteHealth`; after
``HEALTH_WRITE_FAILURES`` consecutive failures ``/health`` says ``degraded`` with the reason.
While degraded, each (cached) health check also tries a rolled-back write, so the state clears
by itself once writes work again even when no traffic reaches the machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from service import SERVICE_NAME, __version__, storage
from service.settings import Settings

log = logging.getLogger("service.health")

_BASE = {"service": SERVICE_NAME, "version": __version__}
HEALTH_OK = orjson.dumps({"status": "healthy", **_BASE, "db": "ok"})


class WriteHealth:
    """Consecutive failed writes and the last reason (class names only, never driver text)."""

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = max(1, threshold)
        self.consecutive = 0
        self.reason = ""

    def ok(self) -> None:
        self.consecutive = 0

    def failed(self, exc: BaseException) -> None:
        self.consecutive += 1
        self.reason = storage.error_reason(exc)

    @property
    def degraded(self) -> bool:
        return self.consecutive >= self.threshold


class HealthChecker:
    """Single-flight, briefly cached check: /health costs a dict lookup at high rates."""

    def __init__(
        self, engine: Any, settings: Settings, writes: WriteHealth, on_recovered: Any = None
    ) -> None:
        self.engine = engine  # the checker's own engine, never the request pool
        self.ttl = settings.health_db_cache_s
        self.timeout = settings.health_db_timeout_s
        self.writes = writes
        self.on_recovered = on_recovered
        self.checked_at = -1e9
        self.answer: tuple[int, bytes] = (503, b"")
        self.db_ok = False
        self.lock = asyncio.Lock()

    async def check(self) -> tuple[int, bytes]:
        """(HTTP status, JSON body) of the current health."""
        if time.monotonic() - self.checked_at < self.ttl:
            return self.answer
        async with self.lock:
            if time.monotonic() - self.checked_at < self.ttl:  # another caller just checked
                return self.answer
            self.answer = await self._check()
            self.checked_at = time.monotonic()
            return self.answer

    async def _check(self) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    await storage.ping(self.engine)
                except Exception:  # noqa: BLE001
                    # A connection broken by an earlier outage is not always recognised as
                    # such by the driver: drop it and ask once more on a fresh connection.
                    await self.engine.dispose()
                    await storage.ping(self.engine)
        except Exception as exc:  # noqa: BLE001 - any failure means "db": "error"
            if self.db_ok or self.checked_at < 0:
                log.error("database ping failed: %s", type(exc).__name__)
            self.db_ok = False
            reason = "timed out" if isinstance(exc, TimeoutError) else storage.error_reason(exc)
            return 503, orjson.dumps(
                {"status": "unhealthy", **_BASE, "db": "error", "reason": f"ping: {reason}"}
            )
        self.db_ok = True
        if self.on_recovered is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.on_recovered()
            except Exception as exc:  # noqa: BLE001 - reported through the next checks
                log.warning("post-recovery work failed: %s", type(exc).__name__)
        if self.writes.degraded:
            try:
                async with asyncio.timeout(self.timeout):
                    await storage.probe_write(self.engine)
                self.writes.ok()
                log.info("database writes work again")
            except Exception as exc:  # noqa: BLE001
                self.writes.failed(exc)
        if self.writes.degraded:
            reason = (
                f"{self.writes.consecutive} consecutive failed writes, last: {self.writes.reason}"
            )
            return 503, orjson.dumps(
                {"status": "degraded", **_BASE, "db": "ok", "writes": "failing", "reason": reason}
            )
        return 200, HEALTH_OK
