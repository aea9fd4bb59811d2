"""Failures at every step, each followed by a retry, against the real service process.

The service runs as its own process (``python -m service`` through ``LocalStack``) over
loopback HTTP, with the three emulators as processes; upstream faults are injected through
the emulators' admin API (``PUT /_emulator/config``), a failing store through a real
database trigger on ``party_addresses``, a database outage through a TCP proxy between the
service and PostgreSQL that the test cuts and restores. Every test runs on SQLite and on
PostgreSQL (a database of its own, created and dropped here). The invariant after each
retry: the lead's rows and its C2S message are present exactly once, and no ``lead_runs``
row is left ``processing``. Expectations come from the emulators' dataset.
"""

from __future__ import annotations

import csv
import itertools
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from perflib.run.stack import LocalStack
from service.emulators.dataset import get_dataset
from tests.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
LEADS = list(csv.DictReader((REPO / "data" / "leads.csv").open()))
QUIET = {"error_rate": 0.0, "hang_rate": 0.0, "rate_limit": None}
C2S_GET = "GET /integration/leads/{id}"
C2S_MESSAGE = "POST /integration/leads/{id}/create_message"
PHONE = "GET /Consultas/Pessoa/Telefone/{phone}"
EMAIL = "GET /Consultas/Pessoa/Email/{email}"
WORK = "GET /api"
PG = ("127.0.0.1", 5432)
HTTP = httpx.Client(timeout=60)

_pools = {
    s: itertools.cycle([r["lead_id"] for r in LEADS if r["scenario"] == s])
    for s in {r["scenario"] for r in LEADS}
}
_used: set[str] = set()


def next_lead(scenario: str) -> str:
    while True:
        lead = next(_pools[scenario])
        if lead not in _used:
            _used.add(lead)
            return lead


