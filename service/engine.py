"""The experiment engine: the verbs (create, ask, tell, fail, best, ...) over any store.

A thin façade. It composes, by inheritance, the verbs that have their own home:

* creating trials (``ask``, ``ask_batch``, ``attach_trial``, ``fill_candidates``, with the
  one retry policy of locked asks): :class:`~assay.service.generation.Generation`;
* runs and jobs (``set_run``, ``jobs``, ``cancel_trial``, ``reports``, ``report``):
  :class:`~assay.service.runs.Runs`;
* early stopping and "is it done?" (``should_stop``, ``stopping``, ``curves``):
  :class:`~assay.service.stopping.Stopping`;
* import and export (``export_experiment``, ``import_experiment``):
  :class:`~assay.service.interchange.Interchange`;

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

from assay.platform.analysis import BestArm, EffectsReport, arm_effects
from assay.platform.errors import NotFoundError, ValidationError
from assay.platform.evolve import DEFINITION_CHANGES, apply_definition_changes
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    StatusReason,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.pareto_report import ParetoReport, pareto_report, recommend
from assay.service.generation import MAX_LEASE_S, Generation
from assay.service.interchange import Interchange
from assay.service.jobs.checks import check_job_spec
from assay.service.observability import TELLS, TRIAL_ENDS
from assay.service.runs import Runs
from assay.service.stopping import Stopping
from assay.service.webhooks import emit, new_secret
from assay.storage.base import (
    ExperimentSummary,
    ExperimentVersion,
    ProjectSummary,
    Store,
    TrialEvent,
)
from assay.storage.webhooks import Delivery, Webhook

__all__ = ["DEFINITION_CHANGES", "PROJECT_NAME_PATTERN", "Engine", "apply_definition_changes"]

#: Project names: URL-safe path segments (``/projects/{name}``), at most 200 characters.
PROJECT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class Engine(Generation, Runs, Stopping, Interchange):
    """The experiment verbs over a :class:`~assay.storage.base.Store`.

    Args:
        store: The backend.
        actor: Default actor recorded in the audit trail.
    """

    def __init__(self, store: Store, *, actor: str | None = None) -> None:
        self.store = store
        self.actor = actor

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def experiment_config(self, experiment_id: int) -> ExperimentConfig:
        """The experiment's current configuration. No visibility check: callers check first, e.g. by loading the trial with its project."""
        # Not cached here: a definition may change (a new version, maybe in another process);
        # the SQL store reuses its parsed configuration while the stored JSON is unchanged.
        return self.store.get_experiment_config(experiment_id)

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
        self,
        experiment_id: int,
        status: ExperimentStatus | str,
        *,
        project: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        rule: str | None = None,
        figures: Mapping[str, Any] | None = None,
    ) -> Experiment:
        """Change the status and record why (:class:`~assay.platform.experiment.StatusReason`:
        ``reason``, who, the deciding ``rule`` and its ``figures``; the reason is cut at
        :data:`~assay.platform.experiment.STATUS_REASON_MAX_CHARS`). ``completed`` and
        ``failing`` send the ``experiment.<status>`` webhook event, with the reason."""
        try:
            status = ExperimentStatus(status)
        except ValueError:
            raise ValidationError(
                f"status must be one of {[s.value for s in ExperimentStatus]}", field="status"
            ) from None
        if reason is not None and not isinstance(reason, str):
            raise ValidationError("reason must be a string", field="reason")
        why = StatusReason(
            status, reason=reason, actor=actor or self.actor, rule=rule, figures=dict(figures or {})
        )
        exp = self.store.set_experiment_status(experiment_id, status, project=project, reason=why)
        if status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILING):
            emit(self.store, exp.project, f"experiment.{status.value}",
                 {"experiment_id": exp.id, "name": exp.name, "status": status.value,
                  "reason": why.reason, "rule": why.rule, "figures": why.figures,
                  **({"summary": why.reason} if why.reason else {})})  # fmt: skip
        return exp

    # -- webhooks ----------------------------------------------------------------------------
    def _project_of(self, experiment_id: int) -> str:
        cache = self.__dict__.setdefault("_projects_of", {})
        if experiment_id not in cache:
            cache[experiment_id] = self.store.get_experiment(experiment_id).project
        return cache[experiment_id]

    def _emit_trial(self, trial: Trial, event: str, project: str | None) -> None:
        payload = {
            "experiment_id": trial.experiment_id, "trial_id": trial.id,
            "trial_index": trial.index, "state": trial.state.value, "reason": trial.reason,
            "observations": {a: {m: o.to_dict() for m, o in obs.items()}
                             for a, obs in trial.observations.items()},
        }  # fmt: skip
        if trial.observations:
            payload["summary"] = ", ".join(
                f"{m}={o.mean:.4g}" for obs in trial.observations.values() for m, o in obs.items()
            )
        emit(self.store, project or self._project_of(trial.experiment_id), event, payload)

    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        project: str | None = None,
        format: str = "json",
        secret: str | None = None,
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` of the project; the secret signs every delivery
        (generated unless given; keep it, it is how receivers verify)."""
        return self.store.webhooks().create(
            project or "default", url, list(events), secret or new_secret(), format
        )

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        """The project's subscriptions (secrets included: an admin's view)."""
        return self.store.webhooks().list(project)

    def webhook_deliveries(self, webhook_id: int, *, project: str | None = None) -> list[Delivery]:
        """One subscription's delivery log, newest first."""
        outbox = self.store.webhooks()
        outbox.get(webhook_id, project)  # NotFoundError for another project's
        return outbox.deliveries(webhook_id)

    # -- evolving a running experiment -------------------------------------------------------
    def update_experiment(
        self,
        experiment_id: int,
        changes: Mapping[str, Any],
        *,
        project: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Experiment:
        """A new version of the definition (see :func:`assay.platform.evolve.apply_definition_changes` for the
        changes); who and why are recorded with it. Past trials keep the version they were
        generated under; the next ask uses the new one. Trials outside a narrowed space still
        inform the model (their encoded coordinates lie outside the unit cube) but are never
        proposed or recommended."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > 10_000):
            raise ValidationError("reason must be a string of at most 10000 chars", field="reason")
        exp = self.store.get_experiment(experiment_id, project=project)
        config, notes = apply_definition_changes(exp.config, changes)
        get_generator(config.generator, config.generator_settings).validate_experiment(config)
        return self.store.update_experiment_config(
            experiment_id, config, project=project, changes=notes, actor=actor or self.actor,
            reason=reason,
        )  # fmt: skip

    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        """The definition's versions, oldest first."""
        return self.store.experiment_versions(experiment_id, project=project)

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
        trial = self.store.transition_trial(
            trial_id,
            TrialState.COMPLETED,
            project=project,
            # ``config``: the definition the store read with the trial (SQL), else re-read
            observations=lambda trial, config: (
                config or self.experiment_config(trial.experiment_id)
            ).parse_trial_observations(trial, raw, batch=batch),
            actor=actor or self.actor,
        )
        TELLS.inc()
        self._emit_trial(trial, "trial.completed", project)
        return trial

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
        trial = self.store.transition_trial(
            trial_id, state, project=project, reason=reason, actor=actor or self.actor
        )
        TRIAL_ENDS.labels(state.value).inc()
        if state in (TrialState.FAILED, TrialState.EARLY_STOPPED):
            self._emit_trial(trial, f"trial.{state.value}", project)
        return trial

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
        return recommend(exp)
