"""The results store: every run indexed in SQL (``results``), schema migrations in ``migrations/``."""

from __future__ import annotations

from perflib.store.results import (
    DEFAULT_DB_PATH,
    HEADLINE_METRICS,
    MIGRATIONS_DIR,
    IndexedRun,
    Store,
    StoreError,
    StoreSettings,
    flag_regressions,
    metadata,
    metrics_table,
    open_store,
    run_key,
    runs_frame,
    runs_table,
    slo_table,
)

__all__ = [
    "DEFAULT_DB_PATH",
    "HEADLINE_METRICS",
    "IndexedRun",
    "MIGRATIONS_DIR",
    "Store",
    "StoreError",
    "StoreSettings",
    "flag_regressions",
    "metadata",
    "metrics_table",
    "open_store",
    "run_key",
    "runs_frame",
    "runs_table",
    "slo_table",
]
