"""SLO verdicts per run, and the right-sizing recommendation on the run row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "perflib_slo_verdicts",
        sa.Column(
            "run_id",
            sa.String(200),
            sa.ForeignKey("perflib_runs.run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("verdict", sa.String(20)),
        sa.Column("passed", sa.Boolean),
        sa.Column("observed", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("unit", sa.String(30)),
        sa.Column("detail", sa.Text),
    )
    with op.batch_alter_table("perflib_runs") as batch:
        batch.add_column(sa.Column("slo_passed", sa.Boolean))
        batch.add_column(sa.Column("worst_verdict", sa.String(20)))
        batch.add_column(sa.Column("recommended_preset", sa.String(100)))
        batch.add_column(sa.Column("monthly_cost_usd", sa.Float))
        batch.add_column(sa.Column("recommendation", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("perflib_runs") as batch:
        batch.drop_column("recommendation")
        batch.drop_column("monthly_cost_usd")
        batch.drop_column("recommended_preset")
        batch.drop_column("worst_verdict")
        batch.drop_column("slo_passed")
    op.drop_table("perflib_slo_verdicts")
