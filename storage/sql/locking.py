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
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from assay.platform.errors import LockTimeoutError, StorageBusyError
from assay.platform.experiment import Arm, Experiment, Trial, utcnow
from assay.storage.base import ExperimentLock, NewTrial
from assay.storage.orm import (
    ArmRow,
    ExperimentRow,
    IdempotencyKeyRow,
    TrialArmRow,
    TrialEventRow,
    TrialRow,
)
from assay.storage.sql.codec import load_trial
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
        """Insert the trials, their new arms, their links and their "created" events in a
        fixed handful of statements whatever ``len(trials)`` (multi-row inserts with
        ``RETURNING``), and return them built from what was written (no read-back).

        The next trial number and the existing arms come from the locked snapshot: every
        path that creates trials holds the experiment's lock, so the snapshot is complete;
        should it ever not be, the unique constraints on ``(experiment, index)`` and
        ``(experiment, arm name)`` make the insert clash and the ask runs again
        (:func:`ask_clash`).
        """
        exp = self.experiment
        exp_id = exp.id
        next_index = max((t.index for t in exp.trials), default=-1) + 1
        known = {a.name: a.parameters for t in exp.trials for a in t.arms}
        # What the JSON columns give back when read (tuples become lists, ...), so the
        # returned trials equal a later read of the same rows; a reused arm keeps its stored
        # parameters.
        specs = [
            (
                spec,
                stored_json(spec.metadata),
                [(n, stored_json(known.get(n, p))) for n, p in spec.arms],
            )
            for spec in trials
        ]

        def fn(s: Session) -> list[Trial]:
            now = utcnow()
            ids: list[int] = []
            values: dict[str, Any] = {"updated_at": now}
            if generator_state is not None:
                values["generator_state"] = dict(generator_state)
            if model_state:
                values["model_state"] = dict(model_state)
            if specs and self._db.dialect == "postgresql":
                # One round trip for every row of the ask while the experiment stays locked
                # (was five: trials, arms, links, events, experiment update).
                ids = pg_insert_trials(s, exp_id, next_index, specs, known, now, actor, values)
            elif specs:  # an import of an experiment without trials adds none
                trial_rows = [
                    {"experiment_id": exp_id, "index": next_index + k, "state": spec.state.value,
                     "generator": spec.generator, "reason": None, "trial_metadata": meta,
                     "lease_expires_at": spec.lease_expires_at, "created_at": now, "updated_at": now}
                    for k, (spec, meta, _) in enumerate(specs)
                ]  # fmt: skip
                # RETURNING the natural key with the id: any row order will do, so every backend
                # batches the rows into one statement (``sort_by_parameter_order`` would make
                # SQLite send one INSERT per row).
                by_index = dict(
                    s.execute(
                        insert(TrialRow).returning(TrialRow.index, TrialRow.id), trial_rows
                    ).all()
                )
                ids = [by_index[next_index + k] for k in range(len(specs))]
                reused = sorted({n for _, _, arms in specs for n, _ in arms if n in known})
                arm_ids: dict[str, int] = {}
                if reused:
                    arm_ids.update(
                        s.execute(
                            select(ArmRow.name, ArmRow.id).where(
                                ArmRow.experiment_id == exp_id, ArmRow.name.in_(reused)
                            )
                        ).all()
                    )
                fresh: dict[str, dict[str, Any]] = {}
                for _, _, arms in specs:
                    for name, params in arms:
                        if name not in arm_ids:
                            fresh.setdefault(name, params)
                if fresh:
                    rows = s.execute(
                        insert(ArmRow).returning(ArmRow.name, ArmRow.id),
                        [
                            {"experiment_id": exp_id, "name": n, "parameters": p}
                            for n, p in fresh.items()
                        ],
                    ).all()
                    arm_ids.update((name, arm_id) for name, arm_id in rows)
                s.execute(
                    insert(TrialArmRow),
                    [
                        {"trial_id": tid, "arm_id": arm_ids[name], "position": position}
                        for tid, (_, _, arms) in zip(ids, specs, strict=True)
                        for position, (name, _) in enumerate(arms)
                    ],
                )
                s.execute(
                    insert(TrialEventRow),
                    [
                        {"experiment_id": exp_id, "trial_id": tid, "from_state": None,
                         "to_state": spec.state.value, "at": now, "actor": actor,
                         "reason": "created", "details": {}}
                        for tid, (spec, _, _) in zip(ids, specs, strict=True)
                    ],
                )  # fmt: skip
            if idempotency_key is not None:
                s.execute(
                    insert(IdempotencyKeyRow).values(
                        experiment_id=exp_id, key=idempotency_key, trial_ids=ids, created_at=now
                    )
                )
            if not (specs and self._db.dialect == "postgresql"):  # else done with the rows
                s.execute(update(ExperimentRow).where(ExperimentRow.id == exp_id).values(**values))
            return [
                Trial(
                    id=tid, experiment_id=exp_id, index=next_index + k, state=spec.state,
                    generator=spec.generator, arms=[Arm(n, p) for n, p in arms],
                    observations={}, created_at=now, updated_at=now,
                    lease_expires_at=spec.lease_expires_at, reason=None, metadata=meta,
                )
                for k, (tid, (spec, meta, arms)) in enumerate(zip(ids, specs, strict=True))
            ]  # fmt: skip

        return self._write(fn)


