"""The experiment engine: the verbs (create, ask, tell, fail, best, ...) over any store.

A thin façade. It composes, by inheritance, the verbs that have their own home:

* creating trials (``ask``, ``ask_batch``, ``attach_trial``, ``fill_candidates``, with the
  one retry policy of locked asks): :class:`~assay.service.generation.Generation`;
* runs and jobs (``set_run``, ``jobs``, ``cancel_trial``, ``reports``, ``report``):
  :class:`~assay.service.runs.Runs`;
* early stopping and "is it done?" (``should_stop``, ``stopping``, ``curves``):
  :class:`~assay.service.stopping.Stopping`;

and keeps the plain ones: experiment and project CRUD (pass-throughs to the store), the trial
life cycle (``tell``, ``fail``, ``start``, ``heartbeat``, ...; the observation rules are the
domain's, :meth:`~assay.platform.experiment.ExperimentConfig.parse_trial_observations`) and
analysis (``effects``, ``best``). The verbs a client needs are
:class:`~assay.service.verbs.ExperimentVerbs`; the engine satisfies it, as does the remote
client. Every request is validated in full before anything is written.

May import: :mod:`assay.platform`, :mod:`assay.storage.base`, and the service modules it
composes (:mod:`~assay.service.generation`, :mod:`~assay.service.runs`,
:mod:`~assay.service.jobs.checks`). Nothing of HTTP: the REST routes call the engine.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from assay.platform.analysis import BestArm, EffectsReport, arm_effects, best_arm
from assay.platform.errors import NotFoundError, ValidationError
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.pareto_report import ParetoReport, best_of_front, pareto_report
from assay.service.generation import MAX_LEASE_S, Generation
from assay.service.jobs.checks import check_job_spec
from assay.service.runs import Runs
from assay.service.stopping import Stopping
from assay.storage.base import ExperimentSummary, ProjectSummary, Store, TrialEvent

#: Project names: URL-safe path segments (``/projects/{name}``), at most 200 characters.
PROJECT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class Engine(Generation, Runs, Stopping):
    """The experiment verbs over a :class:`~assay.storage.base.Store`.

    Args:
        store: The backend.
        actor: Default actor recorded in the audit trail.
    """

    def __init__(self, store: Store, *, actor: str | None = None) -> None:
        self.store = store
        self.actor = actor
        self._configs: dict[int, ExperimentConfig] = {}

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def experiment_config(self, experiment_id: int) -> ExperimentConfig:
        """The experiment's configuration, cached: configurations never change after creation.
        No visibility check: callers check first, e.g. by loading the trial with its project."""
        config = self._configs.get(experiment_id)
        if config is None:
            if len(self._configs) > 10_000:
                self._configs.clear()
            config = self._configs[experiment_id] = self.store.get_experiment_config(experiment_id)
        return config

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self, spec: ExperimentConfig | Mapping[str, Any], *, project: str = "default"
    ) -> Experiment:
        """Validate and store an experiment (see :meth:`ExperimentConfig.from_dict`)."""
        config = spec if isinstance(spec, ExperimentConfig) else ExperimentConfig.from_dict(spec)
        generator = get_generator(config.generator, config.generator_settings)
        generator.validate_experiment(config)
        if config.job is not None:
            check_job_spec(config.job)
        if config.seed is None:
            config.seed = secrets.randbelow(2**31 - 1)
        return self.store.create_experiment(config, project=project)

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        return self.store.get_experiment(experiment_id, project=project)

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        return self.store.list_experiments(project=project, status=status)

    def set_status(
        self, experiment_id: int, status: ExperimentStatus | str, *, project: str | None = None
    ) -> Experiment:
        try:
            status = ExperimentStatus(status)
        except ValueError:
            raise ValidationError(
                f"status must be one of {[s.value for s in ExperimentStatus]}", field="status"
            ) from None
        return self.store.set_experiment_status(experiment_id, status, project=project)

    # -- projects ----------------------------------------------------------------------------
    def create_project(self, name: str) -> ProjectSummary:
        """Create an empty project (``ConflictError`` if it exists)."""
        if not isinstance(name, str) or not re.fullmatch(PROJECT_NAME_PATTERN, name):
            raise ValidationError(
                "name must be 1-200 letters, digits, '.', '_' or '-', starting with a letter "
                f"or digit; got {name!r}",
                field="name",
            )
        return self.store.create_project(name)

    def projects(self, *, project: str | None = None) -> list[ProjectSummary]:
        """Every project (``project=None``) or only ``project`` (what a key may see)."""
        return self.store.project_summaries(name=project)

    def get_project(self, name: str, *, project: str | None = None) -> ProjectSummary:
        """One project; another project's name is ``NotFoundError`` (names do not leak)."""
        if project is not None and name != project:
            raise NotFoundError(f"project {name!r} not found", details={"project": name})
        return self.store.get_project(name)

    # -- trial life cycle --------------------------------------------------------------------
    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        return self.store.get_trial(trial_id, project=project)

    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> list[Trial]:
        """Every trial of one experiment by index, optionally only those in ``states`` (the
        REST API pages through the store directly)."""
        return self.store.list_trials(experiment_id, project=project, states=states)

    def tell(
        self,
        trial_id: int,
        observations: Mapping[str, Any],
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Complete a single-arm trial with ``{metric: value}`` (see ``Observation.parse``).

        Raises ``ObservationError`` (unknown metric, non-finite value, negative SEM) or
        ``InvalidTransitionError`` (already told/failed); nothing is stored then.
        """
        return self._complete(trial_id, observations, False, project, actor)

    def tell_batch(
        self,
        trial_id: int,
        observations: Mapping[str, Mapping[str, Any]],
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Complete a (batch) trial with ``{arm_name: {metric: value}}``."""
        return self._complete(trial_id, observations, True, project, actor)

    def _complete(
        self,
        trial_id: int,
        raw: Mapping[str, Any],
        batch: bool,
        project: str | None,
        actor: str | None,
    ) -> Trial:
        # Validation runs inside the store's transaction on the trial as stored, so the check
        # and the write see the same state; a rejected tell writes nothing.
        return self.store.transition_trial(
            trial_id,
            TrialState.COMPLETED,
            project=project,
            observations=lambda trial: self.experiment_config(
                trial.experiment_id
            ).parse_trial_observations(trial, raw, batch=batch),
            actor=actor or self.actor,
        )

    def start(
        self,
        trial_id: int,
        *,
        project: str | None = None,
        lease_seconds: float | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a candidate trial running (a compare-and-set claim)."""
        lease = datetime.now(UTC) + timedelta(seconds=lease_seconds) if lease_seconds else None
        return self.store.transition_trial(
            trial_id,
            TrialState.RUNNING,
            project=project,
            lease_expires_at=lease,
            actor=actor or self.actor,
            expected_states=[TrialState.CANDIDATE],
        )

    def fail(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a trial failed (its parameters stay known, so they are not proposed again)."""
        return self._end(trial_id, TrialState.FAILED, reason, project, actor)

    def abandon(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a trial abandoned (never evaluated; its arm may be proposed again)."""
        return self._end(trial_id, TrialState.ABANDONED, reason, project, actor)

    def early_stop(
        self,
        trial_id: int,
        reason: str | None = None,
        *,
        project: str | None = None,
        actor: str | None = None,
    ) -> Trial:
        """Mark a running trial early-stopped (excluded from the model's data, see
        :mod:`assay.service.stopping`)."""
        return self._end(trial_id, TrialState.EARLY_STOPPED, reason, project, actor)

    def _end(
        self,
        trial_id: int,
        state: TrialState,
        reason: str | None,
        project: str | None,
        actor: str | None,
    ) -> Trial:
        if reason is not None and (not isinstance(reason, str) or len(reason) > 10_000):
            raise ValidationError("reason must be a string of at most 10000 chars", field="reason")
        return self.store.transition_trial(
            trial_id, state, project=project, reason=reason, actor=actor or self.actor
        )

    def heartbeat(
        self, trial_id: int, lease_seconds: float = 60.0, *, project: str | None = None
    ) -> Trial:
        if not 0 < lease_seconds <= MAX_LEASE_S:
            raise ValidationError("lease_seconds must be in (0, 604800]", field="lease_seconds")
        return self.store.heartbeat(
            trial_id, datetime.now(UTC) + timedelta(seconds=lease_seconds), project=project
        )

    def events(
        self,
        *,
        experiment_id: int | None = None,
        trial_id: int | None = None,
        after: int = 0,
        project: str | None = None,
    ) -> list[TrialEvent]:
        """Audit events in order (``id > after``), checking visibility when a project is given."""
        if project is not None and experiment_id is not None:
            self.store.count_trials(experiment_id, project=project)  # NotFoundError if hidden
        if project is not None and trial_id is not None:
            self.store.get_trial(trial_id, project=project)
        return self.store.list_events(experiment_id=experiment_id, trial_id=trial_id, after=after)

    # -- analysis ----------------------------------------------------------------------------
    def effects(self, experiment_id: int, *, project: str | None = None) -> EffectsReport:
        """Each arm's % effects against the control (see
        :func:`assay.platform.analysis.arm_effects`)."""
        return arm_effects(self.store.get_experiment(experiment_id, project=project))

    def pareto(self, experiment_id: int, *, project: str | None = None) -> ParetoReport:
        """The Pareto front of a multi-objective experiment (see
        :func:`assay.platform.pareto_report.pareto_report`)."""
        return pareto_report(self.store.get_experiment(experiment_id, project=project))

    def best(self, experiment_id: int, *, project: str | None = None) -> BestArm:
        """The model-based recommendation (see :func:`assay.platform.analysis.best_arm`); with
        several objectives, the Pareto front (:func:`~assay.platform.pareto_report.best_of_front`)."""
        exp = self.store.get_experiment(experiment_id, project=project)
        return best_of_front(exp) if exp.config.is_multi_objective else best_arm(exp)
