"""initial schema

Revision ID: 0001
Revises:
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

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("project_id", BigID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_api_keys_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "experiments",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("project_id", BigID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("generator_state", JSON, nullable=False),
        sa.Column("model_state", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_experiments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_experiments_project_id")),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_project_id"), ["project_id"], unique=False)

    op.create_table(
        "arms",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("parameters", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_arms_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arms")),
        sa.UniqueConstraint("experiment_id", "name", name=op.f("uq_arms_experiment_id")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("trial_ids", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_idempotency_keys_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "trials",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("generator", sa.String(length=50), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_trials_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint("experiment_id", "index", name=op.f("uq_trials_experiment_id")),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trials_experiment_state", ["experiment_id", "state"], unique=False
        )
        batch_op.create_index("ix_trials_state_lease", ["state", "lease_expires_at"], unique=False)

    op.create_table(
        "observations",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("trial_id", BigID, nullable=False),
        sa.Column("arm_id", BigID, nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("sem", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["arm_id"], ["arms.id"], name=op.f("fk_observations_arm_id_arms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_observations_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint("trial_id", "arm_id", "metric", name=op.f("uq_observations_trial_id")),
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_observations_trial_id"), ["trial_id"], unique=False)

    op.create_table(
        "trial_arms",
        sa.Column("trial_id", BigID, nullable=False),
        sa.Column("arm_id", BigID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["arm_id"], ["arms.id"], name=op.f("fk_trial_arms_arm_id_arms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_trial_arms_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "arm_id", name=op.f("pk_trial_arms")),
    )
    op.create_table(
        "trial_events",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", BigID, nullable=False),
        sa.Column("trial_id", BigID, nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_trial_events_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_trial_events_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trial_events")),
    )
    with op.batch_alter_table("trial_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trial_events_experiment_id_id", ["experiment_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_trial_events_trial_id"), ["trial_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trial_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trial_events_trial_id"))
        batch_op.drop_index("ix_trial_events_experiment_id_id")

    op.drop_table("trial_events")
    op.drop_table("trial_arms")
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_observations_trial_id"))

    op.drop_table("observations")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_state_lease")
        batch_op.drop_index("ix_trials_experiment_state")

    op.drop_table("trials")
    op.drop_table("idempotency_keys")
    op.drop_table("arms")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_project_id"))

    op.drop_table("experiments")
    op.drop_table("api_keys")
    op.drop_table("projects")
