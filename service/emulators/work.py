"""Work API ("Completa Buscas") emulator: CPF → dossier, phone → CPF.

``GET /api?token=…&modulo=cpf|phone&consulta=…`` as the original's clients call it
(docs/emulators.md#work-api). Like the
real API it reports most errors with HTTP 200 and the error in the body: a bad token gives
``{"status":403,…,"reason":"Token vencido ou inválido"}``, an unknown CPF
``{"status":404,"erro":"CPF não encontrado"}``; an unknown module is an HTTP 403; exhausted
credits give ``{"code":429,"message":"not enough credits",…}`` with the configured status.
People of the ``work_error`` scenario fail here: half answer "CPF não encontrado", half
HTTP 500 "External service error" (``Person.work_fault``).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from service.emulators.common import Emulator, add_admin_routes
from service.emulators.faults import WORK_API

DEFAULT_TOKEN = "emulator-work-token"
TOKEN_ENV = "EMULATOR_WORK_TOKEN"
MODULES = ("cpf", "phone")
BAD_TOKEN = {"status": 403, "statusMsg": "Forbidden", "reason": "Token vencido ou inválido"}
CPF_NOT_FOUND = {"status": 404, "erro": "CPF não encontrado"}
SERVICE_ERROR = {"status": 500, "erro": "External service error"}


def create_app(
    profile: str = "nominal",
    seed: int = 42,
    *,
    latency_scale: float | None = None,
    config: dict[str, Any] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The Work API emulator app (token from ``$EMULATOR_WORK_TOKEN`` or the default)."""
    emu = Emulator("work", profile, seed, latency_scale=latency_scale, config=config)
    secret = (token or os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN).encode()
    app = FastAPI(title="Work API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emu
    ds = emu.dataset

    @app.get("/api")
    async def api(request: Request) -> Response:
        params = request.query_params
        token = params.get("token", "")
        if not hmac.compare_digest(token.encode(), secret):
            return emu.reply(WORK_API, None, 200, BAD_TOKEN, kind="auth")
        admitted = await emu.admit(request, WORK_API, "token")
        if isinstance(admitted, Response):
            return admitted
        decision, override = admitted
        module = params.get("modulo", "")
        if module not in MODULES:
            body = {"status": 403, "reason": f"Módulo {module} inexistente para a rota"}
            return emu.reply(WORK_API, decision, 403, body)
        query = "".join(ch for ch in params.get("consulta", "") if ch.isdigit())
        if not query:
            body = {"status": 400, "erro": "Parâmetro consulta obrigatório"}
            return emu.reply(WORK_API, decision, 200, body)
        if override == "quota_exhausted" or not emu.engine.spend_credit("token"):
            quota = emu.engine.config.quota
            body = {
                "code": 429,
                "message": "not enough credits",
                "required": 1,
                "remaining": emu.engine.credits_remaining("token") or 0,
            }
            status = quota.http_status if quota is not None else 429
            return emu.reply(WORK_API, decision, status, body, kind="quota_exhausted")

        if module == "phone":
            national = query[2:] if len(query) > 11 and query.startswith("55") else query
            person = ds.by_phone.get(national)
            if override == "work_error":
                return emu.reply(WORK_API, decision, 500, SERVICE_ERROR, kind="scenario")
            if person is None or override == "not_found":
                return emu.reply(WORK_API, decision, 200, {"msg": []})
            match = {"cpf_cnpj": f"000{person.cpf}", "nome": person.name}
            return emu.reply(WORK_API, decision, 200, {"msg": [match]})

        cpf = query[-11:] if len(query) > 11 else query  # tolerate the 000-padded form
        person = ds.by_cpf.get(cpf)
        fault = person.work_fault if person is not None else None
        if override is not None:
            fault = {"work_error": fault or "error", "not_found": "not_found"}.get(override)
        if person is None or fault == "not_found":
            return emu.reply(WORK_API, decision, 200, CPF_NOT_FOUND)
        if fault == "error":
            return emu.reply(WORK_API, decision, 500, SERVICE_ERROR, kind="scenario")
        return emu.reply(WORK_API, decision, 200, ds.dossier(cpf))

    add_admin_routes(app, emu)
    return app
