"""The service end to end against the real emulators over loopback HTTP.

The emulators run as processes (through ``LocalStack``, with latencies × 0.01 and random
faults switched off so outcomes are deterministic); faults are injected per test through
their admin API. Most tests drive an in-process app (``httpx.ASGITransport``) so each can use
its own settings and database; the concurrency, metrics and secrets tests use the stack's
real service process. Expectations come from the emulators' dataset, not from the service.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import re
import shutil
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from perflib.run.stack import LocalStack
from service import storage
from service.app import create_app
from service.emulators.dataset import get_dataset
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
LEADS = list(csv.DictReader((REPO / "data" / "leads.csv").open()))
SECRETS = {
    "C2S_TOKEN": "tok-c2s-7f3a9b1e5d",
    "DIRETRIX_USER": "user-4410",
    "DIRETRIX_PASS": "pass-2c8e6a0f4b",
    "WORK_API": "tok-work-91d5e3c7a2",
}
QUIET = {"error_rate": 0.0, "hang_rate": 0.0}
C2S_GET = "GET /integration/leads/{id}"
C2S_MESSAGE = "POST /integration/leads/{id}/create_message"
WORK = "GET /api"

# One client for the admin calls: a fresh httpx client per call costs ~0.1 s (TLS context).
HTTP = httpx.Client(timeout=60)

_pools = {
    s: itertools.cycle([r["lead_id"] for r in LEADS if r["scenario"] == s])
    for s in {r["scenario"] for r in LEADS}
}
_used: set[str] = set()


def next_lead(scenario: str) -> str:
    """A lead of this scenario no other test in this module has used."""
    while True:
        lead = next(_pools[scenario])
        if lead not in _used:
            _used.add(lead)
            return lead


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("stack")
    env = dict(SECRETS, LOG_LEVEL="debug", C2S_TIMEOUT_S="5", WORK_TIMEOUT_S="5")
    with LocalStack(
        workdir=work, service_env=env, emulator_env={"EMULATOR_LATENCY_SCALE": "0.01"}
    ) as s:
        yield s
    HTTP.close()


@pytest.fixture(autouse=True)
def quiet_emulators(stack: LocalStack) -> Iterator[None]:
    """Deterministic upstreams for every test; restored afterwards."""

    def reset() -> None:
        for url in stack.emulator_urls.values():
            HTTP.post(f"{url}/_emulator/reset", params={"keep_config": "false"}).raise_for_status()
            HTTP.put(f"{url}/_emulator/config", json=QUIET).raise_for_status()

    reset()
    yield


def configure(stack: LocalStack, upstream: str, patch: dict[str, Any]) -> None:
    HTTP.put(f"{stack.emulator_urls[upstream]}/_emulator/config", json=patch).raise_for_status()


def messages(stack: LocalStack, lead_id: str) -> list[str]:
    r = HTTP.get(f"{stack.emulator_urls['c2s']}/_emulator/leads/{lead_id}/messages")
    r.raise_for_status()
    return [m["body"] for m in r.json()["messages"]]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"

    async def make() -> None:
        eng = storage.create_engine(f"sqlite+aiosqlite:///{path}")
        await storage.migrate(eng)
        await eng.dispose()

    asyncio.run(make())
    return path


@pytest.fixture
def db_path(template_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "service.db"
    shutil.copy(template_db, path)
    return path


def settings_for(stack: LocalStack, database_url: str, **over: Any) -> Settings:
    env = {k.lower(): v for k, v in SECRETS.items()}
    return Settings(
        c2s_base_url=stack.emulator_urls["c2s"],
        diretrix_base_url=stack.emulator_urls["diretrix"],
        work_api_url=stack.emulator_urls["work"],
        database_url=database_url,
        **(env | over),
    )


@asynccontextmanager
async def service(
    stack: LocalStack, db_path: Path, **over: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(stack, f"sqlite+aiosqlite:///{db_path}", **over))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service", timeout=60
        ) as client,
    ):
        yield client


def db_rows(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, args).fetchall()


def data_rows(db_path: Path) -> dict[str, int]:
    tables = (
        "parties",
        "party_financials",
        "party_contacts",
        "party_addresses",
        "party_enrichments",
        "lead_parties",
    )
    return {t: db_rows(db_path, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


async def process(client: httpx.AsyncClient, lead_id: str) -> dict[str, Any]:
    r = await client.get("/api/v1/leads/process", params={"id": lead_id})
    assert r.status_code == 200, r.text
    return r.json()


# --- every scenario of data/leads.csv ---------------------------------------------------------

SUCCESS = ("same_person", "different_people", "phone_only", "email_only")


@pytest.mark.parametrize("scenario", sorted({r["scenario"] for r in LEADS}))
async def test_scenario(scenario: str, stack: LocalStack, db_path: Path) -> None:
    lead_id = next_lead(scenario)
    ds = get_dataset()
    lead = ds.lead_by_id[lead_id]
    cpfs = ds.expected_cpfs(lead)
    async with service(stack, db_path) as client:
        body = await process(client, lead_id)
    posted = messages(stack, lead_id)
    runs = db_rows(
        db_path, "SELECT status, step_ms, error FROM lead_runs WHERE lead_id = ?", lead_id
    )
    assert len(runs) == 1
    status, step_ms, error = runs[0]

    if scenario in SUCCESS:
        n = len(cpfs)
        assert body == {
            "success": True,
            "message": f"Successfully processed and enriched lead. Stored {n} entities in database.",
            "lead_id": lead_id,
            "cpfs_processed": cpfs,
            "entities_stored": n,
        }
        assert status == "completed" and error is None
        assert set(json.loads(step_ms)) == {"0", "1", "2", "3", "4", "5", "6"}
        [msg] = posted
        assert msg.startswith("📞📧 Telefone e e-mail da mesma pessoa\n\n") == (
            scenario == "same_person"
        )
        assert msg.count("\n---\n\n") == n - 1
        for cpf in cpfs:
            dossier = ds.dossier(cpf)
            assert dossier is not None
            renda = float(dossier["DadosEconomicos"]["renda"].replace(",", "."))
            assert f"CPF: {cpf}\n" in msg
            assert f"Nome: {dossier['DadosBasicos']['nome']}\n" in msg
            assert f"Renda: R$ {renda * 1.9:.2f}\n" in msg
        stored = {r[0] for r in db_rows(db_path, "SELECT cpf FROM parties")}
        assert stored == set(cpfs)
        linked = db_rows(db_path, "SELECT count(*) FROM lead_parties WHERE lead_id = ?", lead_id)
        assert linked == [(n,)]
    elif scenario == "not_found":
        assert body == {
            "success": False,
            "message": "Could not find CPF from phone or email",
            "lead_id": lead_id,
        }
        assert posted == [] and status == "failed"
        assert set(data_rows(db_path).values()) == {0}
    elif scenario == "work_error":
        assert body == {
            "success": False,
            "message": "Failed to enrich any CPFs",
            "lead_id": lead_id,
        }
        assert posted == [] and status == "failed"
        assert set(data_rows(db_path).values()) == {0}
    elif scenario == "send_error":
        assert body == {
            "success": False,
            "message": "Enriched data but failed to send to C2S: C2S API returned HTTP 500",
            "lead_id": lead_id,
        }
        assert posted == [] and status == "failed"
        # the original stores before sending: the data is kept
        assert {r[0] for r in db_rows(db_path, "SELECT cpf FROM parties")} == set(cpfs)
    else:  # pragma: no cover - a new scenario in the dataset must get a test
        pytest.fail(f"no expectation for scenario {scenario!r}")


async def test_recent_cpf_is_skipped_and_processing_twice_never_duplicates(
    stack: LocalStack, db_path: Path
) -> None:
    lead_id = next_lead("same_person")
    [cpf] = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
    async with service(stack, db_path) as client:
        first = await process(client, lead_id)
        counts = data_rows(db_path)
        second = await process(client, lead_id)
    assert first["success"] is True
    assert second == {
        "success": True,
        "message": "CPFs already recently processed (deduplication)",
        "lead_id": lead_id,
        "cpfs_processed": [cpf],
        "entities_stored": 0,
    }
    assert len(messages(stack, lead_id)) == 1
    # With the dedup window off, a second full enrichment updates rows instead of adding them.
    async with service(stack, db_path, recent_cpf_window_s=0) as client:
        third = await process(client, lead_id)
    assert third["entities_stored"] == 1
    assert data_rows(db_path) == counts
    assert len(messages(stack, lead_id)) == 2
    statuses = [r[0] for r in db_rows(db_path, "SELECT status FROM lead_runs ORDER BY started_at")]
    assert statuses == ["completed", "deduplicated", "completed"]


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?id=", "?id=%20%20", "?other=1"])
async def test_missing_id_is_400(query: str, stack: LocalStack, db_path: Path) -> None:
    async with service(stack, db_path) as client:
        r = await client.get("/api/v1/leads/process" + query)
    assert r.status_code == 400
    assert r.content == b'{"error":"Missing \'id\' parameter"}'
    assert db_rows(db_path, "SELECT count(*) FROM lead_runs") == [(0,)]


@pytest.mark.parametrize("bad", ["a b", "../etc/passwd", "x" * 65, "lead;drop", "ação"])
async def test_malformed_id_is_400_with_a_clear_message(
    bad: str, stack: LocalStack, db_path: Path
) -> None:
    async with service(stack, db_path) as client:
        r = await client.get("/api/v1/leads/process", params={"id": bad})
    assert r.status_code == 400
    assert r.json() == {
        "error": "Invalid 'id' parameter: expected 1 to 64 letters, digits, '-' or '_'"
    }


async def test_unknown_lead(stack: LocalStack, db_path: Path) -> None:
    async with service(stack, db_path) as client:
        body = await process(client, "0" * 32)
    assert body == {
        "success": False,
        "message": "Failed to fetch lead from C2S: C2S API returned HTTP 404",
        "lead_id": "0" * 32,
    }


@pytest.mark.parametrize(
    ("patch", "detail"),
    [
        ({"error_rate": 1.0, "error_statuses": {"500": 1.0}}, "returned HTTP 500"),
        (
            {"rate_limit": {"rate_per_s": 0.001, "burst": 1, "retry_after_s": 60}},
            "returned HTTP 429 (rate limited, retry after 60 s)",
        ),
        ({"hang_rate": 1.0, "hang_ms": 20000}, "timed out after 0.5 s"),
    ],
    ids=["500", "429", "hang"],
)
async def test_c2s_fetch_failures(
    patch: dict[str, Any], detail: str, stack: LocalStack, db_path: Path
) -> None:
    lead_id = next_lead("same_person")
    if "rate_limit" in patch:
        configure(stack, "c2s", patch)
        # spend the single token so the service's call is the one limited
        HTTP.get(
            f"{stack.emulator_urls['c2s']}/integration/leads/{next_lead('same_person')}",
            headers={"Authorization": f"Bearer {SECRETS['C2S_TOKEN']}"},
        )
    else:
        configure(stack, "c2s", {"routes": {C2S_GET: patch}})
    async with service(stack, db_path, c2s_timeout_s=0.5) as client:
        body = await process(client, lead_id)
    assert body == {
        "success": False,
        "message": f"Failed to fetch lead from C2S: C2S API {detail}",
        "lead_id": lead_id,
    }
    assert messages(stack, lead_id) == []
    assert set(data_rows(db_path).values()) == {0}
    assert db_rows(db_path, "SELECT status, error FROM lead_runs") == [("failed", body["message"])]


@pytest.mark.parametrize(
    "patch",
    [{"error_rate": 1.0, "error_statuses": {"503": 1.0}}, {"hang_rate": 1.0, "hang_ms": 20000}],
    ids=["500", "hang"],
)
async def test_work_failures_write_nothing(
    patch: dict[str, Any], stack: LocalStack, db_path: Path
) -> None:
    lead_id = next_lead("different_people")
    configure(stack, "work", {"routes": {WORK: patch}})
    async with service(stack, db_path, work_timeout_s=0.5) as client:
        body = await process(client, lead_id)
    assert body == {"success": False, "message": "Failed to enrich any CPFs", "lead_id": lead_id}
    assert messages(stack, lead_id) == []
    assert set(data_rows(db_path).values()) == {0}


async def test_diretrix_outage_fails_the_lead(stack: LocalStack, db_path: Path) -> None:
    # a failed lookup is not a "not found": the lead's people are unknown, nothing is posted
    lead_id = next_lead("same_person")
    configure(stack, "diretrix", {"error_rate": 1.0, "error_statuses": {"500": 1.0}})
    async with service(stack, db_path) as client:
        body = await process(client, lead_id)
    assert body == {
        "success": False,
        "message": "Failed to look up CPF with Diretrix: Diretrix API returned HTTP 500",
        "lead_id": lead_id,
    }
    assert messages(stack, lead_id) == []


async def test_send_hang_hits_the_per_call_timeout(stack: LocalStack, db_path: Path) -> None:
    lead_id = next_lead("phone_only")
    configure(stack, "c2s", {"routes": {C2S_MESSAGE: {"hang_rate": 1.0, "hang_ms": 20000}}})
    async with service(stack, db_path, c2s_timeout_s=0.5) as client:
        body = await process(client, lead_id)
    assert body == {
        "success": False,
        "message": "Enriched data but failed to send to C2S: C2S API timed out after 0.5 s",
        "lead_id": lead_id,
    }


async def test_overall_deadline_cuts_a_slow_request(stack: LocalStack, db_path: Path) -> None:
    lead_id = next_lead("same_person")
    configure(stack, "work", {"routes": {WORK: {"hang_rate": 1.0, "hang_ms": 20000}}})
    async with service(stack, db_path, pipeline_deadline_s=0.5) as client:
        body = await process(client, lead_id)
    assert body == {"success": False, "message": "Failed to enrich any CPFs", "lead_id": lead_id}


async def test_request_timeout_answers_504(stack: LocalStack, db_path: Path) -> None:
    lead_id = next_lead("same_person")
    configure(stack, "c2s", {"routes": {C2S_GET: {"hang_rate": 1.0, "hang_ms": 20000}}})
    async with service(stack, db_path, request_timeout_s=0.5) as client:
        r = await client.get("/api/v1/leads/process", params={"id": lead_id})
    assert r.status_code == 504
    assert r.json() == {"error": "Request timed out after 0.5 s"}
    # the run is closed, not left "processing"
    assert db_rows(db_path, "SELECT status, error FROM lead_runs") == [
        ("failed", "request cancelled")
    ]


async def test_body_size_limit(stack: LocalStack, db_path: Path) -> None:
    async with service(stack, db_path, max_body_bytes=100) as client:
        r = await client.post("/api/v1/leads/process?id=abc", content=b"x" * 101)
    assert r.status_code == 413
    assert r.json() == {"error": "Request body over 100 bytes"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_database_down(stack: LocalStack) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/test"
    app = create_app(settings_for(stack, url, health_db_timeout_s=1))
    lead_id = next_lead("phone_only")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client,
    ):
        r = await client.get("/health")
        body = await process(client, lead_id)
    assert r.status_code == 503
    assert r.json() == {
        "status": "unhealthy",
        "service": "c2s-enrichment-api",
        "version": "0.1.0",
        "db": "error",
        "reason": "ping: connection failed (ConnectionRefusedError)",
    }
    # no guard and no storage: the lead fails at once, before any upstream call or message
    assert body == {
        "success": False,
        "message": "Database unavailable: connection failed (ConnectionRefusedError)",
        "lead_id": lead_id,
    }
    assert messages(stack, lead_id) == []


async def test_health_ok(stack: LocalStack, db_path: Path) -> None:
    async with service(stack, db_path) as client:
        r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "healthy",
        "service": "c2s-enrichment-api",
        "version": "0.1.0",
        "db": "ok",
    }


# --- the real service process -------------------------------------------------------------------


async def test_same_lead_ten_times_at_once_enriches_once(stack: LocalStack) -> None:
    lead_id = next_lead("same_person")
    # slow the C2S fetch so all ten requests overlap the first one
    configure(
        stack,
        "c2s",
        {
            "latency_scale": 1.0,
            "routes": {C2S_GET: {"latency_ms": {"dist": "fixed", "p50": 800, "p95": 800}}},
        },
    )
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        bodies = [
            r.json()
            for r in await asyncio.gather(
                *(client.get("/api/v1/leads/process", params={"id": lead_id}) for _ in range(10))
            )
        ]
    # The invariant: one enrichment. A request arriving after the first finished (a very
    # loaded machine) gets the recent-CPF answer instead of the in-flight one; both are fine.
    dedup = "CPFs already recently processed (deduplication)"
    enriched = [b for b in bodies if b["message"].startswith("Successfully processed")]
    dupes = [b for b in bodies if b.get("duplicate_request")]
    late = [b for b in bodies if b["message"] == dedup]
    assert len(enriched) == 1 and enriched[0]["success"] is True
    assert len(dupes) + len(late) == 9 and len(dupes) >= 1
    for b in dupes:
        assert b["success"] is True
        assert re.fullmatch(
            r"Lead already being processed \(started \d+ seconds ago\)\. Duplicate request blocked\.",
            b["message"],
        )
    assert len(messages(stack, lead_id)) == 1
    db = Path(stack.database_url.split("///", 1)[1])
    statuses = sorted(
        r[0] for r in db_rows(db, "SELECT status FROM lead_runs WHERE lead_id = ?", lead_id)
    )
    assert statuses == sorted(
        ["completed"] + ["duplicate"] * len(dupes) + ["deduplicated"] * len(late)
    )


def test_metrics_exposes_steps_requests_pool_and_process(stack: LocalStack) -> None:
    lead_id = next_lead("email_only")
    HTTP.get(f"{stack.base_url}/api/v1/leads/process", params={"id": lead_id}, timeout=30)
    text = HTTP.get(f"{stack.base_url}/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    for step in "0123456":
        assert samples[f'c2s_pipeline_step_duration_seconds_count{{step="{step}"}}'] >= 1
    assert (
        samples['http_requests_total{method="GET",route="/api/v1/leads/process",status="200"}'] >= 1
    )
    assert samples["db_pool_size"] == 10
    assert samples["db_pool_checked_out"] >= 0
    assert stack.service is not None
    rss = samples["process_resident_memory_bytes"]
    with open(f"/proc/{stack.service.pid}/status") as fh:
        vmrss = next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmRSS:"))
    assert abs(rss - vmrss) / vmrss < 0.25  # same process, sampled a moment apart
    assert samples["process_cpu_seconds_total"] > 0


def test_step_lines_and_no_secret_in_the_log(stack: LocalStack) -> None:
    # an error path and a success path, at LOG_LEVEL=debug
    leads = [next_lead(scenario) for scenario in ("work_error", "send_error", "different_people")]
    for lead in leads:
        HTTP.get(f"{stack.base_url}/api/v1/leads/process", params={"id": lead}, timeout=30)
    log = stack.service_log.read_text()
    steps = re.findall(r"Step (\d): [^\n(]+ \((\d+) ms\) lead=(\S+)", log)
    assert {s for s, _, _ in steps} == set("0123456")
    # every step line names its request's lead, so step times can be tied to requests
    assert {lead for _, _, lead in steps} >= set(leads)
    from perflib.analysis import parse_step_log

    parsed = parse_step_log(log)
    assert set(parsed["request"].dropna()) >= set(leads)
    for secret in SECRETS.values():
        assert secret not in log, "a credential leaked into the service log"
    assert "Authorization" not in log


@pytest.mark.postgres
async def test_enrichment_on_postgresql(stack: LocalStack) -> None:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import sqlalchemy as sa

    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    schema = f"svc_e2e_{uuid.uuid4().hex[:12]}"  # concurrent runs never collide
    admin = storage.create_engine(url, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        lead_id = next_lead("different_people")
        cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
        app = create_app(settings_for(stack, url, db_schema=schema))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c,
        ):
            assert (await c.get("/health")).status_code == 200
            body = await process(c, lead_id)
        assert body["success"] is True and body["entities_stored"] == 2
        async with admin.connect() as conn:
            got = (await conn.execute(sa.text(f'SELECT cpf FROM "{schema}".parties'))).scalars()
            assert sorted(got) == sorted(cpfs)
            runs = await conn.execute(sa.text(f'SELECT status FROM "{schema}".lead_runs'))
            assert runs.scalars().all() == ["completed"]
    finally:
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_large_responses_are_gzipped(stack: LocalStack, db_path: Path) -> None:
    async with service(stack, db_path) as client:
        r = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        small = await client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "c2s_pipeline_step_duration_seconds_bucket" in r.text  # httpx decoded it
    assert "content-encoding" not in small.headers
