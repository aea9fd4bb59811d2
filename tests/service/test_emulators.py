"""The three emulators over real loopback HTTP: auth, shapes, scenarios, faults, admin API.

Apps run under uvicorn in a thread on a port the OS picks (port 0); one test starts the real
``python -m service.emulators`` process. Latency is scaled to 0 and random errors are off
(``config=`` at creation, which is also what ``reset`` restores) so outcomes are exact.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.emulators import c2s, diretrix, faults, work
from service.emulators.dataset import Lead, get_dataset
from service.emulators.faults import C2S_GET, C2S_MESSAGE, DIRETRIX_PHONE, WORK_API

REPO = Path(__file__).resolve().parents[2]
DS = get_dataset(42)
QUIET = {"error_rate": 0.0, "hang_rate": 0.0}
C2S_AUTH = {"Authorization": "Bearer emulator-c2s-token"}
DIRETRIX_AUTH = ("emulator-user", "emulator-pass")
WORK_TOKEN = "emulator-work-token"


class ServerThread:
    """uvicorn in a daemon thread on an OS-assigned loopback port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _serve(module: Any, **kw: Any) -> Iterator[httpx.Client]:
    app = module.create_app("nominal", 42, latency_scale=0.0, config=QUIET, **kw)
    with ServerThread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def c2s_http() -> Iterator[httpx.Client]:
    yield from _serve(c2s)


@pytest.fixture(scope="module")
def diretrix_http() -> Iterator[httpx.Client]:
    yield from _serve(diretrix)


@pytest.fixture(scope="module")
def work_http() -> Iterator[httpx.Client]:
    yield from _serve(work)


@pytest.fixture(autouse=True)
def _reset_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("c2s_http", "diretrix_http", "work_http"):
        if name in request.fixturenames:
            request.getfixturevalue(name).post("/_emulator/reset")


def lead_of(scenario: str, n: int = 0, **want: bool) -> Lead:
    """The n-th lead of a scenario; ``phone=True`` / ``email=False`` filter on presence."""
    leads = [
        lead
        for lead in DS.leads_for(scenario)
        if all(getattr(lead, k) is not None if v else getattr(lead, k) is None
               for k, v in want.items())
    ]  # fmt: skip
    return leads[n]


