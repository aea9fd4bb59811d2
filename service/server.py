"""The HTTP server: uvicorn (uvloop, httptools) with limits against hostile clients.

uvicorn's httptools protocol has no bound on header size, no time-out while a request's
head is being read (a client sending one byte every few seconds holds a connection forever;
the keep-alive timer is cancelled by every byte) and no bound on open connections. One 100 MB
header stalled the event loop for 14 s. :class:`GuardedHttpToolsProtocol` adds, per
connection and at the cost of one integer addition per socket read:

- total head size (request line + headers) over ``MAX_HEADER_BYTES`` → ``431`` and close;
  counted before the bytes reach the parser, so nothing past the limit is buffered (to within
  one socket read when a body and the next pipelined request share a read);
- a head not complete ``HEADER_TIMEOUT_S`` after its first byte (or after connecting) →
  ``408`` (or a silent close when nothing was sent) and close;
- more than ``MAX_CONNECTIONS`` open connections → ``503`` and close at once;
- idle keep-alive connections closed after ``KEEPALIVE_TIMEOUT_S`` (uvicorn's own timer).

``make bench`` measures the same bare app under plain uvicorn and under this protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


def _close_with(transport: asyncio.Transport, status: int, error: str | None) -> None:
    body = b"" if error is None else orjson.dumps({"error": error})
    transport.write(
        b"".join(
            [
                STATUS_LINE[status],
                b"content-type: application/json\r\n",
                b"content-length: ",
                str(len(body)).encode(),
                b"\r\nconnection: close\r\n\r\n",
                body,
            ]
        )
    )
    transport.close()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head-size, head-time and connection limits."""

    max_header_bytes = 16_384
    header_timeout_s = 10.0
    max_connections = 1_000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True  # reading a request line and headers
        self._head_bytes = 0
        self._heads_done = 0
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            _close_with(transport, 503, "Too many open connections")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            room = self.max_header_bytes - self._head_bytes
            if len(data) > room:
                # Feed what fits; unless a head completes inside it, the head is too large.
                heads = self._heads_done
                self._head_bytes += room
                if room > 0:
                    super().data_received(data[:room])
                if self._heads_done != heads:
                    if not self.transport.is_closing():
                        self.data_received(data[room:])  # the rest: body, next request
                    return
                if not self.transport.is_closing():
                    self.logger.warning("request head over %d bytes", self.max_header_bytes)
                    _close_with(
                        self.transport, 431, f"Request headers over {self.max_header_bytes} bytes"
                    )
                return
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes and self._head_timer is None:
            self._arm_head_timer()  # a head arrived in part: it has HEADER_TIMEOUT_S to finish

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._heads_done += 1
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next bytes are the next request's head

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes:
            self.logger.warning("request head not complete after %g s", self.header_timeout_s)
            _close_with(self.transport, 408, "Request headers not received in time")
        else:
            self.transport.close()


def guarded_protocol(
    *, max_header_bytes: int, header_timeout_s: float, max_connections: int
) -> type[GuardedHttpToolsProtocol]:
    """A protocol class carrying these limits (uvicorn instantiates it per connection)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout_s": header_timeout_s,
            "max_connections": max_connections,
        },
    )


def uvicorn_config(app: Any, **limits: Any) -> dict[str, Any]:
    """uvicorn.Config keyword arguments shared by the service and the benchmark's bare app."""
    keepalive = limits.pop("keepalive_timeout_s")
    return {
        "app": app,
        "loop": "uvloop",
        "http": guarded_protocol(**limits),
        "ws": "none",
        "timeout_keep_alive": keepalive,
        "access_log": False,
        "log_config": None,
        "workers": 1,
        "server_header": False,
    }
