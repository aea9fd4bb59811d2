"""Initial schema: parties and their financials/contacts/addresses/enrichments, lead runs.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Frozen copy of the tables in ``service/storage.py`` at this revision (a migration must not
change when the models do later).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def _party_fk() -> sa.Column:
    return sa.Column(
        "party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "parties",
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
    op.create_table(
        "party_financials",
        sa.Column("id", sa.Uuid, primary_key=True),
        _party_fk(),
        sa.Column("financial_year", sa.Integer, nullable=False),
        sa.Column("reported_income", sa.Numeric(15, 2)),
        sa.Column("credit_score", sa.Integer),
        sa.Column("risk_score", sa.Numeric(3, 2)),
        sa.Column("source", sa.Text, nullable=False, server_default="api"),
        sa.Column("confidence", sa.Text, nullable=False, server_default="high"),
        sa.Column("metadata", JSONType, nullable=False, server_default="{}"),
        sa.UniqueConstraint("party_id", "financial_year", name="uq_party_financials_year"),
    )
    op.create_table(
        "party_contacts",
        sa.Column("id", sa.Uuid, primary_key=True),
        _party_fk(),
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
    op.create_table(
        "party_addresses",
        sa.Column("id", sa.Uuid, primary_key=True),
        _party_fk(),
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
    op.create_table(
        "party_enrichments",
        sa.Column(
            "party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("provider", sa.Text, nullable=False, server_default="work_api"),
        sa.Column("raw_payload", JSONType, nullable=False),
        sa.Column("quality_score", sa.Numeric(5, 2)),
        sa.Column("enriched_at", TS, nullable=False),
    )
    op.create_table(
        "lead_runs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("lead_id", sa.Text, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cpfs", JSONType),
        sa.Column("same_person", sa.Boolean),
        sa.Column("entities_stored", sa.Integer),
        sa.Column("message_sent", sa.Boolean),
        sa.Column("step_ms", JSONType),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_lead_runs_lead_id", "lead_runs", ["lead_id"])
    op.create_index(
        "uq_lead_runs_in_flight",
        "lead_runs",
        ["lead_id"],
        unique=True,
        sqlite_where=sa.text("status = 'processing'"),
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.create_table(
        "lead_parties",
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column(
            "party_id", sa.Uuid, sa.ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for name in (
        "lead_parties",
        "lead_runs",
        "party_enrichments",
        "party_addresses",
        "party_contacts",
        "party_financials",
        "parties",
    ):
        op.drop_table(name)
