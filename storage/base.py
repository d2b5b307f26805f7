"""The storage interface every backend implements (in-memory, SQLite, PostgreSQL).

Backends turn their rows into :mod:`assay.platform.experiment` domain objects and back. They
never decide optimization questions; they *do* own atomicity: each method is one transaction,
state changes are compare-and-set (so two callers cannot both complete a trial), and
:meth:`Store.lock_experiment` serialises asks on one experiment so concurrent asks never
create duplicate trials.

One behavioural test suite (``tests/storage/``) runs against every backend.

May import: :mod:`assay.platform` (the domain types) and :mod:`assay.storage.ledger` (the
privacy ledger interface); never a backend, never SQLAlchemy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from assay.platform.early_stopping import Curve
from assay.platform.errors import (
    InvalidTransitionError,
    NotFoundError,
    UnsupportedError,
    ValidationError,
)
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    StatusReason,
    Trial,
    TrialState,
)
from assay.platform.jobspec import Job, JobState, TrialReport
from assay.storage.ledger.base import PrivacyLedger
from assay.storage.webhooks import MemoryOutbox, WebhookOutbox

#: Trial states whose reports make up the curves the early-stopping rules compare against.
CURVE_STATES = (TrialState.RUNNING, TrialState.COMPLETED, TrialState.EARLY_STOPPED)

#: What a completion stores: ``{arm: {metric: Observation}}``, or a callable that receives the
#: trial as loaded inside the transaction and its experiment's current configuration when the
#: store read it with the trial (else ``None``) and returns them (validation and write in one
#: transaction), or ``None``.
ObservationsArg = (
    Mapping[str, Mapping[str, Observation]]
    | Callable[[Trial, ExperimentConfig | None], Mapping[str, Mapping[str, Observation]]]
    | None
)


def status_reason_for(status: ExperimentStatus, reason: StatusReason | None) -> StatusReason:
    """The record a status change stores: ``reason`` (which must be about ``status``), or a
    bare one with the status and the time."""
    if reason is None:
        return StatusReason(status)
    if reason.status is not status:
        raise ValueError(f"a status reason for {reason.status.value!r} given for {status.value!r}")
    return reason


def read_status_reason(raw: Mapping[str, Any] | None) -> StatusReason | None:
    """A stored status reason, or ``None`` (never recorded: experiments stored before
    reasons were kept, or whose status never changed; or an unreadable record, which must not
    make the experiment unloadable)."""
    if not raw:
        return None
    try:
        return StatusReason.from_dict(raw)
    except (ValidationError, TypeError, ValueError):
        return None


def check_expected_state(
    trial_id: int, state: TrialState, expected_states: Sequence[TrialState] | None
) -> None:
    """``InvalidTransitionError`` unless ``expected_states`` is ``None`` or holds ``state``
    (the guard of :meth:`Store.transition_trial`, before the life-cycle check)."""
    if expected_states is not None and state not in expected_states:
        raise InvalidTransitionError(
            f"trial {trial_id} is {state.value}, expected one of "
            f"{[x.value for x in expected_states]}",
            details={"trial_id": trial_id, "state": state.value},
        )


def not_running_error(trial_id: int, state: TrialState) -> InvalidTransitionError:
    """The refusal of a heartbeat for a trial that is not running."""
    return InvalidTransitionError(
        f"trial {trial_id} is {state.value}; only running trials take heartbeats",
        details={"trial_id": trial_id, "state": state.value},
    )


@dataclass
class NewTrial:
    """A trial to create under an experiment lock.

    Args:
        arms: ``[(arm_name, parameters)]``; names come from
            :meth:`~assay.platform.experiment.Experiment.name_arms`.
        generator: What produced it (``"sobol"``, ``"noisy_ei"``, ``"manual"``, ...).
        state: Initial state (``candidate`` or ``running``).
        lease_expires_at: Optional heartbeat deadline for a running trial.
        metadata: JSON facts about the generation (acquisition value, ...).
    """

    arms: list[tuple[str, dict[str, Any]]]
    generator: str
    state: TrialState = TrialState.CANDIDATE
    lease_expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialEvent:
    """One row of a trial's append-only audit trail."""

    id: int
    trial_id: int
    experiment_id: int
    from_state: TrialState | None
    to_state: TrialState
    at: datetime
    actor: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentSummary:
    """A list-view row: the experiment without its trials, plus counts."""

    id: int
    name: str
    project: str
    status: ExperimentStatus
    generator: str
    objective: str
    minimize: bool
    trial_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime


