"""Alembic migrations of the perflib results store (applied by ``perflib store upgrade``)."""
