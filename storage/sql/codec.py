"""Rows ↔ domain objects: decoding trials, experiments, events and jobs from their rows, the
shared lookups and statements every concern uses, and the cache of decoded trials.

Decoding reads columns, not ORM objects, on the hot paths: :func:`load_trials` runs three
column queries (trials, arms, observations) joined on a subquery — no identity-map overhead,
no giant ``IN (...)`` lists — and :func:`load_one_trial` one pre-built query. The
:class:`ExperimentCache` keeps decoded trials and parsed configurations per experiment and
re-reads only the trials whose ``updated_at`` / lease changed.

May import: sqlalchemy, :mod:`assay.platform` (domain types), :mod:`assay.storage.base`
(value types) and :mod:`assay.storage.orm`.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.orm import Session

from assay.platform.errors import NotFoundError
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.jobspec import Job, JobState
from assay.storage.base import TrialEvent, read_status_reason
from assay.storage.orm import (
    ArmRow,
    ExperimentRow,
    JobRow,
    ObservationRow,
    ProjectRow,
    TrialArmRow,
    TrialEventRow,
    TrialRow,
    WebhookRow,
)

# -- statements built once (SQLAlchemy then reuses their compiled form) ---------------------
#: One trial with its arms, observations and project: the hot path of tells.
ONE_TRIAL = (
    select(
        TrialRow.id, TrialRow.experiment_id, TrialRow.index, TrialRow.state, TrialRow.generator,
        TrialRow.reason, TrialRow.trial_metadata, TrialRow.lease_expires_at, TrialRow.created_at,
        TrialRow.updated_at, TrialArmRow.position, ArmRow.id.label("arm_id"),
        ArmRow.name.label("arm_name"), ArmRow.parameters, ObservationRow.metric,
        ObservationRow.mean, ObservationRow.sem, ObservationRow.n,
        ProjectRow.name.label("project"),
        # Read in the same statement, so as current as the trial itself: the experiment's
        # definition (a tell validates against it; it may have been PATCHed by another
        # process) and whether the project has an active webhook (a tell without one skips
        # the outbox transaction).
        ExperimentRow.config.label("exp_config"),
        exists()
        .where(WebhookRow.project_id == ExperimentRow.project_id, WebhookRow.active)
        .label("has_hooks"),
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

#: Several trials with their arms and observations in one round trip (a few changed trials
#: of a cached experiment): one row per (trial, arm, metric).
_T, _TA, _A, _O = (
    TrialRow.__table__.c,
    TrialArmRow.__table__.c,
    ArmRow.__table__.c,
    ObservationRow.__table__.c,
)
#: Core (table-column) statements, not ORM attributes: the session runs them without the ORM
#: compile and row-loading layer, which was most of an ask's own CPU in the snapshot (py-spy,
#: issue 19 target 3).
SOME_TRIALS = (
    select(
        _T.id, _T.experiment_id, _T.index, _T.state, _T.generator, _T.reason,
        _T["metadata"].label("trial_metadata"), _T.lease_expires_at, _T.created_at, _T.updated_at,
        _TA.position, _A.name.label("arm_name"), _A.parameters, _O.metric, _O.mean, _O.sem,
        _O.n,
    )
    .select_from(TrialRow.__table__)
    .join(TrialArmRow.__table__, _TA.trial_id == _T.id)
    .join(ArmRow.__table__, _A.id == _TA.arm_id)
    .outerjoin(ObservationRow.__table__, and_(_O.trial_id == _T.id, _O.arm_id == _A.id))
    .where(_T.id.in_(bindparam("p_ids", expanding=True)))
)  # fmt: skip

#: Which trials of an experiment exist and when each last changed (the snapshot cache's scan).
TRIAL_KEYS = (
    select(_T.id, _T.updated_at, _T.lease_expires_at)
    .where(_T.experiment_id == bindparam("p_experiment_id"))
    .order_by(_T.index)
)

#: At most this many changed trials are read with :data:`SOME_TRIALS` (one round trip);
#: more go through :func:`load_trials` (three queries, no row multiplication).
JOINED_LOAD_MAX = 64

#: The compare-and-set state change: ``UPDATE trials SET state = :new WHERE id = :id AND
#: state = :old``. A concurrent change makes it miss (``rowcount == 0``), writing nothing.
CAS_STATE = (
    update(TrialRow)
    .where(TrialRow.id == bindparam("p_id"), TrialRow.state == bindparam("p_old"))
    .values(
        state=bindparam("p_new"), reason=bindparam("p_reason"), updated_at=bindparam("p_now"),
        lease_expires_at=bindparam("p_lease"),
    )
)  # fmt: skip


# -- lookups --------------------------------------------------------------------------------
def experiment_row(
    s: Session, experiment_id: int, project: str | None, *, for_update: bool = False
) -> tuple[ExperimentRow, str]:
    """The experiment's row and its project's name; ``NotFoundError`` if absent or (with
    ``project``) in another project.

    ``for_update`` locks the row for the rest of the transaction. PostgreSQL: ``FOR NO KEY
    UPDATE``, not ``FOR UPDATE``. Trials, arms, trial events, idempotency keys and jobs
    reference ``experiments(id)``; each insert into them (a tell writes a trial event) checks
    the foreign key with ``FOR KEY SHARE`` on this row, which ``FOR UPDATE`` would block for
    the whole ask, model fit included. ``NO KEY UPDATE`` does not conflict with ``KEY SHARE``,
    yet still excludes other ``NO KEY UPDATE`` / ``FOR UPDATE`` lockers (concurrent asks,
    status changes, deletes) and plain UPDATEs of the row. It is safe because
    ``experiments.id`` is never updated (only inserted and cascaded on delete, and a DELETE
    takes ``FOR UPDATE``, which still waits for the ask).
    """
    stmt = (
        select(ExperimentRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
        .where(ExperimentRow.id == experiment_id)
    )
    if project is not None:
        stmt = stmt.where(ProjectRow.name == project)
    if for_update:
        stmt = stmt.with_for_update(of=ExperimentRow, key_share=True)
    row = s.execute(stmt).one_or_none()
    if row is None:
        raise NotFoundError(
            f"experiment {experiment_id} not found", details={"experiment_id": experiment_id}
        )
    return row[0], row[1]


# -- trials ---------------------------------------------------------------------------------
def load_trials(s: Session, ids_stmt: Any) -> list[Trial]:
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


def load_one_trial(
    s: Session, trial_id: int, project: str | None, extra: dict[str, Any] | None = None
) -> tuple[Trial, dict[str, int]]:
    """One trial and its arm ids by name, in a single pre-built query (the hot path of tells).
    ``NotFoundError`` if absent or (with ``project``) in another project. ``extra`` receives
    the experiment's stored definition (``"config"``, JSON), the project's name
    (``"project"``) and whether it has an active webhook (``"has_hooks"``), all read by the
    same statement."""
    rows = s.execute(ONE_TRIAL, {"p_id": trial_id}).all()
    if not rows or (project is not None and rows[0].project != project):
        raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
    r0 = rows[0]
    if extra is not None:
        extra.update(config=r0.exp_config, project=r0.project, has_hooks=bool(r0.has_hooks))
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


def load_some_trials(s: Session, ids: list[int]) -> list[Trial]:
    """The trials ``ids`` (a few: see :data:`JOINED_LOAD_MAX`) in one round trip, by index."""
    trials: dict[int, tuple[Any, dict[str, tuple[int, dict]], dict]] = {}
    for r in s.execute(SOME_TRIALS, {"p_ids": ids}):
        _first, arms, obs = trials.setdefault(r.id, (r, {}, {}))
        arms[r.arm_name] = (r.position, r.parameters)
        if r.metric is not None:
            obs.setdefault(r.arm_name, {})[r.metric] = Observation(r.metric, r.mean, r.sem, r.n)
    out = [
        Trial(
            id=r.id, experiment_id=r.experiment_id, index=r.index, state=TrialState(r.state),
            generator=r.generator,
            arms=[Arm(n, dict(v[1])) for n, v in sorted(arms.items(), key=lambda kv: kv[1][0])],
            observations=obs, created_at=r.created_at, updated_at=r.updated_at,
            lease_expires_at=r.lease_expires_at, reason=r.reason,
            metadata=dict(r.trial_metadata or {}),
        )
        for r, arms, obs in trials.values()
    ]  # fmt: skip
    return sorted(out, key=lambda t: t.index)


def load_trial(s: Session, trial_id: int, project: str | None = None) -> Trial:
    """One trial through :func:`load_trials`; ``NotFoundError`` as :func:`load_one_trial`."""
    stmt = select(TrialRow.id).where(TrialRow.id == trial_id)
    if project is not None:
        stmt = (
            stmt.join(ExperimentRow, ExperimentRow.id == TrialRow.experiment_id)
            .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
            .where(ProjectRow.name == project)
        )
    found = load_trials(s, stmt)
    if not found:
        raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
    return found[0]


def copy_trial(t: Trial) -> Trial:
    """A copy that shares nothing mutable with ``t`` (cheaper than ``deepcopy``)."""
    return Trial(
        id=t.id, experiment_id=t.experiment_id, index=t.index,
        arms=[Arm(a.name, dict(a.parameters)) for a in t.arms], state=t.state,
        generator=t.generator,
        observations={arm: dict(obs) for arm, obs in t.observations.items()},
        created_at=t.created_at, updated_at=t.updated_at, lease_expires_at=t.lease_expires_at,
        reason=t.reason, metadata=copy.deepcopy(t.metadata),
    )  # fmt: skip


# -- events and jobs ------------------------------------------------------------------------
def event_from_row(e: TrialEventRow) -> TrialEvent:
    return TrialEvent(
        e.id, e.trial_id, e.experiment_id,
        TrialState(e.from_state) if e.from_state else None, TrialState(e.to_state),
        e.at, e.actor, e.reason, dict(e.details or {}),
    )  # fmt: skip


def job_from_row(r: JobRow) -> Job:
    return Job(
        id=r.id, trial_id=r.trial_id, experiment_id=r.experiment_id, executor=r.executor,
        worker=r.worker, state=JobState(r.state), attempt=r.attempt,
        handle=dict(r.handle or {}), resources=dict(r.resources or {}), host=r.host,
        gpus=list(r.gpus or []), log_path=r.log_path, created_at=r.created_at,
        started_at=r.started_at, ended_at=r.ended_at, heartbeat_at=r.heartbeat_at,
        exit_code=r.exit_code, error=r.error, cancel_requested=bool(r.cancel_requested),
        result=dict(r.result or {}),
    )  # fmt: skip


# -- experiments, with their decoded trials cached ------------------------------------------
class ExperimentCache:
    """Parsed configurations and decoded trials per experiment (thread-safe).

    Configurations never change after creation. Every change of a trial row (state,
    observations — written with the completion —, reason) sets ``updated_at``; leases change
    ``lease_expires_at``; arms never change. So a light ``(id, updated_at, lease)`` scan tells
    which cached trials are current and only new or changed trials are loaded in full: an ask
    on an experiment with thousands of trials costs one narrow query plus the handful of
    trials that moved.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: dict[int, tuple[dict[str, Any], ExperimentConfig]] = {}
        self._trials: dict[int, dict[int, tuple[tuple, Trial]]] = {}

    def experiment(
        self, s: Session, row: ExperimentRow, project: str, *, private: bool = False
    ) -> Experiment:
        """The experiment of ``row`` with all its trials.

        ``private`` snapshots (asks under the lock, never handed to users) share the cached
        trial objects instead of copying them.
        """
        return Experiment(
            id=row.id,
            config=self.config(row),
            trials=self.trials(s, row.id, copy_trials=not private),
            status=ExperimentStatus(row.status),
            project=project,
            generator_state=dict(row.generator_state or {}),
            model_state=dict(row.model_state or {}),
            run_state=row.run_state,
            created_at=row.created_at,
            updated_at=row.updated_at,
            status_reason=read_status_reason(row.status_reason),
        )

    def config(self, row: ExperimentRow) -> ExperimentConfig:
        """A copy of the experiment's parsed configuration."""
        return self.config_of(row.id, row.config)

    def config_of(self, experiment_id: int, stored: dict[str, Any]) -> ExperimentConfig:
        """A copy of the parsed configuration whose stored JSON is ``stored`` (as just read)."""
        with self._lock:
            cached = self._configs.get(experiment_id)
        # A definition can change (a new version, maybe by another process): the parsed
        # configuration is reused only while the row's JSON is the one it was parsed from.
        if cached is None or cached[0] != stored:
            cached = (copy.deepcopy(stored), ExperimentConfig.from_dict(stored))
            with self._lock:
                self._configs[experiment_id] = cached
        return copy.deepcopy(cached[1])

    def trials(self, s: Session, experiment_id: int, *, copy_trials: bool = True) -> list[Trial]:
        """All trials of an experiment by index, re-reading only those that changed.

        Callers get copies (unless ``copy_trials=False``), so nothing they do can touch the
        cache.
        """
        keys = s.execute(TRIAL_KEYS, {"p_experiment_id": experiment_id}).all()
        with self._lock:
            cache = self._trials.setdefault(experiment_id, {})
            stale = [k.id for k in keys if cache.get(k.id, (None,))[0] != (k[1], k[2])]
        if stale:
            if len(stale) <= JOINED_LOAD_MAX:  # the usual case: a few trials told since
                loaded = load_some_trials(s, stale)
            else:
                stmt = select(TrialRow.id).where(TrialRow.experiment_id == experiment_id)
                if len(stale) < 500:
                    stmt = stmt.where(TrialRow.id.in_(stale))
                loaded = load_trials(s, stmt)
            fresh = {t.id: t for t in loaded}
            with self._lock:
                for k in keys:
                    if k.id in fresh:
                        cache[k.id] = ((k[1], k[2]), fresh[k.id])
                for gone in set(cache) - {k.id for k in keys}:
                    del cache[gone]
        with self._lock:
            trials = [cache[k.id][1] for k in keys if k.id in cache]
        return [copy_trial(t) for t in trials] if copy_trials else trials


__all__ = [
    "CAS_STATE",
    "JOINED_LOAD_MAX",
    "ONE_TRIAL",
    "SOME_TRIALS",
    "TRIAL_KEYS",
    "ExperimentCache",
    "copy_trial",
    "event_from_row",
    "experiment_row",
    "job_from_row",
    "load_one_trial",
    "load_some_trials",
    "load_trial",
    "load_trials",
]
