"""Runs and jobs: start/pause/resume an experiment's run, list jobs, cancel a trial's job,
intermediate reports (learning curves) and job logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from assay.platform.errors import NotFoundError
from assay.platform.jobspec import JobState
from assay.service.deps import (
    EngineDep,
    EventCursor,
    ExperimentId,
    JobPrincipalDep,
    PageLimit,
    PageOffset,
    PrincipalDep,
    TrialId,
    check_job_spec_allowed,
)
from assay.service.jobs.logfiles import LogUnavailableError, open_log, read_tail
from assay.service.schemas import (
    JobList,
    JobPublic,
    ReportIn,
    ReportList,
    ReportPublic,
    RunPublic,
)

router = APIRouter(tags=["jobs"])


def _run(engine, experiment_id: int, project: str | None) -> RunPublic:  # type: ignore[no-untyped-def]
    exp = engine.get_experiment(experiment_id, project=project)
    counts: dict[str, int] = {}
    for t in exp.trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    active = engine.store.list_jobs(
        experiment_id=experiment_id, states=[JobState.QUEUED, JobState.RUNNING]
    )
    return RunPublic(
        experiment_id=exp.id, run_state=exp.run_state, status=exp.status,
        parallelism=exp.config.job.parallelism if exp.config.job else 0,
        active_jobs=len(active), trial_counts=counts,
    )  # fmt: skip


@router.get("/experiments/{experiment_id}/run", response_model=RunPublic)
def get_run(experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep):
    """The experiment's run: state, parallelism, active jobs, trials by state."""
    return _run(engine, experiment_id, who.project)


for _action in ("start", "pause", "resume"):

    def _make(action: str):  # type: ignore[no-untyped-def]
        def control(
            experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep, request: Request
        ):
            if action != "pause":  # the server's rules may have changed since creation
                config = engine.store.get_experiment_config(experiment_id, project=who.project)
                check_job_spec_allowed(request, who, config.job)
            engine.set_run(experiment_id, action, project=who.project)
            return _run(engine, experiment_id, who.project)

        control.__name__ = f"run_{action}"
        control.__doc__ = {
            "start": "Start running trials as jobs (up to the job spec's parallelism).",
            "pause": "Launch no new jobs; running jobs finish.",
            "resume": "Resume a paused (or stopped/failing) run.",
        }[action]
        return control

    router.post(f"/experiments/{{experiment_id}}/run:{_action}", response_model=RunPublic)(
        _make(_action)
    )


#: Most log bytes per job in a list (a list of 500 jobs stays a few MB at most).
MAX_LIST_LOG_TAIL = 8_192
LogTailBytes = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_LIST_LOG_TAIL,
        description="Include the last N bytes of each job's log as `log_tail` (0: none).",
    ),
]


def _safe_tail(log_dir: str, log_path: str | None, nbytes: int) -> str:
    """The log's last bytes, never through a link a job planted ('' when unavailable)."""
    if not log_path:
        return ""
    try:
        with open_log(log_dir, log_path) as f:
            return read_tail(f, nbytes)
    except LogUnavailableError:
        return ""


def _job_list(
    engine, jobs: list, log_tail_bytes: int, offset: int = 0, limit: int | None = None
) -> JobList:  # type: ignore[no-untyped-def]
    """Jobs with their progress (one batched read of the last steps) and optional log tails
    (read from the log files this server can see; '' when the log is elsewhere)."""
    steps = engine.store.last_steps([j.trial_id for j in jobs])
    log_dir = getattr(engine, "log_dir", ".assay/logs")  # set by create_app
    return JobList(
        jobs=[
            JobPublic.from_domain(
                j,
                steps.get(j.trial_id),
                _safe_tail(log_dir, j.log_path, log_tail_bytes) if log_tail_bytes else None,
            )
            for j in jobs
        ],
        offset=offset,
        limit=limit,
    )


@router.get("/experiments/{experiment_id}/jobs", response_model=JobList)
def experiment_jobs(
    experiment_id: ExperimentId,
    engine: EngineDep,
    who: PrincipalDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: PageLimit = 500,
    offset: PageOffset = 0,
    log_tail_bytes: LogTailBytes = 0,
):
    """The experiment's jobs, newest first, with ``last_step`` (progress), paginated."""
    engine.store.get_experiment_config(experiment_id, project=who.project)
    jobs = engine.store.list_jobs(experiment_id=experiment_id, states=state, limit=offset + limit)
    return _job_list(engine, jobs[offset:], log_tail_bytes, offset, limit)


