"""Open a store from a URL: ``memory://``, ``sqlite:///path.db`` or ``postgresql+psycopg://…``."""

from __future__ import annotations

from assay.platform.errors import ValidationError
from assay.storage.base import Store


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store behind ``url``.

    Args:
        url: ``memory://`` (process-local), ``sqlite:///./assay.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        migrate: Create/upgrade the schema (embedded use); ``False`` refuses an out-of-date
            schema instead (servers).
    """
    url = normalize_database_url(url)
    if url in ("memory://", ":memory:"):
        from assay.storage.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("sqlite:", "postgresql+psycopg:")):
        from assay.storage.sql import SqlStore

        return SqlStore(url, migrate=migrate)
    raise ValidationError(
        f"unsupported database URL {url!r}; use sqlite:///path.db, "
        "postgresql+psycopg://user@host/db or memory://",
        field="database_url",
    )
