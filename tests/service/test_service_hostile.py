"""Hostile clients and unkind upstreams, against the real service over loopback.

Header size (431), header-read time-out (408), idle and keep-alive time-outs, the bound on
open connections (503) and the redirect/Host, repeated-id and OpenAPI fixes are checked on
the service process (``python -m service`` through ``LocalStack``) with raw sockets, because
an HTTP client library would refuse to send what an attacker sends. The circuit-breaker
tests build one in-process app each (fresh breakers) talking to the emulator processes.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from perflib.run.stack import LocalStack
from service.app import create_app
from service.breaker import parse_retry_after
from service.emulators.dataset import get_dataset
from service.settings import Settings

LIMIT = 8192
QUIET = {"error_rate": 0.0, "hang_rate": 0.0, "rate_limit": None}
C2S_GET = "GET /integration/leads/{id}"
HTTP = httpx.Client(timeout=30)
_leads = iter(
    lead.id for lead in get_dataset().leads if lead.scenario in ("same_person", "phone_only")
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    env = {
        "MAX_HEADER_BYTES": str(LIMIT),
        "HEADER_TIMEOUT_S": "1",
        "KEEPALIVE_TIMEOUT_S": "1",
        "MAX_CONNECTIONS": "20",
    }
    with LocalStack(
        workdir=tmp_path_factory.mktemp("hostile"),
        service_env=env,
        emulator_env={"EMULATOR_LATENCY_SCALE": "0.01"},
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def quiet(stack: LocalStack) -> None:
    for url in stack.emulator_urls.values():
        HTTP.post(f"{url}/_emulator/reset", params={"keep_config": "false"}).raise_for_status()
        HTTP.put(f"{url}/_emulator/config", json=QUIET).raise_for_status()


def connect(stack: LocalStack) -> socket.socket:
    assert stack.port is not None
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s at most)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def health_ok(stack: LocalStack) -> bool:
    return HTTP.get(f"{stack.base_url}/health").status_code == 200


# --- header size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Big: " + b"a" * (LIMIT + 1)],  # one large header
        [b"X-H%d: %s" % (i, b"b" * 90) for i in range(100)],  # many small ones
    ],
    ids=["one-large", "many-small"],
)
def test_headers_over_the_limit_get_431(headers: list[bytes], stack: LocalStack) -> None:
    with connect(stack) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(headers) + b"\r\n\r\n")
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert reply.endswith(b'{"error":"Request headers over 8192 bytes"}')
    assert health_ok(stack)


def test_headers_under_the_limit_are_served(stack: LocalStack) -> None:
    with connect(stack) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_100_mb_header_is_cut_short_and_memory_stays_flat(stack: LocalStack) -> None:
    assert stack.service is not None
    rss_before = _rss(stack.service.pid)
    sent = 0
    with connect(stack) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_all(sock)
    assert sent < 100 * 1024 * 1024, "the server read a 100 MB header to the end"
    assert reply.startswith(b"HTTP/1.1 431 ") or reply == b""  # reset may eat the reply
    assert _rss(stack.service.pid) - rss_before < 20 * 1024 * 1024
    assert health_ok(stack)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmRSS:"))


# --- slow and idle clients --------------------------------------------------------------------


def test_a_slow_head_gets_408_and_the_connection_is_closed(stack: LocalStack) -> None:
    with connect(stack) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        reply = b""
        for _ in range(40):  # one header byte every 0.25 s: never a complete head
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.25)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            reply += data
            if not data or reply.endswith(b"}"):
                break
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b"Request headers not received in time" in reply


def test_a_silent_connection_is_closed(stack: LocalStack) -> None:
    with connect(stack) as sock:
        assert read_all(sock) == b""  # closed by the server, nothing sent


def test_an_idle_keep_alive_connection_is_closed(stack: LocalStack) -> None:
    with connect(stack) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_all(sock)  # the answer, then the close after KEEPALIVE_TIMEOUT_S
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_connections_beyond_the_bound_get_503(stack: LocalStack) -> None:
    socks = [connect(stack) for _ in range(25)]
    try:
        time.sleep(0.3)
        refused = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503 ") and b"Too many open connections" in data:
                refused += 1
        assert refused == 5
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    assert health_ok(stack)


# --- the application's own answers ------------------------------------------------------------


def test_trailing_slash_does_not_reflect_host(stack: LocalStack) -> None:
    with connect(stack) as sock:
        sock.sendall(
            b"GET /api/v1/leads/process/?id=abc HTTP/1.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n"
        )
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 404 ")
    assert b"evil" not in reply.lower()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?id=a&id=b", "Repeated 'id' parameter: give it once"),
        ("?id=abc&id=abc", "Repeated 'id' parameter: give it once"),
        ("?id=abc%0A", "Invalid 'id' parameter: expected 1 to 64 letters, digits, '-' or '_'"),
        ("?id=%20abc", "Invalid 'id' parameter: expected 1 to 64 letters, digits, '-' or '_'"),
    ],
)
def test_repeated_or_padded_id_is_400(query: str, error: str, stack: LocalStack) -> None:
    r = HTTP.get(f"{stack.base_url}/api/v1/leads/process{query}")
    assert r.status_code == 400
    assert r.json() == {"error": error}


def test_openapi_documents_what_the_endpoint_answers(stack: LocalStack) -> None:
    spec = HTTP.get(f"{stack.base_url}/openapi.json").json()
    op = spec["paths"]["/api/v1/leads/process"]["get"]
    [param] = op["parameters"]
    assert param["name"] == "id" and param["required"] is True
    assert param["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert set(op["responses"]) == {"200", "400", "413", "504"}  # no 422: it never happens
    schema = op["responses"]["400"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["error"]


# --- upstream text and courtesy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("60", 60),
        (" 7 ", 7),
        ("99999999", 300),  # bounded
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0),  # a date in the past
        ("60; <script>alert(1)</script>", None),
        ("-5", None),
        ("1e3", None),
        ("x" * 10_000, None),
        (None, None),
    ],
)
def test_retry_after_is_validated_and_bounded(value: str | None, seconds: int | None) -> None:
    assert parse_retry_after(value, 300) == seconds


def configure(stack: LocalStack, upstream: str, patch: dict[str, Any]) -> None:
    HTTP.put(f"{stack.emulator_urls[upstream]}/_emulator/config", json=patch).raise_for_status()


def c2s_get_calls(stack: LocalStack) -> int:
    stats = HTTP.get(f"{stack.emulator_urls['c2s']}/_emulator/stats").json()
    return stats["routes"].get(C2S_GET, {}).get("calls", 0)


def spend_c2s_token(stack: LocalStack) -> None:
    HTTP.get(
        f"{stack.emulator_urls['c2s']}/integration/leads/{next(_leads)}",
        headers={"Authorization": "Bearer emulator-c2s-token"},
    )


@asynccontextmanager
async def app_client(
    stack: LocalStack, tmp_path: Any, **over: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        c2s_base_url=stack.emulator_urls["c2s"],
        diretrix_base_url=stack.emulator_urls["diretrix"],
        work_api_url=stack.emulator_urls["work"],
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        **over,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://s", timeout=60
        ) as client,
    ):
        yield client


async def test_a_long_retry_after_stops_the_calls(stack: LocalStack, tmp_path: Any) -> None:
    # every call answered 429 with a Retry-After beyond the request deadline (and beyond
    # MAX_RETRY_AFTER_S: the message shows the bounded value)
    configure(
        stack, "c2s", {"rate_limit": {"rate_per_s": 0.001, "burst": 1, "retry_after_s": 100000}}
    )
    spend_c2s_token(stack)
    before = c2s_get_calls(stack)
    async with app_client(stack, tmp_path) as client:
        bodies = [
            (await client.get("/api/v1/leads/process", params={"id": next(_leads)})).json()
            for _ in range(20)
        ]
        metrics = (await client.get("/metrics")).text
    assert c2s_get_calls(stack) - before == 1  # one call, then the circuit stays open
    assert bodies[0]["message"] == (
        "Failed to fetch lead from C2S: C2S API returned HTTP 429 (rate limited, retry after 300 s)"
    )
    for b in bodies[1:]:
        assert b["success"] is False
        assert re.fullmatch(
            r"Failed to fetch lead from C2S: C2S API not called: rate limited by the upstream, "
            r"retry in (300|299) s",
            b["message"],
        ), b["message"]
    assert 'c2s_upstream_circuit_state{upstream="C2S API"} 1.0' in metrics
    assert 'c2s_upstream_circuit_state{upstream="Work API"} 0.0' in metrics
    rejected = re.search(r'c2s_upstream_calls_rejected_total\{upstream="C2S API"\} (\S+)', metrics)
    assert rejected is not None and float(rejected.group(1)) >= 19


async def test_a_short_retry_after_is_waited_out(stack: LocalStack, tmp_path: Any) -> None:
    # the bucket refills 1.2 tokens/s: after the 1 s Retry-After a token is there again
    configure(stack, "c2s", {"rate_limit": {"rate_per_s": 1.2, "burst": 1, "retry_after_s": 1}})
    async with app_client(stack, tmp_path) as client:
        spend_c2s_token(stack)
        before = c2s_get_calls(stack)
        r = await client.get("/api/v1/leads/process", params={"id": next(_leads)})
    assert r.json()["success"] is True, r.json()
    assert c2s_get_calls(stack) - before == 2  # the 429, then the call after Retry-After


async def test_consecutive_failures_open_the_circuit(stack: LocalStack, tmp_path: Any) -> None:
    configure(
        stack, "c2s", {"routes": {C2S_GET: {"error_rate": 1.0, "error_statuses": {"503": 1.0}}}}
    )
    before = c2s_get_calls(stack)
    async with app_client(stack, tmp_path, breaker_failures=3, breaker_open_s=60) as client:
        bodies = [
            (await client.get("/api/v1/leads/process", params={"id": next(_leads)})).json()
            for _ in range(6)
        ]
    assert c2s_get_calls(stack) - before == 3
    assert [b["message"].endswith("returned HTTP 503") for b in bodies] == [True] * 3 + [False] * 3
    for b in bodies[3:]:
        assert re.search(
            r"not called: circuit open after 3 consecutive failures, retry in", b["message"]
        )
