"""HTTP clients for the three upstreams: C2S CRM, Diretrix and the Work API.

One ``httpx.AsyncClient`` per upstream (its own connection pool and limits), a per-call
timeout (C2S 10 s, Diretrix 10 s, Work 30 s — ours, docs/service.md#sources; the original had none), capped
by the request's remaining deadline. Errors become ``UpstreamError`` with a message that is
safe to return to callers and to log: it never contains a URL, so the Work token (which the
Work API takes in the query string) cannot leak. One transparent retry on connect errors.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from service.breaker import Breaker, Rejected, parse_retry_after
from service.metrics import REJECTED, UPSTREAM_SECONDS
from service.settings import Settings


class UpstreamError(Exception):
    """An upstream call failed; ``str()`` is safe to show (no URL, no secret)."""

    def __init__(self, upstream: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(f"{upstream} {detail}")
        self.upstream = upstream
        self.status = status


@dataclass(frozen=True)
class Customer:
    name: str
    phone: str
    email: str


def _timeout(limit: float, deadline: float | None, connect: float) -> httpx.Timeout:
    """The per-call limit, shortened to what is left of the request's deadline."""
    if deadline is not None:
        limit = max(min(limit, deadline - time.monotonic()), 0.001)
    return httpx.Timeout(limit, connect=min(connect, limit))


