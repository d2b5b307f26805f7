"""Serialising asks on one experiment in SQL, and the ask's unit of work.

* PostgreSQL: the whole ask is one transaction that holds ``SELECT ... FOR NO KEY UPDATE`` on
  the experiment row (see :func:`~assay.storage.sql.codec.experiment_row` for why not ``FOR
  UPDATE``): any number of servers, and tells, whose inserts check the foreign key to that
  row, are not blocked.
* SQLite: an in-process lock plus an inter-process ``flock`` per experiment
  (:class:`ProcessLocks`) held for the ask, and the trials are written in a short ``BEGIN
  IMMEDIATE`` transaction — so model fitting never holds SQLite's single write lock and tells
  keep flowing meanwhile.

Either way trial numbers carry a unique constraint, and a clash on it (or on an arm name or
idempotency key) inside an ask is :class:`~assay.platform.errors.StorageBusyError`: the ask is
retried on a fresh snapshot (:func:`ask_clash`).

May import: the standard library, sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.base`,
:mod:`assay.storage.orm`, :mod:`.codec` and :mod:`.session`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from assay.platform.errors import LockTimeoutError, StorageBusyError
from assay.platform.experiment import Experiment, Trial, utcnow
from assay.storage.base import ExperimentLock, NewTrial
from assay.storage.orm import (
    ArmRow,
    ExperimentRow,
    IdempotencyKeyRow,
    TrialArmRow,
    TrialEventRow,
    TrialRow,
)
from assay.storage.sql.codec import load_one_trial, load_trial
from assay.storage.sql.session import SqlDatabase, first_line

T = TypeVar("T")


def ask_clash(e: IntegrityError) -> StorageBusyError:
    """Inside an ask, a unique clash means a concurrent writer took the same trial number
    (or arm name, or idempotency key) first: the ask is retried on a fresh snapshot."""
    return StorageBusyError(
        "a concurrent request created the same trial number; retry the ask",
        details={"reason": "unique_clash", "database": first_line(e)},
    )


def busy_experiment(experiment_id: int) -> Callable[[DBAPIError], StorageBusyError]:
    """The error for a transient failure of a whole-ask transaction on ``experiment_id``."""

    def busy(e: DBAPIError) -> StorageBusyError:
        if getattr(e.orig, "sqlstate", None) == "55P03":  # lock_timeout
            return lock_timed_out(experiment_id)
        return StorageBusyError(
            f"experiment {experiment_id} is busy (deadlock, serialization failure or lock "
            "timeout); retry the ask",
            details={"experiment_id": experiment_id, "database": first_line(e)},
        )

    return busy


#: Longest wait for an experiment's ask lock (seconds) unless the store is told otherwise
#: (``ASSAY_ASK_LOCK_TIMEOUT_S``): a request never waits forever behind a stuck ask.
LOCK_TIMEOUT_S = 10.0


def lock_timed_out(experiment_id: int) -> LockTimeoutError:
    return LockTimeoutError(
        f"experiment {experiment_id} is locked by another ask; retry shortly",
        details={"experiment_id": experiment_id},
    )


class ProcessLocks:
    """Per-experiment exclusive locks for SQLite: one ``threading.Lock`` per experiment in this
    process, and a ``flock`` on ``<db dir>/.<db name>.locks/experiment-<id>.lock`` across
    processes (none for an in-memory database, which no other process can open).

    Args:
        database: The SQLite database file (``None``: in-memory).
    """

    def __init__(self, database: str | None, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._guard = threading.Lock()
        self._threads: dict[int, threading.Lock] = {}
        self._dir = (
            Path(database).resolve().parent / f".{Path(database).name}.locks"
            if database is not None
            else None
        )

    @contextlib.contextmanager
    def hold(self, experiment_id: int) -> Iterator[None]:
        """Exclusive access to ``experiment_id`` among this process's threads and, for a
        database file, among processes; :class:`LockTimeoutError` after ``timeout_s``."""
        with self._guard:
            thread_lock = self._threads.setdefault(experiment_id, threading.Lock())
        deadline = time.monotonic() + self.timeout_s
        if not thread_lock.acquire(timeout=self.timeout_s):
            raise lock_timed_out(experiment_id)
        try:
            with self._file_lock(experiment_id, deadline):
                yield
        finally:
            thread_lock.release()

    @contextlib.contextmanager
    def _file_lock(self, experiment_id: int, deadline: float) -> Iterator[None]:
        if self._dir is None:
            yield
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dir / f"experiment-{experiment_id}.lock", os.O_RDWR | os.O_CREAT)
        try:
            delay = 0.002
            while True:  # flock has no timeout: poll without blocking until the deadline
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise lock_timed_out(experiment_id) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class SqlExperimentLock(ExperimentLock):
    """The unit of work of one ask on a SQL database (see the module docstring).

    Args:
        db: The database the trials are written to.
        session: PostgreSQL: the transaction that holds the experiment's row lock (every
            write of the ask goes into it); SQLite: ``None`` (writes are short transactions of
            their own).
        experiment: The locked snapshot.
    """

    def __init__(self, db: SqlDatabase, session: Session | None, experiment: Experiment) -> None:
        self._db = db
        self._session = session
        self.experiment = experiment

    def _write(self, fn: Callable[[Session], T]) -> T:
        if self._session is not None:  # errors are typed by lock_experiment (whole ask)
            return fn(self._session)
        return self._db.run_transaction(fn, unique_clash=ask_clash)

    def trials_for_key(self, idempotency_key: str) -> list[Trial] | None:
        def fn(s: Session) -> list[Trial] | None:
            row = s.get(IdempotencyKeyRow, (self.experiment.id, idempotency_key))
            if row is None:
                return None
            return [load_trial(s, int(i)) for i in row.trial_ids]

        return (
            self._write(fn)
            if self._session is not None
            else self._db.run_transaction(fn, write=False)
        )

    def add_trials(
        self,
        trials: Sequence[NewTrial],
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
        generator_state: Mapping[str, Any] | None = None,
        model_state: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        exp_id = self.experiment.id

        def fn(s: Session) -> list[Trial]:
            now = utcnow()
            index = s.scalar(
                select(func.coalesce(func.max(TrialRow.index) + 1, 0)).where(
                    TrialRow.experiment_id == exp_id
                )
            )
            names = {name for spec in trials for name, _ in spec.arms}
            arm_ids = dict(
                s.execute(
                    select(ArmRow.name, ArmRow.id).where(
                        ArmRow.experiment_id == exp_id, ArmRow.name.in_(names)
                    )
                ).all()
            )
            ids = []
            for spec in trials:
                row = TrialRow(
                    experiment_id=exp_id, index=index, state=spec.state.value,
                    generator=spec.generator, reason=None, trial_metadata=dict(spec.metadata),
                    lease_expires_at=spec.lease_expires_at, created_at=now, updated_at=now,
                )  # fmt: skip
                s.add(row)
                s.flush()
                for position, (name, params) in enumerate(spec.arms):
                    if name not in arm_ids:
                        arm = ArmRow(experiment_id=exp_id, name=name, parameters=dict(params))
                        s.add(arm)
                        s.flush()
                        arm_ids[name] = arm.id
                    s.add(TrialArmRow(trial_id=row.id, arm_id=arm_ids[name], position=position))
                s.add(
                    TrialEventRow(
                        experiment_id=exp_id, trial_id=row.id, from_state=None,
                        to_state=spec.state.value, at=now, actor=actor, reason="created",
                        details={},
                    )
                )  # fmt: skip
                ids.append(row.id)
                index += 1
            if idempotency_key is not None:
                s.add(
                    IdempotencyKeyRow(
                        experiment_id=exp_id, key=idempotency_key, trial_ids=ids, created_at=now
                    )
                )
            values: dict[str, Any] = {"updated_at": now}
            if generator_state is not None:
                values["generator_state"] = dict(generator_state)
            if model_state:
                values["model_state"] = dict(model_state)
            s.execute(update(ExperimentRow).where(ExperimentRow.id == exp_id).values(**values))
            s.flush()
            return [load_one_trial(s, i, None)[0] for i in ids]

        return self._write(fn)


__all__ = ["ProcessLocks", "SqlExperimentLock", "ask_clash", "busy_experiment"]
