"""Trials, their observations and their audit events in SQL: the part of
:class:`~assay.storage.sql.SqlStore` that owns the ``trials``, ``trial_arms``,
``observations`` and ``trial_events`` tables after an ask created them.

State changes are compare-and-set (:data:`~assay.storage.sql.codec.CAS_STATE`): a
concurrent change makes the update miss and the caller gets ``InvalidTransitionError`` with
nothing written. A completion writes its observations and its event in the same transaction.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.base`,
:mod:`assay.storage.orm`, :mod:`.codec` and :mod:`.session`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from assay.platform.errors import InvalidTransitionError
from assay.platform.experiment import Trial, TrialState, check_transition, utcnow
from assay.storage.base import (
    ObservationRecord,
    ObservationsArg,
    TrialEvent,
    check_expected_state,
    not_running_error,
)
from assay.storage.orm import ArmRow, ObservationRow, TrialEventRow, TrialRow
from assay.storage.sql.codec import (
    CAS_STATE,
    event_from_row,
    experiment_row,
    load_one_trial,
    load_trial,
    load_trials,
)
from assay.storage.sql.session import SqlDatabase


def trial_ids(experiment_id: int, states: Sequence[TrialState] | None) -> Any:
    """``select(TrialRow.id)`` of an experiment's trials, optionally only in ``states``."""
    stmt = select(TrialRow.id).where(TrialRow.experiment_id == experiment_id)
    if states:
        stmt = stmt.where(TrialRow.state.in_([TrialState(x).value for x in states]))
    return stmt


#: PostgreSQL: a trial's compare-and-set state change, its observations and its audit event
#: in one statement (see :func:`pg_transition`); a fixed text with the observations as one
#: JSON parameter, so it is compiled once and prepared by the driver.
PG_TRANSITION = text("""
WITH changed AS (
    UPDATE trials SET state = :p_new, reason = :p_reason, updated_at = :p_now,
        lease_expires_at = :p_lease
    WHERE id = :p_id AND state = :p_old
    RETURNING id, experiment_id
), new_observations AS (
    INSERT INTO observations (trial_id, arm_id, metric, mean, sem, n, created_at)
    SELECT c.id, o.arm_id, o.metric, o.mean, o.sem, o.n, :p_now
    FROM changed c CROSS JOIN jsonb_to_recordset(CAST(:observations AS jsonb))
        AS o(arm_id bigint, metric varchar, mean double precision, sem double precision,
             n integer)
    RETURNING id
), new_event AS (
    INSERT INTO trial_events (experiment_id, trial_id, from_state, to_state, at, actor, reason,
                              details)
    SELECT c.experiment_id, c.id, :p_old, :p_new, :p_now, CAST(:actor AS varchar),
        CAST(:p_reason AS text), CAST(:details AS jsonb)
    FROM changed c
    RETURNING id
)
SELECT count(*) FROM changed
""")


def pg_transition(cas: Mapping[str, Any], rows: Sequence[tuple], event: Mapping[str, Any]) -> Any:
    """PostgreSQL: a trial's compare-and-set state change (:data:`CAS_STATE`'s parameters
    ``cas``), its observation ``rows`` ``(arm_id, metric, mean, sem, n)`` and its audit
    ``event`` as **one** statement of data-modifying CTEs (:data:`PG_TRANSITION`; was three
    round trips). The inserts select from the ``UPDATE ... RETURNING`` CTE, so when the
    compare-and-set misses (a concurrent change) nothing at all is written; the statement
    yields how many trials changed (1, or 0 for a lost race). Returns ``(statement,
    parameters)``."""
    obs = [{"arm_id": a, "metric": m, "mean": mu, "sem": se, "n": n} for a, m, mu, se, n in rows]
    return PG_TRANSITION, {
        **cas, "observations": json.dumps(obs), "actor": event["actor"],
        "details": json.dumps(event["details"]),
    }  # fmt: skip