def _pg_up() -> bool:
    try:
        socket.create_connection(PG, timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class Backend:
    """The running stack and a direct (proxy-free) way to read and poke its database."""

    name: str
    stack: LocalStack
    sqlite_path: Path | None = None
    pg_db: str | None = None
    proxy: TcpProxy | None = None

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path, timeout=30) as conn:
                return conn.execute(statement.replace("%s", "?"), args).fetchall()
        import psycopg2

        conn = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname=self.pg_db)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, args or None)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def break_addresses(self) -> None:
        """A real database-side fault: every insert into party_addresses raises."""
        if self.sqlite_path is not None:
            self.sql(
                "CREATE TRIGGER fault_addresses BEFORE INSERT ON party_addresses "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
            return
        self.sql(
            "CREATE OR REPLACE FUNCTION fault_raise() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql"
        )
        self.sql(
            "CREATE TRIGGER fault_addresses BEFORE INSERT ON party_addresses "
            "FOR EACH ROW EXECUTE FUNCTION fault_raise()"
        )

    def repair_addresses(self) -> None:
        on = "" if self.sqlite_path is not None else " ON party_addresses"
        self.sql(f"DROP TRIGGER fault_addresses{on}")


def _stack(workdir: Path, database_url: str, **env: str) -> LocalStack:
    return LocalStack(
        workdir=workdir,
        database_url=database_url,
        service_env={"C2S_TIMEOUT_S": "3", "WORK_TIMEOUT_S": "3", **env},
        emulator_env={"EMULATOR_LATENCY_SCALE": "0.01"},
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    work = tmp_path_factory.mktemp(f"faults-{request.param}")
    if request.param == "sqlite":
        path = work / "service.db"
        with _stack(work, f"sqlite+aiosqlite:///{path}") as stack:
            yield Backend("sqlite", stack, sqlite_path=path)
        return
    if not _pg_up():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    db = f"svc_faults_{uuid.uuid4().hex[:12]}"
    subprocess.run(["createdb", "-h", PG[0], "-U", "postgres", db], check=True)
    try:
        with TcpProxy(*PG) as proxy:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{db}"
            with _stack(work, url) as stack:
                yield Backend("postgresql", stack, pg_db=db, proxy=proxy)
    finally:
        subprocess.run(
            ["dropdb", "-h", PG[0], "-U", "postgres", "--force", "--if-exists", db], check=False
        )


@pytest.fixture(autouse=True)
def quiet(backend: Backend) -> Iterator[None]:
    reset(backend)
    yield
    reset(backend)


def reset(backend: Backend) -> None:
    for url in backend.stack.emulator_urls.values():
        HTTP.post(f"{url}/_emulator/reset", params={"keep_config": "false"}).raise_for_status()
        HTTP.put(f"{url}/_emulator/config", json=QUIET).raise_for_status()


def configure(backend: Backend, upstream: str, patch: dict[str, Any]) -> None:
    url = backend.stack.emulator_urls[upstream]
    HTTP.put(f"{url}/_emulator/config", json=patch).raise_for_status()


def messages(backend: Backend, lead_id: str) -> list[str]:
    r = HTTP.get(f"{backend.stack.emulator_urls['c2s']}/_emulator/leads/{lead_id}/messages")
    return [m["body"] for m in r.raise_for_status().json()["messages"]]


def calls(backend: Backend, upstream: str, route: str) -> int:
    stats = HTTP.get(f"{backend.stack.emulator_urls[upstream]}/_emulator/stats").json()
    return stats["routes"].get(route, {}).get("calls", 0)


def process(backend: Backend, lead_id: str) -> dict[str, Any]:
    r = HTTP.get(f"{backend.stack.base_url}/api/v1/leads/process", params={"id": lead_id})
    assert r.status_code == 200, r.text
    return r.json()


def success(lead_id: str, cpfs: list[str]) -> dict[str, Any]:
    n = len(cpfs)
    return {
        "success": True,
        "message": f"Successfully processed and enriched lead. Stored {n} entities in database.",
        "lead_id": lead_id,
        "cpfs_processed": cpfs,
        "entities_stored": n,
    }


def assert_stored_once(backend: Backend, lead_id: str, cpfs: list[str]) -> None:
    """Every person of the lead is stored, once, with every address and contact."""
    ds = get_dataset()
    for cpf in cpfs:
        [(party_id,)] = backend.sql("SELECT id FROM parties WHERE cpf = %s", cpf)
        dossier = ds.dossier(cpf)
        assert dossier is not None
        n_addr = backend.sql("SELECT count(*) FROM party_addresses WHERE party_id = %s", party_id)
        assert n_addr == [(len(dossier["enderecos"]),)]
        n_contacts = backend.sql(
            "SELECT count(*) FROM party_contacts WHERE party_id = %s", party_id
        )
        assert n_contacts == [(len(dossier["telefones"]) + len(dossier["emails"]),)]
        enr = backend.sql("SELECT count(*) FROM party_enrichments WHERE party_id = %s", party_id)
        assert enr == [(1,)]
    links = backend.sql("SELECT count(*) FROM lead_parties WHERE lead_id = %s", lead_id)
    assert links == [(len(cpfs),)]


def run_statuses(backend: Backend, lead_id: str) -> list[str]:
    rows = backend.sql(
        "SELECT status FROM lead_runs WHERE lead_id = %s ORDER BY started_at", lead_id
    )
    return [r[0] for r in rows]


# --- a failure at each step, then a retry ---------------------------------------------------

UPSTREAM_FAULTS = {
    # failure point: (upstream, route, expected message of the failed attempt)
    "c2s_fetch": ("c2s", C2S_GET, "Failed to fetch lead from C2S: C2S API returned HTTP 503"),
    "diretrix_phone": (
        "diretrix",
        PHONE,
        "Failed to look up CPF with Diretrix: Diretrix API returned HTTP 503",
    ),
    "diretrix_email": (
        "diretrix",
        EMAIL,
        "Failed to look up CPF with Diretrix: Diretrix API returned HTTP 503",
    ),
    "work": ("work", WORK, "Failed to enrich any CPFs"),
    "send": (
        "c2s",
        C2S_MESSAGE,
        "Enriched data but failed to send to C2S: C2S API returned HTTP 503",
    ),
}


@pytest.mark.parametrize("point", list(UPSTREAM_FAULTS))
def test_upstream_failure_then_retry(point: str, backend: Backend) -> None:
    upstream, route, message = UPSTREAM_FAULTS[point]
    lead_id = next_lead("different_people")
    cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
    configure(
        backend, upstream, {"routes": {route: {"error_rate": 1.0, "error_statuses": {"503": 1.0}}}}
    )
    first = process(backend, lead_id)
    assert first == {"success": False, "message": message, "lead_id": lead_id}
    assert messages(backend, lead_id) == []
    work_calls = calls(backend, "work", WORK)
    reset(backend)  # the upstream is back

    second = process(backend, lead_id)
    assert second == success(lead_id, cpfs)
    [body] = messages(backend, lead_id)
    for cpf in cpfs:
        assert f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}" in body or cpf in body
    assert_stored_once(backend, lead_id, cpfs)
    assert run_statuses(backend, lead_id) == ["failed", "completed"]
    if point == "send":
        # Work answered in the failed attempt: the retry reuses those payloads
        assert work_calls == len(cpfs) and calls(backend, "work", WORK) == 0
    # and a third request within the window is the recent-CPF answer, nothing re-posted
    third = process(backend, lead_id)
    assert third["message"] == "CPFs already recently processed (deduplication)"
    assert len(messages(backend, lead_id)) == 1


def test_one_of_two_work_calls_failing_fails_the_lead_and_the_retry_finishes_it(
    backend: Backend,
) -> None:
    lead_id = next_lead("different_people")
    cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
    # one token: the first CPF's call passes, the second is rate limited
    configure(
        backend, "work", {"rate_limit": {"rate_per_s": 0.001, "burst": 1, "retry_after_s": 1}}
    )
    first = process(backend, lead_id)
    assert first["success"] is False
    assert first["message"].startswith("Failed to enrich 1 of 2 CPFs: Work API returned HTTP 429")
    assert messages(backend, lead_id) == []
    assert backend.sql("SELECT count(*) FROM lead_parties WHERE lead_id = %s", lead_id) == [(0,)]
    reset(backend)
    time.sleep(1.2)  # the Retry-After the service was told to honour
    assert process(backend, lead_id) == success(lead_id, cpfs)
    assert calls(backend, "work", WORK) == 1  # only the CPF that failed is fetched again
    assert len(messages(backend, lead_id)) == 1
    assert_stored_once(backend, lead_id, cpfs)


def test_store_failure_then_retry(backend: Backend) -> None:
    lead_id = next_lead("different_people")
    cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
    backend.break_addresses()
    try:
        first = process(backend, lead_id)
    finally:
        backend.repair_addresses()
    assert first["success"] is False
    assert first["message"].startswith("Enriched data but failed to store it in database: ")
    assert "injected fault" not in first["message"]  # database text never reaches callers
    assert set(first) == {"success", "message", "lead_id"}
    assert messages(backend, lead_id) == []  # nothing posted for data that was not stored
    for cpf in cpfs:  # one transaction per person: nothing half-written
        assert backend.sql("SELECT count(*) FROM parties WHERE cpf = %s", cpf) == [(0,)]
    [(status, error)] = backend.sql(
        "SELECT status, error FROM lead_runs WHERE lead_id = %s", lead_id
    )
    assert (status, error) == ("failed", first["message"])

    assert process(backend, lead_id) == success(lead_id, cpfs)
    assert len(messages(backend, lead_id)) == 1
    assert_stored_once(backend, lead_id, cpfs)
    assert run_statuses(backend, lead_id) == ["failed", "completed"]


# --- the in-flight guard ------------------------------------------------------------------


def insert_marker(backend: Backend, lead_id: str, age_s: float) -> None:
    """A ``processing`` row as another (or a crashed) process would have left it."""
    if backend.sqlite_path is not None:
        from datetime import UTC, datetime, timedelta

        started = (datetime.now(UTC) - timedelta(seconds=age_s)).replace(tzinfo=None)
        backend.sql(
            "INSERT INTO lead_runs (id, lead_id, started_at, status) VALUES (?, ?, ?, ?)",
            uuid.uuid4().hex,
            lead_id,
            started.isoformat(sep=" "),
            "processing",
        )
        return
    backend.sql(
        "INSERT INTO lead_runs (id, lead_id, started_at, status) "
        "VALUES (%s, %s, now() - make_interval(secs => %s), 'processing')",
        str(uuid.uuid4()),
        lead_id,
        age_s,
    )


def test_a_dead_process_marker_expires_after_the_request_timeout_plus_margin(
    backend: Backend,
) -> None:
    # defaults: REQUEST_TIMEOUT_S 30 + IN_FLIGHT_MARGIN_S 10 = 40 s, not the old 300 s
    live, dead = next_lead("same_person"), next_lead("same_person")
    insert_marker(backend, live, 20)
    insert_marker(backend, dead, 45)
    blocked = process(backend, live)
    assert blocked["success"] is True and blocked["duplicate_request"] is True
    assert blocked["message"].startswith("Lead already being processed (started 2")
    assert messages(backend, live) == []
    taken = process(backend, dead)
    cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[dead])
    assert taken == success(dead, cpfs)
    assert sorted(run_statuses(backend, dead)) == ["abandoned", "completed"]


