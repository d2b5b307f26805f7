"""Open a store from a URL: ``memory://``, ``sqlite:///path.db`` or ``postgresql+psycopg://…``.

May import: :mod:`assay.platform.errors` and the storage backends (loaded on demand, so the
in-memory store never imports SQLAlchemy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay.platform.errors import ValidationError
from assay.storage.base import Store
from assay.storage.urls import is_memory_url, is_sql_url, normalize_database_url

if TYPE_CHECKING:
    from assay.storage.sql.ledger import SqlPrivacyLedger


def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store behind ``url``.

    Args:
        url: ``memory://`` (process-local), ``sqlite:///./assay.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        migrate: Create/upgrade the schema (embedded use); ``False`` refuses an out-of-date
            schema instead (servers).
    """
    url = normalize_database_url(url)
    if is_memory_url(url):
        from assay.storage.memory import MemoryStore

        return MemoryStore()
    if is_sql_url(url):
        from assay.storage.sql import SqlStore

        return SqlStore(url, migrate=migrate)
    raise ValidationError(
        f"unsupported database URL {url!r}; use sqlite:///path.db, "
        "postgresql+psycopg://user@host/db or memory://",
        field="database_url",
    )


def open_privacy_ledger(
    url: str, project: str = "default", *, migrate: bool = False
) -> SqlPrivacyLedger:
    """A project's privacy ledger with its own SQL store on ``url`` (close it with
    ``ledger.close()``), for the CLI and scripts that need budgets without a whole service.

    ``migrate=False`` refuses an out-of-date schema, naming ``assay db upgrade``.
    """
    from assay.storage.sql import SqlPrivacyLedger, SqlStore

    return SqlPrivacyLedger(SqlStore(normalize_database_url(url), migrate=migrate), project)
