"""Connection set-up: the SQLAlchemy engine with the settings Assay relies on, and opening a
database at the current schema.

* SQLite runs in WAL mode (readers never block the writer), ``busy_timeout`` 30 s, foreign
  keys on, and its transactions are begun by us (``BEGIN DEFERRED`` for reads, ``BEGIN
  IMMEDIATE`` when a session asks for it with the ``sqlite_begin`` execution option), so a
  writer takes SQLite's single write lock up front instead of failing to upgrade a read lock.
* PostgreSQL uses a pool without pre-ping: a dead pooled connection fails its first statement
  and the transaction runner retries (:func:`~assay.storage.sql.session.is_transient`).
* :func:`open_schema` upgrades (concurrent openers wait on an advisory lock) or refuses an
  out-of-date schema, naming ``assay db upgrade``.

May import: sqlalchemy, :mod:`assay.storage.migrate`, :mod:`assay.storage.urls`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from assay.storage.migrate import check_schema, upgrade
from assay.storage.urls import is_sqlite_url, sqlite_database

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Key of the PostgreSQL advisory lock that serialises schema upgrades.
UPGRADE_LOCK_KEY = 7438291


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine with the settings Assay relies on (see the module docstring).

    Args:
        url: A normalised SQLAlchemy URL (:func:`assay.storage.urls.normalize_database_url`).
        pool_size: Connections kept open (PostgreSQL); up to twice as many more on demand.
    """
    if is_sqlite_url(url):
        memory = sqlite_database(url) is None
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # No pre-ping: it costs a round trip on every checkout (a tell is six in all). A pooled
    # connection that died (server restart) fails its first statement instead; SQLAlchemy
    # then invalidates it, the pool drops its siblings, and the transaction runner retries
    # the whole transaction (``is_transient``: a disconnect is transient).
    return create_engine(url, pool_size=pool_size, max_overflow=2 * pool_size)


def open_schema(engine: Engine, *, migrate: bool) -> None:
    """Bring the schema up to date (``migrate``), or raise
    :class:`~assay.platform.errors.SchemaOutOfDateError` unless it already is.

    Concurrent upgraders of one PostgreSQL database wait for each other (advisory lock).
    """
    if not migrate:
        check_schema(engine)
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({UPGRADE_LOCK_KEY})")
            try:
                upgrade(engine)
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({UPGRADE_LOCK_KEY})")
                conn.commit()
        return
    upgrade(engine)


__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "make_engine", "open_schema"]