@dataclass
class ExperimentVersion:
    """One version of an experiment's definition: ``config`` (its JSON form), what changed
    from the previous version, who and why, and ``trial_count``: the trials that existed when
    it took effect (trials with an index from there up to the next version's were generated
    under it)."""

    version: int
    config: dict[str, Any]
    changes: list[str]
    actor: str | None
    reason: str | None
    trial_count: int
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "config": self.config, "changes": list(self.changes),
            "actor": self.actor, "reason": self.reason, "trial_count": self.trial_count,
            "at": self.at.isoformat(),
        }  # fmt: skip


def version_of_trial(versions: Sequence[ExperimentVersion], index: int) -> int:
    """The definition version trial number ``index`` was generated under."""
    return max((v.version for v in versions if v.trial_count <= index), default=1)


@dataclass(frozen=True)
class ProjectSummary:
    """A project with how many experiments it holds."""

    name: str
    created_at: datetime | None
    experiment_count: int


@dataclass(frozen=True)
class ApiKeyInfo:
    """A stored API key (never its token): ``role`` is ``viewer``/``member``/``admin``."""

    id: int
    project: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class ObservationRecord:
    """One stored observation of a completed trial, flat (for cheap summaries)."""

    experiment_id: int
    trial_id: int
    trial_index: int
    arm_name: str
    metric: str
    mean: float
    sem: float | None


