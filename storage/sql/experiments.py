"""Experiments in SQL: the part of :class:`~assay.storage.sql.SqlStore` that owns the
``experiments`` table — creating, reading, listing and changing the status of experiments —
and that serialises asks on one experiment (:meth:`SqlExperiments.lock_experiment`, with the
lock machinery in :mod:`.locking`).

Experiments are read through the :class:`~assay.storage.sql.codec.ExperimentCache`, so
reading one with thousands of trials re-decodes only the trials that changed.

May import: the standard library, sqlalchemy, :mod:`assay.platform`,
:mod:`assay.storage.base`, :mod:`assay.storage.orm`, :mod:`assay.storage.urls` and the
sibling modules :mod:`.codec`, :mod:`.locking`, :mod:`.projects`, :mod:`.session`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from assay.platform.errors import ConflictError
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    StatusReason,
    utcnow,
)
from assay.storage.base import (
    ExperimentLock,
    ExperimentSummary,
    ExperimentVersion,
    status_reason_for,
)
from assay.storage.orm import ExperimentRow, ExperimentVersionRow, ProjectRow, TrialRow
from assay.storage.sql.codec import ExperimentCache, experiment_row
from assay.storage.sql.locking import (
    ProcessLocks,
    SqlExperimentLock,
    ask_clash,
    busy_experiment,
)
from assay.storage.sql.projects import project_id
from assay.storage.sql.session import SqlDatabase, typed_error
from assay.storage.urls import sqlite_database


class SqlExperiments(SqlDatabase):
    """Experiments and the ask lock (see :class:`~assay.storage.base.Store`).

    Args:
        engine: From :func:`~assay.storage.sql.engine.make_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._cache = ExperimentCache()
        self._ask_locks = ProcessLocks(sqlite_database(engine.url.render_as_string()))

    @property
    def lock_timeout_s(self) -> float:
        """Longest wait for an experiment's ask lock (then ``LockTimeoutError``, HTTP 503)."""
        return self._ask_locks.timeout_s

    @lock_timeout_s.setter
    def lock_timeout_s(self, value: float) -> None:
        self._ask_locks.timeout_s = float(value)

    def create_experiment(
        self, config: ExperimentConfig, *, project: str = "default"
    ) -> Experiment:
        def fn(s: Session) -> Experiment:
            pid = project_id(s, project)
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
            return self._cache.experiment(s, row, project)

        return self.run_transaction(fn)

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        def fn(s: Session) -> Experiment:
            row, pname = experiment_row(s, experiment_id, project)
            return self._cache.experiment(s, row, pname)

        return self.run_transaction(fn, write=False)

    def get_experiment_config(
        self, experiment_id: int, *, project: str | None = None
    ) -> ExperimentConfig:
        def fn(s: Session) -> ExperimentConfig:
            row, _ = experiment_row(s, experiment_id, project)
            return self._cache.config(row)

        return self.run_transaction(fn, write=False)

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

        return self.run_transaction(fn, write=False)

    def set_experiment_status(
        self,
        experiment_id: int,
        status: ExperimentStatus,
        *,
        project: str | None = None,
        reason: StatusReason | None = None,
    ) -> Experiment:
        record = status_reason_for(ExperimentStatus(status), reason).to_dict()

        def fn(s: Session) -> Experiment:
            row, pname = experiment_row(s, experiment_id, project, for_update=True)
            row.status = ExperimentStatus(status).value
            row.status_reason = record
            row.updated_at = utcnow()
            s.flush()
            return self._cache.experiment(s, row, pname)

        return self.run_transaction(fn)

    def update_experiment_config(
        self,
        experiment_id: int,
        config: ExperimentConfig,
        *,
        project: str | None = None,
        changes: Sequence[str] = (),
        actor: str | None = None,
        reason: str | None = None,
    ) -> Experiment:
        def fn(s: Session) -> Experiment:
            row, pname = experiment_row(s, experiment_id, project, for_update=True)
            last = s.scalar(
                select(func.max(ExperimentVersionRow.version)).where(
                    ExperimentVersionRow.experiment_id == experiment_id
                )
            )
            if last is None:
                s.add(
                    ExperimentVersionRow(
                        experiment_id=experiment_id, version=1, config=row.config, changes=[],
                        actor=None, reason=None, trial_count=0, created_at=row.created_at,
                    )
                )  # fmt: skip
                last = 1
            n_trials = s.scalar(
                select(func.count(TrialRow.id)).where(TrialRow.experiment_id == experiment_id)
            )
            now = utcnow()
            s.add(
                ExperimentVersionRow(
                    experiment_id=experiment_id, version=last + 1, config=config.to_dict(),
                    changes=list(changes), actor=actor, reason=reason,
                    trial_count=int(n_trials or 0), created_at=now,
                )
            )  # fmt: skip
            row.config = config.to_dict()
            row.model_state = {}
            row.updated_at = now
            s.flush()
            return self._cache.experiment(s, row, pname)

        return self.run_transaction(fn)

    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        def fn(s: Session) -> list[ExperimentVersion]:
            row, _ = experiment_row(s, experiment_id, project)
            rows = s.scalars(
                select(ExperimentVersionRow)
                .where(ExperimentVersionRow.experiment_id == experiment_id)
                .order_by(ExperimentVersionRow.version)
            ).all()
            if not rows:
                return [ExperimentVersion(1, dict(row.config), [], None, None, 0, row.created_at)]
            return [
                ExperimentVersion(
                    r.version, dict(r.config), list(r.changes), r.actor, r.reason,
                    r.trial_count, r.created_at,
                )
                for r in rows
            ]  # fmt: skip

        return self.run_transaction(fn, write=False)

    @contextlib.contextmanager
    def lock_experiment(
        self, experiment_id: int, *, project: str | None = None
    ) -> Iterator[ExperimentLock]:
        """Exclusive access to one experiment for an ask (see :mod:`.locking`)."""
        if self.dialect == "postgresql":
            session = self.write_session()
            try:
                with session.begin():
                    ms = max(1, int(self._ask_locks.timeout_s * 1000))
                    session.execute(text(f"SET LOCAL lock_timeout = {ms}"))  # bounded wait
                    row, pname = experiment_row(session, experiment_id, project, for_update=True)
                    snapshot = self._cache.experiment(session, row, pname, private=True)
                    yield SqlExperimentLock(self, session, snapshot)
            # The whole ask is one transaction: a failure in the lock, in ``add_trials`` or
            # at commit (deferred checks) rolls everything back and is typed here, so the
            # engine's one retry loop can run the ask again on a fresh snapshot; nothing
            # reaches the client as an untyped 500.
            except DBAPIError as e:  # IntegrityError and OperationalError included
                raise typed_error(
                    e,
                    unique_clash=ask_clash,
                    conflict="the ask conflicts with stored data; retry the request",
                    busy=busy_experiment(experiment_id),
                ) from e
            finally:
                session.close()
            return
        with self._ask_locks.hold(experiment_id):

            def snapshot(s: Session) -> Experiment:
                row, pname = experiment_row(s, experiment_id, project)
                return self._cache.experiment(s, row, pname, private=True)

            yield SqlExperimentLock(self, None, self.run_transaction(snapshot, write=False))


__all__ = ["SqlExperiments"]
