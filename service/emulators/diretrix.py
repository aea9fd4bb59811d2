"""Diretrix Consultoria emulator: phone/email → ``[{"nome","cpf"}]`` person lookups.

Paths and shapes follow the public clients (docs/emulators.md#diretrix): ``GET /Consultas/Pessoa/Telefone/{digits}``
(national number, 10–11 digits, else 400), ``GET /Consultas/Pessoa/Email/{email}``, and
``GET /Consultas/Pessoa/{cpf}`` (full record). HTTP Basic auth. "Not found" is answered the
three ways seen in the wild, chosen by ``not_found_mode``: ``empty`` (200 ``[]``), ``404`` or
``400``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from service.emulators.common import Emulator, add_admin_routes
from service.emulators.dataset import Person
from service.emulators.faults import DIRETRIX_CPF, DIRETRIX_EMAIL, DIRETRIX_PHONE, Decision

DEFAULT_USER = "emulator-user"
DEFAULT_PASS = "emulator-pass"
USER_ENV = "EMULATOR_DIRETRIX_USER"
PASS_ENV = "EMULATOR_DIRETRIX_PASS"
NOT_FOUND_BODY = {"message": "Nenhum registro encontrado"}


def create_app(
    profile: str = "nominal",
    seed: int = 42,
    *,
    latency_scale: float | None = None,
    config: dict[str, Any] | None = None,
    user: str | None = None,
    password: str | None = None,
) -> FastAPI:
    """The Diretrix emulator app (credentials from ``$EMULATOR_DIRETRIX_USER/PASS``)."""
    emu = Emulator("diretrix", profile, seed, latency_scale=latency_scale, config=config)
    login = (user or os.environ.get(USER_ENV) or DEFAULT_USER).encode()
    secret = (password or os.environ.get(PASS_ENV) or DEFAULT_PASS).encode()
    app = FastAPI(title="Diretrix emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emu
    ds = emu.dataset

    def credential(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        name, sep, pw = raw.partition(b":")
        # Compare both parts even when the first fails (no early exit on the user name).
        ok_user = hmac.compare_digest(name, login)
        ok_pass = hmac.compare_digest(pw, secret)
        return name.decode("utf-8", "replace") if sep and ok_user and ok_pass else None

    def unauthorized(route: str) -> Response:
        return emu.reply(
            route,
            None,
            401,
            {"error": "Unauthorized"},
            {"WWW-Authenticate": 'Basic realm="Diretrix"'},
            kind="auth",
        )

    def not_found(route: str, decision: Decision, empty: Any) -> Response:
        mode = emu.engine.config.not_found_mode
        if mode == "empty":
            return emu.reply(route, decision, 200, empty)
        return emu.reply(route, decision, int(mode), NOT_FOUND_BODY)

    def matches(route: str, decision: Decision, person: Person | None, hidden: bool) -> Response:
        if person is None or hidden:
            return not_found(route, decision, [])
        return emu.reply(route, decision, 200, [{"nome": person.name, "cpf": person.cpf}])

    async def lookup(
        request: Request, route: str, find: Callable[[Decision, bool], Response]
    ) -> Response:
        """Auth, override header and faults, then ``find(decision, hidden)``."""
        cred = credential(request)
        if cred is None:
            return unauthorized(route)
        admitted = await emu.admit(request, route, cred)
        if isinstance(admitted, Response):
            return admitted
        decision, override = admitted
        return find(decision, override == "not_found")

    @app.get("/Consultas/Pessoa/Telefone/{phone}")
    async def by_phone(phone: str, request: Request) -> Response:
        def find(decision: Decision, hidden: bool) -> Response:
            if not (phone.isdigit() and 10 <= len(phone) <= 11):
                return emu.reply(
                    DIRETRIX_PHONE,
                    decision,
                    400,
                    {"message": "Telefone inválido: informe DDD + número (10 ou 11 dígitos)"},
                )
            return matches(DIRETRIX_PHONE, decision, ds.by_phone.get(phone), hidden)

        return await lookup(request, DIRETRIX_PHONE, find)

    @app.get("/Consultas/Pessoa/Email/{email}")
    async def by_email(email: str, request: Request) -> Response:
        def find(decision: Decision, hidden: bool) -> Response:
            if "@" not in email:
                return emu.reply(DIRETRIX_EMAIL, decision, 400, {"message": "E-mail inválido"})
            person = ds.by_email.get(email.strip().lower())
            return matches(DIRETRIX_EMAIL, decision, person, hidden)

        return await lookup(request, DIRETRIX_EMAIL, find)

    @app.get("/Consultas/Pessoa/{cpf}")
    async def by_cpf(cpf: str, request: Request) -> Response:
        def find(decision: Decision, hidden: bool) -> Response:
            if not (cpf.isdigit() and len(cpf) == 11):
                return emu.reply(DIRETRIX_CPF, decision, 400, {"message": "CPF inválido"})
            record = None if hidden else ds.diretrix_record(cpf)
            if record is None:
                return not_found(DIRETRIX_CPF, decision, {})
            return emu.reply(DIRETRIX_CPF, decision, 200, record)

        return await lookup(request, DIRETRIX_CPF, find)

    add_admin_routes(app, emu)
    return app
