"""SQLAlchemy 2 ORM tables.

The schema is owned by Alembic (``storage/migrations``); these classes describe it for
queries. JSON columns are ``JSONB`` on PostgreSQL and ``JSON`` (text) on SQLite.

Arms are per experiment and shared by trials through ``trial_arms`` (an arm re-deployed in
several batches, e.g. the control, is one row). Observations are keyed by
``(trial, arm, metric)``. ``trial_events`` is append-only: every state change writes one row.
``privacy_budgets`` / ``privacy_charges`` hold the per-(project, dataset) privacy ledger
(:mod:`assay.storage.sql.ledger`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT primary keys on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigID = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: ``viewer`` / ``member`` / ``admin`` (:class:`assay.service.auth.Role`); keys made
    #: before roles existed were migrated to ``admin`` so old deployments keep working.
    role: Mapped[str] = mapped_column(String(16), server_default="admin")


class DashboardSessionRow(Base):
    """A dashboard sign-in: the SHA-256 of a random session id (the cookie holds the id, the
    database only its hash), the key it was opened with (revoking the key ends it), an expiry,
    and ``ended_at`` once the browser signs out."""

    __tablename__ = "dashboard_sessions"
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    generator_state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    model_state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Job orchestration: None (no run), "running", "paused", "stopped", "done".
    run_state: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The last status change (:class:`assay.platform.experiment.StatusReason` as JSON:
    #: status, reason, rule, figures, actor, at; capped in size); NULL when never changed.
    status_reason: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class ArmRow(Base):
    __tablename__ = "arms"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("experiment_id", "index"),
        Index("ix_trials_experiment_state", "experiment_id", "state"),
        Index("ix_trials_state_lease", "state", "lease_expires_at"),
    )
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    generator: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    trial_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrialArmRow(Base):
    __tablename__ = "trial_arms"
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class ObservationRow(Base):
    __tablename__ = "observations"
    __table_args__ = (UniqueConstraint("trial_id", "arm_id", "metric"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(200))
    mean: Mapped[float] = mapped_column(Float)
    sem: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrialEventRow(Base):
    __tablename__ = "trial_events"
    __table_args__ = (Index("ix_trial_events_experiment_id_id", "experiment_id", "id"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    trial_ids: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_executor", "state", "executor"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    executor: Mapped[str] = mapped_column(String(20))
    worker: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer)
    handle: Mapped[dict[str, Any]] = mapped_column(JSONType)
    resources: Mapped[dict[str, Any]] = mapped_column(JSONType)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    gpus: Mapped[list[Any]] = mapped_column(JSONType)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)


class TrialReportRow(Base):
    __tablename__ = "trial_reports"
    __table_args__ = (Index("ix_trial_reports_trial_id_id", "trial_id", "id"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class PrivacyBudgetRow(Base):
    """A dataset's (ε, δ) privacy budget in a project (see :mod:`assay.storage.privacy`)."""

    __tablename__ = "privacy_budgets"
    __table_args__ = (UniqueConstraint("project_id", "dataset"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(200))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PrivacyChargeRow(Base):
    """One release charged against a budget; ``release_id`` is its idempotency key."""

    __tablename__ = "privacy_charges"
    __table_args__ = (UniqueConstraint("budget_id", "release_id"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("privacy_budgets.id", ondelete="CASCADE"))
    release_id: Mapped[str] = mapped_column(String(200))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text)
    charge_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExperimentVersionRow(Base):
    """One version of an experiment's definition (version 1 is the definition at creation,
    written when the first change is)."""

    __tablename__ = "experiment_versions"
    __table_args__ = (UniqueConstraint("experiment_id", "version"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changes: Mapped[list[str]] = mapped_column(JSONType)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Trials that existed when this version took effect: trials with ``index >= trial_count``
    #: (up to the next version's) were generated under it.
    trial_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookRow(Base):
    """A project's webhook subscription (see :mod:`assay.storage.webhooks`)."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType)
    secret: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDeliveryRow(Base):
    """One event to deliver to one subscription, and its attempts (the outbox)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
