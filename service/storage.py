"""Database: schema (SQLAlchemy Core tables), engine, migrations and idempotent upserts.

SQLite (aiosqlite, the zero-set-up default) and PostgreSQL (asyncpg) share one schema
(docs/service.md#sources). Every write is an ``INSERT … ON CONFLICT`` on a natural key, so
processing the same lead twice updates rows instead of duplicating them; one person is
written in one transaction, so a failure leaves nothing half-written. ``lead_runs`` carries
the status and per-step timings of every request, and a partial unique index on
``lead_id WHERE status = 'processing'`` makes the in-flight guard atomic across processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

metadata = sa.MetaData()

parties = sa.Table(
    "parties",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("party_type", sa.Text, nullable=False, server_default="person"),
    sa.Column("cpf", sa.Text, nullable=False),
    sa.Column("full_name", sa.Text),
    sa.Column("canonical_name", sa.Text),
    sa.Column("sex", sa.String(1)),
    sa.Column("birth_date", sa.Date),
    sa.Column("mother_name", sa.Text),
    sa.Column("father_name", sa.Text),
    sa.Column("nationality", sa.Text),
    sa.Column("marital_status", sa.Text),
    sa.Column("education_level", sa.Text),
    sa.Column("enriched", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("enriched_at", TS),
    sa.Column("data_source", sa.Text, nullable=False, server_default="api"),
    sa.Column("metadata", JSONType, nullable=False, server_default="{}"),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("cpf", name="uq_parties_cpf"),
)

party_financials = sa.Table(
    "party_financials",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), nullable=False),
    sa.Column("financial_year", sa.Integer, nullable=False),
    sa.Column("reported_income", sa.Numeric(15, 2)),
    sa.Column("credit_score", sa.Integer),
    sa.Column("risk_score", sa.Numeric(3, 2)),
    sa.Column("source", sa.Text, nullable=False, server_default="api"),
    sa.Column("confidence", sa.Text, nullable=False, server_default="high"),
    sa.Column("metadata", JSONType, nullable=False, server_default="{}"),
    sa.UniqueConstraint("party_id", "financial_year", name="uq_party_financials_year"),
)

party_contacts = sa.Table(
    "party_contacts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), nullable=False),
    sa.Column("contact_type", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("is_primary", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_whatsapp", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("carrier", sa.Text),
    sa.Column("metadata", JSONType, nullable=False, server_default="{}"),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(
        "contact_type IN ('phone', 'email', 'whatsapp')", name="ck_party_contacts_type"
    ),
    sa.UniqueConstraint("party_id", "contact_type", "value", name="uq_party_contacts_value"),
)

party_addresses = sa.Table(
    "party_addresses",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), nullable=False),
    sa.Column("street_type", sa.Text),
    sa.Column("street", sa.Text, nullable=False, server_default=""),
    sa.Column("number", sa.Text, nullable=False, server_default=""),
    sa.Column("complement", sa.Text),
    sa.Column("neighborhood", sa.Text),
    sa.Column("city", sa.Text),
    sa.Column("state", sa.String(2)),
    sa.Column("zip_code", sa.Text, nullable=False, server_default=""),
    sa.Column("is_primary", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("address_type", sa.Text, nullable=False, server_default="residential"),
    sa.UniqueConstraint("party_id", "street", "number", "zip_code", name="uq_party_addresses"),
)

party_enrichments = sa.Table(
    "party_enrichments",
    metadata,
    sa.Column(
        "party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("provider", sa.Text, nullable=False, server_default="work_api"),
    sa.Column("raw_payload", JSONType, nullable=False),
    sa.Column("quality_score", sa.Numeric(5, 2)),
    sa.Column("enriched_at", TS, nullable=False),
)

lead_runs = sa.Table(
    "lead_runs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("lead_id", sa.Text, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    # processing | completed | failed | duplicate | deduplicated | abandoned
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("cpfs", JSONType),
    sa.Column("same_person", sa.Boolean),
    sa.Column("entities_stored", sa.Integer),
    sa.Column("message_sent", sa.Boolean),
    sa.Column("step_ms", JSONType),
    sa.Column("error", sa.Text),
    sa.Index("ix_lead_runs_lead_id", "lead_id"),
    sa.Index(
        "uq_lead_runs_in_flight",
        "lead_id",
        unique=True,
        sqlite_where=sa.text("status = 'processing'"),
        postgresql_where=sa.text("status = 'processing'"),
    ),
)

lead_parties = sa.Table(
    "lead_parties",
    metadata,
    sa.Column("lead_id", sa.Text, primary_key=True),
    sa.Column(
        "party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

ALL_TABLES = (
    lead_parties,
    lead_runs,
    party_enrichments,
    party_addresses,
    party_contacts,
    party_financials,
    parties,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Newest Alembic revision; a test checks it against the scripts. Lets start-up skip
#: importing Alembic (~10 MB of RSS) when the database is already current.
HEAD_REVISION = "0001_initial"


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- engine ----------------------------------------------------------------------------------


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    pool_timeout: float = 10.0,
    schema: str | None = None,
    busy_timeout_s: float = 30.0,
) -> AsyncEngine:
    """An async engine for SQLite (WAL, busy timeout) or PostgreSQL (asyncpg, optional schema).

    ``busy_timeout_s`` bounds how long a statement waits for a lock (SQLite) or runs at all
    (PostgreSQL ``command_timeout``); the health checker's engine uses a short one.
    """
    dialect = sa.engine.make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": False}
    if dialect == "sqlite":
        kwargs["connect_args"] = {"timeout": busy_timeout_s}
        if ":memory:" not in url:
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)
    else:
        kwargs.update(
            pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout, pool_recycle=1800
        )
        connect_args: dict[str, Any] = {
            "timeout": min(5.0, busy_timeout_s),
            "command_timeout": busy_timeout_s,
        }
        if schema:
            connect_args["server_settings"] = {"search_path": schema}
        kwargs["connect_args"] = connect_args
    engine = create_async_engine(url, **kwargs)
    if dialect == "sqlite":
        busy_ms = int(busy_timeout_s * 1000)
        sa.event.listen(engine.sync_engine, "connect", lambda c, r: _sqlite_pragmas(c, r, busy_ms))
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_ms: int = 30000) -> None:
    """WAL lets /health read while a request writes; busy_timeout queues concurrent writers."""
    cur = dbapi_conn.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        f"PRAGMA busy_timeout={busy_ms}",
        "PRAGMA foreign_keys=ON",
    ):
        cur.execute(pragma)
    cur.close()


def pool_stats(engine: AsyncEngine) -> tuple[int, int, int]:
    """(size, checked out, overflow) of the engine's pool, for the /metrics gauges."""
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", lambda: 0)()
    out = getattr(pool, "checkedout", lambda: 0)()
    over = max(getattr(pool, "overflow", lambda: 0)(), 0)
    return int(size), int(out), int(over)


