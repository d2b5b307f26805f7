"""privacy ledger: per-dataset (epsilon, delta) budgets and the releases charged to them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen column types (migrations never import the ORM, which keeps evolving).
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("project_id", BigID, nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_privacy_budgets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_budgets")),
        sa.UniqueConstraint("project_id", "dataset", name=op.f("uq_privacy_budgets_project_id")),
    )
    op.create_table(
        "privacy_charges",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("budget_id", BigID, nullable=False),
        sa.Column("release_id", sa.String(length=200), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["privacy_budgets.id"],
            name=op.f("fk_privacy_charges_budget_id_privacy_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_charges")),
        sa.UniqueConstraint("budget_id", "release_id", name=op.f("uq_privacy_charges_budget_id")),
    )


def downgrade() -> None:
    op.drop_table("privacy_charges")
    op.drop_table("privacy_budgets")
