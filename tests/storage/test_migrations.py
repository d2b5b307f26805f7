"""Alembic owns the schema: a migrated database equals the ORM metadata on every SQL backend,
and a server refuses an out-of-date schema, naming the upgrade command."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from assay.platform.errors import SchemaOutOfDateError
from assay.storage.migrate import check_schema, current_revision, head_revision, upgrade
from assay.storage.orm import Base
from assay.storage.sql import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("empty_postgres_url")


def test_migrated_schema_matches_orm(empty_url) -> None:
    engine = create_engine(empty_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_server_refuses_out_of_date_schema(empty_url) -> None:
    with pytest.raises(SchemaOutOfDateError) as e:
        SqlStore(empty_url, migrate=False)
    assert "assay db upgrade" in str(e.value)
    assert e.value.details["head"] == head_revision()
    store = SqlStore(empty_url, migrate=True)  # embedded use upgrades
    store.close()
    SqlStore(empty_url, migrate=False).close()
    check_schema(create_engine(empty_url))


def test_a_database_of_the_previous_head_upgrades_and_loads(empty_url) -> None:
    """0007 (``experiments.status_reason``) on a database made at 0006: its experiments load
    without a reason, and the next status change records one."""
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, Table

    from assay.platform.experiment import ExperimentConfig, ExperimentStatus, StatusReason

    engine = create_engine(empty_url)
    upgrade(engine, "0006")
    config = ExperimentConfig.from_dict({
        "name": "old", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "y", "generator": "sobol", "seed": 3,
    }).to_dict()  # fmt: skip
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:  # rows as the 0006 schema has them (reflected, not the ORM)
        meta = MetaData()
        projects = Table("projects", meta, autoload_with=conn)
        experiments = Table("experiments", meta, autoload_with=conn)
        assert "status_reason" not in experiments.c
        pid = conn.execute(
            projects.insert().values(name="default", created_at=now).returning(projects.c.id)
        ).scalar_one()
        conn.execute(experiments.insert().values(
            project_id=pid, name="old", status="completed", config=config,
            generator_state={}, model_state={}, run_state="done",
            created_at=now, updated_at=now,
        ))  # fmt: skip
    upgrade(engine)
    assert current_revision(engine) == "0007" == head_revision()
    engine.dispose()
    store = SqlStore(empty_url, migrate=False)
    [summary] = store.list_experiments()
    exp = store.get_experiment(summary.id)
    assert exp.status is ExperimentStatus.COMPLETED and exp.status_reason is None
    why = StatusReason(ExperimentStatus.ACTIVE, reason="reopened", actor="me", figures={"a": 1})
    store.set_experiment_status(exp.id, ExperimentStatus.ACTIVE, reason=why)
    assert store.get_experiment(exp.id).status_reason == why
    store.close()