# --- migrations ------------------------------------------------------------------------------


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; run at start-up)."""
    async with engine.begin() as conn:
        if await conn.run_sync(_at_head):
            return
        await conn.run_sync(_upgrade)


async def at_head(engine: AsyncEngine) -> bool:
    """True when the schema is already at ``HEAD_REVISION`` (no Alembic import needed)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_at_head)


def _at_head(connection: sa.Connection) -> bool:
    if not sa.inspect(connection).has_table("alembic_version"):
        return False
    rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows == [HEAD_REVISION]


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision)


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


# --- health ----------------------------------------------------------------------------------


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def probe_write(engine: AsyncEngine) -> None:
    """Insert a ``lead_runs`` row and roll it back: does the database still take writes?"""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            await conn.execute(
                lead_runs.insert().values(
                    id=uuid.uuid4(), lead_id="_health_probe", started_at=utcnow(), status="probe"
                )
            )
        finally:
            await trans.rollback()


# --- upserts ---------------------------------------------------------------------------------


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    # only the two supported dialects (PostgreSQL, SQLite) reach here
    raise RuntimeError(f"unsupported database dialect {conn.dialect.name!r}")


def _keep(table: sa.Table, excluded: Any, cols: Sequence[str]) -> dict[str, Any]:
    """``col = COALESCE(new, old)``: a later payload missing a field never erases it."""
    return {c: sa.func.coalesce(excluded[c], table.c[c]) for c in cols}


