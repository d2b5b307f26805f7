"""SQL store (SQLAlchemy 2): SQLite by default, PostgreSQL (psycopg 3) for several servers.

Transactions and concurrency:

* Every method runs one transaction through :meth:`SqlStore._run`, which retries transient
  failures (PostgreSQL serialization failures and deadlocks, SQLite "database is locked") a
  bounded number of times with jittered back-off, and maps the rest to typed errors.
* State changes are compare-and-set: ``UPDATE trials SET state = :new WHERE id = :id AND
  state = :old``; a concurrent change makes the update miss and the caller gets
  ``InvalidTransitionError`` with nothing written.
* Asks are serialised per experiment. PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` on the
  experiment row for the whole ask (any number of servers; tells, whose inserts check the
  foreign key to that row, are not blocked — see :meth:`SqlStore._experiment_row`). SQLite: an inter-process ``flock`` per
  experiment held for the ask, and the trials are written in a short ``BEGIN IMMEDIATE``
  transaction with a busy timeout — so model fitting never holds SQLite's single write lock
  and tells keep flowing meanwhile. Trial numbers also carry a unique constraint.
* SQLite runs in WAL mode (readers never block the writer), ``busy_timeout`` 30 s, foreign keys
  on.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from assay.platform.errors import (
    AssayError,
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    StorageBusyError,
    StorageError,
)
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
    check_transition,
    utcnow,
)
from assay.platform.jobspec import Job, JobState, TrialReport
from assay.storage.base import (
    ExperimentLock,
    ExperimentSummary,
    NewTrial,
    ObservationRecord,
    ProjectSummary,
    Store,
    TrialEvent,
)
from assay.storage.migrate import check_schema, current_revision, upgrade
from assay.storage.orm import (
    ApiKeyRow,
    ArmRow,
    ExperimentRow,
    IdempotencyKeyRow,
    JobRow,
    ObservationRow,
    ProjectRow,
    TrialArmRow,
    TrialEventRow,
    TrialReportRow,
    TrialRow,
)
from assay.storage.urls import is_sqlite_url, sqlite_database

log = logging.getLogger("assay.storage")
T = TypeVar("T")
MAX_ATTEMPTS = 6
SQLITE_BUSY_TIMEOUT_MS = 30_000


ObservationsArg = (
    Mapping[str, Mapping[str, Observation]]
    | Callable[[Trial], Mapping[str, Mapping[str, Observation]]]
    | None
)

# Hot-path statements, built once (SQLAlchemy then reuses their compiled form).
_ONE_TRIAL = (
    select(
        TrialRow.id, TrialRow.experiment_id, TrialRow.index, TrialRow.state, TrialRow.generator,
        TrialRow.reason, TrialRow.trial_metadata, TrialRow.lease_expires_at, TrialRow.created_at,
        TrialRow.updated_at, TrialArmRow.position, ArmRow.id.label("arm_id"),
        ArmRow.name.label("arm_name"), ArmRow.parameters, ObservationRow.metric,
        ObservationRow.mean, ObservationRow.sem, ObservationRow.n,
        ProjectRow.name.label("project"),
    )
    .join(TrialArmRow, TrialArmRow.trial_id == TrialRow.id)
    .join(ArmRow, ArmRow.id == TrialArmRow.arm_id)
    .outerjoin(
        ObservationRow,
        and_(ObservationRow.trial_id == TrialRow.id, ObservationRow.arm_id == ArmRow.id),
    )
    .join(ExperimentRow, ExperimentRow.id == TrialRow.experiment_id)
    .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
    .where(TrialRow.id == bindparam("p_id"))
)  # fmt: skip
_CAS_STATE = (
    update(TrialRow)
    .where(TrialRow.id == bindparam("p_id"), TrialRow.state == bindparam("p_old"))
    .values(
        state=bindparam("p_new"), reason=bindparam("p_reason"), updated_at=bindparam("p_now"),
        lease_expires_at=bindparam("p_lease"),
    )
)  # fmt: skip


#: A transient database failure that survived the bounded retries (safe to retry).
TransientStorageError = StorageBusyError


def _is_unique_violation(exc: BaseException) -> bool:
    """A unique-constraint clash (PostgreSQL SQLSTATE 23505, SQLite ``UNIQUE constraint``)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    return isinstance(exc, IntegrityError) and "unique constraint" in str(orig or exc).lower()


def _ask_clash(e: IntegrityError) -> StorageBusyError:
    """Inside an ask, a unique clash means a concurrent writer took the same trial number
    (or arm name, or idempotency key) first: the ask is retried on a fresh snapshot."""
    return StorageBusyError(
        "a concurrent request created the same trial number; retry the ask",
        details={"reason": "unique_clash", "database": _first_line(e)},
    )


def _first_line(e: DBAPIError) -> str:
    return str(e.orig).splitlines()[0] if e.orig else ""