class ExperimentLock(ABC):
    """The unit of work of one ask: a locked, fresh snapshot of the experiment.

    ``experiment`` is read-only: backends may share its trial objects with their caches.
    """

    experiment: Experiment

    @abstractmethod
    def trials_for_key(self, idempotency_key: str) -> list[Trial] | None:
        """Trials created earlier under this idempotency key, if any."""

    @abstractmethod
    def add_trials(
        self,
        trials: Sequence[NewTrial],
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
        generator_state: Mapping[str, Any] | None = None,
        model_state: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        """Atomically create trials with the next indices (one creation event each), remember
        the idempotency key, and persist the generator state and model hyperparameters when
        given (``None`` keeps what is stored)."""


class Store(ABC):
    """Persistence for projects, experiments, trials, observations and events."""

    # -- experiments -------------------------------------------------------------------------
    @abstractmethod
    def create_experiment(
        self, config: ExperimentConfig, *, project: str = "default"
    ) -> Experiment:
        """Store a new experiment. Raises ``ConflictError`` if the name exists in the project."""

    @abstractmethod
    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        """The experiment with all its trials. ``NotFoundError`` if absent or in another project."""

    @abstractmethod
    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        """Summaries, newest first."""

    @abstractmethod
    def set_experiment_status(
        self,
        experiment_id: int,
        status: ExperimentStatus,
        *,
        project: str | None = None,
        reason: StatusReason | None = None,
    ) -> Experiment:
        """Change the experiment's status and record why (``reason``; without one, a bare
        :class:`~assay.platform.experiment.StatusReason` with the status and the time, so the
        record always describes the current status)."""

    @abstractmethod
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
        """Store a new version of the definition (recording version 1, the definition at
        creation, with the first change) and forget the fitted model state, whose shape may
        no longer fit. Past trials keep theirs (see :class:`ExperimentVersion`)."""

    @abstractmethod
    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        """The definition's versions, oldest first (one, synthesized, before any change)."""

    @abstractmethod
    def lock_experiment(
        self, experiment_id: int, *, project: str | None = None
    ) -> AbstractContextManager[ExperimentLock]:
        """Exclusive access to one experiment for the duration of an ask."""

    # -- trials ------------------------------------------------------------------------------
    @abstractmethod
    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        """One trial. ``NotFoundError`` if absent or in another project."""

    @abstractmethod
    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Trial]:
        """Trials of one experiment by index."""

    @abstractmethod
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
        """Compare-and-set a trial's state, storing observations with a completion.

        ``details`` (JSON) go into the transition's audit event, e.g. an early-stopping
        decision's numbers.

        ``observations`` may be a callable: it receives the trial as loaded inside the
        transaction and returns the validated observations (or raises, storing nothing), so
        validation and the write happen in one transaction.

        Raises ``InvalidTransitionError`` (nothing stored) when the trial's current state does
        not allow ``to_state`` (or is not in ``expected_states``).
        """

    @abstractmethod
    def get_experiment_config(
        self, experiment_id: int, *, project: str | None = None
    ) -> ExperimentConfig:
        """Only the experiment's (immutable) configuration: cheap, no trials."""

    @abstractmethod
    def heartbeat(
        self, trial_id: int, lease_expires_at: datetime, *, project: str | None = None
    ) -> Trial:
        """Extend a running trial's lease."""

    @abstractmethod
    def list_events(
        self, *, experiment_id: int | None = None, trial_id: int | None = None, after: int = 0
    ) -> list[TrialEvent]:
        """Audit events in order, optionally only those with ``id > after``."""

    @abstractmethod
    def count_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> int:
        """Number of trials (for pagination)."""

    @abstractmethod
    def expired_leases(self, now: datetime) -> list[int]:
        """Ids of the running trials whose lease expired before ``now``."""

    def reap_expired_leases(self, now: datetime, *, actor: str = "reaper") -> list[Trial]:
        """Fail every running trial whose lease expired before ``now`` (reason in its event).

        Each is one compare-and-set ``running → failed``; a trial that completed, or that
        another server reaped, meanwhile is skipped.
        """
        out = []
        for trial_id in self.expired_leases(now):
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
            except InvalidTransitionError:
                continue
        return out

    # -- cheap reads for dashboards ---------------------------------------------------------
    def latest_event_id(self, *, experiment_id: int | None = None) -> int:
        """The largest audit-event id (of one experiment, or overall); 0 when there is none.

        A cheap change detector and the starting cursor for ``list_events(after=...)``.
        Backends override this default (which reads every event).
        """
        events = self.list_events(experiment_id=experiment_id)
        return events[-1].id if events else 0

    def experiment_curves(self, experiment: Experiment) -> list[Curve]:
        """The learning curves (intermediate reports) of the experiment's running, completed
        and early-stopped single-arm trials, for the early-stopping rules and the dashboard.
        A completed trial's curve is ``finished`` and carries its final observations.
        Backends may override this default (one read of reports per trial)."""
        out = []
        for t in experiment.trials:
            if t.is_batch or t.state not in CURVE_STATES:
                continue
            done = t.state is TrialState.COMPLETED
            out.append(
                Curve.from_reports(
                    t.id,
                    [(r.step, r.metrics) for r in self.list_reports(t.id)],
                    finished=done,
                    final={m: o.mean for m, o in t.values.items()} if done else {},
                    state=t.state.value,
                )
            )
        return out

    def completed_observations(
        self, experiment_ids: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[ObservationRecord]:
        """Observations of *completed* trials of several experiments in one read, ordered by
        (experiment, trial index), optionally only of ``metrics``; no visibility check (pass
        ids the caller may see). Backends override this default (which loads experiments).
        """
        out = []
        wanted = set(metrics) if metrics is not None else None
        for exp_id in sorted(set(experiment_ids)):
            for trial, arm, obs in self.get_experiment(exp_id).observed():
                for o in obs.values():
                    if wanted is None or o.metric in wanted:
                        out.append(
                            ObservationRecord(
                                exp_id, trial.id, trial.index, arm.name, o.metric, o.mean, o.sem
                            )
                        )
        return out

    # -- projects and API keys ---------------------------------------------------------------
    @abstractmethod
    def ensure_project(self, name: str) -> None:
        """Create the project if it does not exist."""

    @abstractmethod
    def list_projects(self) -> list[str]:
        """Project names."""

    @abstractmethod
    def create_project(self, name: str) -> ProjectSummary:
        """Create a project. ``ConflictError`` (field ``name``) if it exists."""

    @abstractmethod
    def project_summaries(self, *, name: str | None = None) -> list[ProjectSummary]:
        """Projects by name with their experiment counts, in one read (only ``name`` if
        given: an empty list when it does not exist)."""

    def get_project(self, name: str) -> ProjectSummary:
        """One project. ``NotFoundError`` if absent."""
        found = self.project_summaries(name=name)
        if not found:
            raise NotFoundError(f"project {name!r} not found", details={"project": name})
        return found[0]

    @abstractmethod
    def add_api_key(
        self, project: str, key_hash: str, *, name: str, prefix: str, role: str = "member"
    ) -> ApiKeyInfo:
        """Store a hashed API key for ``project`` (creating the project if needed)."""

    def project_for_key(self, key_hash: str) -> str | None:
        """The project of a non-revoked key, or ``None``."""
        key = self.key_for_hash(key_hash)
        return None if key is None else key.project

    @abstractmethod
    def key_for_hash(self, key_hash: str) -> ApiKeyInfo | None:
        """The non-revoked key with this hash, or ``None`` (one indexed read, never cached
        here: a revocation is visible to the next call on every replica)."""

    @abstractmethod
    def list_api_keys(self, *, project: str | None = None) -> list[ApiKeyInfo]:
        """Keys (revoked ones included), oldest first; only ``project``'s if given."""

    @abstractmethod
    def revoke_api_key(self, key_id: int, *, project: str | None = None) -> ApiKeyInfo:
        """Revoke a key (idempotent) and thereby every dashboard session opened with it.
        ``NotFoundError`` if absent or in another project than ``project``."""

    # -- dashboard sessions ------------------------------------------------------------------
    @abstractmethod
    def create_session(self, session_hash: str, key_id: int, *, expires_at: datetime) -> None:
        """Store a dashboard session (only the hash of its random id)."""

    @abstractmethod
    def session_key(self, session_hash: str, *, now: datetime) -> ApiKeyInfo | None:
        """The key of a live session: not ended, not expired at ``now``, key not revoked."""

    @abstractmethod
    def end_session(self, session_hash: str, *, now: datetime) -> None:
        """Sign a session out (idempotent; unknown hashes are ignored)."""

    # -- jobs (trial orchestration) ----------------------------------------------------------
    @abstractmethod
    def set_run_state(
        self, experiment_id: int, run_state: str | None, *, project: str | None = None
    ) -> None:
        """Set the experiment's job-run state (``running``, ``paused``, ``stopped``, ``done``)."""

    @abstractmethod
    def runnable_experiments(self) -> list[int]:
        """Ids of active experiments whose run state is ``running``."""

    @abstractmethod
    def claim_candidates(
        self,
        experiment_id: int,
        limit: int,
        *,
        lease_expires_at: datetime | None,
        actor: str | None = None,
    ) -> list[Trial]:
        """Atomically move up to ``limit`` candidate trials to ``running`` (compare-and-set;
        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two workers never claim one trial."""

    @abstractmethod
    def create_job(self, job: Job, *, token_hash: str | None = None) -> Job:
        """Store a job (its ``id`` is assigned); one job per trial."""

    @abstractmethod
    def update_job(self, job_id: int, **fields: Any) -> Job:
        """Change job fields (``state``, ``handle``, ``host``, ``started_at``, ...)."""

    @abstractmethod
    def get_job(self, job_id: int) -> Job:
        """One job by id."""

    @abstractmethod
    def job_for_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        """The job that runs this trial, if any."""

    @abstractmethod
    def list_jobs(
        self,
        *,
        experiment_id: int | None = None,
        states: Sequence[JobState] | None = None,
        executor: str | None = None,
        project: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs, newest first."""

    @abstractmethod
    def job_token_scope(self, token_hash: str) -> tuple[str, int] | None:
        """``(project, trial_id)`` of an active job's scoped token, or ``None``."""

    @abstractmethod
    def add_report(
        self, trial_id: int, step: int | None, metrics: Mapping[str, float]
    ) -> TrialReport:
        """Append an intermediate report of a running trial."""

    @abstractmethod
    def list_reports(
        self, trial_id: int, *, after: int = 0, project: str | None = None
    ) -> list[TrialReport]:
        """A trial's reports in order (``id > after``)."""

    @abstractmethod
    def last_steps(self, trial_ids: Sequence[int]) -> dict[int, int]:
        """``{trial_id: step}`` of each trial's latest report that carries a step, in one
        read (job lists show progress without a query per job); trials without one are left
        out. No visibility check: pass ids the caller may see."""

    # -- privacy ---------------------------------------------------------------------------
    def privacy_ledger(self, project: str = "default") -> PrivacyLedger:
        """The project's privacy budgets (:mod:`assay.storage.ledger` semantics)."""
        raise UnsupportedError(f"{type(self).__name__} has no privacy ledger")

    def webhooks(self) -> WebhookOutbox:
        """The webhook subscriptions and delivery outbox (:mod:`assay.storage.webhooks`); in
        memory unless the backend keeps them (SQL)."""
        outbox = self.__dict__.get("_webhook_outbox")
        if outbox is None:
            outbox = self.__dict__.setdefault("_webhook_outbox", MemoryOutbox())
        return outbox

    def close(self) -> None:  # noqa: B027
        """Release connections."""
