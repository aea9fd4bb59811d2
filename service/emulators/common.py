"""Plumbing shared by the three emulator apps: state, fault gate, JSON replies, admin API.

Why one place: the three apps must behave identically for faults, stats and admin calls, and
the per-request path must stay cheap (orjson bytes, no pydantic on hot paths) so the
emulators are never the bottleneck of a load test on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.emulators.dataset import SCENARIOS, Dataset, get_dataset
from service.emulators.faults import (
    FAULT_OVERRIDES,
    LATENCY_SCALE_ENV,
    Decision,
    FaultEngine,
    env_latency_scale,
    profile_config,
)

__all__ = [
    "LATENCY_SCALE_ENV",
    "Emulator",
    "add_admin_routes",
    "env_latency_scale",
    "json_response",
]

SCENARIO_HEADER = "x-emulator-scenario"
OVERRIDES = frozenset(SCENARIOS) | frozenset(FAULT_OVERRIDES)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


class Emulator:
    """One emulator's state: dataset, fault engine, extra per-upstream state reset hook."""

    def __init__(
        self,
        upstream: str,
        profile: str = "nominal",
        seed: int = 42,
        *,
        latency_scale: float | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        scale = env_latency_scale() if latency_scale is None else latency_scale
        base = profile_config(upstream, profile, latency_scale=scale)
        self.engine = FaultEngine(base, seed)
        if config:
            # Applied on top of the profile and kept as the "starting" config for resets.
            self.engine = FaultEngine(self.engine.update(config), seed)
        self.upstream = upstream
        self.dataset: Dataset = get_dataset(seed)
        self.on_reset: list[Callable[[], None]] = []

    @staticmethod
    def override(request: Request) -> str | None | Response:
        """The X-Emulator-Scenario value, or a 400 response naming the valid values."""
        value = request.headers.get(SCENARIO_HEADER)
        if value is None:
            return None
        value = value.strip().lower()
        if value not in OVERRIDES:
            return json_response(
                {
                    "error": f"unknown X-Emulator-Scenario {value!r}",
                    "valid": sorted(OVERRIDES),
                },
                400,
            )
        return value

    async def gate(self, route: str, credential: str, override: str | None) -> Decision:
        """Apply rate limit, latency, hang and injected error; returns the decision taken.

        A fault-free ``Decision`` (kind "ok") means the handler proceeds; any other kind is
        answered by :meth:`fault_response`.
        """
        engine_override = override
        if override is not None and override not in FAULT_OVERRIDES:
            engine_override = "ok"  # a lead scenario: deterministic call, no random faults
        decision = self.engine.decide(route, credential, engine_override)
        if decision.delay_s > 0.0:
            await asyncio.sleep(decision.delay_s)
        return decision

    async def admit(
        self, request: Request, route: str, credential: str
    ) -> tuple[Decision, str | None] | Response:
        """One authenticated call through the override header and the fault engine: either a
        response to send as is (bad header, rate limit, hang, injected error) or the
        fault-free decision with the override, for the handler to answer."""
        override = self.override(request)
        if isinstance(override, Response):
            return override
        decision = await self.gate(route, credential, override)
        if decision.kind != "ok":
            return self.fault_response(route, decision)
        return decision, override

    def fault_response(self, route: str, decision: Decision) -> Response:
        if decision.kind == "rate_limited":
            limit = self.engine.config.rate_limit
            route_cfg = self.engine.config.routes.get(route)
            if route_cfg is not None and route_cfg.rate_limit is not None:
                limit = route_cfg.rate_limit
            body = limit.body if limit is not None else {"error": "Too Many Requests"}
            retry = str(max(1, math.ceil(decision.retry_after_s)))
            return self.reply(route, decision, decision.status, body, {"Retry-After": retry})
        if decision.kind == "hang":
            return self.reply(route, decision, 504, {"error": "Gateway Timeout"})
        phrase = _phrase(decision.status)
        return self.reply(route, decision, decision.status, {"error": phrase, "injected": True})

    def reply(
        self,
        route: str,
        decision: Decision | None,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> Response:
        """Record the call in the stats and build the JSON response."""
        delay = decision.delay_s if decision is not None else 0.0
        self.engine.record(route, status, kind or (decision.kind if decision else "ok"), delay)
        return json_response(payload, status, headers)

    def reset(self, keep_config: bool) -> None:
        self.engine.reset(keep_config=keep_config)
        for hook in self.on_reset:
            hook()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def add_admin_routes(app: FastAPI, emu: Emulator) -> None:
    """``/_emulator/{health,stats,config,reset}``: no auth, no faults (they drive the lab)."""

    @app.get("/_emulator/health")
    async def health() -> Response:
        cfg = emu.engine.config
        return json_response(
            {
                "status": "ok",
                "upstream": emu.upstream,
                "profile": cfg.profile,
                "seed": emu.engine.seed,
                "leads": len(emu.dataset),
                "latency_scale": cfg.latency_scale,
            }
        )

    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return json_response(emu.engine.stats_dict())

    @app.get("/_emulator/config")
    async def get_config() -> Response:
        return json_response(emu.engine.config.model_dump(mode="json"))

    @app.put("/_emulator/config")
    async def put_config(request: Request) -> Response:
        try:
            patch = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return json_response({"error": f"invalid JSON: {exc}"}, 400)
        if not isinstance(patch, dict):
            return json_response({"error": "config patch must be a JSON object"}, 422)
        try:
            config = emu.engine.update(patch)
        except ValidationError as exc:
            details = orjson.loads(exc.json(include_url=False, include_input=False))
            return json_response({"error": "invalid config", "details": details}, 422)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 422)
        return json_response(config.model_dump(mode="json"))

    @app.post("/_emulator/reset")
    async def reset(keep_config: bool = False) -> Response:
        emu.reset(keep_config=keep_config)
        return json_response(
            {"status": "reset", "config": "kept" if keep_config else emu.engine.config.profile}
        )
