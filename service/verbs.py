"""The experiment verbs, as one typed interface: what the Python client calls.

Two backends implement them: :class:`~assay.service.engine.Engine` (in process, over a
store) and :class:`~assay.service.remote.RemoteEngine` (over the REST API);
:class:`~assay.service.client.Client` holds one of them as an :class:`ExperimentVerbs` and
exposes each verb under the name users know. A verb added to one backend and forgotten in the
other fails ``tests/service/test_verbs.py``, which compares every member's signature here with
both backends' (a backend may add keyword-only parameters with defaults, e.g. the engine's
``actor``, which only the server sets).

Owns: the list of client-facing verbs and their signatures. May import:
:mod:`assay.platform` and :mod:`assay.storage.base` for the types the verbs take and return;
nothing that runs code (the types are evaluated at runtime by the signature test).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from assay.platform.analysis import BestArm, EffectsReport
from assay.platform.early_stopping import StopDecision
from assay.platform.experiment import (
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Trial,
    TrialState,
)
from assay.platform.jobspec import Job, TrialReport
from assay.platform.pareto_report import ParetoReport
from assay.platform.stopping import StoppingDecision
from assay.service.interchange import ImportResult
from assay.storage.base import ExperimentSummary, ExperimentVersion, ProjectSummary, TrialEvent
from assay.storage.webhooks import Delivery, Webhook


class ExperimentVerbs(Protocol):
    """The verbs of experiments, trials, runs and analysis, whatever the backend.

    ``project`` scopes every call to one project (another project's objects are
    ``NotFoundError``); a remote backend ignores it (the API key decides the project).
    """

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self, spec: ExperimentConfig | Mapping[str, Any], *, project: str = "default"
    ) -> Experiment:
        """Validate and store an experiment."""
        ...

    def get_experiment(self, experiment_id: int, *, project: str | None = None) -> Experiment:
        """The experiment with all its trials."""
        ...

    def list_experiments(
        self, *, project: str | None = None, status: ExperimentStatus | None = None
    ) -> list[ExperimentSummary]:
        """Summaries, newest first."""
        ...

    def set_status(
        self,
        experiment_id: int,
        status: ExperimentStatus | str,
        *,
        project: str | None = None,
        reason: str | None = None,
    ) -> Experiment:
        """Change the experiment's status (``active``, ``paused``, ...), with an optional
        ``reason`` kept as the experiment's ``status_reason`` (with who and when)."""
        ...

    def update_experiment(
        self,
        experiment_id: int,
        changes: Mapping[str, Any],
        *,
        project: str | None = None,
        reason: str | None = None,
    ) -> Experiment:
        """A new version of the definition (bounds, choice values, added parameters with
        their defaults for past trials, outcome constraints,
        generator and its settings), recorded with who and why."""
        ...

    def experiment_versions(
        self, experiment_id: int, *, project: str | None = None
    ) -> list[ExperimentVersion]:
        """The definition's versions, oldest first."""
        ...

    # -- creating trials ---------------------------------------------------------------------
    def ask(
        self,
        experiment_id: int,
        n: int = 1,
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
        lease_seconds: float | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> list[Trial]:
        """``n`` new single-arm trials (a retried ask with the same key returns the same);
        ``fixed`` holds some parameters at given values for this ask only."""
        ...

    def ask_batch(
        self,
        experiment_id: int,
        n_arms: int = 8,
        *,
        include: list[str | Mapping[str, Any]] | None = None,
        project: str | None = None,
        idempotency_key: str | None = None,
        start: bool = True,
        lease_seconds: float | None = None,
    ) -> Trial:
        """One batch trial of ``n_arms`` arms, the control first."""
        ...

    def attach_trial(
        self,
        experiment_id: int,
        parameters: Mapping[str, Any],
        *,
        project: str | None = None,
        start: bool = True,
    ) -> Trial:
        """A trial with the caller's own parameters."""
        ...

    # -- trial life cycle --------------------------------------------------------------------
    def tell(
        self, trial_id: int, observations: Mapping[str, Any], *, project: str | None = None
    ) -> Trial:
        """Complete a single-arm trial with ``{metric: value}``."""
        ...

    def tell_batch(
        self,
        trial_id: int,
        observations: Mapping[str, Mapping[str, Any]],
        *,
        project: str | None = None,
    ) -> Trial:
        """Complete a batch trial with ``{arm_name: {metric: value}}``."""
        ...

    def fail(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        """Mark a trial failed."""
        ...

    def abandon(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        """Mark a trial abandoned."""
        ...

    def early_stop(
        self, trial_id: int, reason: str | None = None, *, project: str | None = None
    ) -> Trial:
        """Mark a running trial early-stopped."""
        ...

    def heartbeat(
        self, trial_id: int, lease_seconds: float = 60.0, *, project: str | None = None
    ) -> Trial:
        """Extend a running trial's lease."""
        ...

    def get_trial(self, trial_id: int, *, project: str | None = None) -> Trial:
        """One trial."""
        ...

    def list_trials(
        self,
        experiment_id: int,
        *,
        project: str | None = None,
        states: Sequence[TrialState] | None = None,
    ) -> list[Trial]:
        """An experiment's trials by index, optionally only those in ``states``."""
        ...

    def events(
        self,
        *,
        experiment_id: int | None = None,
        trial_id: int | None = None,
        after: int = 0,
        project: str | None = None,
    ) -> list[TrialEvent]:
        """Audit events (of an experiment or a trial) with ``id > after``, oldest first."""
        ...

    # -- analysis ----------------------------------------------------------------------------
    def effects(self, experiment_id: int, *, project: str | None = None) -> EffectsReport:
        """Each arm's % effects against the control."""
        ...

    def pareto(self, experiment_id: int, *, project: str | None = None) -> ParetoReport:
        """The Pareto front of an experiment with several objectives."""
        ...

    def best(self, experiment_id: int, *, project: str | None = None) -> BestArm:
        """The model-based recommendation."""
        ...

    def should_stop(self, trial_id: int, *, project: str | None = None) -> StopDecision:
        """Whether the early-stopping rule would stop the running trial now, and why."""
        ...

    def stopping(self, experiment_id: int, *, project: str | None = None) -> StoppingDecision:
        """Is the experiment done? The stopping rule's recommendation and figures."""
        ...

    # -- runs and jobs -----------------------------------------------------------------------
    def set_run(self, experiment_id: int, action: str, *, project: str | None = None) -> str:
        """``start``, ``pause`` or ``resume`` the experiment's run; the new run state."""
        ...

    def jobs(self, experiment_id: int, *, project: str | None = None) -> list[Job]:
        """The experiment's jobs, newest first."""
        ...

    def cancel_trial(self, trial_id: int, *, project: str | None = None) -> Job | None:
        """Kill the trial's job (or abandon a trial without one); the job, if any."""
        ...

    def report(
        self,
        trial_id: int,
        step: int | None,
        metrics: Mapping[str, Any],
        *,
        project: str | None = None,
    ) -> TrialReport:
        """Store an intermediate report (a learning-curve point) of a running trial."""
        ...

    def reports(self, trial_id: int, *, project: str | None = None) -> list[TrialReport]:
        """The trial's intermediate reports, in order."""
        ...

    # -- projects ----------------------------------------------------------------------------
    def create_project(self, name: str) -> ProjectSummary:
        """Create an empty project (``ConflictError`` if it exists; a server refuses API keys)."""
        ...

    def projects(self, *, project: str | None = None) -> list[ProjectSummary]:
        """Projects with their experiment counts (an API key sees only its own)."""
        ...

    def get_project(self, name: str, *, project: str | None = None) -> ProjectSummary:
        """One project; another project's name is ``NotFoundError``."""
        ...

    # -- webhooks ----------------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        project: str | None = None,
        format: str = "json",
        secret: str | None = None,
    ) -> Webhook:
        """Subscribe ``url`` to the project's ``events`` (signed with the secret)."""
        ...

    def webhooks(self, *, project: str | None = None) -> list[Webhook]:
        """The project's webhook subscriptions."""
        ...

    def webhook_deliveries(self, webhook_id: int, *, project: str | None = None) -> list[Delivery]:
        """A subscription's delivery log, newest first."""
        ...

    # -- import and export -------------------------------------------------------------------
    def export_experiment(self, experiment_id: int, *, project: str | None = None) -> dict:
        """The experiment as a versioned JSON document (``docs/export-format.md``)."""
        ...

    def import_experiment(
        self,
        document: Mapping[str, Any],
        *,
        project: str = "default",
        name: str | None = None,
    ) -> ImportResult:
        """Create an experiment from an exported document (``name`` renames it)."""
        ...

    # -- connection --------------------------------------------------------------------------
    def close(self) -> None:
        """Release connections (database pool or HTTP client)."""
        ...
