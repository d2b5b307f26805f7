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
