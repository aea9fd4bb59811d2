"""Alembic migrations of the service schema (run programmatically by ``storage.migrate``)."""
