"""Open a store from a URL: ``memory://``, ``sqlite:///path.db`` or ``postgresql+psycopg://…``.

May import: :mod:`assay.platform.errors` and the storage backends (loaded on demand, so the
in-memory store never imports SQLAlchemy).
"""

from __future__ import annotations

from assay.platform.errors import ValidationError
from assay.storage.base import Store
from assay.storage.urls import is_memory_url, is_sql_url, normalize_database_url


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
