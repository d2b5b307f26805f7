"""experiment definition versions: each change of a running experiment's definition (bounds,
choice values, outcome constraints, generator) with who, why and what changed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen column types (migrations never import the ORM, which keeps evolving).
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_versions",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("changes", JSON, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("trial_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_versions_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_versions")),
        sa.UniqueConstraint(
            "experiment_id", "version", name=op.f("uq_experiment_versions_experiment_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("experiment_versions")
