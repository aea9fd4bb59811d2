"""Contact2Sale (C2S) CRM emulator: leads in, enriched messages back.

Paths, auth and shapes follow the public clients (docs/emulators.md#c2s): ``GET /integration/leads/{id}``,
``GET /integration/leads`` (paged, ``perpage`` ≤ 50), ``POST
/integration/leads/{id}/create_message`` (``{"body"}`` → 201). Bearer token in
``Authorization`` or ``Authentication`` (both are seen in the wild). Posted messages are kept
per lead (last :data:`MESSAGES_PER_LEAD`) so tests can read them at
``GET /_emulator/leads/{id}/messages``.
"""

from __future__ import annotations

import hmac
import itertools
import os
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from service.emulators.common import Emulator, add_admin_routes, json_response
from service.emulators.faults import C2S_GET, C2S_LIST, C2S_MESSAGE

DEFAULT_TOKEN = "emulator-c2s-token"
TOKEN_ENV = "EMULATOR_C2S_TOKEN"
MESSAGES_PER_LEAD = 20  # bounded: a long load test must not grow the emulator without limit
MAX_PERPAGE = 50
BRT = timezone(timedelta(hours=-3))


def create_app(
    profile: str = "nominal",
    seed: int = 42,
    *,
    latency_scale: float | None = None,
    config: dict[str, Any] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The C2S emulator app (``token`` defaults to ``$EMULATOR_C2S_TOKEN`` or the default)."""
    emu = Emulator("c2s", profile, seed, latency_scale=latency_scale, config=config)
    secret = (token or os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN).encode()
    messages: dict[str, deque[dict[str, Any]]] = {}
    counter = itertools.count(1)

    def _reset_messages() -> None:
        messages.clear()

    emu.on_reset.append(_reset_messages)
    app = FastAPI(title="C2S emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emu

    def credential(request: Request) -> str | None:
        header = request.headers.get("authorization") or request.headers.get("authentication")
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), secret):
            return None
        return "bearer"

    def unauthorized(route: str) -> Response:
        return emu.reply(route, None, 401, {"error": "Unauthorized"}, kind="auth")

    @app.get("/integration/leads/{lead_id}")
    async def get_lead(lead_id: str, request: Request) -> Response:
        cred = credential(request)
        if cred is None:
            return unauthorized(C2S_GET)
        admitted = await emu.admit(request, C2S_GET, cred)
        if isinstance(admitted, Response):
            return admitted
        decision, _ = admitted
        lead = emu.dataset.lead_by_id.get(lead_id)
        if lead is None:
            return emu.reply(
                C2S_GET, decision, 404, {"success": False, "message": "Lead not found"}
            )
        return emu.reply(C2S_GET, decision, 200, emu.dataset.lead_payload(lead))

    @app.get("/integration/leads")
    async def list_leads(request: Request) -> Response:
        cred = credential(request)
        if cred is None:
            return unauthorized(C2S_LIST)
        override = emu.override(request)
        if isinstance(override, Response):
            return override
        params = request.query_params
        try:
            page = int(params.get("page", "1"))
            perpage = int(params.get("perpage", "20"))
        except ValueError:
            return emu.reply(C2S_LIST, None, 400, {"error": "page and perpage must be integers"})
        if perpage > MAX_PERPAGE:
            return emu.reply(
                C2S_LIST, None, 403, {"error": f"perpage must be <= {MAX_PERPAGE}"}, kind="bad"
            )
        if page < 1 or perpage < 1:
            return emu.reply(C2S_LIST, None, 400, {"error": "page and perpage must be >= 1"})
        decision = await emu.gate(C2S_LIST, cred, override)
        if decision.kind != "ok":
            return emu.fault_response(C2S_LIST, decision)
        leads = emu.dataset.leads
        phone = "".join(ch for ch in params.get("phone", "") if ch.isdigit())
        if phone:
            national = phone[2:] if len(phone) > 11 and phone.startswith("55") else phone
            leads = [lead for lead in leads if lead.phone == national]
        email = params.get("email", "").strip().lower()
        if email:
            leads = [lead for lead in leads if lead.email == email]
        if params.get("sort") == "-created_at":
            leads = leads[::-1]
        chunk = leads[(page - 1) * perpage : page * perpage]
        body = {
            "data": [emu.dataset.lead_payload(lead)["data"] for lead in chunk],
            "meta": {"total": len(leads), "page": page, "perpage": perpage},
        }
        return emu.reply(C2S_LIST, decision, 200, body)

    @app.post("/integration/leads/{lead_id}/create_message")
    async def create_message(lead_id: str, request: Request) -> Response:
        cred = credential(request)
        if cred is None:
            return unauthorized(C2S_MESSAGE)
        admitted = await emu.admit(request, C2S_MESSAGE, cred)
        if isinstance(admitted, Response):
            return admitted
        decision, override = admitted
        lead = emu.dataset.lead_by_id.get(lead_id)
        if lead is None:
            return emu.reply(
                C2S_MESSAGE, decision, 404, {"success": False, "message": "Lead not found"}
            )
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            payload = None
        text = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            return emu.reply(
                C2S_MESSAGE,
                decision,
                422,
                {
                    "success": False,
                    "message": "Validation failed: body can't be blank",
                    "errors": {"body": ["can't be blank"]},
                },
            )
        # The header replaces the lead's own scenario for this call.
        scenario = lead.scenario if override is None else override
        if scenario == "send_error":
            return emu.reply(
                C2S_MESSAGE,
                decision,
                500,
                {"success": False, "message": "Internal Server Error"},
                kind="scenario",
            )
        message = {
            "id": f"msg-{next(counter)}",
            "lead_id": lead_id,
            "body": text,
            "created_at": datetime.now(BRT).isoformat(timespec="seconds"),
        }
        messages.setdefault(lead_id, deque(maxlen=MESSAGES_PER_LEAD)).append(message)
        data = {"id": message["id"], "body": text, "created_at": message["created_at"]}
        return emu.reply(C2S_MESSAGE, decision, 201, {"success": True, "data": data})

    @app.get("/_emulator/leads/{lead_id}/messages")
    async def lead_messages(lead_id: str) -> Response:
        if lead_id not in emu.dataset.lead_by_id:
            return json_response({"success": False, "message": "Lead not found"}, 404)
        stored = list(messages.get(lead_id, ()))
        return json_response({"lead_id": lead_id, "count": len(stored), "messages": stored})

    @app.get("/_emulator/leads")
    async def dataset_leads(scenario: str | None = None, limit: int = 20) -> Response:
        """Seeded leads with what Diretrix will resolve (helps tests pick one per scenario)."""
        ds = emu.dataset
        leads = ds.leads if scenario is None else ds.leads_for(scenario)
        rows = [
            {
                "id": lead.id,
                "scenario": lead.scenario,
                "phone": lead.phone,
                "email": lead.email,
                "cpfs": ds.expected_cpfs(lead),
            }
            for lead in leads[: max(0, limit)]
        ]
        return json_response({"total": len(leads), "leads": rows})

    add_admin_routes(app, emu)
    return app