#: PostgreSQL: every row an ask writes, in one statement of data-modifying CTEs (see
#: :func:`pg_insert_trials`). A fixed text with the rows as JSON parameters (expanded by
#: ``jsonb_to_recordset``), so it is compiled once and prepared by the driver: building the
#: same statement per ask with SQLAlchemy ``values()`` cost more CPU than the round trips saved.
PG_ASK_WRITE = text("""
WITH tv AS (
    SELECT * FROM jsonb_to_recordset(CAST(:trials AS jsonb))
        AS x(idx integer, state varchar, gen varchar, meta jsonb, lease timestamptz)
), new_trials AS (
    INSERT INTO trials (experiment_id, index, state, generator, reason, metadata,
                        lease_expires_at, created_at, updated_at)
    SELECT :exp, idx, state, gen, NULL, meta, lease, :now, :now FROM tv
    RETURNING id, index
), new_arms AS (
    INSERT INTO arms (experiment_id, name, parameters)
    SELECT :exp, a.name, a.params
    FROM jsonb_to_recordset(CAST(:arms AS jsonb)) AS a(name varchar, params jsonb)
    RETURNING id, name
), lv AS (
    SELECT * FROM jsonb_to_recordset(CAST(:links AS jsonb))
        AS l(idx integer, name varchar, pos integer)
), new_links AS (
    INSERT INTO trial_arms (trial_id, arm_id, position)
    SELECT t.id, COALESCE(na.id, oa.id), lv.pos
    FROM lv JOIN new_trials t ON t.index = lv.idx
    LEFT JOIN new_arms na ON na.name = lv.name
    LEFT JOIN arms oa ON oa.experiment_id = :exp AND oa.name = lv.name
    RETURNING trial_id
), new_events AS (
    INSERT INTO trial_events (experiment_id, trial_id, from_state, to_state, at, actor, reason,
                              details)
    SELECT :exp, t.id, NULL, tv.state, :now, CAST(:actor AS varchar), 'created', '{}'::jsonb
    FROM new_trials t JOIN tv ON tv.idx = t.index
    RETURNING id
), experiment_update AS (
    UPDATE experiments SET updated_at = :now,
        generator_state = COALESCE(CAST(:generator_state AS jsonb), generator_state),
        model_state = COALESCE(CAST(:model_state AS jsonb), model_state)
    WHERE id = :exp
    RETURNING id
)
SELECT index, id FROM new_trials
""")


def pg_insert_trials(
    s: Session,
    exp_id: int,
    next_index: int,
    specs: Sequence[tuple[NewTrial, Any, list[tuple[str, Any]]]],
    known: Mapping[str, Any],
    now: Any,
    actor: str | None,
    experiment_values: Mapping[str, Any],
) -> list[int]:
    """PostgreSQL: write an ask's trials, their new arms, the trial-arm links, the "created"
    events and the experiment's update (generator/model state, ``updated_at``) in **one**
    statement of data-modifying CTEs (:data:`PG_ASK_WRITE`), and return the new trial ids
    in index order.

    Every sub-statement of one ``WITH`` sees the same snapshot and runs once; the rows
    inserted by the ``new_trials`` and ``new_arms`` CTEs reach the links and events through
    their ``RETURNING`` lists, and the foreign keys are checked at the end of the statement,
    when those rows exist (PostgreSQL manual, "Data-Modifying Statements in WITH"). Arms
    reused by name (the control, carried-over arms) are found by ``(experiment_id, name)`` in
    the stored ``arms``. A unique clash raises ``IntegrityError`` as the separate inserts did
    (the ask is retried, :func:`ask_clash`).
    """
    fresh: dict[str, Any] = {}
    for _, _, arms in specs:
        for name, params in arms:
            if name not in known:
                fresh.setdefault(name, params)
    trials = [
        {"idx": next_index + k, "state": spec.state.value, "gen": spec.generator, "meta": meta,
         "lease": spec.lease_expires_at.isoformat() if spec.lease_expires_at else None}
        for k, (spec, meta, _) in enumerate(specs)
    ]  # fmt: skip
    links = [
        {"idx": next_index + k, "name": name, "pos": pos}
        for k, (_, _, arms) in enumerate(specs)
        for pos, (name, _) in enumerate(arms)
    ]
    state = experiment_values.get("generator_state")
    model = experiment_values.get("model_state")
    rows = s.execute(
        PG_ASK_WRITE,
        {"trials": json.dumps(trials),
         "arms": json.dumps([{"name": n, "params": p} for n, p in fresh.items()]),
         "links": json.dumps(links), "exp": exp_id, "now": now, "actor": actor,
         "generator_state": None if state is None else json.dumps(state),
         "model_state": None if model is None else json.dumps(model)},
    ).all()  # fmt: skip
    by_index = dict(rows)
    return [by_index[next_index + k] for k in range(len(specs))]


def stored_json(value: Any) -> Any:
    """``value`` as a JSON column returns it (a copy: tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


__all__ = ["ProcessLocks", "SqlExperimentLock", "ask_clash", "busy_experiment", "stored_json"]
