"""The orchestrator: turns an experiment's trials into jobs and keeps its run going.

One pass (:meth:`Orchestrator.step`) does, for every experiment whose run is ``running`` and
whose job spec names one of this worker's executors:

1. **launch** — queue candidate trials up to the spec's ``parallelism``
   (:meth:`~assay.service.generation.Generation.fill_candidates`, under the experiment lock),
   claim them with a compare-and-set (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   workers never take the same trial), and submit a job per claimed trial within the
   executor's free capacity;
2. **poll** this worker's jobs (with back-off when nothing changes): a finished job's metrics
   complete its trial; a failure, timeout or lost job fails it with the error tail and, within
   ``max_retries``, queues a new trial of the same arm; running jobs get their trial's lease
   extended (a dead worker's trials then expire and are reaped); cancel requests kill the job;
   when the experiment has ``early_stopping`` and the job reported a new curve point, the rule
   is applied (:meth:`~assay.service.stopping.Stopping.early_stop_if_needed`): a trial it
   stops is killed, its job ``cancelled``, the trial ``early_stopped`` with the reason and the
   decision's numbers in its event;
3. **supervise** — an experiment whose recent trials mostly failed is stopped (status
   ``failing``); a run whose budget is spent and has no active job is ``done``; an
   experiment whose ``stopping`` rule has ``auto: true`` and says done ends: status
   ``completed``, run ``done``, queued candidates abandoned with the rule's reason.

Restart-safe: job handles live in the database. On start a worker adopts the active jobs of
its executors that it (same worker id) or a dead worker (stale heartbeat) left behind: Ray and
Slurm jobs are re-attached; local processes, which die with their server, are marked lost and
retried.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from assay.platform.errors import (
    AssayError,
    ConflictError,
    InvalidTransitionError,
    ValidationError,
)
from assay.platform.experiment import Experiment, ExperimentStatus, Trial, TrialState
from assay.platform.jobspec import Job, JobSpec, JobState
from assay.service.auth import hash_token, new_token
from assay.service.engine import Engine
from assay.service.jobs.base import Executor, JobLaunch, JobStatus, tail
from assay.service.jobs.policy import JobPolicy
from assay.service.observability import LEASE_EXPIRIES
from assay.storage.urls import absolute_database_url

log = logging.getLogger("assay.orchestrator")

#: A worker adopts another worker's active jobs when their heartbeat is older than this.
STALE_AFTER_S = 60.0
ADOPT_EVERY_S = 5.0
#: Stop an experiment when more than half of its last this-many finished trials failed.
FAILING_WINDOW = 6
FAILING_MIN_FINISHED = 4


class Orchestrator:
    """Runs experiments' trials as jobs (see the module docstring).

    Args:
        engine: The experiment engine (and its store).
        executors: ``{name: executor}`` this worker can use.
        default_executor: Used when a job spec names none.
        worker_id: Stable identity (restarting with the same id adopts its jobs at once).
        log_dir: Where per-trial work directories (log, result file) go.
        service_url: When set, jobs report over HTTP with a scoped token ...
        database_url: ... else straight into this database.
        poll_interval: Seconds between passes when jobs are active (idle passes back off to
            ``max_interval``).
        lease_seconds: Lease on a running trial, renewed while its job runs.
        on_event: Callback ``(message: str) -> None`` for a live terminal log.
        stale_after_s: Adopt another worker's jobs after this long without its heartbeat.
            Use one value for all workers of a database: the keep-alive interval is derived
            from it (see :attr:`heartbeat_every_s`).
        job_policy: The server's job rules (:class:`~assay.service.jobs.policy.JobPolicy`):
            a run whose spec they no longer permit is stopped instead of launched, and jobs
            inherit only its ``passthrough`` variables. ``None`` (library use): any spec,
            with :func:`~assay.service.jobs.policy.minimal_env`.

    Raises:
        ValidationError: a non-positive ``lease_seconds`` or ``stale_after_s``, or a
            ``poll_interval`` too slow to heartbeat within ``stale_after_s``.
    """

    def __init__(
        self,
        engine: Engine,
        executors: Mapping[str, Executor],
        *,
        default_executor: str = "local",
        worker_id: str | None = None,
        log_dir: str | Path = ".assay/logs",
        service_url: str | None = None,
        database_url: str | None = None,
        poll_interval: float = 0.5,
        max_interval: float = 5.0,
        lease_seconds: float = 120.0,
        on_event: Callable[[str], None] | None = None,
        stale_after_s: float = STALE_AFTER_S,
        job_policy: JobPolicy | None = None,
    ) -> None:
        self.engine, self.store = engine, engine.store
        self.executors = dict(executors)
        self.default_executor = default_executor
        self.worker_id = worker_id or f"{'+'.join(sorted(executors))}@{socket.gethostname()}"
        self.log_dir = Path(log_dir).resolve()
        self.service_url = service_url
        # Jobs run with their work directory as cwd: a relative SQLite path (the default
        # sqlite:///./assay.db) must be resolved here, against this process's directory.
        self.database_url = absolute_database_url(database_url) if database_url else None
        self.poll_interval, self.max_interval = poll_interval, max_interval
        self.lease_seconds = lease_seconds
        self.on_event = on_event
        self.job_policy = job_policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._adopted = False
        self._last_adopt = 0.0
        self.stale_after_s = stale_after_s
        for name, value in (("lease_seconds", lease_seconds), ("stale_after_s", stale_after_s),
                            ("poll_interval", poll_interval)):  # fmt: skip
            if not value > 0:
                raise ValidationError(f"{name} must be positive, got {value!r}", field=name)
        if poll_interval > stale_after_s / 2:
            raise ValidationError(
                f"poll_interval={poll_interval:g} s is too slow to heartbeat running jobs "
                f"within stale_after_s={stale_after_s:g} s (other workers would adopt them and "
                "run their trials twice); use at most stale_after_s / 2",
                field="poll_interval",
            )
        #: How often a running job's heartbeat (and its trial's lease) is renewed: often
        #: enough for both timers that read it. Other workers adopt a job whose heartbeat is
        #: older than ``stale_after_s``, so renewing only every ``lease_seconds / 4`` (a
        #: one-hour lease: 15 min) would let them adopt live jobs and run the trial twice.
        self.heartbeat_every_s = min(lease_seconds, stale_after_s) / 4
        self._specs: dict[int, JobSpec | None] = {}
        #: The last reported step each running trial was judged at (early stopping runs once
        #: per new curve point, not once per poll).
        self._judged: dict[int, int] = {}

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name="assay-orchestrator", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the orchestration thread runs (``/api/v1/ready`` reports it)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_forever(self) -> None:
        interval = self.poll_interval
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # keep orchestrating after a transient database error
                log.exception("orchestrator pass failed")
                busy = False
            interval = self.poll_interval if busy else min(interval * 1.5, self.max_interval)
            self._stop.wait(interval)

    def _say(self, message: str) -> None:
        log.info(message)
        if self.on_event is not None:
            self.on_event(message)

    def _spec(self, experiment_id: int) -> JobSpec | None:
        if experiment_id not in self._specs:
            self._specs[experiment_id] = self.engine.experiment_config(experiment_id).job
        return self._specs[experiment_id]

    def _executor_for(self, spec: JobSpec) -> Executor | None:
        return self.executors.get(spec.executor or self.default_executor)

    def step(self) -> bool:
        """One pass; returns whether any job is active (so the caller polls sooner)."""
        if time.monotonic() - self._last_adopt > ADOPT_EVERY_S or not self._adopted:
            self.adopt()
            self._adopted, self._last_adopt = True, time.monotonic()
        LEASE_EXPIRIES.inc(len(self.store.reap_expired_leases(datetime.now(UTC))))
        # Poll and supervise before launching, so retries of failed jobs are queued before
        # new trials and a failing experiment launches nothing more.
        active = self._poll()
        self._supervise()
        for exp_id in self.store.runnable_experiments():
            spec = self._spec(exp_id)
            if spec is None or self._executor_for(spec) is None:
                continue
            refused = self.job_policy.permits_launch(spec) if self.job_policy else None
            if refused is not None:
                self.store.set_run_state(exp_id, "stopped")
                self._say(f"experiment {exp_id}: run stopped, not launched: {refused}")
                continue
            try:
                self._launch(exp_id, spec)
            except AssayError as e:
                log.warning("experiment %s: cannot launch: %s", exp_id, e)
        return active > 0 or bool(self._my_jobs())

    # -- launch ------------------------------------------------------------------------------
    def _launch(self, exp_id: int, spec: JobSpec) -> None:
        executor = self._executor_for(spec)
        assert executor is not None
        active_jobs = self.store.list_jobs(
            experiment_id=exp_id, states=[JobState.QUEUED, JobState.RUNNING]
        )
        # Jobs whose trial already ended (e.g. reaped after their worker died) are about to be
        # marked lost and retried by whoever adopts them: keep their slots and budget.
        orphans = sum(1 for j in active_jobs if self.store.get_trial(j.trial_id).state.is_terminal)
        self.engine.fill_candidates(exp_id, spec.parallelism, reserve=orphans, actor=self.worker_id)
        free = min(spec.parallelism - len(active_jobs), executor.capacity(spec.resources))
        if free <= 0:
            return
        lease = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        for trial in self.store.claim_candidates(
            exp_id, free, lease_expires_at=lease, actor=self.worker_id
        ):
            self._submit(executor, spec, trial)

    def _submit(self, executor: Executor, spec: JobSpec, trial: Trial) -> None:
        token = new_token()
        attempt = int(trial.metadata.get("attempt", 1))
        job = self.store.create_job(
            Job(0, trial.id, trial.experiment_id, executor.name, self.worker_id, JobState.QUEUED,
                attempt=attempt, resources=spec.resources.to_dict()),
            token_hash=hash_token(token),
        )  # fmt: skip
        workdir = self.log_dir / f"experiment-{trial.experiment_id}" / f"trial-{trial.id}"
        env = {
            "ASSAY_TRIAL_INDEX": str(trial.index),
            "ASSAY_LEASE_SECONDS": str(self.lease_seconds),
        }
        if self.service_url:
            env |= {"ASSAY_SERVICE_URL": self.service_url, "ASSAY_JOB_TOKEN": token}
        elif self.database_url:
            env["ASSAY_DATABASE_URL"] = self.database_url
        launch = JobLaunch(
            trial.id,
            trial.experiment_id,
            job.id,
            attempt,
            dict(trial.parameters),
            spec,
            workdir,
            env,
            base_env=self.job_policy.base_env() if self.job_policy else None,
        )
        try:
            handle = executor.submit(launch)
        except Exception as e:
            log.exception("submit failed")
            self._finish(job, trial, spec, JobState.FAILED, f"could not start the job: {e}")
            return
        now = datetime.now(UTC)
        self.store.update_job(
            job.id, state=JobState.RUNNING, handle=handle, started_at=now, heartbeat_at=now,
            host=handle.get("host"), gpus=list(handle.get("gpus", [])),
            log_path=handle.get("log_path", str(launch.log_path)),
        )  # fmt: skip
        params = ", ".join(f"{k}={_short(v)}" for k, v in trial.parameters.items())
        self._say(
            f"trial {trial.index} (exp {trial.experiment_id}) started on {executor.name}: {params}"
        )

    # -- poll --------------------------------------------------------------------------------
    def _my_jobs(self) -> list[Job]:
        return [
            j
            for j in self.store.list_jobs(states=[JobState.QUEUED, JobState.RUNNING])
            if j.worker == self.worker_id and j.executor in self.executors
        ]

    def _poll(self) -> int:
        now = datetime.now(UTC)
        active = 0
        for job in self._my_jobs():
            try:
                if self._poll_one(job, now):
                    active += 1
            except Exception:
                log.exception("polling job %s failed", job.id)
                active += 1
        return active

    def _poll_one(self, job: Job, now: datetime) -> bool:
        executor = self.executors[job.executor]
        spec = self._spec(job.experiment_id)
        trial = self.store.get_trial(job.trial_id)
        if spec is None:
            return False
        if job.state is JobState.QUEUED and not job.handle:  # crashed between create and submit
            self._finish(job, trial, spec, JobState.LOST, "the worker stopped before starting it")
            return False
        if trial.state.is_terminal:  # reaped (lease expired) or ended through the API
            executor.cancel(job.handle)
            state = JobState.CANCELLED if trial.state is TrialState.ABANDONED else JobState.LOST
            self.store.update_job(job.id, state=state, ended_at=now, error=trial.reason)
            if trial.state is TrialState.FAILED:
                self._maybe_retry(job, trial, spec)
            return False
        if job.cancel_requested:
            executor.cancel(job.handle)
            self.store.update_job(job.id, state=JobState.CANCELLED, ended_at=now, error="cancelled")
            self._end_trial(trial, TrialState.ABANDONED, "cancelled by request")
            self._say(f"trial {trial.index} (exp {trial.experiment_id}) cancelled")
            return False
        if job.started_at and (now - job.started_at).total_seconds() > spec.timeout_s:
            executor.cancel(job.handle)
            msg = f"timed out after {spec.timeout_s:g} s\n{tail(job.log_path)}"
            self._finish(job, trial, spec, JobState.TIMEOUT, msg)
            return False
        status = executor.poll(job.handle)
        if status.state == "running":
            self._keep_alive(job, now)
            return not self._early_stop(executor, job, trial)  # still active unless stopped
        if status.state == "lost":
            self._finish(job, trial, spec, JobState.LOST, status.error or "lost")
            return False
        self._complete(job, trial, spec, status)
        return False

    def _early_stop(self, executor: Executor, job: Job, trial: Trial) -> bool:
        """Apply the experiment's early-stopping rule to a running job's trial when it
        reported a new step; kill the job if the rule stops the trial."""
        config = self.engine.experiment_config(trial.experiment_id)
        if config.early_stopping is None:
            return False
        step = self.store.last_steps([trial.id]).get(trial.id)
        if step is None or self._judged.get(trial.id) == step:
            return False
        self._judged[trial.id] = step
        decision = self.engine.early_stop_if_needed(trial.id, actor=self.worker_id)
        if not decision.should_stop:
            return False
        executor.cancel(job.handle)
        self.store.update_job(
            job.id, state=JobState.CANCELLED, ended_at=datetime.now(UTC),
            error=f"early stopped: {decision.reason}"[:8000],
        )  # fmt: skip
        self._judged.pop(trial.id, None)
        self._say(
            f"trial {trial.index} (exp {trial.experiment_id}) early stopped "
            f"({decision.strategy}): {decision.reason}"
        )
        return True

    def _keep_alive(self, job: Job, now: datetime) -> None:
        if job.heartbeat_at and (now - job.heartbeat_at).total_seconds() < self.heartbeat_every_s:
            return
        self.store.update_job(job.id, heartbeat_at=now)
        with contextlib.suppress(InvalidTransitionError):
            self.store.heartbeat(job.trial_id, now + timedelta(seconds=self.lease_seconds))

    def _complete(self, job: Job, trial: Trial, spec: JobSpec, status: JobStatus) -> None:
        if status.result is None:
            self._finish(
                job, trial, spec, JobState.FAILED, status.error or "failed", status.exit_code
            )
            return
        config = self.engine.experiment_config(trial.experiment_id)
        known = set(config.metric_names)
        told = {k: v for k, v in status.result.items() if k in known}
        if config.objective.name not in told:
            self._finish(
                job, trial, spec, JobState.FAILED,
                f"the job's result has no {config.objective.name!r} (got {sorted(status.result)})",
                status.exit_code,
            )  # fmt: skip
            return
        try:
            self.engine.tell(trial.id, told, actor=self.worker_id)
        except InvalidTransitionError:
            pass  # ended meanwhile (e.g. cancelled); the job's outcome is still recorded
        except AssayError as e:
            self._finish(
                job, trial, spec, JobState.FAILED, f"invalid result: {e}", status.exit_code
            )
            return
        self.store.update_job(
            job.id, state=JobState.SUCCEEDED, ended_at=datetime.now(UTC),
            exit_code=status.exit_code, result=status.result,
        )  # fmt: skip
        values = ", ".join(f"{k}={_short(v)}" for k, v in told.items())
        self._say(f"trial {trial.index} (exp {trial.experiment_id}) completed: {values}")

    def _finish(
        self,
        job: Job,
        trial: Trial,
        spec: JobSpec,
        state: JobState,
        error: str,
        exit_code: int | None = None,
    ) -> None:
        """Record a failed/timed-out/lost job, fail its trial, retry within the policy."""
        self.store.update_job(
            job.id,
            state=state,
            ended_at=datetime.now(UTC),
            error=error[-8000:],
            exit_code=exit_code,
        )
        first_line = error.strip().splitlines()[0] if error.strip() else state.value
        self._end_trial(trial, TrialState.FAILED, f"job {state.value}: {error[-4000:]}")
        self._say(f"trial {trial.index} (exp {trial.experiment_id}) {state.value}: {first_line}")
        self._maybe_retry(job, trial, spec)

    def _end_trial(self, trial: Trial, state: TrialState, reason: str) -> None:
        with contextlib.suppress(InvalidTransitionError):
            self.store.transition_trial(trial.id, state, reason=reason, actor=self.worker_id)

    def _maybe_retry(self, job: Job, trial: Trial, spec: JobSpec) -> None:
        if job.attempt > spec.max_retries:
            return
        try:
            retry = self.engine.attach_trial(
                trial.experiment_id, trial.parameters, start=False, actor=self.worker_id,
                generator="retry",
                metadata={"attempt": job.attempt + 1, "retry_of": trial.id},
            )  # fmt: skip
        except (ConflictError, AssayError) as e:
            log.warning("could not queue a retry of trial %s: %s", trial.id, e)
            return
        self._say(
            f"trial {trial.index} (exp {trial.experiment_id}) retried as trial {retry.index} "
            f"(attempt {job.attempt + 1} of {spec.max_retries + 1})"
        )

    # -- supervise ---------------------------------------------------------------------------
    def _supervise(self) -> None:
        for exp_id in self.store.runnable_experiments():
            spec = self._spec(exp_id)
            if spec is None or self._executor_for(spec) is None:
                continue
            exp = self.store.get_experiment(exp_id)
            finished = [
                t for t in exp.trials if t.state in (TrialState.COMPLETED, TrialState.FAILED)
            ]
            recent = sorted(finished, key=lambda t: t.updated_at)[-FAILING_WINDOW:]
            failed = sum(t.state is TrialState.FAILED for t in recent)
            if len(recent) >= FAILING_MIN_FINISHED and failed * 2 > len(recent):
                why = f"{failed} of its last {len(recent)} finished trials failed"
                # through the engine: it records why and sends the ``experiment.failing`` webhook
                self.engine.set_status(
                    exp_id, ExperimentStatus.FAILING, reason=f"run stopped: {why}",
                    actor=self.worker_id, rule="failing_trials",
                    figures={"failed": failed, "finished": len(recent),
                             "window": FAILING_WINDOW, "min_finished": FAILING_MIN_FINISHED,
                             "last_failed_trial": next((t.index for t in reversed(recent)
                                                        if t.state is TrialState.FAILED), None)},
                )  # fmt: skip
                self.store.set_run_state(exp_id, "stopped")
                for t in exp.trials:  # queued work would otherwise wait forever
                    if t.state is TrialState.CANDIDATE:
                        self._end_trial(t, TrialState.ABANDONED, "run stopped: experiment failing")
                self._say(
                    f"experiment {exp_id} stopped: {why} "
                    "(status 'failing'; fix the job and resume the run)"
                )
                continue
            if self._auto_stop(exp):
                continue
            remaining = exp.remaining_budget()
            if remaining == 0 and not any(t.state.is_pending for t in exp.trials):
                self.store.set_run_state(exp_id, "done")
                self._say(f"experiment {exp_id}: budget spent, run done")

    def _auto_stop(self, exp: Experiment) -> bool:
        """End the run of an experiment whose ``stopping`` rule is automatic and says done:
        status ``completed``, run ``done``, queued candidates abandoned with the reason.
        Running jobs finish normally. Judged once per newly completed trial."""
        rule = exp.config.stopping
        if rule is None or not rule.auto:
            return False
        completed = sum(t.state is TrialState.COMPLETED for t in exp.trials)
        if self._judged.get(-exp.id) == completed:
            return False
        self._judged[-exp.id] = completed
        decision = self.engine.stopping(exp.id)
        if not decision.done:
            return False
        reason = f"experiment done ({decision.rule} rule): {decision.reason}"
        self.engine.set_status(  # records the rule and its figures; + experiment.completed
            exp.id, ExperimentStatus.COMPLETED, reason=reason, actor=self.worker_id,
            rule=decision.rule, figures=decision.details,
        )  # fmt: skip
        self.store.set_run_state(exp.id, "done")
        for t in exp.trials:
            if t.state is TrialState.CANDIDATE:
                self._end_trial(t, TrialState.ABANDONED, reason)
        self._say(f"experiment {exp.id} completed: {reason}")
        return True

    # -- restart ----------------------------------------------------------------------------
    def adopt(self) -> None:
        """Take over the active jobs this worker id left behind (after a restart) or whose
        worker stopped heartbeating; polling then re-attaches (Ray, Slurm) or marks them lost
        and retries them (local processes die with their worker)."""
        now = datetime.now(UTC)
        for job in self.store.list_jobs(states=[JobState.QUEUED, JobState.RUNNING]):
            if job.executor not in self.executors or (
                job.worker == self.worker_id and self._adopted
            ):
                continue
            stale = (
                job.heartbeat_at is None
                or (now - job.heartbeat_at).total_seconds() > self.stale_after_s
            )
            if job.worker == self.worker_id or stale:
                self.store.update_job(job.id, worker=self.worker_id, heartbeat_at=now)
                how = (
                    "re-attaching"
                    if self.executors[job.executor].reattach(job.handle)
                    else "checking"
                )
                self._say(f"adopted the job of trial {job.trial_id} from {job.worker} ({how})")


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple) and v and isinstance(v[0], float):
        return f"{v[0]:.4g}±{v[1]:.2g}" if len(v) > 1 and v[1] is not None else f"{v[0]:.4g}"
    return str(v)
