"""Runs (manifest fields + headline figures) and their k6 summary statistics.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "perflib_runs",
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("profile", sa.String(100)),
        sa.Column("script", sa.Text),
        sa.Column("preset", sa.String(100)),
        sa.Column("cpu_kind", sa.String(50)),
        sa.Column("cpus", sa.Integer),
        sa.Column("memory_mb", sa.Integer),
        sa.Column("target_kind", sa.String(20)),
        sa.Column("base_url", sa.Text),
        sa.Column("upstreams", sa.String(50)),
        sa.Column("time_scale", sa.Float),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("duration_s", sa.Float),
        sa.Column("exit_status", sa.String(50)),
        sa.Column("exit_message", sa.Text),
        sa.Column("git_commit", sa.String(100)),
        sa.Column("k6_version", sa.String(50)),
        sa.Column("perflib_version", sa.String(50)),
        sa.Column("requests", sa.Float),
        sa.Column("rps", sa.Float),
        sa.Column("error_rate", sa.Float),
        sa.Column("checks_rate", sa.Float),
        sa.Column("dropped_iterations", sa.Float),
        sa.Column("p50_ms", sa.Float),
        sa.Column("p90_ms", sa.Float),
        sa.Column("p95_ms", sa.Float),
        sa.Column("p99_ms", sa.Float),
        sa.Column("max_ms", sa.Float),
        sa.Column("memory_peak_mb", sa.Float),
        sa.Column("memory_mean_mb", sa.Float),
        sa.Column("memory_limit_mb", sa.Float),
        sa.Column("cpu_mean_pct", sa.Float),
        sa.Column("cpu_p95_pct", sa.Float),
        sa.Column("oom_kills", sa.Integer),
        sa.Column("restarts", sa.Integer),
        sa.Column("manifest", sa.JSON),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_perflib_runs_started_at", "perflib_runs", ["started_at"])
    op.create_index("ix_perflib_runs_profile_preset", "perflib_runs", ["profile", "preset"])
    op.create_table(
        "perflib_run_metrics",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("perflib_runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("metric", sa.String(300), primary_key=True),
        sa.Column("stat", sa.String(50), primary_key=True),
        sa.Column("value", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("perflib_run_metrics")
    op.drop_index("ix_perflib_runs_profile_preset", table_name="perflib_runs")
    op.drop_index("ix_perflib_runs_started_at", table_name="perflib_runs")
    op.drop_table("perflib_runs")
