"""The FastAPI application: ``/health``, ``/api/v1/leads/process``, ``/metrics``.

Kept lean for the lab's measurements (idle RSS, ``/health`` throughput on one core):
``/health`` and ``/metrics`` are plain Starlette routes answering pre-encoded bytes, the
health check behind ``/health`` (service/health.py: its own DB engine, write health) is shared
by concurrent callers and reused for ``HEALTH_DB_CACHE_S``, and the only middleware besides gzip is one pure-ASGI class (no ``BaseHTTPMiddleware``)
doing request metrics, the 30 s timeout (504) and the body-size limit (413).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import SERVICE_NAME, __version__, storage
from service.health import HealthChecker, WriteHealth
from service.metrics import BREAKERS, HTTP_REQUESTS, HTTP_SECONDS, POOL, render
from service.settings import Settings

log = logging.getLogger("service.app")
JSON = "application/json"

LEAD_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
LEAD_ID_RE = re.compile(LEAD_ID_PATTERN)
MISSING_ID = orjson.dumps({"error": "Missing 'id' parameter"})
INVALID_ID = orjson.dumps(
    {"error": "Invalid 'id' parameter: expected 1 to 64 letters, digits, '-' or '_'"}
)
REPEATED_ID = orjson.dumps({"error": "Repeated 'id' parameter: give it once"})

# OpenAPI of the process endpoint, written out: the id is read from the query string by hand
# (a repeated id must be a 400, not "last one wins"), so FastAPI has no parameter to validate
# and documents no 422, which this endpoint never answers.
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
_RESULT_SCHEMA = {
    "type": "object",
    "required": ["success", "message", "lead_id"],
    "properties": {
        "success": {"type": "boolean"},
        "message": {"type": "string"},
        "lead_id": {"type": "string", "pattern": LEAD_ID_PATTERN},
        "cpfs_processed": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{11}$"}},
        "entities_stored": {"type": "integer", "minimum": 0},
        "duplicate_request": {"type": "boolean", "enum": [True]},
    },
    "additionalProperties": False,
}


def _json_schema(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


PROCESS_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "id",
            "in": "query",
            "required": True,
            "description": "C2S lead id (given once)",
            "schema": {"type": "string", "pattern": LEAD_ID_PATTERN},
        }
    ],
}
PROCESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json_schema(
        "Every outcome, with `success` true or false (Make.com routes on it)", _RESULT_SCHEMA
    ),
    400: _json_schema("Missing, repeated or malformed id", _ERROR_SCHEMA),
    413: _json_schema("Request body over MAX_BODY_BYTES", _ERROR_SCHEMA),
    504: _json_schema("Request timed out after REQUEST_TIMEOUT_S", _ERROR_SCHEMA),
}


class JsonResponse(JSONResponse):
    """orjson-encoded JSON (faster than the stdlib encoder, UTF-8 without escapes)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ServiceMiddleware:
    """Pure ASGI: request count/latency by route template, request timeout, body limit."""

    def __init__(
        self,
        app: ASGIApp,
        timeout_s: float = 30.0,
        max_body: int = 1_048_576,
        plain_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_body = max_body
        # Plain Starlette routes (no "route" in scope under FastAPI's router): label by path.
        self.plain_paths = plain_paths
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        if scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
            # Fast path: the health check is the hottest, cheapest route (Fly polls it, load
            # tests hammer it); answering here skips routing, gzip and the timeout timer.
            status, body = await scope["app"].state.health.check()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
            )
            self._observe(scope["method"], "/health", status, t0)
            return
        state = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body:
                await _send_json(send, 413, {"error": f"Request body over {self.max_body} bytes"})
                state["status"] = 413
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise _BodyTooLarge
                return message

            try:
                async with asyncio.timeout(self.timeout_s):
                    await self.app(scope, receive_wrapper, send_wrapper)
            except TimeoutError:
                log.error("request timed out after %g s: %s", self.timeout_s, scope.get("path"))
                if not state["started"]:
                    await _send_json(
                        send, 504, {"error": f"Request timed out after {self.timeout_s:g} s"}
                    )
                    state["status"] = 504
            except _BodyTooLarge:
                if not state["started"]:
                    await _send_json(
                        send, 413, {"error": f"Request body over {self.max_body} bytes"}
                    )
                    state["status"] = 413
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                path = scope.get("path", "")
                template = path if path in self.plain_paths else "unmatched"
            self._observe(scope["method"], template, state["status"], t0)

    def _observe(self, method: str, template: str, status: int, t0: float) -> None:
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: cache the children
            labels = (method, template, str(status))
            children = (HTTP_REQUESTS.labels(*labels), HTTP_SECONDS.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - t0)


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; connections, migrations and clients are set up in the lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from service.pipeline import Pipeline
        from service.upstreams import Upstreams

        engine = storage.create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_s,
            schema=settings.db_schema,
        )
        schema_ready = asyncio.Event()

        async def ensure_schema() -> None:
            if schema_ready.is_set() or not settings.run_migrations:
                return
            if not await storage.at_head(engine):
                from service.migrate import migrate_in_child

                log.info("migrating the database to revision %s", storage.HEAD_REVISION)
                await migrate_in_child(settings)
            schema_ready.set()
            log.info("database schema at revision %s", storage.HEAD_REVISION)

        try:
            await ensure_schema()
        except Exception as exc:  # noqa: BLE001 - serve anyway: /health reports 503 until fixed
            log.error(
                "database unavailable at start-up (%s: %s); /health will answer 503",
                type(exc).__name__,
                settings.safe_database_url(),
            )
        upstreams = Upstreams(settings)
        # /health's own one-connection engine: a busy request pool cannot starve its ping.
        health_engine = storage.create_engine(
            settings.database_url,
            pool_size=1,
            pool_timeout=settings.health_db_timeout_s,
            schema=settings.db_schema,
            busy_timeout_s=settings.health_db_timeout_s,
        )
        writes = WriteHealth(settings.health_write_failures)
        pipeline = Pipeline(settings, upstreams, engine, writes)

        async def on_recovered() -> None:
            await ensure_schema()
            if pipeline.unreleased:
                await pipeline.release_pending()

        app.state.engine = engine
        app.state.pipeline = pipeline
        app.state.health = HealthChecker(health_engine, settings, writes, on_recovered)
        POOL.source = lambda: storage.pool_stats(engine)
        BREAKERS.source = lambda: upstreams.breakers
        log.info(
            "%s %s ready (database %s, pool %d)",
            SERVICE_NAME,
            __version__,
            settings.safe_database_url(),
            settings.db_pool_size,
        )
        try:
            yield
        finally:
            POOL.source = None
            BREAKERS.source = None
            await pipeline.aclose()
            await upstreams.aclose()
            await engine.dispose()
            await health_engine.dispose()

    app = FastAPI(
        title="C2S lead enrichment API",
        version=__version__,
        description="Python re-creation of rust-c2s-api: enriches C2S leads via Diretrix and "
        "the Work API and posts the result back to C2S.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
        # Starlette's slash redirect builds Location from the Host header: answer 404 instead.
        redirect_slashes=False,
    )

    async def health(request: Request) -> Response:
        status, body = await request.app.state.health.check()
        return Response(body, status, media_type=JSON)

    async def metrics(_: Request) -> Response:
        body, ctype = render()
        return Response(body, media_type=ctype)

    app.add_route("/health", health, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)

    @app.get(
        "/api/v1/leads/process",
        summary="Enrich one C2S lead and post the result back to C2S",
        response_class=Response,
        responses=PROCESS_RESPONSES,
        openapi_extra=PROCESS_OPENAPI,
    )
    async def process_lead(request: Request) -> Response:
        """HTTP 200 with ``success`` true/false for every outcome (Make.com routes on it)."""
        ids = request.query_params.getlist("id")
        if len(ids) > 1:
            return Response(REPEATED_ID, 400, media_type=JSON)
        lead_id = ids[0] if ids else ""
        if not lead_id.strip():
            return Response(MISSING_ID, 400, media_type=JSON)
        if not LEAD_ID_RE.fullmatch(lead_id):
            return Response(INVALID_ID, 400, media_type=JSON)
        result = await request.app.state.pipeline.process(lead_id)
        return Response(orjson.dumps(result), 200, media_type=JSON)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error: %s", type(exc).__name__)
        return Response(orjson.dumps({"error": "Internal server error"}), 500, media_type=JSON)

    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        ServiceMiddleware,
        timeout_s=settings.request_timeout_s,
        max_body=settings.max_body_bytes,
        plain_paths=frozenset({"/health", "/metrics"}),
    )
    return app
