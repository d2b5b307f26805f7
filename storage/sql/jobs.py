"""Jobs, trial reports and workers' run control in SQL: the part of
:class:`~assay.storage.sql.SqlStore` that owns the ``jobs`` and ``trial_reports`` tables, an
experiment's run state, and the claiming of candidate trials by workers.

Claiming is a compare-and-set (``candidate → running``) per trial, with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so two workers never claim one trial.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.base` (``CURVE_STATES``),
:mod:`assay.storage.orm`, :mod:`.codec` and :mod:`.session`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from assay.platform.early_stopping import Curve
from assay.platform.errors import NotFoundError
from assay.platform.experiment import Experiment, ExperimentStatus, Trial, TrialState, utcnow
from assay.platform.jobspec import Job, JobState, TrialReport
from assay.storage.base import CURVE_STATES
from assay.storage.orm import (
    ExperimentRow,
    JobRow,
    ProjectRow,
    TrialEventRow,
    TrialReportRow,
    TrialRow,
)
from assay.storage.sql.codec import (
    CAS_STATE,
    experiment_row,
    job_from_row,
    load_one_trial,
    load_trials,
)
from assay.storage.sql.session import SqlDatabase


class SqlJobs(SqlDatabase):
    """Run control, jobs and reports (see :class:`~assay.storage.base.Store`)."""

    def set_run_state(
        self, experiment_id: int, run_state: str | None, *, project: str | None = None
    ) -> None:
        def fn(s: Session) -> None:
            row, _ = experiment_row(s, experiment_id, project)
            row.run_state = run_state

        self.run_transaction(fn)

    def runnable_experiments(self) -> list[int]:
        return self.run_transaction(
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
                    CAS_STATE,
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
            return load_trials(s, select(TrialRow.id).where(TrialRow.id.in_(claimed)))

        return self.run_transaction(fn)

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
            return job_from_row(row)

        return self.run_transaction(fn)

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
            return job_from_row(row)

        return self.run_transaction(fn)

    def get_job(self, job_id: int) -> Job:
        def fn(s: Session) -> Job:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} not found", details={"job_id": job_id})
            return job_from_row(row)

        return self.run_transaction(fn, write=False)

    def job_for_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        def fn(s: Session) -> Job | None:
            load_one_trial(s, trial_id, project)
            row = s.scalars(select(JobRow).where(JobRow.trial_id == trial_id)).one_or_none()
            return job_from_row(row) if row is not None else None

        return self.run_transaction(fn, write=False)

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
            return [job_from_row(r) for r in s.scalars(stmt)]

        return self.run_transaction(fn, write=False)

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

        return self.run_transaction(fn, write=False)

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

        return self.run_transaction(fn)

    def list_reports(
        self, trial_id: int, *, after: int = 0, project: str | None = None
    ) -> list[TrialReport]:
        def fn(s: Session) -> list[TrialReport]:
            if project is not None:
                load_one_trial(s, trial_id, project)
            elif s.get(TrialRow, trial_id) is None:
                raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
            rows = s.scalars(
                select(TrialReportRow)
                .where(TrialReportRow.trial_id == trial_id, TrialReportRow.id > after)
                .order_by(TrialReportRow.id)
            )
            return [TrialReport(r.id, r.trial_id, r.step, dict(r.metrics), r.at) for r in rows]

        return self.run_transaction(fn, write=False)

    def experiment_curves(self, experiment: Experiment) -> list[Curve]:
        """The base rule (running, completed and early-stopped single-arm trials; completed
        curves finished with their final observations) with every trial's reports read in
        one statement per 500 trials instead of one per trial: ``should_stop`` reads the
        whole experiment's curves after every reported step."""
        trials = [t for t in experiment.trials if not t.is_batch and t.state in CURVE_STATES]
        by_trial: dict[int, list[tuple[int | None, dict[str, float]]]] = {t.id: [] for t in trials}
        ids = sorted(by_trial)

        def fn(s: Session) -> None:
            for i in range(0, len(ids), 500):
                stmt = (
                    select(TrialReportRow.trial_id, TrialReportRow.step, TrialReportRow.metrics)
                    .where(TrialReportRow.trial_id.in_(ids[i : i + 500]))
                    .order_by(TrialReportRow.trial_id, TrialReportRow.id)
                )
                for tid, step, metrics in s.execute(stmt):
                    by_trial[tid].append((step, dict(metrics)))

        if ids:
            self.run_transaction(fn, write=False)
        out = []
        for t in trials:
            done = t.state is TrialState.COMPLETED
            out.append(
                Curve.from_reports(
                    t.id, by_trial[t.id], finished=done,
                    final={m: o.mean for m, o in t.values.items()} if done else {},
                    state=t.state.value,
                )
            )  # fmt: skip
        return out

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
        return self.run_transaction(
            lambda s: {t: int(step) for t, step in s.execute(stmt)}, write=False
        )


__all__ = ["SqlJobs"]
