"""jobs and trial reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen column types (migrations never import the ORM, which keeps evolving).
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("trial_id", BigID, nullable=False),
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("executor", sa.String(length=20), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("handle", JSON, nullable=False),
        sa.Column("resources", JSON, nullable=False),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("gpus", JSON, nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("ended_at", UTC, nullable=True),
        sa.Column("heartbeat_at", UTC, nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("result", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_jobs_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_jobs_trial_id_trials"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_jobs_token_hash")),
        sa.UniqueConstraint("trial_id", name=op.f("uq_jobs_trial_id")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_experiment_id"), ["experiment_id"], unique=False)
        batch_op.create_index("ix_jobs_state_executor", ["state", "executor"], unique=False)

    op.create_table(
        "trial_reports",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("trial_id", BigID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_trial_reports_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trial_reports")),
    )
    with op.batch_alter_table("trial_reports", schema=None) as batch_op:
        batch_op.create_index("ix_trial_reports_trial_id_id", ["trial_id", "id"], unique=False)

    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_state", sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f("ix_experiments_run_state"), ["run_state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_run_state"))
        batch_op.drop_column("run_state")

    with op.batch_alter_table("trial_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_trial_reports_trial_id_id")

    op.drop_table("trial_reports")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_executor")
        batch_op.drop_index(batch_op.f("ix_jobs_experiment_id"))

    op.drop_table("jobs")
