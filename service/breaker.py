"""A small circuit breaker per upstream, and ``Retry-After`` parsing.

Why: with every call answered 429 and ``Retry-After: 60`` the service made 1,116 calls to C2S
in 10 s. Now a 429 opens the upstream's circuit for the ``Retry-After`` it sent (bounded by
``MAX_RETRY_AFTER_S``), and ``BREAKER_FAILURES`` consecutive failures (5xx, time-outs,
connection errors, 429 without ``Retry-After``) open it for ``BREAKER_OPEN_S``. While open, a
call waits for the circuit to close if that fits in the request's deadline (so a short
``Retry-After`` is honoured and the request still succeeds), else fails at once without
touching the upstream. After the open period the circuit is half-open: the next answer
decides (success closes it, a failure opens it again at once).
"""

from __future__ import annotations

import asyncio
import math
import time
from email.utils import parsedate_to_datetime

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}
#: a call that would have less than this left after waiting is not worth making
MIN_CALL_S = 0.5


def parse_retry_after(value: str | None, max_s: float) -> int | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date, RFC 9110 §10.2.3),
    clamped to ``[0, max_s]``; ``None`` for anything else, so no upstream text travels on."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 10:
        return int(min(int(value), max_s))
    if len(value) > 64:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return int(min(max(math.ceil(when.timestamp() - time.time()), 0), max_s))


class Rejected(Exception):
    """The circuit is open and will not close within the request's deadline."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Breaker:
    def __init__(self, failures: int = 5, open_s: float = 10.0) -> None:
        self.threshold = max(1, failures)
        self.open_s = open_s
        self.state = CLOSED
        self.failures = 0
        self.open_until = 0.0
        self.reason = ""

    def remaining_s(self) -> float:
        return max(self.open_until - time.monotonic(), 0.0) if self.state == OPEN else 0.0

    async def admit(self, deadline: float | None) -> None:
        """Return when the upstream may be called; raise :class:`Rejected` if not in time."""
        if self.state != OPEN:
            return
        now = time.monotonic()
        wait = self.open_until - now
        if wait > 0:
            if deadline is not None and now + wait > deadline - MIN_CALL_S:
                raise Rejected(f"not called: {self.reason}, retry in {math.ceil(wait)} s")
            await asyncio.sleep(wait)
        if self.state == OPEN and time.monotonic() >= self.open_until:
            self.state = HALF_OPEN

    def fits(self, deadline: float | None) -> bool:
        """Would waiting for the circuit still leave time for a call?"""
        return deadline is None or self.open_until <= deadline - MIN_CALL_S

    def success(self) -> None:
        self.state, self.failures = CLOSED, 0

    def failure(self, retry_after_s: int | None = None) -> None:
        if retry_after_s is not None:  # the upstream said how long: believe it
            self._open(float(retry_after_s), "rate limited by the upstream")
            return
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self._open(self.open_s, f"circuit open after {self.failures} consecutive failures")

    def _open(self, seconds: float, reason: str) -> None:
        self.state = OPEN
        self.open_until = max(self.open_until, time.monotonic() + seconds)
        self.reason = reason