class Upstreams:
    """The three clients; create once per app (lifespan), ``aclose()`` at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        limits = httpx.Limits(
            max_connections=settings.max_connections_per_upstream,
            max_keepalive_connections=min(settings.max_connections_per_upstream, 20),
            keepalive_expiry=30,
        )

        # One TLS context for all three clients: each costs ~50 ms and ~1 MB (CA bundle).
        ssl_context = httpx.create_ssl_context()

        def client(
            base: str, headers: dict[str, str] | None = None, **kw: Any
        ) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=base,
                transport=httpx.AsyncHTTPTransport(retries=1, limits=limits, verify=ssl_context),
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "c2s-enrichment-api"}
                | (headers or {}),
                **kw,
            )

        self.c2s = client(
            settings.c2s_base_url,
            headers={"Authorization": f"Bearer {settings.c2s_token.get_secret_value()}"},
        )
        self.diretrix = client(
            settings.diretrix_base_url,
            auth=httpx.BasicAuth(settings.diretrix_user, settings.diretrix_pass.get_secret_value()),
        )
        self.work = client(settings.work_api_url)
        self.breakers = {
            name: Breaker(settings.breaker_failures, settings.breaker_open_s)
            for name in ("C2S API", "Diretrix API", "Work API")
        }

    async def aclose(self) -> None:
        for c in (self.c2s, self.diretrix, self.work):
            await c.aclose()

    async def _call(
        self,
        client: httpx.AsyncClient,
        upstream: str,
        operation: str,
        method: str,
        path: str,
        *,
        limit: float,
        deadline: float | None,
        **kw: Any,
    ) -> httpx.Response:
        """One call through the upstream's circuit breaker; a 429 whose ``Retry-After`` fits
        in the deadline is waited out and the call made once more."""
        breaker = self.breakers[upstream]
        for attempt in (1, 2):
            try:
                await breaker.admit(deadline)
            except Rejected as exc:
                REJECTED.labels(upstream).inc()
                raise UpstreamError(upstream, exc.detail) from None
            resp = await self._attempt(
                client, upstream, operation, method, path, limit=limit, deadline=deadline, **kw
            )
            if resp.status_code == 429:
                retry_after = parse_retry_after(
                    resp.headers.get("retry-after"), self.s.max_retry_after_s
                )
                breaker.failure(retry_after)
                if attempt == 1 and retry_after is not None and breaker.fits(deadline):
                    continue
            elif resp.status_code >= 500:
                breaker.failure()
            else:
                breaker.success()
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        upstream: str,
        operation: str,
        method: str,
        path: str,
        *,
        limit: float,
        deadline: float | None,
        **kw: Any,
    ) -> httpx.Response:
        t0 = time.perf_counter()
        outcome = "error"
        try:
            resp = await client.request(
                method, path, timeout=_timeout(limit, deadline, self.s.connect_timeout_s), **kw
            )
            outcome = str(resp.status_code)
            return resp
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left < limit and left <= 0.01:
                # our deadline, not the upstream's fault: the breaker does not count it
                raise UpstreamError(upstream, "call cut by the request deadline") from exc
            self.breakers[upstream].failure()
            raise UpstreamError(upstream, f"timed out after {limit:g} s") from exc
        except httpx.ConnectError as exc:
            outcome = "connect_error"
            self.breakers[upstream].failure()
            raise UpstreamError(upstream, "unreachable (connection failed)") from exc
        except httpx.HTTPError as exc:
            outcome = "transport_error"
            self.breakers[upstream].failure()
            raise UpstreamError(upstream, f"transport error ({type(exc).__name__})") from exc
        finally:
            UPSTREAM_SECONDS.labels(upstream, operation, outcome).observe(time.perf_counter() - t0)

    def _status_error(self, upstream: str, resp: httpx.Response) -> UpstreamError:
        """The status only, and a validated Retry-After: no upstream text is passed on."""
        detail = f"returned HTTP {resp.status_code}"
        if resp.status_code == 429:
            ra = parse_retry_after(resp.headers.get("retry-after"), self.s.max_retry_after_s)
            detail += f" (rate limited{'' if ra is None else f', retry after {ra} s'})"
        return UpstreamError(upstream, detail, status=resp.status_code)

    @staticmethod
    def _json(upstream: str, resp: httpx.Response) -> Any:
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(upstream, "returned a body that is not JSON") from exc

    # --- C2S ---------------------------------------------------------------------------------

    async def get_lead(self, lead_id: str, *, deadline: float | None = None) -> Customer:
        """Step 1: ``GET /integration/leads/{id}`` → the customer's name, phone and email."""
        resp = await self._call(
            self.c2s,
            "C2S API",
            "get_lead",
            "GET",
            f"/integration/leads/{quote(lead_id, safe='')}",
            limit=self.s.c2s_timeout_s,
            deadline=deadline,
        )
        if resp.status_code != 200:
            raise self._status_error("C2S API", resp)
        body = self._json("C2S API", resp)
        try:
            cust = body["data"]["attributes"]["customer"]
        except (KeyError, TypeError) as exc:
            raise UpstreamError(
                "C2S API", "returned a lead without data.attributes.customer"
            ) from exc
        if not isinstance(cust, dict):
            raise UpstreamError("C2S API", "returned a lead without data.attributes.customer")

        def text(key: str) -> str:
            v = cust.get(key)
            return v.strip() if isinstance(v, str) else ""

        return Customer(text("name"), text("phone"), text("email"))

    async def create_message(
        self, lead_id: str, body: str, *, deadline: float | None = None
    ) -> None:
        """Step 6: ``POST /integration/leads/{id}/create_message``; any 2xx is success."""
        resp = await self._call(
            self.c2s,
            "C2S API",
            "create_message",
            "POST",
            f"/integration/leads/{quote(lead_id, safe='')}/create_message",
            limit=self.s.c2s_timeout_s,
            deadline=deadline,
            content=orjson.dumps({"leadId": lead_id, "body": body}),
            headers={"Content-Type": "application/json"},
        )
        if not 200 <= resp.status_code < 300:
            raise self._status_error("C2S API", resp)

    # --- Diretrix ----------------------------------------------------------------------------

    async def _diretrix(self, kind: str, value: str, deadline: float | None) -> str | None:
        resp = await self._call(
            self.diretrix,
            "Diretrix API",
            f"lookup_{kind.lower()}",
            "GET",
            f"/Consultas/Pessoa/{kind}/{quote(value, safe='@')}",
            limit=self.s.diretrix_timeout_s,
            deadline=deadline,
        )
        # 400 and 404 are how Diretrix says "not found" (docs/emulators.md#diretrix).
        if resp.status_code in (400, 404):
            return None
        if resp.status_code != 200:
            raise self._status_error("Diretrix API", resp)
        body = self._json("Diretrix API", resp)
        for person in body if isinstance(body, list) else []:
            cpf = re.sub(r"\D", "", str(person.get("cpf", ""))) if isinstance(person, dict) else ""
            if len(cpf) == 11:
                return cpf
        return None

    async def cpf_by_phone(self, phone: str, *, deadline: float | None = None) -> str | None:
        """CPF of the first match for a phone; the country code 55 is stripped as Diretrix wants."""
        digits = re.sub(r"\D", "", phone)
        if digits.startswith("55") and len(digits) >= 12:
            digits = digits[2:]
        if not digits:
            return None
        return await self._diretrix("Telefone", digits, deadline)

    async def cpf_by_email(self, email: str, *, deadline: float | None = None) -> str | None:
        email = email.strip()
        if not email:
            return None
        return await self._diretrix("Email", email, deadline)

    # --- Work API ----------------------------------------------------------------------------

    async def work_cpf(self, cpf: str, *, deadline: float | None = None) -> dict[str, Any]:
        """Step 3: the ``modulo=cpf`` dossier; the API often reports errors in a 200 body."""
        resp = await self._call(
            self.work,
            "Work API",
            "cpf",
            "GET",
            "/api",
            limit=self.s.work_timeout_s,
            deadline=deadline,
            params={"token": self.s.work_api.get_secret_value(), "modulo": "cpf", "consulta": cpf},
        )
        if resp.status_code != 200:
            raise self._status_error("Work API", resp)
        body = self._json("Work API", resp)
        if not isinstance(body, dict):
            raise UpstreamError("Work API", "returned an unexpected body")
        if body.get("code") == 429 or body.get("message") == "not enough credits":
            self.breakers["Work API"].failure()  # a 200 that is a failure: count it
            raise UpstreamError("Work API", "reported: not enough credits", status=429)
        status = body.get("status")
        if isinstance(status, int) and status != 200:
            # The body's own text (reason, erro) is upstream text: only the status travels on.
            shown = status if 100 <= status <= 599 else "out of range"
            raise UpstreamError("Work API", f"reported status {shown}", status=status)
        if body.get("erro"):
            raise UpstreamError("Work API", "reported an error (CPF not found)", status=404)
        if not isinstance(body.get("DadosBasicos"), dict):
            raise UpstreamError("Work API", "returned no DadosBasicos (CPF not found)", status=404)
        return body
