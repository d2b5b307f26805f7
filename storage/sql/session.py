"""Sessions and the transaction runner: every SQL store method is one call of
:meth:`SqlDatabase.run_transaction`, and every driver error becomes a typed error here.

* Reads run in ``REPEATABLE READ`` on PostgreSQL, so their several queries see one snapshot
  (``READ COMMITTED`` would let a trial committed mid-load appear in some queries only);
  read-only ``REPEATABLE READ`` transactions never fail to serialise. Writes on SQLite begin
  with ``BEGIN IMMEDIATE`` (see :mod:`.engine`).
* Transient failures — PostgreSQL serialization failures, deadlocks and lock timeouts, SQLite
  "database is locked" — are retried a bounded number of times with jittered exponential
  back-off; one that outlasts the retries is :class:`~assay.platform.errors.StorageBusyError`
  (safe to retry: nothing was stored).
* :func:`typed_error` is the one map from driver errors to Assay's errors: integrity
  violations are ``ConflictError`` (or the caller's choice for unique clashes), transient
  ones ``StorageBusyError``, anything else ``StorageError``.

May import: sqlalchemy and :mod:`assay.platform.errors`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assay.platform.errors import AssayError, ConflictError, StorageBusyError, StorageError

log = logging.getLogger("assay.storage")
T = TypeVar("T")

#: Attempts of one transaction before a transient failure is given up (StorageBusyError).
MAX_ATTEMPTS = 6

#: Turns a unique-constraint violation into the error a caller wants instead of a conflict.
UniqueClash = Callable[[IntegrityError], AssayError]


def is_unique_violation(exc: BaseException) -> bool:
    """A unique-constraint clash (PostgreSQL SQLSTATE 23505, SQLite ``UNIQUE constraint``)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    return isinstance(exc, IntegrityError) and "unique constraint" in str(orig or exc).lower()


def is_transient(exc: BaseException) -> bool:
    """A failure the same transaction may not hit again: PostgreSQL serialization failure
    (40001), deadlock (40P01), lock not available (55P03); SQLite locked or busy; a lost
    connection (SQLAlchemy invalidated it: e.g. a pooled connection the server closed on
    restart; the pool replaces it, and the server rolled back what it had not committed)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in ("40001", "40P01", "55P03"):
        return True
    text = str(orig or exc).lower()
    return isinstance(exc, OperationalError) and (
        "database is locked" in text or "database is busy" in text
    )


def first_line(e: DBAPIError) -> str:
    """The driver's message, first line only (for error details)."""
    return str(e.orig).splitlines()[0] if e.orig else ""


def typed_error(
    e: DBAPIError,
    *,
    unique_clash: UniqueClash | None = None,
    conflict: str = (
        "the change conflicts with stored data (a concurrent request may have made it first); "
        "retry the request"
    ),
    busy: Callable[[DBAPIError], StorageBusyError] | None = None,
) -> AssayError:
    """The Assay error for a driver error that will not be retried.

    Args:
        e: The SQLAlchemy-wrapped driver error.
        unique_clash: Builds the error for a unique-constraint violation (default: a
            ``ConflictError`` with the ``conflict`` message).
        conflict: Message of the ``ConflictError`` for integrity violations.
        busy: Builds the error for a transient failure (default: "stayed busy after
            ``MAX_ATTEMPTS`` attempts").
    """
    if isinstance(e, IntegrityError):
        if unique_clash is not None and is_unique_violation(e):
            return unique_clash(e)
        return ConflictError(conflict, details={"database": first_line(e)})
    if is_transient(e):
        if busy is not None:
            return busy(e)
        return StorageBusyError(
            f"the database stayed busy after {MAX_ATTEMPTS} attempts; retry later"
        )
    return StorageError(f"database error: {type(e.orig or e).__name__}")


class SqlDatabase:
    """An engine with Assay's read and write sessions and the transaction runner.

    :class:`~assay.storage.sql.SqlStore` is one; its per-concern parts (experiments, trials,
    projects, jobs) and the SQL privacy ledger are written against this class.

    Args:
        engine: From :func:`~assay.storage.sql.engine.make_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Per thread: the project whose last trial transition here found no active webhook
        #: (read with the trial; consumed by the next enqueue, see ``SqlOutbox.enqueue``).
        self.hooks_hint = threading.local()  # .value: (project, trial id, monotonic time)
        self.dialect = engine.dialect.name
        read_bind = (
            engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else engine
        )
        write_bind = (
            engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.dialect == "sqlite"
            else engine
        )
        self._read_sessions = sessionmaker(read_bind, expire_on_commit=False)
        self._write_sessions = sessionmaker(write_bind, expire_on_commit=False)

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def write_session(self) -> Session:
        """A new write session, for a caller that holds one transaction open itself (the
        PostgreSQL ask lock); everyone else uses :meth:`run_transaction`."""
        return self._write_sessions()

    def run_transaction(
        self,
        fn: Callable[[Session], T],
        *,
        write: bool = True,
        unique_clash: UniqueClash | None = None,
    ) -> T:
        """Run ``fn(session)`` in one transaction, retrying transient failures.

        ``fn`` may run more than once, so it must do nothing outside the session that cannot
        be repeated. An :class:`~assay.platform.errors.AssayError` it raises rolls the
        transaction back and propagates unchanged; driver errors become typed errors
        (:func:`typed_error`).

        Args:
            fn: The unit of work; its return value is returned.
            write: ``False`` for read-only work (a snapshot read, no write lock).
            unique_clash: Builds the error for a unique-constraint violation (default:
                ``ConflictError``).
        """
        maker = self._write_sessions if write else self._read_sessions
        delay = 0.02
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with maker() as session, session.begin():
                    return fn(session)
            except AssayError:
                raise
            except DBAPIError as e:  # IntegrityError and OperationalError included
                retry = not isinstance(e, IntegrityError) and is_transient(e)
                if retry and attempt < MAX_ATTEMPTS:
                    log.info("transient database error (attempt %d): %s", attempt, e.orig)
                    time.sleep(delay * (1 + random.random()))
                    delay *= 2
                    continue
                raise typed_error(e, unique_clash=unique_clash) from e
        raise AssertionError("unreachable")


__all__ = [
    "MAX_ATTEMPTS",
    "SqlDatabase",
    "UniqueClash",
    "first_line",
    "is_transient",
    "is_unique_violation",
    "typed_error",
]
