"""What the dashboard needs to know about jobs and workers: a narrow read interface.

The orchestrator (issue 5) turns trials into jobs on executors (local GPU pool, Ray, Slurm).
The dashboard reads jobs only through :class:`JobsView`, so the pages do not depend on how
jobs are stored. :class:`NoJobsView` is what runs until the jobs tables exist: every read is
empty and :attr:`JobsView.empty_message` tells the user how jobs come about.

To wire a real implementation, set ``app.state.jobs_view`` (after ``create_app``) to any
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
    """The jobs view before jobs exist: everything is empty."""

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