@dataclass(frozen=True)
class StoredPerson:
    party_id: uuid.UUID
    cpf: str
    contacts: int
    addresses: int


async def store_person(
    engine: AsyncEngine,
    cpf: str,
    payload: dict[str, Any],
    *,
    lead_id: str | None = None,
    multiplier: float = 1.9,
) -> StoredPerson:
    """Upsert one enriched person (party, financials, contacts, addresses, raw payload, link).

    One transaction: either everything for this CPF is written or nothing is.
    """
    from service.formatting import person_record

    rec = person_record(payload, multiplier)
    now = utcnow()
    async with engine.begin() as conn:
        party_cols = [c for c in rec["party"] if c != "metadata"]
        ins = _insert(conn, parties).values(
            id=uuid.uuid4(),
            cpf=cpf,
            party_type="person",
            enriched=True,
            enriched_at=now,
            data_source="api",
            metadata=rec["party"]["metadata"],
            created_at=now,
            updated_at=now,
            **{c: rec["party"][c] for c in party_cols},
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[parties.c.cpf],
            set_={
                **_keep(parties, ins.excluded, party_cols),
                "enriched": True,
                "enriched_at": ins.excluded.enriched_at,
                "metadata": ins.excluded.metadata,
                "updated_at": ins.excluded.updated_at,
            },
        ).returning(parties.c.id)
        party_id: uuid.UUID = (await conn.execute(stmt)).scalar_one()

        fin = rec["financial"]
        ins = _insert(conn, party_financials).values(
            id=uuid.uuid4(),
            party_id=party_id,
            financial_year=now.year,
            source="api",
            confidence="high",
            **fin,
        )
        await conn.execute(
            ins.on_conflict_do_update(
                index_elements=[party_financials.c.party_id, party_financials.c.financial_year],
                set_={
                    **_keep(
                        party_financials,
                        ins.excluded,
                        ["reported_income", "credit_score", "risk_score"],
                    ),
                    "metadata": ins.excluded.metadata,
                },
            )
        )

        contacts = rec["contacts"]
        if contacts:
            # The newest payload decides which contact is primary.
            await conn.execute(
                party_contacts.update()
                .where(party_contacts.c.party_id == party_id)
                .values(is_primary=False)
            )
            ins = _insert(conn, party_contacts).values(
                [
                    {"id": uuid.uuid4(), "party_id": party_id, "created_at": now, **c}
                    for c in contacts
                ]
            )
            await conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[
                        party_contacts.c.party_id,
                        party_contacts.c.contact_type,
                        party_contacts.c.value,
                    ],
                    set_={
                        c: ins.excluded[c]
                        for c in ("is_primary", "is_verified", "is_whatsapp", "metadata")
                    }
                    | _keep(party_contacts, ins.excluded, ["carrier"]),
                )
            )

        addresses = rec["addresses"]
        if addresses:
            await conn.execute(
                party_addresses.update()
                .where(party_addresses.c.party_id == party_id)
                .values(is_primary=False, is_current=False)
            )
            ins = _insert(conn, party_addresses).values(
                [{"id": uuid.uuid4(), "party_id": party_id, **a} for a in addresses]
            )
            await conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[
                        party_addresses.c.party_id,
                        party_addresses.c.street,
                        party_addresses.c.number,
                        party_addresses.c.zip_code,
                    ],
                    set_={
                        "is_primary": ins.excluded.is_primary,
                        "is_current": ins.excluded.is_current,
                        **_keep(
                            party_addresses,
                            ins.excluded,
                            ["street_type", "complement", "neighborhood", "city", "state"],
                        ),
                    },
                )
            )

        ins = _insert(conn, party_enrichments).values(
            party_id=party_id, provider="work_api", raw_payload=payload, enriched_at=now
        )
        await conn.execute(
            ins.on_conflict_do_update(
                index_elements=[party_enrichments.c.party_id],
                set_={"raw_payload": ins.excluded.raw_payload, "enriched_at": now},
            )
        )

        if lead_id is not None:
            ins = _insert(conn, lead_parties).values(
                lead_id=lead_id, party_id=party_id, created_at=now
            )
            await conn.execute(ins.on_conflict_do_nothing())
    return StoredPerson(party_id, cpf, len(contacts), len(addresses))


