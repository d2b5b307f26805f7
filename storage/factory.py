"""Open a store from a URL: ``memory://``, ``sqlite:///path.db`` or ``postgresql+psycopg://…``."""

from __future__ import annotations

from pathlib import Path

from assay.platform.errors import ValidationError
from assay.storage.base import Store


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def absolute_database_url(url: str, *, base: str | Path | None = None) -> str:
    """``url`` with a relative SQLite path made absolute (against ``base``, default the
    current directory); every other URL unchanged.

    Pass URLs through this before handing them to another process that may run in another
    directory: jobs run with their work directory as cwd, where the default
    ``sqlite:///./assay.db`` would open a new, empty database.

    Example:
        >>> absolute_database_url("sqlite:///./assay.db", base="/srv")
        'sqlite:////srv/assay.db'
    """
    url = normalize_database_url(url)
    if not url.startswith("sqlite:"):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:") or parsed.query.get("uri"):
        return url
    path = Path(db)
    if path.is_absolute():
        return url
    resolved = (Path(base) if base is not None else Path.cwd()).joinpath(path).resolve()
    return parsed.set(database=str(resolved)).render_as_string(hide_password=False)


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
