"""What the dashboard needs to know about jobs and workers: a narrow read interface.

The orchestrator turns trials into jobs on executors (local GPU pool, Ray, Slurm). The
dashboard reads jobs only through :class:`JobsView`, so the pages do not depend on how jobs
are stored. ``create_app`` installs :class:`StoreJobsView` (the store's ``jobs`` and
``trial_reports`` tables); :class:`NoJobsView` answers when an app has no jobs view at all
(every read is empty and :attr:`JobsView.empty_message` tells the user how jobs come about).

To wire another implementation, set ``app.state.jobs_view`` (after ``create_app``) to any
object with these methods; the pages pick it up on the next request.

Example:
    >>> view = NoJobsView()
    >>> view.running_jobs(project=None)
    []
    >>> view.available
    False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

NO_JOBS_MESSAGE = (
    "No jobs yet — jobs appear when an experiment has a job spec (see README). Trials told "
    "through the API or the Python client run outside Assay and have no job."
)


@dataclass
class JobInfo:
    """One job: a trial running (or that ran) on an executor.

    Args:
        id: Job id.
        experiment_id, trial_id, trial_index: What it evaluates.
        experiment_name: For display.
        state: ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``.
        executor: ``local``, ``ray``, ``slurm``.
        worker: Host / worker name.
        resources: e.g. ``{"gpu": "0", "gpu_name": "H100", "cpus": 4, "memory_gb": 16}``.
        progress: Fraction done in ``[0, 1]`` when the job reports one.
        step: Last reported step.
        attempt: Retry number (1 = first try).
        started_at, updated_at, finished_at: Timestamps (UTC).
        error_tail: The last lines of the error output of a failed job.
    """

    id: str
    experiment_id: int
    trial_id: int
    trial_index: int
    state: str
    executor: str
    experiment_name: str = ""
    worker: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    progress: float | None = None
    step: int | None = None
    attempt: int = 1
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    error_tail: str | None = None


@dataclass
class WorkerInfo:
    """A worker (or executor slot pool) and what it has."""

    name: str
    executor: str
    resources: dict[str, Any] = field(default_factory=dict)
    running_jobs: int = 0
    capacity: int | None = None
    last_seen: datetime | None = None


@dataclass
class MetricCurve:
    """Intermediate values of one metric reported by a job (``assay.report(step=..., m=...)``)."""

    metric: str
    steps: list[float]
    values: list[float]


@runtime_checkable
class JobsView(Protocol):
    """Read-only access to jobs for the dashboard. ``project=None`` means every project."""

    @property
    def available(self) -> bool:
        """Whether jobs exist in this deployment at all (``False``: show the empty state)."""

    @property
    def empty_message(self) -> str:
        """What to tell the user when there are no jobs."""

    def running_jobs(self, *, project: str | None) -> list[JobInfo]:
        """Queued and running jobs, oldest first."""

    def failed_jobs(self, *, project: str | None, limit: int = 20) -> list[JobInfo]:
        """Recent failures, newest first, with their error tails."""

    def workers(self, *, project: str | None) -> list[WorkerInfo]:
        """Workers / executor pools and their resources."""

    def jobs_for_trials(
        self, trial_ids: Sequence[int], *, project: str | None
    ) -> dict[int, JobInfo]:
        """The latest job of each trial that has one (for the trials table)."""

    def intermediate_curves(self, trial_id: int, *, project: str | None) -> list[MetricCurve]:
        """Metrics the trial's job reported along the way."""

    def log_tail(self, trial_id: int, *, project: str | None, lines: int = 200) -> str | None:
        """The last ``lines`` lines of the trial's job log, or ``None`` without a job."""


class NoJobsView:
    """The jobs view of an app without one: everything is empty."""

    available = False
    empty_message = NO_JOBS_MESSAGE

    def running_jobs(self, *, project: str | None) -> list[JobInfo]:
        return []

    def failed_jobs(self, *, project: str | None, limit: int = 20) -> list[JobInfo]:
        return []

    def workers(self, *, project: str | None) -> list[WorkerInfo]:
        return []

    def jobs_for_trials(
        self, trial_ids: Sequence[int], *, project: str | None
    ) -> dict[int, JobInfo]:
        return {}

    def intermediate_curves(self, trial_id: int, *, project: str | None) -> list[MetricCurve]:
        return []

    def log_tail(self, trial_id: int, *, project: str | None, lines: int = 200) -> str | None:
        return None