# --- lead runs -------------------------------------------------------------------------------


class LeadInFlightError(Exception):
    """Another process already holds the ``processing`` row for this lead."""

    def __init__(
        self, lead_id: str, started_at: float | None = None, run_id: uuid.UUID | None = None
    ) -> None:
        super().__init__(lead_id)
        self.started_at = started_at  # epoch seconds of the holder's start, when known
        self.run_id = run_id  # the holder's run, when known


async def begin_lead_run(
    engine: AsyncEngine, lead_id: str, *, run_id: uuid.UUID | None = None, stale_after_s: float = 40
) -> uuid.UUID:
    """Insert the ``processing`` row; the partial unique index rejects a second one atomically.

    A ``processing`` row older than ``stale_after_s`` cannot belong to a live request (the
    request timeout cuts every request before that): it was left by a crashed or killed
    process, so it is marked ``abandoned`` first and never blocks its lead for long. The
    caller picks ``run_id`` so it can release the row even when this call fails midway.
    """
    run_id = run_id or uuid.uuid4()
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            lead_runs.update()
            .where(
                lead_runs.c.lead_id == lead_id,
                lead_runs.c.status == "processing",
                lead_runs.c.started_at
                < datetime.fromtimestamp(now.timestamp() - stale_after_s, UTC),
            )
            .values(status="abandoned", finished_at=now, error="stale in-flight run")
        )
    for _attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    lead_runs.insert().values(
                        id=run_id, lead_id=lead_id, started_at=now, status="processing"
                    )
                )
            return run_id
        except sa.exc.IntegrityError as exc:
            error = exc
        # Who holds it, read in a fresh transaction (PostgreSQL aborted the failed one).
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(lead_runs.c.id, lead_runs.c.started_at).where(
                        lead_runs.c.lead_id == lead_id, lead_runs.c.status == "processing"
                    )
                )
            ).first()
        if row is not None:
            holder = row.started_at
            if holder.tzinfo is None:  # SQLite returns naive UTC
                holder = holder.replace(tzinfo=UTC)
            raise LeadInFlightError(lead_id, holder.timestamp(), row.id) from error
        # No holder: it finished in between (try once more), or the failure was not the
        # unique index at all (a constraint, a trigger): never read that as "in flight".
    raise error


async def record_lead_run(
    engine: AsyncEngine,
    *,
    lead_id: str,
    status: str,
    run_id: uuid.UUID | None = None,
    started_at: datetime | None = None,
    **values: Any,
) -> uuid.UUID:
    """Finish a run (update by id; inserted if its start was never written) or record a
    one-shot run such as a duplicate (insert)."""
    now = utcnow()
    async with engine.begin() as conn:
        if run_id is not None:
            result = await conn.execute(
                lead_runs.update()
                .where(lead_runs.c.id == run_id)
                .values(status=status, finished_at=now, **values)
            )
            if result.rowcount:
                return run_id
        new_id = run_id or uuid.uuid4()
        await conn.execute(
            lead_runs.insert().values(
                id=new_id,
                lead_id=lead_id,
                started_at=started_at or now,
                finished_at=now,
                status=status,
                **values,
            )
        )
        return new_id


def error_reason(exc: BaseException) -> str:
    """A short, bounded description of a database failure, safe to return to callers.

    Only class names: a driver's message can quote SQL parameters (personal data) or the
    server's own text, which must not travel into responses.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__} ({type(exc.orig).__name__})"[:120]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return f"connection failed ({type(exc).__name__})"
    return type(exc).__name__[:80]


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    """Row count per table (tests and diagnostics)."""
    out: dict[str, int] = {}
    async with engine.connect() as conn:
        for t in ALL_TABLES:
            out[t.name] = (
                await conn.execute(sa.select(sa.func.count()).select_from(t))
            ).scalar_one()
    return out