def test_database_cut_under_traffic_then_every_lead_processes_normally(
    backend: Backend,
) -> None:
    if backend.proxy is None:
        pytest.skip("the database outage goes through the PostgreSQL proxy")
    from concurrent.futures import ThreadPoolExecutor

    leads = [next_lead("different_people") for _ in range(6)]
    leads += [next_lead("same_person") for _ in range(6)]
    # 300 ms per C2S call (× the 0.01 latency scale): requests are in flight at the cut
    slow = {"latency_ms": {"dist": "fixed", "p50": 30000, "p95": 30000, "max": 60000}}
    configure(backend, "c2s", {"routes": {C2S_GET: slow, C2S_MESSAGE: slow}})
    url = f"{backend.stack.base_url}/api/v1/leads/process"

    def one(lead_id: str) -> dict[str, Any]:
        with httpx.Client(timeout=60) as c:
            return c.get(url, params={"id": lead_id}).json()

    with ThreadPoolExecutor(len(leads)) as pool:
        futures = [pool.submit(one, lead) for lead in leads[:6]]
        time.sleep(0.45)
        backend.proxy.cut()
        futures += [pool.submit(one, lead) for lead in leads[6:]]  # start during the outage
        time.sleep(3)
        backend.proxy.restore()
        during = [f.result() for f in futures]
    assert not any(b.get("duplicate_request") for b in during)
    assert any(b["success"] is False for b in during)  # the outage was felt

    # once the database is back, the service closes the markers it could not close
    deadline = time.monotonic() + 30
    while open_runs := [lead for lead in leads if "processing" in run_statuses(backend, lead)]:
        assert time.monotonic() < deadline, f"markers never closed: {open_runs}"
        time.sleep(0.5)
    reset(backend)
    for lead_id, first in zip(leads, during, strict=True):
        again = process(backend, lead_id)
        assert again["success"] is True, (first, again)
        assert "duplicate_request" not in again
        if first["success"]:
            assert again["message"] == "CPFs already recently processed (deduplication)"
        cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
        assert len(messages(backend, lead_id)) == 1, lead_id
        assert_stored_once(backend, lead_id, cpfs)
    health = HTTP.get(f"{backend.stack.base_url}/health")
    assert health.status_code == 200, health.text


