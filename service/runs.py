"""Runs and jobs: the verbs that control an experiment run as jobs.

An experiment with a job spec runs its trials as jobs when its run state is ``running`` (the
orchestrator in :mod:`assay.service.jobs` does the work). This module owns the user's side of
that: starting, pausing and resuming a run (:meth:`Runs.set_run`), listing its jobs,
cancelling a trial's job, and a running trial's intermediate reports (its learning curve), as
:class:`Runs` (which :class:`~assay.service.engine.Engine` inherits).

May import: :mod:`assay.platform` (domain objects, errors, the report-metrics rule) and
:mod:`assay.storage.base` (the store interface). Not the orchestrator, the executors or the
job-side reporting: they call these verbs, not the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assay.platform.errors import ConflictError, InvalidTransitionError, ValidationError
from assay.platform.experiment import ExperimentStatus, StatusReason, TrialState
from assay.platform.jobspec import Job, TrialReport, clean_metrics
from assay.storage.base import Store


class Runs:
    """Run control, jobs and reports over a :class:`~assay.storage.base.Store`: a mixin
    that :class:`~assay.service.engine.Engine` composes, reading its ``store`` and its default
    audit ``actor``."""

    store: Store
    actor: str | None

    def set_run(self, experiment_id: int, action: str, *, project: str | None = None) -> str:
        """``start`` / ``resume`` (run state ``running``) or ``pause``; returns the new state.

        Resuming a ``failing`` experiment makes it active again (after you fixed the job).
        """
        exp_config = self.store.get_experiment_config(experiment_id, project=project)
        if exp_config.job is None:
            raise ConflictError(
                f"experiment {experiment_id} has no job spec; create it with 'job' to run trials "
                "as jobs",
                field="job",
            )
        if action in ("start", "resume"):
            exp = self.store.get_experiment(experiment_id, project=project)
            if exp.status is ExperimentStatus.FAILING:
                self.store.set_experiment_status(
                    experiment_id, ExperimentStatus.ACTIVE,
                    reason=StatusReason(ExperimentStatus.ACTIVE, actor=self.actor,
                                        reason=f"{action} after failing"),
                )  # fmt: skip
            elif exp.status is not ExperimentStatus.ACTIVE:
                raise ConflictError(
                    f"experiment {experiment_id} is {exp.status.value}; make it active first",
                    details={"status": exp.status.value},
                )
            state = "running"
        elif action == "pause":
            state = "paused"
        else:
            raise ValidationError(f"unknown run action {action!r}", field="action")
        self.store.set_run_state(experiment_id, state, project=project)
        return state

    def jobs(self, experiment_id: int, *, project: str | None = None) -> list[Job]:
        """The experiment's jobs, newest first."""
        self.store.get_experiment_config(experiment_id, project=project)
        return self.store.list_jobs(experiment_id=experiment_id)

    def reports(self, trial_id: int, *, project: str | None = None) -> list[TrialReport]:
        """The trial's intermediate reports, in order."""
        return self.store.list_reports(trial_id, project=project)

    def cancel_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        """Ask the worker running the trial's job to kill it (the trial becomes abandoned).
        A trial without a job yet is abandoned directly."""
        job = self.store.job_for_trial(trial_id, project=project)
        if job is not None and job.state.is_active:
            return self.store.update_job(job.id, cancel_requested=True)
        trial = self.store.get_trial(trial_id, project=project)
        if trial.state.is_terminal:
            raise InvalidTransitionError(
                f"trial {trial_id} is {trial.state.value}; there is nothing to cancel",
                details={"trial_id": trial_id, "state": trial.state.value},
            )
        self.store.transition_trial(
            trial_id,
            TrialState.ABANDONED,
            project=project,
            reason="cancelled by request",
            actor=self.actor,
        )
        return job

    def report(
        self,
        trial_id: int,
        step: int | None,
        metrics: Mapping[str, Any],
        *,
        project: str | None = None,
    ) -> TrialReport:
        """Store an intermediate report of a running trial (a learning-curve point)."""
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ValidationError("step must be a non-negative integer", field="step")
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValidationError("metrics must be a non-empty object", field="metrics")
        clean = clean_metrics(dict(metrics))
        trial = self.store.get_trial(trial_id, project=project)
        if trial.state is not TrialState.RUNNING:
            raise InvalidTransitionError(
                f"trial {trial_id} is {trial.state.value}; only running trials take reports",
                details={"trial_id": trial_id, "state": trial.state.value},
            )
        return self.store.add_report(trial_id, step, clean)
