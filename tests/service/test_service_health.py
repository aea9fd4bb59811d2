"""``/health`` tells the truth: not starved by a busy pool, ``degraded`` when writes fail.

One in-process app per test on its own SQLite file (real database, real faults: a trigger
that makes every ``lead_runs`` insert fail), the emulators as processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from perflib.run.stack import LocalStack
from service.app import create_app
from service.settings import Settings

HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        workdir=tmp_path_factory.mktemp("health"),
        emulator_env={"EMULATOR_LATENCY_SCALE": "0.01"},
    ) as s:
        for url in s.emulator_urls.values():
            HTTP.put(f"{url}/_emulator/config", json={"error_rate": 0.0}).raise_for_status()
        yield s


@asynccontextmanager
async def app_client(
    stack: LocalStack, db: Path, **over: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = Settings(
        c2s_base_url=stack.emulator_urls["c2s"],
        diretrix_base_url=stack.emulator_urls["diretrix"],
        work_api_url=stack.emulator_urls["work"],
        database_url=f"sqlite+aiosqlite:///{db}",
        health_db_cache_s=0,
        **over,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://s", timeout=60
        ) as client,
    ):
        yield app, client


async def test_health_answers_while_the_request_pool_is_exhausted(
    stack: LocalStack, tmp_path: Path
) -> None:
    pool = {"db_pool_size": 1, "db_pool_timeout_s": 0.5}
    async with app_client(stack, tmp_path / "svc.db", **pool) as (app, client):
        held = await app.state.engine.connect()  # the pool's only connection
        try:
            await held.exec_driver_sql("SELECT 1")
            r = await client.get("/health")
        finally:
            await held.close()
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "healthy"


async def test_failed_writes_make_health_degraded_until_writes_work(
    stack: LocalStack, tmp_path: Path
) -> None:
    db = tmp_path / "svc.db"
    lead = "0" * 32
    async with app_client(stack, db, health_write_failures=3) as (_, client):
        assert (await client.get("/health")).status_code == 200
        with sqlite3.connect(db) as conn:  # every lead_runs insert now fails in the database
            conn.execute(
                "CREATE TRIGGER fault_runs BEFORE INSERT ON lead_runs "
                "BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END"
            )
        bodies = [
            (await client.get("/api/v1/leads/process", params={"id": lead})).json()
            for _ in range(3)
        ]
        degraded = await client.get("/health")
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER fault_runs")
        recovered = await client.get("/health")  # the probe write succeeds: no traffic needed
    for b in bodies:
        assert b["success"] is False
        assert b["message"].startswith("Database unavailable: IntegrityError")
    assert degraded.status_code == 503
    assert degraded.json() == {
        "status": "degraded",
        "service": "c2s-enrichment-api",
        "version": "0.1.0",
        "db": "ok",
        "writes": "failing",
        "reason": "4 consecutive failed writes, last: IntegrityError (IntegrityError)",
    }
    assert "injected" not in degraded.text
    assert recovered.status_code == 200
    assert recovered.json()["status"] == "healthy"