# --- C2S ------------------------------------------------------------------------------------
def test_c2s_auth(c2s_http: httpx.Client) -> None:
    lead = lead_of("same_person")
    path = f"/integration/leads/{lead.id}"
    assert c2s_http.get(path).status_code == 401
    r = c2s_http.get(path, headers={"Authorization": "Bearer wrong"})
    assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
    assert c2s_http.get(path, headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert c2s_http.get(path, headers=C2S_AUTH).status_code == 200
    alt = {"Authentication": "Bearer emulator-c2s-token"}
    assert c2s_http.get(path, headers=alt).status_code == 200


def test_c2s_lead_shape_and_not_found(c2s_http: httpx.Client) -> None:
    lead = lead_of("different_people")
    r = c2s_http.get(f"/integration/leads/{lead.id}", headers=C2S_AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()["data"]
    assert data["type"] == "lead" and data["id"] == lead.id
    assert data["internal_id"] == lead.internal_id
    customer = data["attributes"]["customer"]
    assert customer["phone"] == f"55{lead.phone}" and customer["email"] == lead.email
    assert customer["name"] == lead.name
    r = c2s_http.get("/integration/leads/" + "0" * 32, headers=C2S_AUTH)
    assert (r.status_code, r.json()) == (404, {"success": False, "message": "Lead not found"})


def test_c2s_create_message_stores_and_validates(c2s_http: httpx.Client) -> None:
    lead = lead_of("same_person", 1)
    url = f"/integration/leads/{lead.id}/create_message"
    r = c2s_http.post(
        url, json={"leadId": lead.id, "body": "✅ DADOS PESSOAIS\nNome: X"}, headers=C2S_AUTH
    )
    assert r.status_code == 201
    body = r.json()
    assert body["success"] is True and body["data"]["body"] == "✅ DADOS PESSOAIS\nNome: X"
    assert {"id", "created_at"} <= set(body["data"])
    for bad in ({"message": "wrong key"}, {"body": ""}, {"body": 3}):
        r = c2s_http.post(url, json=bad, headers=C2S_AUTH)
        assert r.status_code == 422 and r.json()["success"] is False
    r = c2s_http.post(url, content=b"{not json", headers=C2S_AUTH)
    assert r.status_code == 422
    stored = c2s_http.get(f"/_emulator/leads/{lead.id}/messages").json()
    assert stored["count"] == 1 and stored["messages"][0]["body"].startswith("✅")
    assert c2s_http.get("/_emulator/leads/" + "f" * 32 + "/messages").status_code == 404


def test_c2s_send_error_scenario_and_header_override(c2s_http: httpx.Client) -> None:
    failing = lead_of("send_error")
    r = c2s_http.post(
        f"/integration/leads/{failing.id}/create_message", json={"body": "x"}, headers=C2S_AUTH
    )
    assert r.status_code == 500 and r.json()["success"] is False
    assert c2s_http.get(f"/_emulator/leads/{failing.id}/messages").json()["count"] == 0
    # The header overrides the lead's own scenario, both ways, for one call.
    ok = lead_of("same_person", 2)
    forced = {**C2S_AUTH, "X-Emulator-Scenario": "send_error"}
    r = c2s_http.post(
        f"/integration/leads/{ok.id}/create_message", json={"body": "x"}, headers=forced
    )
    assert r.status_code == 500
    spared = {**C2S_AUTH, "X-Emulator-Scenario": "same_person"}
    r = c2s_http.post(
        f"/integration/leads/{failing.id}/create_message", json={"body": "x"}, headers=spared
    )
    assert r.status_code == 201
    r = c2s_http.get(
        f"/integration/leads/{ok.id}", headers={**C2S_AUTH, "X-Emulator-Scenario": "boom"}
    )
    assert r.status_code == 400 and "send_error" in r.json()["valid"]


def test_c2s_list_pagination(c2s_http: httpx.Client) -> None:
    r = c2s_http.get("/integration/leads", params={"perpage": 51}, headers=C2S_AUTH)
    assert r.status_code == 403
    r = c2s_http.get("/integration/leads", params={"page": 2, "perpage": 50}, headers=C2S_AUTH)
    body = r.json()
    assert body["meta"] == {"total": len(DS), "page": 2, "perpage": 50}
    assert [d["id"] for d in body["data"]] == [lead.id for lead in DS.leads[50:100]]
    lead = lead_of("same_person", 3)
    r = c2s_http.get("/integration/leads", params={"phone": f"55{lead.phone}"}, headers=C2S_AUTH)
    assert [d["id"] for d in r.json()["data"]] == [lead.id]


def test_c2s_rate_limit_answers_429_with_retry_after(c2s_http: httpx.Client) -> None:
    r = c2s_http.put(
        "/_emulator/config",
        json={"rate_limit": {"rate_per_s": 0.001, "burst": 2, "retry_after_s": None}},
    )
    assert r.status_code == 200 and r.json()["rate_limit"]["burst"] == 2
    path = f"/integration/leads/{lead_of('same_person').id}"
    codes = [c2s_http.get(path, headers=C2S_AUTH) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    retry = int(codes[2].headers["Retry-After"])
    assert 1 <= retry <= 1000  # next token at 0.001/s is ≤ 1000 s away
    assert codes[2].json() == {"error": "Too Many Requests"}
    # Unauthenticated calls do not spend the bucket: still 401, not 429.
    assert c2s_http.get(path).status_code == 401
    stats = c2s_http.get("/_emulator/stats").json()
    assert stats["routes"][C2S_GET]["rate_limited"] == 1
    assert stats["routes"][C2S_GET]["statuses"] == {"200": 2, "401": 1, "429": 1}


def test_c2s_nominal_limit_uses_fixed_retry_after(c2s_http: httpx.Client) -> None:
    r = c2s_http.get(
        f"/integration/leads/{lead_of('same_person').id}",
        headers={**C2S_AUTH, "X-Emulator-Scenario": "rate_limited"},
    )
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"


def test_c2s_error_injection_and_reset(c2s_http: httpx.Client) -> None:
    r = c2s_http.put("/_emulator/config", json={"error_rate": 1.0, "error_statuses": {"503": 1}})
    assert r.json()["error_rate"] == 1.0
    path = f"/integration/leads/{lead_of('same_person').id}"
    assert {c2s_http.get(path, headers=C2S_AUTH).status_code for _ in range(5)} == {503}
    assert c2s_http.get("/_emulator/stats").json()["totals"]["errors"] == 5
    assert c2s_http.post("/_emulator/reset?keep_config=true").json()["config"] == "kept"
    assert c2s_http.get(path, headers=C2S_AUTH).status_code == 503
    c2s_http.post("/_emulator/reset")
    assert c2s_http.get("/_emulator/config").json()["error_rate"] == 0.0
    assert c2s_http.get(path, headers=C2S_AUTH).status_code == 200
    assert c2s_http.get("/_emulator/stats").json()["totals"]["calls"] == 1


def test_config_put_rejects_bad_patches(c2s_http: httpx.Client) -> None:
    before = c2s_http.get("/_emulator/config").json()
    for patch, status in (
        ({"error_rate": 2}, 422),
        ({"latency_ms": {"p50": -1}}, 422),
        ({"routes": {"GET /nope": {}}}, 422),
        ([1, 2], 422),
    ):
        r = c2s_http.put("/_emulator/config", json=patch)
        assert r.status_code == status and "error" in r.json()
    assert c2s_http.put("/_emulator/config", content=b"{oops").status_code == 400
    assert c2s_http.get("/_emulator/config").json() == before


def test_c2s_route_override_and_hang(c2s_http: httpx.Client) -> None:
    patch = {"routes": {C2S_MESSAGE: {"hang_rate": 1.0, "hang_ms": 400}}}
    cfg = c2s_http.put("/_emulator/config", json=patch).json()
    assert cfg["routes"][C2S_MESSAGE]["latency_ms"]["p50"] == 1000  # merged, not replaced
    lead = lead_of("same_person", 4)
    with pytest.raises(httpx.ReadTimeout):
        c2s_http.post(
            f"/integration/leads/{lead.id}/create_message",
            json={"body": "x"},
            headers=C2S_AUTH,
            timeout=httpx.Timeout(10, read=0.1),
        )
    # GET lead is not affected by the message route's override.
    assert c2s_http.get(f"/integration/leads/{lead.id}", headers=C2S_AUTH).status_code == 200
    deadline = time.monotonic() + 15
    while c2s_http.get("/_emulator/stats").json()["totals"]["hangs"] < 1:
        assert time.monotonic() < deadline, "the hang never completed"
        time.sleep(0.05)
    route = c2s_http.get("/_emulator/stats").json()["routes"][C2S_MESSAGE]
    assert route["statuses"] == {"504": 1} and route["latency_ms"]["max"] == pytest.approx(400)


# --- Diretrix -------------------------------------------------------------------------------
def test_diretrix_auth(diretrix_http: httpx.Client) -> None:
    lead = lead_of("same_person")
    path = f"/Consultas/Pessoa/Telefone/{lead.phone}"
    r = diretrix_http.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert diretrix_http.get(path, auth=("emulator-user", "nope")).status_code == 401
    assert diretrix_http.get(path, auth=("someone", "emulator-pass")).status_code == 401
    bad = {"Authorization": "Basic !!!notbase64"}
    assert diretrix_http.get(path, headers=bad).status_code == 401
    assert diretrix_http.get(path, auth=DIRETRIX_AUTH).status_code == 200


@pytest.mark.parametrize("scenario", ["same_person", "different_people", "phone_only", "email_only", "not_found", "work_error"])  # fmt: skip
def test_diretrix_lookups_follow_scenarios(diretrix_http: httpx.Client, scenario: str) -> None:
    lead = lead_of(scenario, phone=True, email=True)
    phone = diretrix_http.get(f"/Consultas/Pessoa/Telefone/{lead.phone}", auth=DIRETRIX_AUTH)
    email = diretrix_http.get(f"/Consultas/Pessoa/Email/{lead.email}", auth=DIRETRIX_AUTH)
    assert phone.status_code == email.status_code == 200
    found = [body[0]["cpf"] for body in (phone.json(), email.json()) if body]
    assert list(dict.fromkeys(found)) == DS.expected_cpfs(lead)
    for body in (phone.json(), email.json()):
        assert all(set(item) == {"nome", "cpf"} for item in body)


def test_diretrix_not_found_modes_and_malformed_phone(diretrix_http: httpx.Client) -> None:
    lead = lead_of("not_found", phone=True, email=True)
    path = f"/Consultas/Pessoa/Telefone/{lead.phone}"
    assert diretrix_http.get(path, auth=DIRETRIX_AUTH).json() == []
    for mode in ("404", "400"):
        assert (
            diretrix_http.put("/_emulator/config", json={"not_found_mode": mode}).status_code == 200
        )
        r = diretrix_http.get(path, auth=DIRETRIX_AUTH)
        assert r.status_code == int(mode) and r.json() == {"message": "Nenhum registro encontrado"}
    for bad in ("123", "55" + lead.phone, "11a98765432"):
        r = diretrix_http.get(f"/Consultas/Pessoa/Telefone/{bad}", auth=DIRETRIX_AUTH)
        assert r.status_code == 400, bad
    # The header hides a known person for one call.
    known = lead_of("same_person")
    hide = {"X-Emulator-Scenario": "not_found"}
    r = diretrix_http.get(
        f"/Consultas/Pessoa/Email/{known.email}", auth=DIRETRIX_AUTH, headers=hide
    )
    assert r.status_code == 400  # not_found_mode is still "400" in this test


def test_diretrix_person_record(diretrix_http: httpx.Client) -> None:
    person = DS.by_phone[lead_of("same_person").phone]
    r = diretrix_http.get(f"/Consultas/Pessoa/{person.cpf}", auth=DIRETRIX_AUTH)
    rec = r.json()
    assert rec["cpf"] == person.cpf and rec["nome"] == person.name
    assert {"logadouro", "logadouroTipo", "ranking"} <= set(rec["enderecos"][0])
    assert rec["telefones"][0]["ddd"] + rec["telefones"][0]["numero"] == person.phone
    assert diretrix_http.get("/Consultas/Pessoa/123", auth=DIRETRIX_AUTH).status_code == 400


def test_diretrix_stats_per_route(diretrix_http: httpx.Client) -> None:
    lead = lead_of("same_person")
    for _ in range(3):
        diretrix_http.get(f"/Consultas/Pessoa/Telefone/{lead.phone}", auth=DIRETRIX_AUTH)
    s = diretrix_http.get("/_emulator/stats").json()
    assert s["upstream"] == "diretrix" and s["routes"][DIRETRIX_PHONE]["calls"] == 3
    assert s["routes"][DIRETRIX_PHONE]["latency_ms"]["max"] == 0  # latency_scale 0


# --- Work API -------------------------------------------------------------------------------
def work_get(
    client: httpx.Client, modulo: str, consulta: str, token: str = WORK_TOKEN, **kw: Any
) -> httpx.Response:
    return client.get("/api", params={"token": token, "modulo": modulo, "consulta": consulta}, **kw)


def test_work_token_and_module_errors(work_http: httpx.Client) -> None:
    cpf = DS.people[0].cpf
    r = work_get(work_http, "cpf", cpf, token="expired")
    assert r.status_code == 200
    assert r.json() == {
        "status": 403,
        "statusMsg": "Forbidden",
        "reason": "Token vencido ou inválido",
    }
    assert work_http.get("/api", params={"modulo": "cpf", "consulta": cpf}).json()["status"] == 403
    r = work_get(work_http, "tarot", cpf)
    assert r.status_code == 403 and r.json()["reason"] == "Módulo tarot inexistente para a rota"


def test_work_cpf_dossier_and_not_found(work_http: httpx.Client) -> None:
    lead = lead_of("same_person")
    cpf = DS.expected_cpfs(lead)[0]
    r = work_get(work_http, "cpf", cpf)
    body = r.json()
    assert r.status_code == 200 and body == DS.dossier(cpf)
    assert body["DadosBasicos"]["cpf"] == cpf and "," in body["DadosEconomicos"]["renda"]
    r = work_get(work_http, "cpf", "52998224725")  # valid CPF, nobody in the dataset
    assert (r.status_code, r.json()) == (200, {"status": 404, "erro": "CPF não encontrado"})


def test_work_phone_module(work_http: httpx.Client) -> None:
    lead = lead_of("phone_only")
    r = work_get(work_http, "phone", lead.phone)
    assert r.json() == {
        "msg": [
            {"cpf_cnpj": "000" + DS.expected_cpfs(lead)[0], "nome": DS.by_phone[lead.phone].name}
        ]
    }
    stranger = lead_of("not_found", phone=True)
    assert work_get(work_http, "phone", stranger.phone).json() == {"msg": []}


def test_work_error_scenario(work_http: httpx.Client) -> None:
    people = {p.work_fault: p for p in DS.people if p.work_fault}
    r = work_get(work_http, "cpf", people["not_found"].cpf)
    assert (r.status_code, r.json()["status"]) == (200, 404)
    r = work_get(work_http, "cpf", people["error"].cpf)
    assert r.status_code == 500
    healthy = DS.expected_cpfs(lead_of("same_person"))[0]
    forced = work_get(work_http, "cpf", healthy, headers={"X-Emulator-Scenario": "work_error"})
    assert forced.status_code == 500
    spared = work_get(work_http, "cpf", people["error"].cpf, headers={"X-Emulator-Scenario": "ok"})
    assert spared.status_code == 200  # the header replaces the person's own scenario


@pytest.mark.parametrize("http_status", [200, 429])
def test_work_quota_exhaustion(work_http: httpx.Client, http_status: int) -> None:
    patch = {"quota": {"credits": 2, "http_status": http_status}}
    assert work_http.put("/_emulator/config", json=patch).status_code == 200
    cpf = DS.expected_cpfs(lead_of("same_person"))[0]
    assert [work_get(work_http, "cpf", cpf).status_code for _ in range(2)] == [200, 200]
    r = work_get(work_http, "cpf", cpf)
    assert r.status_code == http_status
    assert r.json() == {"code": 429, "message": "not enough credits", "required": 1, "remaining": 0}
    assert work_http.get("/_emulator/stats").json()["routes"][WORK_API]["quota_exhausted"] == 1
    work_http.post("/_emulator/reset?keep_config=true")
    assert work_get(work_http, "cpf", cpf).status_code == 200  # credits restored


def test_work_rate_limit(work_http: httpx.Client) -> None:
    work_http.put("/_emulator/config", json={"rate_limit": {"rate_per_s": 0.001, "burst": 1}})
    cpf = DS.people[0].cpf
    assert work_get(work_http, "cpf", cpf).status_code == 200
    r = work_get(work_http, "cpf", cpf)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # A bad token is refused before the bucket is consulted.
    assert work_get(work_http, "cpf", cpf, token="x").json()["status"] == 403


def test_admin_health_and_config_shape(work_http: httpx.Client) -> None:
    h = work_http.get("/_emulator/health").json()
    assert h == {
        "status": "ok", "upstream": "work", "profile": "nominal", "seed": 42,
        "leads": len(DS), "latency_scale": 0.0,
    }  # fmt: skip
    cfg = work_http.get("/_emulator/config").json()
    expected = faults.profile_config("work", "nominal").latency_ms
    assert (cfg["latency_ms"]["p50"], cfg["latency_ms"]["p95"]) == (expected.p50, expected.p95)
    assert cfg["quota"]["credits"] == 1_000_000


# --- the real process -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_process_serves_with_env_credentials() -> None:
    port = free_port()
    env = {**os.environ, "EMULATOR_WORK_TOKEN": "rotated-token", "EMULATOR_LATENCY_SCALE": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.emulators", "work", "--port", str(port),
         "--profile", "degraded", "--seed", "42"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                health = httpx.get(f"{base}/_emulator/health", timeout=1)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "emulator never became healthy"
            time.sleep(0.1)
        assert health.json()["profile"] == "degraded" and health.json()["latency_scale"] == 0
        with httpx.Client(base_url=base, timeout=5) as client:
            client.put("/_emulator/config", json={"error_rate": 0, "hang_rate": 0})
            cpf = DS.expected_cpfs(lead_of("same_person"))[0]
            assert work_get(client, "cpf", cpf).json()["status"] == 403  # default token refused
            assert work_get(client, "cpf", cpf, token="rotated-token").json()["status"] == 200
            # degraded Work bucket: 0.5/s, burst 1 -> the immediate second call is limited
            assert work_get(client, "cpf", cpf, token="rotated-token").status_code == 429
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the captured SIGTERM.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)


def test_cli_rejects_bad_arguments() -> None:
    for args, needle in (
        (["chaos"], "invalid choice"),
        (["work", "--profile", "apocalypse"], "invalid choice"),
        (["work", "--port", "70000"], "--port must be 0-65535"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "service.emulators", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and needle in done.stderr, done.stderr
    env = {**os.environ, "EMULATOR_LATENCY_SCALE": "fast"}
    done = subprocess.run(
        [sys.executable, "-m", "service.emulators", "c2s", "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "EMULATOR_LATENCY_SCALE" in done.stderr
