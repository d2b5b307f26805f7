"""In-memory store: the reference implementation of :class:`~assay.storage.base.Store`.

Thread-safe (one re-entrant lock for reads/writes, one lock per experiment for asks) and
copy-on-read: callers get deep copies, so mutating a returned object never changes what is
stored. Useful for notebooks, tests and the in-process client; nothing survives the process.

May import: the standard library, :mod:`assay.platform`, :mod:`assay.storage.base` and
:mod:`assay.storage.ledger`.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from assay.platform.errors import ConflictError, LockTimeoutError, NotFoundError
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    StatusReason,
    Trial,
    TrialState,
    check_transition,
    utcnow,
)
from assay.platform.jobspec import Job, JobState, TrialReport
from assay.storage.base import (
    ApiKeyInfo,
    ExperimentLock,
    ExperimentSummary,
    ExperimentVersion,
    NewTrial,
    ObservationRecord,
    ObservationsArg,
    ProjectSummary,
    Store,
    TrialEvent,
    check_expected_state,
    not_running_error,
    status_reason_for,
)
from assay.storage.ledger import InMemoryPrivacyLedger, PrivacyLedger


class _MemoryLock(ExperimentLock):
    def __init__(self, store: MemoryStore, experiment_id: int) -> None:
        self._store = store
        self._id = experiment_id
        self.experiment = store._snapshot(experiment_id)

    def trials_for_key(self, idempotency_key: str) -> list[Trial] | None:
        with self._store._lock:
            ids = self._store._keys.get((self._id, idempotency_key))
            return [copy.deepcopy(self._store._trials[i]) for i in ids] if ids else None

    def add_trials(
        self,
        trials: Sequence[NewTrial],
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
        generator_state: Mapping[str, Any] | None = None,
        model_state: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        s = self._store
        with s._lock:
            exp = s._experiments[self._id]
            out = []
            for spec in trials:
                index = len(exp.trials)
                now = utcnow()
                t = Trial(
                    id=next(s._trial_ids),
                    experiment_id=self._id,
                    index=index,
                    arms=[Arm(n, dict(p)) for n, p in spec.arms],
                    state=spec.state,
                    generator=spec.generator,
                    created_at=now,
                    updated_at=now,
                    lease_expires_at=spec.lease_expires_at,
                    metadata=copy.deepcopy(spec.metadata),
                )
                exp.trials.append(t)
                s._trials[t.id] = t
                s._event(t, None, t.state, actor, "created")
                out.append(copy.deepcopy(t))
            exp.updated_at = utcnow()
            if idempotency_key is not None:
                s._keys[(self._id, idempotency_key)] = [t.id for t in out]
            if generator_state is not None:
                exp.generator_state = copy.deepcopy(dict(generator_state))
            if model_state:
                exp.model_state = copy.deepcopy(dict(model_state))
            return out


class MemoryStore(Store):
    """Everything in Python dicts. See the module docstring."""

    #: Longest wait for an experiment's ask lock (then ``LockTimeoutError``).
    lock_timeout_s: float = 10.0

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._experiments: dict[int, Experiment] = {}
        self._versions: dict[int, list[ExperimentVersion]] = {}
        self._trials: dict[int, Trial] = {}
        self._events: list[TrialEvent] = []
        self._keys: dict[tuple[int, str], list[int]] = {}
        self._projects: dict[str, datetime] = {}  # name -> created_at
        self._jobs: dict[int, Job] = {}
        self._job_tokens: dict[str, int] = {}
        self._reports: dict[int, list[TrialReport]] = {}
        self._job_ids = itertools.count(1)
        self._report_ids = itertools.count(1)
        self._api_keys: dict[str, ApiKeyInfo] = {}  # hash -> key
        self._key_ids = itertools.count(1)
        #: session hash -> [key hash, expires_at, ended]
        self._sessions: dict[str, list[Any]] = {}
        self._ask_locks: dict[int, threading.Lock] = {}
        self._experiment_ids = itertools.count(1)
        self._trial_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._privacy_ledgers: dict[str, InMemoryPrivacyLedger] = {}

    # -- helpers -----------------------------------------------------------------------------
    def _get(self, experiment_id: int, project: str | None) -> Experiment:
        exp = self._experiments.get(experiment_id)
        if exp is None or (project is not None and exp.project != project):
            raise NotFoundError(
                f"experiment {experiment_id} not found", details={"experiment_id": experiment_id}
            )
        return exp

    def _snapshot(self, experiment_id: int, project: str | None = None) -> Experiment:
        with self._lock:
            return copy.deepcopy(self._get(experiment_id, project))

    def _trial(self, trial_id: int, project: str | None) -> Trial:
        t = self._trials.get(trial_id)
        if t is None or (
            project is not None and self._experiments[t.experiment_id].project != project
        ):
            raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})
        return t

    def _event(
        self,
        t: Trial,
        old: TrialState | None,
        new: TrialState,
        actor: str | None,
        reason: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._events.append(
            TrialEvent(
                next(self._event_ids), t.id, t.experiment_id, old, new, utcnow(), actor, reason,
                dict(details or {}),
            )
        )  # fmt: skip

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self, config: ExperimentConfig, *, project: str = "default"
    ) -> Experiment:
        with self._lock:
            if any(
                e.project == project and e.name == config.name for e in self._experiments.values()
            ):
                raise ConflictError(
                    f"an experiment named {config.name!r} already exists in project {project!r}",
                    field="name",
                )
            exp = Experiment(
                id=next(self._experiment_ids), config=copy.deepcopy(config), project=project
            )
            self._experiments[exp.id] = exp
            self._projects.setdefault(project, utcnow())
            self._ask_locks[exp.id] = threading.Lock()
            return copy.deepcopy(exp)

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        return self._snapshot(experiment_id, project)

    def get_experiment_config(
        self, experiment_id: int, *, project: str | None = None
    ) -> ExperimentConfig:
        with self._lock:
            return copy.deepcopy(self._get(experiment_id, project).config)

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        with self._lock:
            out = []
            for e in sorted(self._experiments.values(), key=lambda e: e.id, reverse=True):
                if (project is not None and e.project != project) or (
                    status is not None and e.status != status
                ):
                    continue
                counts: dict[str, int] = {}
                for t in e.trials:
                    counts[t.state.value] = counts.get(t.state.value, 0) + 1
                out.append(
                    ExperimentSummary(
                        e.id, e.name, e.project, e.status, e.config.generator,
                        e.config.objective.name, e.config.objective.minimize, counts,
                        e.created_at, e.updated_at,
                    )
                )  # fmt: skip
            return out

    def set_experiment_status(
        self,
        experiment_id: int,
        status: ExperimentStatus,
        *,
        project: str | None = None,
        reason: StatusReason | None = None,
    ) -> Experiment:
        with self._lock:
            exp = self._get(experiment_id, project)
            exp.status = ExperimentStatus(status)
            exp.status_reason = status_reason_for(exp.status, reason)
            exp.updated_at = utcnow()
            return copy.deepcopy(exp)

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
        with self._lock:
            exp = self._get(experiment_id, project)
            versions = self._versions.setdefault(experiment_id, [])
            if not versions:
                versions.append(
                    ExperimentVersion(1, exp.config.to_dict(), [], None, None, 0, exp.created_at)
                )
            now = utcnow()
            versions.append(
                ExperimentVersion(
                    len(versions) + 1, config.to_dict(), list(changes), actor, reason,
                    len(exp.trials), now,
                )
            )  # fmt: skip
            exp.config = copy.deepcopy(config)
            exp.model_state = {}
            exp.updated_at = now
            return copy.deepcopy(exp)

    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        with self._lock:
            exp = self._get(experiment_id, project)
            versions = self._versions.get(experiment_id) or [
                ExperimentVersion(1, exp.config.to_dict(), [], None, None, 0, exp.created_at)
            ]
            return copy.deepcopy(versions)

    @contextmanager
    def lock_experiment(
        self, experiment_id: int, *, project: str | None = None
    ) -> Iterator[ExperimentLock]:
        with self._lock:
            self._get(experiment_id, project)
            ask_lock = self._ask_locks[experiment_id]
        if not ask_lock.acquire(timeout=self.lock_timeout_s):
            raise LockTimeoutError(
                f"experiment {experiment_id} is locked by another ask; retry shortly",
                details={"experiment_id": experiment_id},
            )
        try:
            yield _MemoryLock(self, experiment_id)
        finally:
            ask_lock.release()

    # -- trials ------------------------------------------------------------------------------
    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        with self._lock:
            return copy.deepcopy(self._trial(trial_id, project))

    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Trial]:
        with self._lock:
            trials = self._get(experiment_id, project).trials
            if states:
                trials = [t for t in trials if t.state in set(states)]
            end = None if limit is None else offset + limit
            return copy.deepcopy(trials[offset:end])

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
        with self._lock:
            t = self._trial(trial_id, project)
            check_expected_state(trial_id, t.state, expected_states)
            check_transition(trial_id, t.state, to_state)
            if callable(observations):
                observations = observations(copy.deepcopy(t), None)
            old = t.state
            if observations:
                t.observations = {a: dict(obs) for a, obs in observations.items()}
            t.state = to_state
            t.reason = reason
            t.lease_expires_at = lease_expires_at if to_state is TrialState.RUNNING else None
            t.updated_at = utcnow()
            self._experiments[t.experiment_id].updated_at = t.updated_at
            self._event(t, old, to_state, actor, reason, dict(details or {}))
            return copy.deepcopy(t)

    def heartbeat(
        self, trial_id: int, lease_expires_at: datetime, *, project: str | None = None
    ) -> Trial:
        with self._lock:
            t = self._trial(trial_id, project)
            if t.state is not TrialState.RUNNING:
                raise not_running_error(trial_id, t.state)
            t.lease_expires_at = lease_expires_at
            return copy.deepcopy(t)

    def list_events(
        self, *, experiment_id: int | None = None, trial_id: int | None = None, after: int = 0
    ) -> list[TrialEvent]:
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._events
                if e.id > after
                and (experiment_id is None or e.experiment_id == experiment_id)
                and (trial_id is None or e.trial_id == trial_id)
            ]

    def count_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> int:
        with self._lock:
            trials = self._get(experiment_id, project).trials
            return sum(1 for t in trials if not states or t.state in set(states))

    def expired_leases(self, now: datetime) -> list[int]:
        with self._lock:
            return [
                t.id
                for t in self._trials.values()
                if t.state is TrialState.RUNNING
                and t.lease_expires_at is not None
                and t.lease_expires_at < now
            ]

    # -- cheap reads for dashboards ---------------------------------------------------------
    def latest_event_id(self, *, experiment_id: int | None = None) -> int:
        with self._lock:
            for e in reversed(self._events):
                if experiment_id is None or e.experiment_id == experiment_id:
                    return e.id
            return 0

    def completed_observations(
        self, experiment_ids: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[ObservationRecord]:
        wanted = set(metrics) if metrics is not None else None
        out = []
        with self._lock:
            for exp_id in sorted(set(experiment_ids)):
                exp = self._experiments.get(exp_id)
                if exp is None:
                    continue
                for trial, arm, obs in exp.observed():
                    out.extend(
                        ObservationRecord(
                            exp_id, trial.id, trial.index, arm.name, o.metric, o.mean, o.sem
                        )
                        for o in obs.values()
                        if wanted is None or o.metric in wanted
                    )
        return out

    # -- projects and API keys ---------------------------------------------------------------
    def ensure_project(self, name: str) -> None:
        with self._lock:
            self._projects.setdefault(name, utcnow())

    def list_projects(self) -> list[str]:
        with self._lock:
            return sorted(self._projects)

    def create_project(self, name: str) -> ProjectSummary:
        with self._lock:
            if name in self._projects:
                raise ConflictError(f"project {name!r} already exists", field="name")
            self._projects[name] = utcnow()
            return ProjectSummary(name, self._projects[name], 0)

    def project_summaries(self, *, name: str | None = None) -> list[ProjectSummary]:
        with self._lock:
            counts = Counter(e.project for e in self._experiments.values())
            return [
                ProjectSummary(n, at, counts[n])
                for n, at in sorted(self._projects.items())
                if name is None or n == name
            ]

    def add_api_key(
        self, project: str, key_hash: str, *, name: str, prefix: str, role: str = "member"
    ) -> ApiKeyInfo:
        with self._lock:
            self._projects.setdefault(project, utcnow())
            key = ApiKeyInfo(next(self._key_ids), project, name, prefix, role, utcnow())
            self._api_keys[key_hash] = key
            return key

    def key_for_hash(self, key_hash: str) -> ApiKeyInfo | None:
        with self._lock:
            key = self._api_keys.get(key_hash)
            return key if key is not None and key.revoked_at is None else None

    def list_api_keys(self, *, project: str | None = None) -> list[ApiKeyInfo]:
        with self._lock:
            keys = sorted(self._api_keys.values(), key=lambda k: k.id)
            return [k for k in keys if project is None or k.project == project]

    def revoke_api_key(self, key_id: int, *, project: str | None = None) -> ApiKeyInfo:
        with self._lock:
            for digest, key in self._api_keys.items():
                if key.id == key_id and (project is None or key.project == project):
                    if key.revoked_at is None:
                        key = self._api_keys[digest] = replace(key, revoked_at=utcnow())
                    return key
            raise NotFoundError(f"API key {key_id} not found", details={"key_id": key_id})

    def create_session(self, session_hash: str, key_id: int, *, expires_at: datetime) -> None:
        with self._lock:
            digest = next(h for h, k in self._api_keys.items() if k.id == key_id)
            self._sessions[session_hash] = [digest, expires_at, False]

    def session_key(self, session_hash: str, *, now: datetime) -> ApiKeyInfo | None:
        with self._lock:
            found = self._sessions.get(session_hash)
            if found is None or found[2] or found[1] <= now:
                return None
            return self.key_for_hash(found[0])

    def end_session(self, session_hash: str, *, now: datetime) -> None:
        with self._lock:
            if session_hash in self._sessions:
                self._sessions[session_hash][2] = True

    # -- jobs ------------------------------------------------------------------------------------
    def set_run_state(
        self, experiment_id: int, run_state: str | None, *, project: str | None = None
    ) -> None:
        with self._lock:
            self._get(experiment_id, project).run_state = run_state

    def runnable_experiments(self) -> list[int]:
        with self._lock:
            return [
                e.id
                for e in self._experiments.values()
                if e.run_state == "running" and e.status is ExperimentStatus.ACTIVE
            ]

    def claim_candidates(
        self,
        experiment_id: int,
        limit: int,
        *,
        lease_expires_at: datetime | None,
        actor: str | None = None,
    ) -> list[Trial]:
        with self._lock:
            exp = self._get(experiment_id, None)
            out = []
            for t in exp.trials:
                if len(out) >= limit:
                    break
                if t.state is TrialState.CANDIDATE:
                    t.state, t.lease_expires_at, t.updated_at = (
                        TrialState.RUNNING, lease_expires_at, utcnow(),
                    )  # fmt: skip
                    self._event(t, TrialState.CANDIDATE, TrialState.RUNNING, actor, "claimed")
                    out.append(copy.deepcopy(t))
            return out

    def create_job(self, job: Job, *, token_hash: str | None = None) -> Job:
        with self._lock:
            if any(j.trial_id == job.trial_id for j in self._jobs.values()):
                raise ConflictError(f"trial {job.trial_id} already has a job")
            stored = copy.deepcopy(job)
            stored.id = next(self._job_ids)
            stored.created_at = stored.created_at or utcnow()
            self._jobs[stored.id] = stored
            if token_hash is not None:
                self._job_tokens[token_hash] = stored.id
            return copy.deepcopy(stored)

    def update_job(self, job_id: int, **fields: Any) -> Job:
        with self._lock:
            job = self._job_obj(job_id)
            for k, v in fields.items():
                if not hasattr(job, k) or k in ("id", "trial_id", "experiment_id"):
                    raise ValueError(f"cannot update job field {k!r}")
                setattr(job, k, JobState(v) if k == "state" else copy.deepcopy(v))
            return copy.deepcopy(job)

    def _job_obj(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found", details={"job_id": job_id})
        return job

    def get_job(self, job_id: int) -> Job:
        with self._lock:
            return copy.deepcopy(self._job_obj(job_id))

    def job_for_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        with self._lock:
            self._trial(trial_id, project)
            for j in self._jobs.values():
                if j.trial_id == trial_id:
                    return copy.deepcopy(j)
            return None

    def list_jobs(
        self,
        *,
        experiment_id: int | None = None,
        states: Sequence[JobState] | None = None,
        executor: str | None = None,
        project: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        with self._lock:
            out = [
                copy.deepcopy(j)
                for j in sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)
                if (experiment_id is None or j.experiment_id == experiment_id)
                and (not states or j.state in set(states))
                and (executor is None or j.executor == executor)
                and (project is None or self._experiments[j.experiment_id].project == project)
            ]
            return out[:limit] if limit is not None else out

    def job_token_scope(self, token_hash: str) -> tuple[str, int] | None:
        with self._lock:
            job_id = self._job_tokens.get(token_hash)
            if job_id is None:
                return None
            job = self._jobs[job_id]
            if not job.state.is_active:
                return None
            return self._experiments[job.experiment_id].project, job.trial_id

    def add_report(
        self, trial_id: int, step: int | None, metrics: Mapping[str, float]
    ) -> TrialReport:
        with self._lock:
            self._trial(trial_id, None)
            r = TrialReport(next(self._report_ids), trial_id, step, dict(metrics), utcnow())
            self._reports.setdefault(trial_id, []).append(r)
            return copy.deepcopy(r)

    def list_reports(
        self, trial_id: int, *, after: int = 0, project: str | None = None
    ) -> list[TrialReport]:
        with self._lock:
            self._trial(trial_id, project)
            return [copy.deepcopy(r) for r in self._reports.get(trial_id, []) if r.id > after]

    def last_steps(self, trial_ids: Sequence[int]) -> dict[int, int]:
        with self._lock:
            out = {}
            for tid in set(trial_ids):
                steps = [r.step for r in self._reports.get(tid, []) if r.step is not None]
                if steps:
                    out[tid] = steps[-1]
            return out

    # -- privacy -------------------------------------------------------------------------------
    def privacy_ledger(self, project: str = "default") -> PrivacyLedger:
        """An in-memory ledger per project (it lives as long as this store)."""
        with self._lock:
            return self._privacy_ledgers.setdefault(project, InMemoryPrivacyLedger())
