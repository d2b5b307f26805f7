"""Schema management: upgrade to the latest Alembic revision, or check that a database is
current before serving (the server refuses an out-of-date schema and names the command)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from assay.platform.errors import SchemaOutOfDateError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "assay db upgrade"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every pending migration (idempotent)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the database is at the latest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no Assay schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database {where} {state}; this Assay needs revision {head}. "
            f"Run: {UPGRADE_COMMAND} --database-url '{where}'",
            details={"current": current, "head": head, "command": UPGRADE_COMMAND},
        )