class StoreJobsView:
    """Jobs read from the store (the orchestrator's ``jobs`` and ``trial_reports`` tables).

    Args:
        store: Any :class:`~assay.storage.base.Store`.
        log_dir: The server's job log root: logs are read only below it, never through a
            link (:func:`assay.service.jobs.logfiles.open_log`).
    """

    def __init__(self, store: Any, log_dir: str = ".assay/logs") -> None:
        self.store = store
        self.log_dir = log_dir

    @property
    def available(self) -> bool:
        return bool(self.store.list_jobs(limit=1))

    empty_message = NO_JOBS_MESSAGE

    def _names(self, project: str | None) -> dict[int, str]:
        return {e.id: e.name for e in self.store.list_experiments(project=project)}

    def _info(self, job: Any, names: dict[int, str]) -> JobInfo:
        from assay.platform.errors import NotFoundError

        try:
            trial = self.store.get_trial(job.trial_id)
            index = trial.index
        except NotFoundError:
            index = -1
        reports = self.store.list_reports(job.trial_id)
        step = next((r.step for r in reversed(reports) if r.step is not None), None)
        progress = next(
            (r.metrics["progress"] for r in reversed(reports) if "progress" in r.metrics), None
        )
        resources = dict(job.resources)
        if job.gpus:
            resources["gpu"] = ",".join(str(g) for g in job.gpus)
        worker = job.worker if not job.host else f"{job.worker} ({job.host})"
        tail = None
        if job.error:
            tail = "\n".join(job.error.strip().splitlines()[-30:])
        return JobInfo(
            id=str(job.id), experiment_id=job.experiment_id, trial_id=job.trial_id,
            trial_index=index, state=job.state.value, executor=job.executor,
            experiment_name=names.get(job.experiment_id, ""), worker=worker,
            resources=resources, progress=progress, step=step, attempt=job.attempt,
            started_at=job.started_at, updated_at=job.heartbeat_at, finished_at=job.ended_at,
            error_tail=tail,
        )  # fmt: skip

    def running_jobs(self, *, project: str | None) -> list[JobInfo]:
        from assay.platform.jobspec import JobState

        jobs = self.store.list_jobs(states=[JobState.QUEUED, JobState.RUNNING], project=project)
        names = self._names(project)
        return [self._info(j, names) for j in reversed(jobs)]

    def failed_jobs(self, *, project: str | None, limit: int = 20) -> list[JobInfo]:
        from assay.platform.jobspec import JobState

        jobs = self.store.list_jobs(
            states=[JobState.FAILED, JobState.TIMEOUT, JobState.LOST], project=project, limit=limit
        )
        names = self._names(project)
        return [self._info(j, names) for j in jobs]

    def workers(self, *, project: str | None) -> list[WorkerInfo]:
        from assay.platform.jobspec import JobState

        out: dict[str, WorkerInfo] = {}
        for j in self.store.list_jobs(states=[JobState.QUEUED, JobState.RUNNING], project=project):
            w = out.setdefault(j.worker, WorkerInfo(name=j.worker, executor=j.executor))
            w.running_jobs += 1
            if j.heartbeat_at and (w.last_seen is None or j.heartbeat_at > w.last_seen):
                w.last_seen = j.heartbeat_at
            if j.gpus:
                w.resources.setdefault("gpus", set()).update(j.gpus)
        for w in out.values():
            if "gpus" in w.resources:
                w.resources["gpus"] = ",".join(str(g) for g in sorted(w.resources["gpus"]))
        return sorted(out.values(), key=lambda w: w.name)

    def jobs_for_trials(
        self, trial_ids: Sequence[int], *, project: str | None
    ) -> dict[int, JobInfo]:
        names: dict[int, str] | None = None
        out = {}
        for trial_id in trial_ids:
            job = self.store.job_for_trial(trial_id, project=project)
            if job is not None:
                names = names if names is not None else self._names(project)
                out[trial_id] = self._info(job, names)
        return out

    def intermediate_curves(self, trial_id: int, *, project: str | None) -> list[MetricCurve]:
        curves: dict[str, MetricCurve] = {}
        for i, r in enumerate(self.store.list_reports(trial_id, project=project)):
            for metric, value in r.metrics.items():
                c = curves.setdefault(metric, MetricCurve(metric, [], []))
                c.steps.append(float(r.step if r.step is not None else i))
                c.values.append(float(value))
        return list(curves.values())

    def log_tail(self, trial_id: int, *, project: str | None, lines: int = 200) -> str | None:
        from assay.service.jobs.logfiles import LogUnavailableError, open_log, read_tail

        job = self.store.job_for_trial(trial_id, project=project)
        if job is None or not job.log_path:
            return None
        try:
            with open_log(self.log_dir, job.log_path) as f:
                text = read_tail(f, 256 * lines)
        except LogUnavailableError as e:
            return f"({e.message})"
        return "\n".join(text.splitlines()[-lines:])