def test_a_run_the_database_would_not_close_is_closed_once_it_can(backend: Backend) -> None:
    lead_id = next_lead("same_person")
    cpfs = get_dataset().expected_cpfs(get_dataset().lead_by_id[lead_id])
    if backend.sqlite_path is not None:
        backend.sql(
            "CREATE TRIGGER fault_close BEFORE UPDATE ON lead_runs "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
    else:
        backend.sql(
            "CREATE OR REPLACE FUNCTION fault_raise() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql"
        )
        backend.sql(
            "CREATE TRIGGER fault_close BEFORE UPDATE ON lead_runs "
            "FOR EACH ROW EXECUTE FUNCTION fault_raise()"
        )
    try:
        first = process(backend, lead_id)  # stored and posted; only its close fails
        assert first == success(lead_id, cpfs)
        assert run_statuses(backend, lead_id) == ["processing"]
        # the open marker is this process's own finished run: it does not block the lead
        again = process(backend, lead_id)
        assert again["message"] == "CPFs already recently processed (deduplication)"
    finally:
        on = "" if backend.sqlite_path is not None else " ON lead_runs"
        backend.sql(f"DROP TRIGGER fault_close{on}")
    deadline = time.monotonic() + 30
    while "processing" in run_statuses(backend, lead_id):
        assert time.monotonic() < deadline, "the deferred close never happened"
        time.sleep(0.25)
    assert sorted(run_statuses(backend, lead_id)) == ["completed", "deduplicated"]
    assert len(messages(backend, lead_id)) == 1