class SqlTrials(SqlDatabase):
    """Reads and life-cycle changes of trials, and the audit trail (see
    :class:`~assay.storage.base.Store`)."""

    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        return self.run_transaction(lambda s: load_one_trial(s, trial_id, project)[0], write=False)

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
            experiment_row(s, experiment_id, project)
            stmt = trial_ids(experiment_id, states).order_by(TrialRow.index).offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            return load_trials(s, stmt)

        return self.run_transaction(fn, write=False)

    def count_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> int:
        def fn(s: Session) -> int:
            experiment_row(s, experiment_id, project)
            sub = trial_ids(experiment_id, states).subquery()
            return int(s.scalar(select(func.count()).select_from(sub)) or 0)

        return self.run_transaction(fn, write=False)

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
        details: Mapping[str, Any] | None = None,
    ) -> Trial:
        extra: dict[str, Any] = {}

        def fn(s: Session) -> Trial:
            trial, arm_ids = load_one_trial(s, trial_id, project, extra)
            check_expected_state(trial_id, trial.state, expected_states)
            check_transition(trial_id, trial.state, to_state)
            if callable(observations):  # the definition as stored now, read with the trial
                config = self._cache.config_of(trial.experiment_id, extra["config"])  # type: ignore[attr-defined]
                obs = observations(trial, config)
            else:
                obs = observations
            now = utcnow()
            lease = lease_expires_at if to_state is TrialState.RUNNING else None
            cas = {"p_id": trial_id, "p_old": trial.state.value, "p_new": to_state.value,
                   "p_reason": reason, "p_now": now, "p_lease": lease}  # fmt: skip
            rows = [
                (arm_ids[arm], o.metric, o.mean, o.sem, o.n)
                for arm, by_metric in (obs or {}).items()
                for o in by_metric.values()
            ]
            event = {"experiment_id": trial.experiment_id, "trial_id": trial_id,
                     "from_state": trial.state.value, "to_state": to_state.value, "at": now,
                     "actor": actor, "reason": reason, "details": dict(details or {})}  # fmt: skip
            if self.dialect == "postgresql":
                if s.execute(*pg_transition(cas, rows, event)).scalar_one() != 1:
                    stored, _ = load_one_trial(s, trial_id, None)  # lost a race
                    check_transition(trial_id, stored.state, to_state)
                    raise InvalidTransitionError(
                        f"trial {trial_id} changed concurrently; retry",
                        details={"trial_id": trial_id},
                    )
                rows = []  # written with the state change
            elif s.execute(CAS_STATE, cas).rowcount != 1:  # lost a race: someone changed it first
                stored, _ = load_one_trial(s, trial_id, None)
                check_transition(trial_id, stored.state, to_state)
                raise InvalidTransitionError(
                    f"trial {trial_id} changed concurrently; retry",
                    details={"trial_id": trial_id},
                )
            if self.dialect != "postgresql":
                if rows:
                    s.execute(
                        insert(ObservationRow),
                        [{"trial_id": trial_id, "arm_id": a, "metric": m, "mean": mu, "sem": se,
                          "n": n, "created_at": now} for a, m, mu, se, n in rows],
                    )  # fmt: skip
                s.execute(insert(TrialEventRow), [event])
            if obs:
                trial.observations = {a: dict(o) for a, o in obs.items()}
            trial.state, trial.reason, trial.updated_at = to_state, reason, now
            trial.lease_expires_at = lease
            return trial

        trial = self.run_transaction(fn)
        # Whether the project had an active webhook, read by the tell's own first statement:
        # the outbox skips its transaction for the event this transition emits next in this
        # thread when there was none (:meth:`SqlOutbox.enqueue`).
        self.hooks_hint.value = (
            None if extra.get("has_hooks", True)
            else (extra["project"], trial.id, time.monotonic())
        )  # fmt: skip
        return trial

    def heartbeat(
        self, trial_id: int, lease_expires_at: datetime, *, project: str | None = None
    ) -> Trial:
        def fn(s: Session) -> Trial:
            trial = load_trial(s, trial_id, project)
            result = s.execute(
                update(TrialRow)
                .where(TrialRow.id == trial_id, TrialRow.state == TrialState.RUNNING.value)
                .values(lease_expires_at=lease_expires_at)
            )
            if result.rowcount != 1:
                raise not_running_error(trial_id, trial.state)
            trial.lease_expires_at = lease_expires_at
            return trial

        return self.run_transaction(fn)

    def expired_leases(self, now: datetime) -> list[int]:
        stmt = select(TrialRow.id).where(
            TrialRow.state == TrialState.RUNNING.value,
            TrialRow.lease_expires_at.is_not(None),
            TrialRow.lease_expires_at < now,
        )
        return self.run_transaction(lambda s: list(s.scalars(stmt)), write=False)

    def list_events(
        self, *, experiment_id: int | None = None, trial_id: int | None = None, after: int = 0
    ) -> list[TrialEvent]:
        def fn(s: Session) -> list[TrialEvent]:
            stmt = select(TrialEventRow).where(TrialEventRow.id > after).order_by(TrialEventRow.id)
            if experiment_id is not None:
                stmt = stmt.where(TrialEventRow.experiment_id == experiment_id)
            if trial_id is not None:
                stmt = stmt.where(TrialEventRow.trial_id == trial_id)
            return [event_from_row(e) for e in s.scalars(stmt)]

        return self.run_transaction(fn, write=False)

    # -- cheap reads for dashboards ---------------------------------------------------------
    def latest_event_id(self, *, experiment_id: int | None = None) -> int:
        stmt = select(func.max(TrialEventRow.id))
        if experiment_id is not None:  # index (experiment_id, id): one index probe
            stmt = stmt.where(TrialEventRow.experiment_id == experiment_id)
        return self.run_transaction(lambda s: int(s.scalar(stmt) or 0), write=False)

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
        return self.run_transaction(
            lambda s: [ObservationRecord(*row) for row in s.execute(stmt)], write=False
        )


__all__ = ["SqlTrials", "trial_ids"]