@router.get("/jobs", response_model=JobList)
def all_jobs(
    engine: EngineDep,
    who: PrincipalDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: PageLimit = 500,
    offset: PageOffset = 0,
    log_tail_bytes: LogTailBytes = 0,
):
    """Jobs across the caller's experiments, newest first (filter e.g. ``state=running``),
    with ``last_step`` (progress), paginated."""
    jobs = engine.store.list_jobs(states=state, project=who.project, limit=offset + limit)
    return _job_list(engine, jobs[offset:], log_tail_bytes, offset, limit)


@router.get("/trials/{trial_id}/job", response_model=JobPublic)
def trial_job(trial_id: TrialId, engine: EngineDep, who: PrincipalDep):
    job = engine.store.job_for_trial(trial_id, project=who.project)
    if job is None:
        raise NotFoundError(f"trial {trial_id} has no job", details={"trial_id": trial_id})
    return JobPublic.from_domain(job, engine.store.last_steps([trial_id]).get(trial_id))


@router.post("/trials/{trial_id}:cancel", response_model=JobPublic | None)
def cancel(trial_id: TrialId, engine: EngineDep, who: PrincipalDep):
    """Kill the trial's job (its worker does so within a poll interval); the trial ends as
    ``abandoned``. A trial with no job yet is abandoned at once."""
    job = engine.cancel_trial(trial_id, project=who.project)
    return JobPublic.from_domain(job) if job is not None else None


def _scoped(who, trial_id: int) -> None:  # type: ignore[no-untyped-def]
    if who.trial_scope is not None and who.trial_scope != trial_id:
        raise NotFoundError(f"trial {trial_id} not found", details={"trial_id": trial_id})


@router.post("/trials/{trial_id}/reports", response_model=ReportPublic, status_code=201)
def add_report(trial_id: TrialId, body: ReportIn, engine: EngineDep, who: JobPrincipalDep):
    """An intermediate report from inside a job (what ``assay.report(step=..., **m)`` sends)."""
    _scoped(who, trial_id)
    r = engine.report(trial_id, body.step, body.metrics, project=who.project)
    return ReportPublic(id=r.id, trial_id=r.trial_id, step=r.step, metrics=r.metrics, at=r.at)


@router.get("/trials/{trial_id}/reports", response_model=ReportList)
def list_reports(
    trial_id: TrialId,
    engine: EngineDep,
    who: PrincipalDep,
    after: EventCursor = 0,
    limit: PageLimit = 1000,
):
    """The trial's reports in order; page with ``after`` = the last id you saw."""
    reports = engine.store.list_reports(trial_id, after=after, project=who.project)[:limit]
    return ReportList(
        reports=[
            ReportPublic(id=r.id, trial_id=r.trial_id, step=r.step, metrics=r.metrics, at=r.at)
            for r in reports
        ],
        limit=limit,
    )


def _log_path(engine, trial_id: int, project: str | None) -> str:  # type: ignore[no-untyped-def]
    job = engine.store.job_for_trial(trial_id, project=project)
    if job is None or not job.log_path:
        raise NotFoundError(f"trial {trial_id} has no job log", details={"trial_id": trial_id})
    return job.log_path


@router.get("/trials/{trial_id}/log", response_class=PlainTextResponse)
def log_tail(
    trial_id: TrialId,
    request: Request,
    engine: EngineDep,
    who: PrincipalDep,
    tail_bytes: Annotated[int, Query(ge=1, le=10_000_000)] = 16_384,
):
    """The last ``tail_bytes`` of the job's stdout/stderr (plain text; never through a link
    the job planted, see :mod:`assay.service.jobs.logfiles`)."""
    path = _log_path(engine, trial_id, who.project)
    try:
        with open_log(request.app.state.settings.log_dir, path) as f:
            return PlainTextResponse(read_tail(f, tail_bytes))
    except LogUnavailableError:
        return PlainTextResponse("")  # not written yet, or elsewhere: nothing to show


@router.get("/trials/{trial_id}/log:download")
def log_download(trial_id: TrialId, request: Request, engine: EngineDep, who: PrincipalDep):
    """The whole job log as a file (opened without following links; 404 otherwise)."""
    path = _log_path(engine, trial_id, who.project)
    try:
        f = open_log(request.app.state.settings.log_dir, path)
    except LogUnavailableError as e:
        raise NotFoundError(
            f"the log of trial {trial_id} is not available on this server: {e.message}",
            details={"trial_id": trial_id},
        ) from e

    def chunks():  # type: ignore[no-untyped-def]
        with f:
            while block := f.read(65536):
                yield block

    return StreamingResponse(
        chunks(), media_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="trial-{trial_id}.log"'},
    )  # fmt: skip
