"""Alembic environment for the results store.

Only the programmatic path is supported: :func:`perflib.store.Store.upgrade` hands an open
connection in ``config.attributes["connection"]``, so the URL (which may hold a password)
never passes through Alembic's config file or its logging.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by Store.upgrade
    raise RuntimeError("run the store migrations with `perflib store upgrade`")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
