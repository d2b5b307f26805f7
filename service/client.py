"""The Python client: the experiment verbs people already know, in one object.

``Client()`` keeps everything in memory (notebooks, tests). The same verbs work against a
database or a server (see :class:`Client`'s ``url``): the client holds an
:class:`~assay.service.verbs.ExperimentVerbs` backend, the in-process
:class:`~assay.service.engine.Engine` or the HTTP :class:`~assay.service.remote.RemoteEngine`,
and names each verb the way users know it (``trials`` for ``list_trials``, ``start_run`` /
``pause_run`` / ``resume_run`` for ``set_run``, ``cancel`` for ``cancel_trial``).

Example:
    >>> import assay
    >>> client = assay.Client()
    >>> exp = client.create_experiment(
    ...     name="demo",
    ...     parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
    ...     objective="y",
    ... )
    >>> [trial] = client.ask(exp.id)
    >>> client.tell(trial.id, {"y": (0.5, 0.1)}).state.value
    'completed'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assay.platform.analysis import BestArm, EffectsReport
from assay.platform.early_stopping import StopDecision
from assay.platform.experiment import Experiment, ExperimentStatus, Trial, TrialState
from assay.platform.jobspec import Job, TrialReport
from assay.platform.pareto_report import ParetoReport
from assay.platform.stopping import StoppingDecision
from assay.service.engine import Engine
from assay.service.interchange import ImportResult, from_ax_snapshot, from_optuna
from assay.service.verbs import ExperimentVerbs
from assay.storage.base import (
    ExperimentSummary,
    ExperimentVersion,
    ProjectSummary,
    Store,
    TrialEvent,
)
from assay.storage.webhooks import Delivery, Webhook


class Client:
    """Ask/tell client with three modes behind the same verbs.

    Args:
        url: ``None``/``"memory://"`` (in-process, nothing persisted);
            ``"sqlite:///path.db"`` or ``"postgresql+psycopg://user@host/db"`` (embedded: the
            client works on the database directly, creating/upgrading the schema);
            ``"http://host:8000"`` (remote: a running ``assay serve``).
        token: API key for a remote server that requires one.
        store: Use this store directly (overrides ``url``).
        project: Project for embedded mode (a remote key decides its own project).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        store: Store | None = None,
        project: str = "default",
    ) -> None:
        self.project = project
        self.url = url
        self._engine: ExperimentVerbs
        if store is None and url is not None and url.startswith(("http://", "https://")):
            from assay.service.remote import RemoteEngine

            self._engine = RemoteEngine(url, token)
            return
        if store is None:
            from assay.storage.factory import open_store

            store = open_store(url or "memory://", migrate=True)
        self._engine = Engine(store, actor="client")

    def close(self) -> None:
        """Release connections (database pool or HTTP client)."""
        self._engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        parameters: Sequence[Mapping[str, Any] | Any],
        objective: str | Mapping[str, Any] | None = None,
        *,
        objectives: Sequence[str | Mapping[str, Any]] | None = None,
        outcome_constraints: Sequence[str] = (),
        parameter_constraints: Sequence[str] = (),
        tracking_metrics: Sequence[str] = (),
        generator: str | None = None,
        generator_settings: Mapping[str, Any] | None = None,
        seed: int | None = None,
        max_trials: int | None = None,
        status_quo: Mapping[str, Any] | None = None,
        description: str = "",
        job: Mapping[str, Any] | None = None,
        early_stopping: Mapping[str, Any] | None = None,
        stopping: Mapping[str, Any] | None = None,
    ) -> Experiment:
        """Create an experiment (the dict form of parameters is the REST API's JSON).

        Give ``objective`` (one) or ``objectives`` (several, e.g. ``["reward", {"name":
        "latency_ms", "minimize": True, "threshold": 50}]``); ``generator`` defaults to
        ``noisy_ei`` with one objective and ``noisy_ehvi`` with several.

        ``early_stopping={"strategy": "percentile" | "threshold" | "model", ...}`` stops
        running trials from their reported curves; ``stopping={"rule": "improvement" |
        "model", "auto": bool, ...}`` says when the experiment is done (see the README)."""
        spec: dict[str, Any] = {
            "name": name,
            "parameters": list(parameters),
            "parameter_constraints": list(parameter_constraints),
            "outcome_constraints": list(outcome_constraints),
            "tracking_metrics": list(tracking_metrics),
            "generator": generator,
            "generator_settings": dict(generator_settings or {}),
            "seed": seed,
            "max_trials": max_trials,
            "status_quo": dict(status_quo) if status_quo is not None else None,
            "description": description,
        }
        if objectives is not None:
            spec["objectives"] = list(objectives)
        if objective is not None or objectives is None:
            spec["objective"] = objective
        if generator is None:
            spec.pop("generator")
        if job is not None:
            spec["job"] = dict(job)
        if early_stopping is not None:
            spec["early_stopping"] = dict(early_stopping)
        if stopping is not None:
            spec["stopping"] = dict(stopping)
        return self._engine.create_experiment(spec, project=self.project)

    def get_experiment(self, experiment_id: int) -> Experiment:
        return self._engine.get_experiment(experiment_id, project=self.project)

    def list_experiments(
        self, status: ExperimentStatus | str | None = None
    ) -> list[ExperimentSummary]:
        return self._engine.list_experiments(
            project=self.project, status=ExperimentStatus(status) if status else None
        )

    def set_status(
        self, experiment_id: int, status: ExperimentStatus | str, reason: str | None = None
    ) -> Experiment:
        """Change the status (``active``, ``paused``, ``completed``, ``archived``) with an
        optional ``reason``; the experiment's ``status_reason`` then holds it, with who and
        when (an automatic stop or the orchestrator's ``failing`` verdict fill in the rule and
        its figures)."""
        return self._engine.set_status(experiment_id, status, project=self.project, reason=reason)

    # -- trials ------------------------------------------------------------------------------
    def ask(
        self,
        experiment_id: int,
        n: int = 1,
        *,
        idempotency_key: str | None = None,
        lease_seconds: float | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        """Get ``n`` new trials to evaluate (marked running).

        ``fixed={"layers": 4}`` holds those parameters at the given values for this ask only
        and optimizes the rest (Ax's ``fixed_parameters``); the fixed parameters are not
        modelled in that ask."""
        return self._engine.ask(
            experiment_id,
            n,
            project=self.project,
            idempotency_key=idempotency_key,
            lease_seconds=lease_seconds,
            fixed=fixed,
        )

    def ask_batch(
        self,
        experiment_id: int,
        n_arms: int = 8,
        *,
        include: Sequence[str | Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
        lease_seconds: float | None = None,
    ) -> Trial:
        """One batch trial: ``n_arms`` arms to deploy together (one A/B-test round).

        The control arm (``status_quo``) is always included, first; ``include`` carries
        existing arms over (names or parameters); the rest are new arms chosen as a batch
        by noisy-constrained EI. Complete it with :meth:`tell_batch`.

        Example:
            >>> trial = client.ask_batch(exp.id, n_arms=8)  # doctest: +SKIP
            >>> [arm.name for arm in trial.arms]  # doctest: +SKIP
            ['status_quo', '0_1', '0_2', ...]
        """
        return self._engine.ask_batch(
            experiment_id,
            n_arms,
            include=list(include) if include is not None else None,
            project=self.project,
            idempotency_key=idempotency_key,
            lease_seconds=lease_seconds,
        )

    def tell(self, trial_id: int, observations: Mapping[str, Any]) -> Trial:
        """Complete a trial: ``{metric: value | (mean, sem) | (mean, sem, n)}``."""
        return self._engine.tell(trial_id, observations, project=self.project)

    def tell_batch(self, trial_id: int, observations: Mapping[str, Mapping[str, Any]]) -> Trial:
        """Complete a batch trial: ``{arm_name: {metric: (mean, sem, n)}}``.

        With a control arm, the control must report every metric the other arms report,
        and the objective and constrained metrics need SEMs (the relative effects and their
        intervals are built from them); otherwise nothing is stored and an
        ``ObservationError`` names the arm and metric."""
        return self._engine.tell_batch(trial_id, observations, project=self.project)

    def fail(self, trial_id: int, reason: str | None = None) -> Trial:
        return self._engine.fail(trial_id, reason, project=self.project)

    def abandon(self, trial_id: int, reason: str | None = None) -> Trial:
        return self._engine.abandon(trial_id, reason, project=self.project)

    def attach_trial(self, experiment_id: int, parameters: Mapping[str, Any]) -> Trial:
        """Add a trial with your own parameters (e.g. a known-good baseline)."""
        return self._engine.attach_trial(experiment_id, parameters, project=self.project)

    def early_stop(self, trial_id: int, reason: str | None = None) -> Trial:
        """Mark a running trial early-stopped (e.g. after :meth:`should_stop` said so)."""
        return self._engine.early_stop(trial_id, reason, project=self.project)

    def should_stop(self, trial_id: int) -> StopDecision:
        """Whether the experiment's early-stopping rule would stop this running trial now,
        with the reasoning and numbers (``decision.should_stop``, ``decision.reason``)."""
        return self._engine.should_stop(trial_id, project=self.project)

    def stopping(self, experiment_id: int) -> StoppingDecision:
        """Is the experiment done? The stopping rule's recommendation (``done``, ``reason``,
        ``details``)."""
        return self._engine.stopping(experiment_id, project=self.project)

    def heartbeat(self, trial_id: int, lease_seconds: float = 60.0) -> Trial:
        return self._engine.heartbeat(trial_id, lease_seconds, project=self.project)

    def get_trial(self, trial_id: int) -> Trial:
        return self._engine.get_trial(trial_id, project=self.project)

    def trials(
        self, experiment_id: int, states: Sequence[TrialState | str] | None = None
    ) -> list[Trial]:
        return self._engine.list_trials(
            experiment_id,
            project=self.project,
            states=[TrialState(s) for s in states] if states else None,
        )

    def events(self, experiment_id: int, after: int = 0) -> list[TrialEvent]:
        """The experiment's audit trail (every trial state change), oldest first."""
        return self._engine.events(experiment_id=experiment_id, after=after, project=self.project)

    # -- runs and jobs -----------------------------------------------------------------------
    def start_run(self, experiment_id: int) -> str:
        """Start running the experiment's trials as jobs (it needs a ``job`` spec)."""
        return self._engine.set_run(experiment_id, "start", project=self.project)

    def pause_run(self, experiment_id: int) -> str:
        return self._engine.set_run(experiment_id, "pause", project=self.project)

    def resume_run(self, experiment_id: int) -> str:
        return self._engine.set_run(experiment_id, "resume", project=self.project)

    def jobs(self, experiment_id: int) -> list[Job]:
        """The experiment's jobs, newest first."""
        return self._engine.jobs(experiment_id, project=self.project)

    def cancel(self, trial_id: int) -> None:
        """Kill the trial's job; the trial ends as abandoned."""
        self._engine.cancel_trial(trial_id, project=self.project)

    def report(self, trial_id: int, step: int | None = None, **metrics: float) -> TrialReport:
        """Store a learning-curve point of a running trial (what ``assay.report`` does inside
        a job), for loops that run their own trials and ask :meth:`should_stop`."""
        return self._engine.report(trial_id, step, metrics, project=self.project)

    def reports(self, trial_id: int) -> list[TrialReport]:
        """The trial's intermediate reports (its learning curve)."""
        return self._engine.reports(trial_id, project=self.project)

    # -- analysis ----------------------------------------------------------------------------
    def effects(self, experiment_id: int) -> EffectsReport:
        """Per arm and metric: the % effect against the control (delta-method 95% CI, pooled
        over the arm's batches), the model's estimate, P(each constraint holds), P(feasible)
        and P(best). Needs a control arm."""
        return self._engine.effects(experiment_id, project=self.project)

    def pareto(self, experiment_id: int) -> ParetoReport:
        """Several objectives: the model's Pareto front among the observed arms (posterior
        means with 95% intervals, P(on the front), P(feasible)), the raw observed front, the
        hypervolume of both against the reference point and its trace per trial."""
        return self._engine.pareto(experiment_id, project=self.project)

    def best(self, experiment_id: int) -> BestArm:
        """The model's recommended arm with predicted metrics and intervals, and P(best) of
        every observed arm (in % against the control in an A/B experiment). With several
        objectives, ``front`` lists the Pareto-optimal arms (see :meth:`pareto`)."""
        return self._engine.best(experiment_id, project=self.project)

    # -- evolving a running experiment -------------------------------------------------------
    def update_experiment(
        self,
        experiment_id: int,
        *,
        reason: str | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        add_values: Mapping[str, Sequence[Any]] | None = None,
        add_parameters: Sequence[Mapping[str, Any]] | None = None,
        remove_values: Mapping[str, Sequence[Any]] | None = None,
        outcome_constraints: Sequence[str] | None = None,
        generator: str | None = None,
        generator_settings: Mapping[str, Any] | None = None,
    ) -> Experiment:
        """Change a running experiment's definition; each call is a new version recorded
        with who and ``reason``. Past trials keep their version; trials outside a narrowed
        space still inform the model but are never proposed or recommended. ``add_parameters``
        takes parameter specs as in creation plus ``default``: past trials are read with it.

        Example:
            >>> client.update_experiment(exp.id, bounds={"lr": [1e-4, 1.0]},
            ...                          reason="the best lr sat on the bound")  # doctest: +SKIP
            >>> client.update_experiment(exp.id, add_parameters=[
            ...     {"name": "dropout", "type": "float", "bounds": [0, 0.5], "default": 0.1}
            ... ])  # doctest: +SKIP
        """
        changes: dict[str, Any] = {}
        if bounds is not None:
            changes["bounds"] = {k: list(v) for k, v in bounds.items()}
        if add_values is not None:
            changes["add_values"] = {k: list(v) for k, v in add_values.items()}
        if remove_values is not None:
            changes["remove_values"] = {k: list(v) for k, v in remove_values.items()}
        if add_parameters is not None:
            changes["add_parameters"] = [dict(p) for p in add_parameters]
        if outcome_constraints is not None:
            changes["outcome_constraints"] = list(outcome_constraints)
        if generator is not None:
            changes["generator"] = generator
        if generator_settings is not None:
            changes["generator_settings"] = dict(generator_settings)
        return self._engine.update_experiment(
            experiment_id, changes, project=self.project, reason=reason
        )

    def experiment_versions(self, experiment_id: int) -> list[ExperimentVersion]:
        """The definition's versions, oldest first, with what changed, who and why."""
        return self._engine.experiment_versions(experiment_id, project=self.project)

    # -- projects ----------------------------------------------------------------------------
    def list_projects(self) -> list[ProjectSummary]:
        """Projects with their experiment counts (over HTTP with an API key: only its own)."""
        return self._engine.projects()

    def get_project(self, name: str) -> ProjectSummary:
        return self._engine.get_project(name)

    def create_project(self, name: str) -> ProjectSummary:
        """Create an empty project (a server allows it in local no-auth mode only; with keys
        use ``assay keys create --project NAME``)."""
        return self._engine.create_project(name)

    # -- webhooks ----------------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        format: str = "json",
        secret: str | None = None,
    ) -> Webhook:
        """Subscribe ``url`` to the project's events (``trial.completed``, ``trial.failed``,
        ``trial.early_stopped``, ``experiment.completed``, ``experiment.failing``);
        ``format="slack"`` posts Slack-compatible bodies. Keep ``.secret``: deliveries are
        signed with it (:func:`assay.service.webhooks.verify`)."""
        return self._engine.create_webhook(
            url, events, project=self.project, format=format, secret=secret
        )

    def webhooks(self) -> list[Webhook]:
        return self._engine.webhooks(project=self.project)

    def webhook_deliveries(self, webhook_id: int) -> list[Delivery]:
        """The delivery log (state, attempts, last status or error), newest first."""
        return self._engine.webhook_deliveries(webhook_id, project=self.project)

    # -- import and export -------------------------------------------------------------------
    def export_experiment(self, experiment_id: int, path: str | None = None) -> dict[str, Any]:
        """The experiment as a versioned JSON document (``docs/export-format.md``); written
        to ``path`` too when given."""
        document = self._engine.export_experiment(experiment_id, project=self.project)
        if path is not None:
            import json
            from pathlib import Path

            Path(path).write_text(json.dumps(document, indent=1))
        return document

    def import_experiment(
        self, document: Mapping[str, Any] | str, *, name: str | None = None
    ) -> ImportResult:
        """Create an experiment from an export (a dict or a file path); ``name`` renames it.
        The result holds the experiment and a report of what could not be carried."""
        if isinstance(document, str):
            import json
            from pathlib import Path

            document = json.loads(Path(document).read_text())
        return self._engine.import_experiment(document, project=self.project, name=name)

    def import_ax(
        self, snapshot: Mapping[str, Any] | str, *, name: str | None = None
    ) -> ImportResult:
        """Import an Ax ``Client`` JSON snapshot (a dict or the file
        ``Client.save_to_json_file`` wrote); Ax need not be installed."""
        if isinstance(snapshot, str):
            import json
            from pathlib import Path

            snapshot = json.loads(Path(snapshot).read_text())
        return self.import_experiment(from_ax_snapshot(snapshot), name=name)

    def import_optuna(
        self, storage: Any, study_name: str | None = None, *, name: str | None = None
    ) -> ImportResult:
        """Import an Optuna study from an RDB URL (``sqlite:///optuna.db``) or a journal
        file (needs Optuna installed)."""
        return self.import_experiment(from_optuna(storage, study_name), name=name)
