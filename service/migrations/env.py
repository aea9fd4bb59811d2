"""Alembic environment: runs on the connection ``storage.migrate`` passes in.

The service migrates from inside its event loop (``AsyncConnection.run_sync``), so this env
never creates its own engine or loop; that works the same for aiosqlite and asyncpg.
For the command line, set ``sqlalchemy.url`` and a sync driver is derived from it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from service.storage import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # pragma: no cover - manual `alembic upgrade` with sqlalchemy.url set
    url = config.get_main_option("sqlalchemy.url") or ""
    url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg2")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _run(conn)