def _is_transient(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock not available
        return True
    text = str(orig or exc).lower()
    return isinstance(exc, OperationalError) and (
        "database is locked" in text or "database is busy" in text
    )


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine with the settings Assay relies on (see the module docstring)."""
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
    return create_engine(url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True)


class _SqlLock(ExperimentLock):
    """See :meth:`SqlStore.lock_experiment`."""

    def __init__(self, store: SqlStore, session: Session | None, experiment: Experiment) -> None:
        self._store = store
        self._session = session  # PostgreSQL: the locking transaction; SQLite: None
        self.experiment = experiment

    def _write(self, fn: Callable[[Session], T]) -> T:
        if self._session is not None:  # errors are typed by lock_experiment (whole ask)
            return fn(self._session)
        return self._store._run(fn, unique_clash=_ask_clash)

    def trials_for_key(self, idempotency_key: str) -> list[Trial] | None:
        def fn(s: Session) -> list[Trial] | None:
            row = s.get(IdempotencyKeyRow, (self.experiment.id, idempotency_key))
            if row is None:
                return None
            return [self._store._load_trial(s, int(i)) for i in row.trial_ids]

        return self._write(fn) if self._session is not None else self._store._run(fn, write=False)

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
            return [self._store._load_one_trial(s, i, None)[0] for i in ids]

        return self._write(fn)


class SqlStore(Store):
    """The SQL backend.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///./assay.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        migrate: Bring the schema up to date on open (embedded use). When ``False`` the store
            refuses an out-of-date schema with :class:`SchemaOutOfDateError` naming
            ``assay db upgrade`` (server use).
    """

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        if migrate:
            self._upgrade_serialised()
        else:
            check_schema(self.engine)
        # Reads see one consistent snapshot across their several queries (PostgreSQL's
        # default READ COMMITTED would let a trial committed mid-load appear in some queries
        # only); read-only REPEATABLE READ transactions never fail to serialise.
        read_bind = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._read = sessionmaker(read_bind, expire_on_commit=False)
        write_bind = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.dialect == "sqlite"
            else self.engine
        )
        self._write = sessionmaker(write_bind, expire_on_commit=False)
        self._thread_locks: dict[int, threading.Lock] = {}
        self._cache_lock = threading.Lock()
        self._configs: dict[int, ExperimentConfig] = {}
        self._trial_cache: dict[int, dict[int, tuple[tuple, Trial]]] = {}
        self._thread_locks_guard = threading.Lock()
        db = sqlite_database(url)
        self._lock_dir = Path(db).resolve().parent / f".{Path(db).name}.locks" if db else None

    def _upgrade_serialised(self) -> None:
        """Upgrade the schema; concurrent openers wait for each other (advisory lock)."""
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_lock(7438291)")
                try:
                    upgrade(self.engine)
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(7438291)")
                    conn.commit()
            return
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def privacy_ledger(self, project: str = "default") -> Any:
        """The project's budgets in this database (:mod:`assay.storage.privacy_ledger`)."""
        from assay.storage.privacy_ledger import SqlPrivacyLedger

        return SqlPrivacyLedger(self, project)

    @property
    def schema_revision(self) -> str | None:
        return current_revision(self.engine)

    # -- transactions ------------------------------------------------------------------------
    def _run(
        self,
        fn: Callable[[Session], T],
        *,
        write: bool = True,
        unique_clash: Callable[[IntegrityError], AssayError] | None = None,
    ) -> T:
        """Run ``fn(session)`` in one transaction, retrying transient failures.

        ``unique_clash`` turns a unique-constraint violation into a chosen error (default:
        ``ConflictError``)."""
        maker = self._write if write else self._read
        delay = 0.02
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with maker() as session, session.begin():
                    return fn(session)
            except AssayError:
                raise
            except IntegrityError as e:
                if unique_clash is not None and _is_unique_violation(e):
                    raise unique_clash(e) from e
                raise ConflictError(
                    "the change conflicts with stored data (a concurrent request may have made "
                    "it first); retry the request",
                    details={"database": _first_line(e)},
                ) from e
            except (OperationalError, DBAPIError) as e:
                if _is_transient(e) and attempt < MAX_ATTEMPTS:
                    log.info("transient database error (attempt %d): %s", attempt, e.orig)
                    time.sleep(delay * (1 + random.random()))
                    delay *= 2
                    continue
                if _is_transient(e):
                    raise TransientStorageError(
                        f"the database stayed busy after {MAX_ATTEMPTS} attempts; retry later"
                    ) from e
                raise StorageError(f"database error: {type(e.orig or e).__name__}") from e
        raise AssertionError("unreachable")

    # -- row -> domain -----------------------------------------------------------------------
    @staticmethod
    def _project_filter(stmt: Any, project: str | None) -> Any:
        if project is None:
            return stmt
        return stmt.join(ProjectRow, ProjectRow.id == ExperimentRow.project_id).where(
            ProjectRow.name == project
        )

    def _experiment_row(
        self, s: Session, experiment_id: int, project: str | None, *, for_update: bool = False
    ) -> tuple[ExperimentRow, str]:
        stmt = (
            select(ExperimentRow, ProjectRow.name)
            .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
            .where(ExperimentRow.id == experiment_id)
        )
        if project is not None:
            stmt = stmt.where(ProjectRow.name == project)
        if for_update:
            # PostgreSQL: FOR NO KEY UPDATE, not FOR UPDATE. Trials, arms, trial events,
            # idempotency keys and jobs reference experiments(id); each insert into them
            # (a tell writes a trial event) checks the foreign key with FOR KEY SHARE on
            # this row, which FOR UPDATE blocks for the whole ask, model fit included.
            # NO KEY UPDATE does not conflict with KEY SHARE, yet still excludes other
            # NO KEY UPDATE / FOR UPDATE lockers (concurrent asks, status changes, deletes)
            # and plain UPDATEs of the row. It is safe because experiments.id is never
            # updated (it is only ever inserted and cascaded on delete, and a DELETE takes
            # FOR UPDATE, which still waits for the ask).
            stmt = stmt.with_for_update(of=ExperimentRow, key_share=True)
        row = s.execute(stmt).one_or_none()
        if row is None:
            raise NotFoundError(
                f"experiment {experiment_id} not found", details={"experiment_id": experiment_id}
            )
        return row[0], row[1]

    def _load_trials(self, s: Session, ids_stmt: Any) -> list[Trial]:
        """Trials whose ids ``ids_stmt`` (a ``select(TrialRow.id)...``) yields, by index.

        Three column queries (trials, arms, observations) joined on a subquery: no ORM
        identity-map overhead and no giant ``IN (...)`` lists, so loading an experiment with
        thousands of trials stays cheap.
        """
        ids = ids_stmt.subquery()
        in_ids = select(ids.c.id)
        rows = s.execute(
            select(
                TrialRow.id, TrialRow.experiment_id, TrialRow.index, TrialRow.state,
                TrialRow.generator, TrialRow.reason, TrialRow.trial_metadata,
                TrialRow.lease_expires_at, TrialRow.created_at, TrialRow.updated_at,
            )
            .where(TrialRow.id.in_(in_ids))
            .order_by(TrialRow.index)
        ).all()  # fmt: skip
        if not rows:
            return []
        arms: dict[int, list[tuple[int, str, dict]]] = {r[0]: [] for r in rows}
        arm_names: dict[int, str] = {}
        for trial_id, position, arm_id, name, params in s.execute(
            select(
                TrialArmRow.trial_id,
                TrialArmRow.position,
                ArmRow.id,
                ArmRow.name,
                ArmRow.parameters,
            )
            .join(ArmRow, ArmRow.id == TrialArmRow.arm_id)
            .where(TrialArmRow.trial_id.in_(in_ids))
        ):
            if trial_id in arms:  # (a trial created after the first query is not included)
                arms[trial_id].append((position, name, params))
            arm_names[arm_id] = name
        obs: dict[int, dict[str, dict[str, Observation]]] = {r[0]: {} for r in rows}
        for trial_id, arm_id, metric, mean, sem, n in s.execute(
            select(
                ObservationRow.trial_id, ObservationRow.arm_id, ObservationRow.metric,
                ObservationRow.mean, ObservationRow.sem, ObservationRow.n,
            ).where(ObservationRow.trial_id.in_(in_ids))
        ):  # fmt: skip
            if trial_id in obs:
                obs[trial_id].setdefault(arm_names[arm_id], {})[metric] = Observation(
                    metric, mean, sem, n
                )
        return [
            Trial(
                id=tid, experiment_id=exp_id, index=index, state=TrialState(state),
                generator=generator,
                arms=[Arm(n, dict(p)) for _, n, p in sorted(arms[tid], key=lambda a: a[0])],
                observations=obs[tid], created_at=created, updated_at=updated,
                lease_expires_at=lease, reason=reason, metadata=dict(meta or {}),
            )
            for (tid, exp_id, index, state, generator, reason, meta, lease, created, updated) in rows
        ]  # fmt: skip

    def _load_one_trial(
        self, s: Session, trial_id: int, project: str | None
    ) -> tuple[Trial, dict[str, int]]:
        """One trial (and its arm ids) in a single pre-built query: the hot path of tells."""
        rows = s.execute(_ONE_TRIAL, {"p_id": trial_id}).all()
        if not rows or (project is not None and rows[0].project != project):
            raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
        r0 = rows[0]
        arms: dict[str, tuple[int, int, dict]] = {}
        obs: dict[str, dict[str, Observation]] = {}
        for r in rows:
            arms[r.arm_name] = (r.position, r.arm_id, r.parameters)
            if r.metric is not None:
                obs.setdefault(r.arm_name, {})[r.metric] = Observation(r.metric, r.mean, r.sem, r.n)
        ordered = sorted(arms.items(), key=lambda kv: kv[1][0])
        trial = Trial(
            id=r0.id, experiment_id=r0.experiment_id, index=r0.index, state=TrialState(r0.state),
            generator=r0.generator, arms=[Arm(n, dict(v[2])) for n, v in ordered],
            observations=obs, created_at=r0.created_at, updated_at=r0.updated_at,
            lease_expires_at=r0.lease_expires_at, reason=r0.reason,
            metadata=dict(r0.trial_metadata or {}),
        )  # fmt: skip
        return trial, {n: v[1] for n, v in arms.items()}

    def _load_trial(self, s: Session, trial_id: int, project: str | None = None) -> Trial:
        stmt = select(TrialRow.id).where(TrialRow.id == trial_id)
        if project is not None:
            stmt = (
                stmt.join(ExperimentRow, ExperimentRow.id == TrialRow.experiment_id)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(ProjectRow.name == project)
            )
        found = self._load_trials(s, stmt)
        if not found:
            raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
        return found[0]

    def _load_experiment(
        self, s: Session, row: ExperimentRow, project: str, *, private: bool = False
    ) -> Experiment:
        """``private`` snapshots (asks under the lock, never handed to users) share the
        cached trial objects instead of copying them."""
        return Experiment(
            id=row.id,
            config=self._config_for(row),
            trials=self._experiment_trials(s, row.id, copy_trials=not private),
            status=ExperimentStatus(row.status),
            project=project,
            generator_state=dict(row.generator_state or {}),
            model_state=dict(row.model_state or {}),
            run_state=row.run_state,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _config_for(self, row: ExperimentRow) -> ExperimentConfig:
        """Parsed configurations are cached: they never change after creation."""
        with self._cache_lock:
            config = self._configs.get(row.id)
        if config is None:
            config = ExperimentConfig.from_dict(row.config)
            with self._cache_lock:
                self._configs[row.id] = config
        return copy.deepcopy(config)

    def _experiment_trials(
        self, s: Session, experiment_id: int, *, copy_trials: bool = True
    ) -> list[Trial]:
        """All trials of an experiment, re-reading only those that changed.

        Every change of a trial row (state, observations — written with the completion —
        reason) sets ``updated_at``; leases change ``lease_expires_at``; arms never change.
        So a light ``(id, updated_at, lease)`` scan tells which cached trials are current and
        only new or changed trials are loaded in full: an ask on an experiment with thousands
        of trials costs one narrow query plus the handful of trials that moved. Callers get
        copies, so nothing they do can touch the cache.
        """
        keys = s.execute(
            select(TrialRow.id, TrialRow.updated_at, TrialRow.lease_expires_at)
            .where(TrialRow.experiment_id == experiment_id)
            .order_by(TrialRow.index)
        ).all()
        with self._cache_lock:
            cache = self._trial_cache.setdefault(experiment_id, {})
            stale = [k.id for k in keys if cache.get(k.id, (None,))[0] != (k[1], k[2])]
        if stale:
            stmt = select(TrialRow.id).where(TrialRow.experiment_id == experiment_id)
            if len(stale) < 500:
                stmt = stmt.where(TrialRow.id.in_(stale))
            fresh = {t.id: t for t in self._load_trials(s, stmt)}
            with self._cache_lock:
                for k in keys:
                    if k.id in fresh:
                        cache[k.id] = ((k[1], k[2]), fresh[k.id])
                for gone in set(cache) - {k.id for k in keys}:
                    del cache[gone]
        with self._cache_lock:
            trials = [cache[k.id][1] for k in keys if k.id in cache]
        return [_copy_trial(t) for t in trials] if copy_trials else trials

    # -- experiments -------------------------------------------------------------------------
    def _project_id(self, s: Session, name: str) -> int:
        pid = s.scalar(select(ProjectRow.id).where(ProjectRow.name == name))
        if pid is None:
            row = ProjectRow(name=name, created_at=utcnow())
            s.add(row)
            s.flush()
            pid = row.id
        return pid

    def create_experiment(
        self, config: ExperimentConfig, *, project: str = "default"
    ) -> Experiment:
        def fn(s: Session) -> Experiment:
            pid = self._project_id(s, project)
            exists = s.scalar(
                select(ExperimentRow.id).where(
                    ExperimentRow.project_id == pid, ExperimentRow.name == config.name
                )
            )
            if exists is not None:
                raise ConflictError(
                    f"an experiment named {config.name!r} already exists in project {project!r}",
                    field="name",
                    details={"experiment_id": exists},
                )
            now = utcnow()
            row = ExperimentRow(
                project_id=pid, name=config.name, status=ExperimentStatus.ACTIVE.value,
                config=config.to_dict(), generator_state={}, model_state={},
                created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return self._load_experiment(s, row, project)

        return self._run(fn)

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        def fn(s: Session) -> Experiment:
            row, pname = self._experiment_row(s, experiment_id, project)
            return self._load_experiment(s, row, pname)

        return self._run(fn, write=False)

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        def fn(s: Session) -> list[ExperimentSummary]:
            stmt = (
                select(ExperimentRow, ProjectRow.name)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .order_by(ExperimentRow.id.desc())
            )
            if project is not None:
                stmt = stmt.where(ProjectRow.name == project)
            if status is not None:
                stmt = stmt.where(ExperimentRow.status == ExperimentStatus(status).value)
            rows = s.execute(stmt).all()
            counts: dict[int, dict[str, int]] = {r[0].id: {} for r in rows}
            activity: dict[int, datetime] = {}
            if rows:
                for exp_id, state, n, last in s.execute(
                    select(
                        TrialRow.experiment_id, TrialRow.state, func.count(),
                        func.max(TrialRow.updated_at),
                    )
                    .where(TrialRow.experiment_id.in_(list(counts)))
                    .group_by(TrialRow.experiment_id, TrialRow.state)
                ):  # fmt: skip
                    counts[exp_id][state] = n
                    if last is not None and (exp_id not in activity or last > activity[exp_id]):
                        activity[exp_id] = last
            out = []
            for row, pname in rows:
                obj = (row.config.get("objectives") or [{}])[0]
                out.append(
                    ExperimentSummary(
                        row.id, row.name, pname, ExperimentStatus(row.status),
                        row.config.get("generator", ""), obj.get("name", ""),
                        bool(obj.get("minimize", False)), counts[row.id], row.created_at,
                        max(row.updated_at, activity.get(row.id, row.updated_at)),
                    )
                )  # fmt: skip
            return out

        return self._run(fn, write=False)

    def set_experiment_status(
        self, experiment_id: int, status: ExperimentStatus, *, project: str | None = None
    ) -> Experiment:
        def fn(s: Session) -> Experiment:
            row, pname = self._experiment_row(s, experiment_id, project, for_update=True)
            row.status = ExperimentStatus(status).value
            row.updated_at = utcnow()
            s.flush()
            return self._load_experiment(s, row, pname)

        return self._run(fn)

    def _thread_lock(self, experiment_id: int) -> threading.Lock:
        with self._thread_locks_guard:
            return self._thread_locks.setdefault(experiment_id, threading.Lock())

    @contextlib.contextmanager
    def lock_experiment(
        self, experiment_id: int, *, project: str | None = None
    ) -> Iterator[ExperimentLock]:
        if self.dialect == "postgresql":
            session = self._write()
            try:
                with session.begin():
                    row, pname = self._experiment_row(
                        session, experiment_id, project, for_update=True
                    )
                    yield _SqlLock(
                        self, session, self._load_experiment(session, row, pname, private=True)
                    )
            # The whole ask is one transaction: a failure in the lock, in ``add_trials`` or
            # at commit (deferred checks) rolls everything back and is typed here, so the
            # engine's one retry loop (``Engine.ask``) can run the ask again on a fresh
            # snapshot; nothing reaches the client as an untyped 500.
            except IntegrityError as e:
                if _is_unique_violation(e):
                    raise _ask_clash(e) from e
                raise ConflictError(
                    "the ask conflicts with stored data; retry the request",
                    details={"database": _first_line(e)},
                ) from e
            except DBAPIError as e:  # OperationalError included
                if _is_transient(e):
                    raise StorageBusyError(
                        f"experiment {experiment_id} is busy (deadlock, serialization failure or "
                        "lock timeout); retry the ask",
                        details={"experiment_id": experiment_id, "database": _first_line(e)},
                    ) from e
                raise StorageError(f"database error: {type(e.orig or e).__name__}") from e
            finally:
                session.close()
            return
        with self._thread_lock(experiment_id), self._file_lock(experiment_id):

            def snapshot(s: Session) -> Experiment:
                row, pname = self._experiment_row(s, experiment_id, project)
                return self._load_experiment(s, row, pname, private=True)

            yield _SqlLock(self, None, self._run(snapshot, write=False))

    @contextlib.contextmanager
    def _file_lock(self, experiment_id: int) -> Iterator[None]:
        """Cross-process exclusive lock for one experiment of a SQLite database."""
        if self._lock_dir is None:
            yield
            return
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_dir / f"experiment-{experiment_id}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- trials ------------------------------------------------------------------------------
    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        return self._run(lambda s: self._load_one_trial(s, trial_id, project)[0], write=False)

    def _trials_stmt(self, experiment_id: int, states: Sequence[TrialState] | None) -> Any:
        stmt = select(TrialRow.id).where(TrialRow.experiment_id == experiment_id)
        if states:
            stmt = stmt.where(TrialRow.state.in_([TrialState(x).value for x in states]))
        return stmt

    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Trial]:
        def fn(s: Session) -> list[Trial]:
            self._experiment_row(s, experiment_id, project)
            stmt = self._trials_stmt(experiment_id, states).order_by(TrialRow.index).offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            return self._load_trials(s, stmt)

        return self._run(fn, write=False)

    def count_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> int:
        def fn(s: Session) -> int:
            self._experiment_row(s, experiment_id, project)
            sub = self._trials_stmt(experiment_id, states).subquery()
            return int(s.scalar(select(func.count()).select_from(sub)) or 0)

        return self._run(fn, write=False)

    def transition_trial(
        self,
        trial_id: int,
        to_state: TrialState,
        *,
        project: str | None = None,
        observations: ObservationsArg = None,
        reason: str | None = None,
        actor: str | None = None,
        lease_expires_at: datetime | None = None,
        expected_states: Sequence[TrialState] | None = None,
    ) -> Trial:
        def fn(s: Session) -> Trial:
            trial, arm_ids = self._load_one_trial(s, trial_id, project)
            if expected_states is not None and trial.state not in expected_states:
                raise InvalidTransitionError(
                    f"trial {trial_id} is {trial.state.value}, expected one of "
                    f"{[x.value for x in expected_states]}",
                    details={"trial_id": trial_id, "state": trial.state.value},
                )
            check_transition(trial_id, trial.state, to_state)
            obs = observations(trial) if callable(observations) else observations
            now = utcnow()
            lease = lease_expires_at if to_state is TrialState.RUNNING else None
            result = s.execute(
                _CAS_STATE,
                {"p_id": trial_id, "p_old": trial.state.value, "p_new": to_state.value,
                 "p_reason": reason, "p_now": now, "p_lease": lease},
            )  # fmt: skip
            if result.rowcount != 1:  # lost a race: someone changed it first
                stored, _ = self._load_one_trial(s, trial_id, None)
                check_transition(trial_id, stored.state, to_state)
                raise InvalidTransitionError(
                    f"trial {trial_id} changed concurrently; retry",
                    details={"trial_id": trial_id},
                )
            if obs:
                s.execute(
                    insert(ObservationRow),
                    [
                        {"trial_id": trial_id, "arm_id": arm_ids[arm], "metric": o.metric,
                         "mean": o.mean, "sem": o.sem, "n": o.n, "created_at": now}
                        for arm, by_metric in obs.items()
                        for o in by_metric.values()
                    ],
                )  # fmt: skip
            s.execute(
                insert(TrialEventRow),
                [{"experiment_id": trial.experiment_id, "trial_id": trial_id,
                  "from_state": trial.state.value, "to_state": to_state.value, "at": now,
                  "actor": actor, "reason": reason, "details": {}}],
            )  # fmt: skip
            if obs:
                trial.observations = {a: dict(o) for a, o in obs.items()}
            trial.state, trial.reason, trial.updated_at = to_state, reason, now
            trial.lease_expires_at = lease
            return trial

        return self._run(fn)

    def get_experiment_config(
        self, experiment_id: int, *, project: str | None = None
    ) -> ExperimentConfig:
        def fn(s: Session) -> ExperimentConfig:
            row, _ = self._experiment_row(s, experiment_id, project)
            return ExperimentConfig.from_dict(row.config)

        return self._run(fn, write=False)

    def heartbeat(
        self, trial_id: int, lease_expires_at: datetime, *, project: str | None = None
    ) -> Trial:
        def fn(s: Session) -> Trial:
            trial = self._load_trial(s, trial_id, project)
            result = s.execute(
                update(TrialRow)
                .where(TrialRow.id == trial_id, TrialRow.state == TrialState.RUNNING.value)
                .values(lease_expires_at=lease_expires_at)
            )
            if result.rowcount != 1:
                raise InvalidTransitionError(
                    f"trial {trial_id} is {trial.state.value}; only running trials take heartbeats",
                    details={"trial_id": trial_id, "state": trial.state.value},
                )
            trial.lease_expires_at = lease_expires_at
            return trial

        return self._run(fn)

    def reap_expired_leases(self, now: datetime, *, actor: str = "reaper") -> list[Trial]:
        def find(s: Session) -> list[int]:
            return list(
                s.scalars(
                    select(TrialRow.id).where(
                        TrialRow.state == TrialState.RUNNING.value,
                        TrialRow.lease_expires_at.is_not(None),
                        TrialRow.lease_expires_at < now,
                    )
                )
            )

        out = []
        for trial_id in self._run(find, write=False):
            try:
                out.append(
                    self.transition_trial(
                        trial_id,
                        TrialState.FAILED,
                        reason=f"lease expired before {now.isoformat()} (no heartbeat)",
                        actor=actor,
                        expected_states=[TrialState.RUNNING],
                    )
                )
            except InvalidTransitionError:  # completed or reaped by another server meanwhile
                continue
        return out

    def list_events(
        self, *, experiment_id: int | None = None, trial_id: int | None = None, after: int = 0
    ) -> list[TrialEvent]:
        def fn(s: Session) -> list[TrialEvent]:
            stmt = select(TrialEventRow).where(TrialEventRow.id > after).order_by(TrialEventRow.id)
            if experiment_id is not None:
                stmt = stmt.where(TrialEventRow.experiment_id == experiment_id)
            if trial_id is not None:
                stmt = stmt.where(TrialEventRow.trial_id == trial_id)
            return [
                TrialEvent(
                    e.id, e.trial_id, e.experiment_id,
                    TrialState(e.from_state) if e.from_state else None, TrialState(e.to_state),
                    e.at, e.actor, e.reason, dict(e.details or {}),
                )
                for e in s.scalars(stmt)
            ]  # fmt: skip

        return self._run(fn, write=False)

    # -- cheap reads for dashboards ---------------------------------------------------------
    def latest_event_id(self, *, experiment_id: int | None = None) -> int:
        stmt = select(func.max(TrialEventRow.id))
        if experiment_id is not None:  # index (experiment_id, id): one index probe
            stmt = stmt.where(TrialEventRow.experiment_id == experiment_id)
        return self._run(lambda s: int(s.scalar(stmt) or 0), write=False)

    def completed_observations(
        self, experiment_ids: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[ObservationRecord]:
        ids = list(experiment_ids)
        if not ids:
            return []
        stmt = (
            select(
                TrialRow.experiment_id, TrialRow.id, TrialRow.index, ArmRow.name,
                ObservationRow.metric, ObservationRow.mean, ObservationRow.sem,
            )
            .join(ObservationRow, ObservationRow.trial_id == TrialRow.id)
            .join(ArmRow, ArmRow.id == ObservationRow.arm_id)
            .where(
                TrialRow.experiment_id.in_(ids),
                TrialRow.state == TrialState.COMPLETED.value,
            )
            .order_by(TrialRow.experiment_id, TrialRow.index, ArmRow.name, ObservationRow.metric)
        )  # fmt: skip
        if metrics is not None:
            stmt = stmt.where(ObservationRow.metric.in_(list(metrics)))
        return self._run(
            lambda s: [ObservationRecord(*row) for row in s.execute(stmt)], write=False
        )

    # -- projects and keys -------------------------------------------------------------------
    def ensure_project(self, name: str) -> None:
        self._run(lambda s: self._project_id(s, name))

    def list_projects(self) -> list[str]:
        return self._run(
            lambda s: list(s.scalars(select(ProjectRow.name).order_by(ProjectRow.name))),
            write=False,
        )

    def create_project(self, name: str) -> ProjectSummary:
        def fn(s: Session) -> ProjectSummary:
            if s.scalar(select(ProjectRow.id).where(ProjectRow.name == name)) is not None:
                raise ConflictError(f"project {name!r} already exists", field="name")
            row = ProjectRow(name=name, created_at=utcnow())
            s.add(row)
            s.flush()
            return ProjectSummary(row.name, row.created_at, 0)

        def clash(e: IntegrityError) -> ConflictError:  # created concurrently
            return ConflictError(f"project {name!r} already exists", field="name")

        return self._run(fn, unique_clash=clash)

    def project_summaries(self, *, name: str | None = None) -> list[ProjectSummary]:
        stmt = (
            select(ProjectRow.name, ProjectRow.created_at, func.count(ExperimentRow.id))
            .outerjoin(ExperimentRow, ExperimentRow.project_id == ProjectRow.id)
            .group_by(ProjectRow.id, ProjectRow.name, ProjectRow.created_at)
            .order_by(ProjectRow.name)
        )
        if name is not None:
            stmt = stmt.where(ProjectRow.name == name)
        return self._run(
            lambda s: [ProjectSummary(n, at, int(c)) for n, at, c in s.execute(stmt)],
            write=False,
        )

    def add_api_key(self, project: str, key_hash: str, *, name: str, prefix: str) -> None:
        def fn(s: Session) -> None:
            pid = self._project_id(s, project)
            s.add(
                ApiKeyRow(
                    project_id=pid, name=name, prefix=prefix, key_hash=key_hash,
                    created_at=utcnow(), revoked_at=None,
                )
            )  # fmt: skip

        self._run(fn)

    def project_for_key(self, key_hash: str) -> str | None:
        return self._run(
            lambda s: s.scalar(
                select(ProjectRow.name)
                .join(ApiKeyRow, ApiKeyRow.project_id == ProjectRow.id)
                .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
            ),
            write=False,
        )

    # -- jobs --------------------------------------------------------------------------------
    def set_run_state(
        self, experiment_id: int, run_state: str | None, *, project: str | None = None
    ) -> None:
        def fn(s: Session) -> None:
            row, _ = self._experiment_row(s, experiment_id, project)
            row.run_state = run_state

        self._run(fn)

    def runnable_experiments(self) -> list[int]:
        return self._run(
            lambda s: list(
                s.scalars(
                    select(ExperimentRow.id).where(
                        ExperimentRow.run_state == "running",
                        ExperimentRow.status == ExperimentStatus.ACTIVE.value,
                    )
                )
            ),
            write=False,
        )

    def claim_candidates(
        self,
        experiment_id: int,
        limit: int,
        *,
        lease_expires_at: datetime | None,
        actor: str | None = None,
    ) -> list[Trial]:
        def fn(s: Session) -> list[Trial]:
            stmt = (
                select(TrialRow.id)
                .where(
                    TrialRow.experiment_id == experiment_id,
                    TrialRow.state == TrialState.CANDIDATE.value,
                )
                .order_by(TrialRow.index)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list(s.scalars(stmt))
            now = utcnow()
            claimed = []
            for trial_id in ids:
                result = s.execute(
                    _CAS_STATE,
                    {"p_id": trial_id, "p_old": TrialState.CANDIDATE.value,
                     "p_new": TrialState.RUNNING.value, "p_reason": None, "p_now": now,
                     "p_lease": lease_expires_at},
                )  # fmt: skip
                if result.rowcount == 1:
                    claimed.append(trial_id)
            if claimed:
                s.execute(
                    insert(TrialEventRow),
                    [{"experiment_id": experiment_id, "trial_id": i,
                      "from_state": TrialState.CANDIDATE.value,
                      "to_state": TrialState.RUNNING.value, "at": now, "actor": actor,
                      "reason": "claimed", "details": {}} for i in claimed],
                )  # fmt: skip
            return self._load_trials(s, select(TrialRow.id).where(TrialRow.id.in_(claimed)))

        return self._run(fn)

    @staticmethod
    def _job_from_row(r: JobRow) -> Job:
        return Job(
            id=r.id, trial_id=r.trial_id, experiment_id=r.experiment_id, executor=r.executor,
            worker=r.worker, state=JobState(r.state), attempt=r.attempt,
            handle=dict(r.handle or {}), resources=dict(r.resources or {}), host=r.host,
            gpus=list(r.gpus or []), log_path=r.log_path, created_at=r.created_at,
            started_at=r.started_at, ended_at=r.ended_at, heartbeat_at=r.heartbeat_at,
            exit_code=r.exit_code, error=r.error, cancel_requested=bool(r.cancel_requested),
            result=dict(r.result or {}),
        )  # fmt: skip

    def create_job(self, job: Job, *, token_hash: str | None = None) -> Job:
        def fn(s: Session) -> Job:
            row = JobRow(
                trial_id=job.trial_id, experiment_id=job.experiment_id, executor=job.executor,
                worker=job.worker, state=JobState(job.state).value, attempt=job.attempt,
                handle=dict(job.handle), resources=dict(job.resources), host=job.host,
                gpus=list(job.gpus), log_path=job.log_path, token_hash=token_hash,
                created_at=job.created_at or utcnow(), started_at=job.started_at,
                ended_at=job.ended_at, heartbeat_at=job.heartbeat_at, exit_code=job.exit_code,
                error=job.error, cancel_requested=job.cancel_requested, result=dict(job.result),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return self._job_from_row(row)

        return self._run(fn)

    _JOB_FIELDS = frozenset(
        {"state", "worker", "handle", "host", "gpus", "log_path", "started_at", "ended_at",
         "heartbeat_at", "exit_code", "error", "cancel_requested", "result", "attempt"}
    )  # fmt: skip

    def update_job(self, job_id: int, **fields: Any) -> Job:
        bad = set(fields) - self._JOB_FIELDS
        if bad:
            raise ValueError(f"cannot update job field(s) {sorted(bad)}")
        if "state" in fields:
            fields["state"] = JobState(fields["state"]).value

        def fn(s: Session) -> Job:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} not found", details={"job_id": job_id})
            for k, v in fields.items():
                setattr(row, k, v)
            s.flush()
            return self._job_from_row(row)

        return self._run(fn)

    def get_job(self, job_id: int) -> Job:
        def fn(s: Session) -> Job:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} not found", details={"job_id": job_id})
            return self._job_from_row(row)

        return self._run(fn, write=False)

    def job_for_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        def fn(s: Session) -> Job | None:
            self._load_one_trial(s, trial_id, project)
            row = s.scalars(select(JobRow).where(JobRow.trial_id == trial_id)).one_or_none()
            return self._job_from_row(row) if row is not None else None

        return self._run(fn, write=False)

    def list_jobs(
        self,
        *,
        experiment_id: int | None = None,
        states: Sequence[JobState] | None = None,
        executor: str | None = None,
        project: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        def fn(s: Session) -> list[Job]:
            stmt = select(JobRow).order_by(JobRow.id.desc())
            if experiment_id is not None:
                stmt = stmt.where(JobRow.experiment_id == experiment_id)
            if states:
                stmt = stmt.where(JobRow.state.in_([JobState(x).value for x in states]))
            if executor is not None:
                stmt = stmt.where(JobRow.executor == executor)
            if project is not None:
                stmt = (
                    stmt.join(ExperimentRow, ExperimentRow.id == JobRow.experiment_id)
                    .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                    .where(ProjectRow.name == project)
                )
            if limit is not None:
                stmt = stmt.limit(limit)
            return [self._job_from_row(r) for r in s.scalars(stmt)]

        return self._run(fn, write=False)

    def job_token_scope(self, token_hash: str) -> tuple[str, int] | None:
        def fn(s: Session) -> tuple[str, int] | None:
            row = s.execute(
                select(ProjectRow.name, JobRow.trial_id)
                .join(ExperimentRow, ExperimentRow.id == JobRow.experiment_id)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(
                    JobRow.token_hash == token_hash,
                    JobRow.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
                )
            ).one_or_none()
            return (row[0], row[1]) if row is not None else None

        return self._run(fn, write=False)

    def add_report(
        self, trial_id: int, step: int | None, metrics: Mapping[str, float]
    ) -> TrialReport:
        def fn(s: Session) -> TrialReport:
            if s.get(TrialRow, trial_id) is None:
                raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
            row = TrialReportRow(trial_id=trial_id, step=step, metrics=dict(metrics), at=utcnow())
            s.add(row)
            s.flush()
            return TrialReport(row.id, trial_id, step, dict(metrics), row.at)

        return self._run(fn)

    def list_reports(
        self, trial_id: int, *, after: int = 0, project: str | None = None
    ) -> list[TrialReport]:
        def fn(s: Session) -> list[TrialReport]:
            if project is not None:
                self._load_one_trial(s, trial_id, project)
            elif s.get(TrialRow, trial_id) is None:
                raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
            rows = s.scalars(
                select(TrialReportRow)
                .where(TrialReportRow.trial_id == trial_id, TrialReportRow.id > after)
                .order_by(TrialReportRow.id)
            )
            return [TrialReport(r.id, r.trial_id, r.step, dict(r.metrics), r.at) for r in rows]

        return self._run(fn, write=False)

    def last_steps(self, trial_ids: Sequence[int]) -> dict[int, int]:
        ids = sorted(set(trial_ids))
        if not ids:
            return {}
        latest = (
            select(TrialReportRow.trial_id, func.max(TrialReportRow.id).label("report_id"))
            .where(TrialReportRow.trial_id.in_(ids), TrialReportRow.step.is_not(None))
            .group_by(TrialReportRow.trial_id)
            .subquery()
        )
        stmt = select(TrialReportRow.trial_id, TrialReportRow.step).join(
            latest, TrialReportRow.id == latest.c.report_id
        )  # one query; the (trial_id, id) index serves both parts
        return self._run(lambda s: {t: int(step) for t, step in s.execute(stmt)}, write=False)


def _copy_trial(t: Trial) -> Trial:
    """A copy that shares nothing mutable with ``t`` (cheaper than ``deepcopy``)."""
    return Trial(
        id=t.id, experiment_id=t.experiment_id, index=t.index,
        arms=[Arm(a.name, dict(a.parameters)) for a in t.arms], state=t.state,
        generator=t.generator,
        observations={arm: dict(obs) for arm, obs in t.observations.items()},
        created_at=t.created_at, updated_at=t.updated_at, lease_expires_at=t.lease_expires_at,
        reason=t.reason, metadata=copy.deepcopy(t.metadata),
    )  # fmt: skip
