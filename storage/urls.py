"""Database URLs: which backend a URL names, its normal form, and SQLite file paths.

Owns every rule about the *text* of a database URL — ``memory://`` for the in-process store,
``sqlite:///path.db`` (relative or absolute; ``sqlite://`` is an in-memory SQLite database),
``postgresql://`` / ``postgres://`` accepted as the psycopg 3 driver. Opening a store
(:mod:`assay.storage.factory`), building an engine (:mod:`assay.storage.sql.engine`), the CLI
and the job orchestrator all go through these functions.

May import: the standard library and ``sqlalchemy.engine.make_url`` (parsing only, imported
where used so that the in-memory store never loads SQLAlchemy).
"""

from __future__ import annotations

from pathlib import Path

#: URLs of the process-local in-memory store.
MEMORY_URLS = ("memory://", ":memory:")
#: URL prefixes (after :func:`normalize_database_url`) that the SQL store opens.
SQL_PREFIXES = ("sqlite:", "postgresql+psycopg:")


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as the psycopg 3 driver.

    Example:
        >>> normalize_database_url("postgres://u@h/db")
        'postgresql+psycopg://u@h/db'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_memory_url(url: str) -> bool:
    """Whether ``url`` names the in-process store (not a SQL database)."""
    return url in MEMORY_URLS


def is_sql_url(url: str) -> bool:
    """Whether the SQL store opens ``url`` (SQLite or PostgreSQL with psycopg 3)."""
    return normalize_database_url(url).startswith(SQL_PREFIXES)


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_database(url: str) -> str | None:
    """The database path of a file-backed SQLite URL, as written (maybe relative, maybe a
    ``file:`` URI); ``None`` for in-memory SQLite and for other backends."""
    if not is_sqlite_url(url):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return None if db in (None, "", ":memory:") else db


def absolute_database_url(url: str, *, base: str | Path | None = None) -> str:
    """``url`` with a relative SQLite path made absolute (against ``base``, default the
    current directory); every other URL unchanged (but normalised).

    Pass URLs through this before handing them to another process that may run in another
    directory: jobs run with their work directory as cwd, where the default
    ``sqlite:///./assay.db`` would open a new, empty database.

    Example:
        >>> absolute_database_url("sqlite:///./assay.db", base="/srv")
        'sqlite:////srv/assay.db'
    """
    url = normalize_database_url(url)
    db = sqlite_database(url)
    if db is None or db.startswith("file:"):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.query.get("uri"):
        return url
    path = Path(db)
    if path.is_absolute():
        return url
    resolved = (Path(base) if base is not None else Path.cwd()).joinpath(path).resolve()
    return parsed.set(database=str(resolved)).render_as_string(hide_password=False)


__all__ = [
    "MEMORY_URLS",
    "SQL_PREFIXES",
    "absolute_database_url",
    "is_memory_url",
    "is_sql_url",
    "is_sqlite_url",
    "normalize_database_url",
    "sqlite_database",
]
