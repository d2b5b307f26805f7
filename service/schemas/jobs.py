"""Bodies of runs and jobs: an experiment's job spec (``JobSpecIn``, carried by
``ExperimentCreate``), a job's public record, the run state, and intermediate reports.

May import pydantic, :mod:`assay.platform` (the experiment status) and
:mod:`~assay.service.schemas.common`; no FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from assay.platform.experiment import ExperimentStatus
from assay.service.schemas.common import Strict


class ResourcesIn(Strict):
    cpus: Annotated[float, Field(gt=0, le=4096)] = 1.0
    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    memory_gb: Annotated[float, Field(gt=0, le=1e6)] | None = None


class JobSpecIn(Strict):
    """Run each trial as a job: ``entrypoint`` ``"package.module:function"`` (called with the
    trial's parameters, returns ``{metric: value | [mean, sem]}``) or ``command`` (an argv
    template with ``{parameter}`` placeholders that writes its metrics as JSON to
    ``$ASSAY_RESULT_PATH``)."""

    entrypoint: Annotated[str, Field(max_length=500)] | None = None
    command: (
        Annotated[
            list[Annotated[str, Field(max_length=10_000)]], Field(min_length=1, max_length=1000)
        ]
        | None
    ) = None
    resources: ResourcesIn = ResourcesIn()
    timeout_s: Annotated[float, Field(gt=0, le=2_592_000)] = 3600.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 0
    parallelism: Annotated[int, Field(ge=1, le=10_000)] = 1
    max_trials: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    env: Annotated[
        dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=10_000)]],
        Field(max_length=100),
    ] = {}
    executor: Literal["local", "ray", "slurm"] | None = None
    executor_options: Annotated[
        dict[Annotated[str, Field(max_length=200)], Any], Field(max_length=50)
    ] = {}


class JobPublic(BaseModel):
    id: int
    trial_id: int
    experiment_id: int
    executor: str
    worker: str
    state: str
    attempt: int
    resources: dict[str, Any]
    host: str | None
    gpus: list[int]
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    error: str | None
    cancel_requested: bool
    last_step: int | None = None
    #: The last bytes of the job's log, when the request asked for them (``log_tail_bytes``).
    log_tail: str | None = None

    @classmethod
    def from_domain(
        cls, j: Any, last_step: int | None = None, log_tail: str | None = None
    ) -> JobPublic:
        return cls(
            id=j.id, trial_id=j.trial_id, experiment_id=j.experiment_id, executor=j.executor,
            worker=j.worker, state=j.state.value, attempt=j.attempt, resources=j.resources,
            host=j.host, gpus=j.gpus, created_at=j.created_at, started_at=j.started_at,
            ended_at=j.ended_at, exit_code=j.exit_code, error=j.error,
            cancel_requested=j.cancel_requested, last_step=last_step, log_tail=log_tail,
        )  # fmt: skip


class JobList(BaseModel):
    jobs: list[JobPublic]
    offset: int = 0
    limit: int | None = None


class RunPublic(BaseModel):
    experiment_id: int
    run_state: str | None
    status: ExperimentStatus
    parallelism: int
    active_jobs: int
    trial_counts: dict[str, int]


class ReportIn(Strict):
    step: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    metrics: Annotated[
        dict[Annotated[str, Field(max_length=200)], float], Field(min_length=1, max_length=1000)
    ]


class ReportPublic(BaseModel):
    id: int
    trial_id: int
    step: int | None
    metrics: dict[str, float]
    at: datetime


class ReportList(BaseModel):
    reports: list[ReportPublic]
    limit: int | None = None
