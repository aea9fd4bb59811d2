"""Storage against SQLite and the real PostgreSQL: migrations, idempotent upserts, lead runs.

PostgreSQL tests run in a schema of their own (dropped afterwards) so concurrent test runs
on the shared server never collide; they skip, saying why, only when the server is down.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service import storage

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        eng = storage.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}", pool_size=2)
        await storage.migrate(eng)
        yield eng
        await eng.dispose()
        return
    if not _pg_up():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    schema = f"svc_test_{uuid.uuid4().hex[:12]}"
    admin = storage.create_engine(PG_URL, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng = storage.create_engine(PG_URL, pool_size=2, schema=schema)
    try:
        await storage.migrate(eng)
        yield eng
    finally:
        await eng.dispose()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def payload(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "DadosBasicos": {
            "nome": "JOAO PEREIRA",
            "cpf": "11144477735",
            "sexo": "M - MASCULINO",
            "dataNascimento": "15/08/1970",
            "nomeMae": "CLARA PEREIRA",
        },
        "DadosEconomicos": {
            "renda": "2000,00",
            "score": {"scoreCSBA": "650", "scoreCSBAFaixaRisco": "ALTO RISCO"},
        },
        "emails": [{"email": "Joao@Mail.com", "qualidade": "BOM"}, {"email": "j2@mail.com"}],
        "telefones": [{"telefone": "21999990000", "tipo": "CELULAR", "whatsapp": "SIM"}],
        "enderecos": [
            {"logradouro": "RUA A", "logradouroNumero": "10", "cep": "20000000", "uf": "RJ"}
        ],
    }
    base.update(over)
    return base


async def rows(engine: Any, table: sa.Table, **where: Any) -> list[dict[str, Any]]:
    q = sa.select(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(q)).all()]


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(storage.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == storage.HEAD_REVISION


async def test_migrations_create_every_table_and_are_idempotent(engine: Any) -> None:
    await storage.migrate(engine)  # second run: a no-op
    assert await storage.at_head(engine)
    assert await storage.current_revision(engine) == storage.HEAD_REVISION
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    assert {t.name for t in storage.ALL_TABLES} | {"alembic_version"} <= names


async def test_store_person_writes_transformed_rows(engine: Any) -> None:
    stored = await storage.store_person(engine, "11144477735", payload(), lead_id="lead-1")
    [party] = await rows(engine, storage.parties)
    assert party["id"] == stored.party_id
    assert (party["cpf"], party["sex"], party["full_name"]) == ("11144477735", "M", "JOAO PEREIRA")
    assert party["birth_date"].isoformat() == "1970-08-15"
    assert party["enriched"] is True
    [fin] = await rows(engine, storage.party_financials)
    assert Decimal(fin["reported_income"]) == Decimal("3800.00")  # 2000 × 1.9
    assert Decimal(fin["risk_score"]) == Decimal("0.70")
    assert fin["credit_score"] == 650
    contacts = {
        (c["contact_type"], c["value"]): c for c in await rows(engine, storage.party_contacts)
    }
    assert set(contacts) == {
        ("email", "joao@mail.com"),
        ("email", "j2@mail.com"),
        ("phone", "21999990000"),
    }
    assert contacts[("email", "joao@mail.com")]["is_primary"] is True
    assert contacts[("email", "joao@mail.com")]["is_verified"] is True
    assert contacts[("phone", "21999990000")]["is_whatsapp"] is True
    [enr] = await rows(engine, storage.party_enrichments)
    assert enr["raw_payload"]["DadosBasicos"]["cpf"] == "11144477735"
    links = await rows(engine, storage.lead_parties)
    assert [(r["lead_id"], r["party_id"]) for r in links] == [("lead-1", stored.party_id)]


async def test_storing_twice_never_duplicates_and_keeps_known_values(engine: Any) -> None:
    first = await storage.store_person(engine, "11144477735", payload(), lead_id="lead-1")
    before = await storage.table_counts(engine)
    # Second payload: no mother's name (must be kept), first email now second (primary moves).
    p2 = payload(emails=[{"email": "j2@mail.com"}, {"email": "JOAO@mail.com", "qualidade": "BOM"}])
    p2["DadosBasicos"] = {k: v for k, v in p2["DadosBasicos"].items() if k != "nomeMae"}
    second = await storage.store_person(engine, "11144477735", p2, lead_id="lead-1")
    assert second.party_id == first.party_id
    assert await storage.table_counts(engine) == before
    [party] = await rows(engine, storage.parties)
    assert party["mother_name"] == "CLARA PEREIRA"
    primaries = [c["value"] for c in await rows(engine, storage.party_contacts) if c["is_primary"]]
    assert sorted(primaries) == ["21999990000", "j2@mail.com"]
    # A third store from another lead links the same party once more, nothing else grows.
    await storage.store_person(engine, "11144477735", p2, lead_id="lead-2")
    after = await storage.table_counts(engine)
    assert after["lead_parties"] == before["lead_parties"] + 1
    assert {k: v for k, v in after.items() if k != "lead_parties"} == {
        k: v for k, v in before.items() if k != "lead_parties"
    }


async def test_concurrent_stores_of_one_cpf_make_one_party(engine: Any) -> None:
    await asyncio.gather(
        *(storage.store_person(engine, "11144477735", payload(), lead_id=f"l{i}") for i in range(5))
    )
    counts = await storage.table_counts(engine)
    assert counts["parties"] == 1
    assert counts["party_contacts"] == 3
    assert counts["lead_parties"] == 5


async def test_a_failing_store_leaves_nothing_half_written(engine: Any) -> None:
    bad = payload()
    bad["unserialisable"] = {1, 2}  # the raw payload insert (after the party) fails
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type differs by dialect
        await storage.store_person(engine, "11144477735", bad, lead_id="lead-x")
    assert set((await storage.table_counts(engine)).values()) == {0}


async def test_in_flight_guard_is_atomic_and_stale_runs_are_taken_over(engine: Any) -> None:
    run = await storage.begin_lead_run(engine, "lead-9")
    with pytest.raises(storage.LeadInFlightError) as err:
        await storage.begin_lead_run(engine, "lead-9")
    [holder] = await rows(engine, storage.lead_runs, id=run)
    started = holder["started_at"]
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    assert err.value.started_at == pytest.approx(started.timestamp(), abs=1e-3)
    results = await asyncio.gather(
        *(storage.begin_lead_run(engine, "lead-10") for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, uuid.UUID) for r in results) == 1
    assert sum(isinstance(r, storage.LeadInFlightError) for r in results) == 4
    await storage.record_lead_run(
        engine, lead_id="lead-9", status="completed", run_id=run, step_ms={"1": 12.5}, cpfs=["1"]
    )
    again = await storage.begin_lead_run(engine, "lead-9")  # finished runs do not block
    [r] = await rows(engine, storage.lead_runs, id=run)
    assert (r["status"], r["step_ms"], r["cpfs"]) == ("completed", {"1": 12.5}, ["1"])
    # a stale processing row (a killed process) is marked abandoned instead of blocking forever
    taken = await storage.begin_lead_run(engine, "lead-9", stale_after_s=-1)
    [old] = await rows(engine, storage.lead_runs, id=again)
    assert old["status"] == "abandoned"
    assert taken != again
