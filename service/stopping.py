"""Early stopping of trials and "is the experiment done?": the service's side.

The rules are the platform's (:mod:`assay.platform.early_stopping`,
:mod:`assay.platform.stopping`); this mixin reads what they need from the store (the
experiment, its trials' reports as :class:`~assay.platform.early_stopping.Curve` objects),
answers ``should_stop`` / ``stopping``, and records an early stop (trial state
``early_stopped``, the decision's reason and numbers in the trial's event).

What the optimizer does with early-stopped trials: by default the model sees each one at its
**predicted final value** (the model-based generators' ``early_stopped`` setting, default
``"predicted"``; :func:`~assay.platform.early_stopping.early_stopped_values`): the ``model``
strategy's curve-transfer ensemble extrapolates the stopped curve from the finished ones, so
a curve cut while still rising is not read at its truncated value (the finished curves
closest to it over its last steps say how much such curves still gained). The values exist
only in the ask's view (:func:`assay.service.generation.with_early_stopped`); nothing is
written to the trials.
``"last_value"`` uses the last report as is (Ax, too, fits early-stopped trials' data) and
``"exclude"`` leaves stopped trials out. Excluding them was the first design, and it
starved the model: only arms with data count toward the initial design, so with three trials
in four stopped, ``noisy_ei`` never left its Sobol design in 19 of 20 runs of
``benchmarks/early_stopping.py --generator noisy_ei`` (README "Early stopping").

May import: :mod:`assay.platform`, :mod:`assay.storage.base` and
:mod:`assay.service.webhooks` (the ``stopping.recommended`` event).
"""

from __future__ import annotations

from typing import Any

from assay.platform.early_stopping import Curve, StopDecision, decide, rule_line
from assay.platform.errors import InvalidTransitionError
from assay.platform.experiment import Experiment, Trial, TrialState
from assay.platform.stopping import StoppingDecision, experiment_stopping, feasible_series
from assay.service.webhooks import emit_stopping
from assay.storage.base import Store


def best_feasible(experiment: Experiment) -> float | None:
    """The best final objective value among completed trials feasible by raw value."""
    sign = -1.0 if experiment.config.objective.minimize else 1.0
    vals = [sign * v for v, _, ok in feasible_series(experiment) if ok]
    return sign * max(vals) if vals else None


class Stopping:
    """``should_stop``, ``early_stop_if_needed``, ``stopping`` and the curves the dashboard
    draws, over a :class:`~assay.storage.base.Store`: a mixin that
    :class:`~assay.service.engine.Engine` composes."""

    store: Store
    actor: str | None

    def should_stop(self, trial_id: int, *, project: str | None = None) -> StopDecision:
        """Whether the experiment's early-stopping rule would stop the trial now, and why.

        A trial that is not running, or an experiment without ``early_stopping``, gets
        ``should_stop=False`` with the reason."""
        trial = self.store.get_trial(trial_id, project=project)
        experiment = self.store.get_experiment(trial.experiment_id)
        return self._decide(experiment, trial)

    def _decide(self, experiment: Experiment, trial: Trial) -> StopDecision:
        config = experiment.config
        es = config.early_stopping
        if es is None:
            return StopDecision(
                trial.id, False, "none", "the experiment has no early_stopping settings"
            )
        if trial.state is not TrialState.RUNNING:
            return StopDecision(
                trial.id, False, es.strategy, f"the trial is {trial.state.value}, not running"
            )
        if trial.is_batch:
            return StopDecision(
                trial.id, False, es.strategy, "batch trials (A/B rounds) are not early-stopped"
            )
        curves = self.store.experiment_curves(experiment)
        # A running single-arm trial is always among the curves (maybe without points yet).
        mine = next((c for c in curves if c.trial_id == trial.id), Curve(trial.id, {}))
        return decide(
            es, config.objective, mine, curves,
            constraints=config.outcome_constraints, best_feasible=best_feasible(experiment),
        )  # fmt: skip

    def early_stop_if_needed(self, trial_id: int, *, actor: str | None = None) -> StopDecision:
        """Decide for a running trial and, when the rule says stop, mark it
        ``early_stopped`` with the reason and the decision's numbers in its event (a
        compare-and-set from ``running``; a trial that ended meanwhile is left alone)."""
        decision = self.should_stop(trial_id)
        if decision.should_stop:
            try:
                self.store.transition_trial(
                    trial_id, TrialState.EARLY_STOPPED,
                    reason=f"early stopped ({decision.strategy}): {decision.reason}",
                    actor=actor or self.actor, expected_states=[TrialState.RUNNING],
                    details={"early_stopping": decision.to_dict()},
                )  # fmt: skip
            except InvalidTransitionError:
                decision.should_stop = False
                decision.reason = f"{decision.reason} (the trial ended meanwhile)"
        return decision

    def stopping(self, experiment_id: int, *, project: str | None = None) -> StoppingDecision:
        """Is the experiment done? (see :func:`assay.platform.stopping.experiment_stopping`).

        A ``done`` answer emits the ``stopping.recommended`` webhook event, once per
        experiment and definition version (this is also the orchestrator's check)."""
        experiment = self.store.get_experiment(experiment_id, project=project)
        decision = experiment_stopping(experiment)
        emit_stopping(self.store, experiment.project, experiment.id, decision)
        return decision

    def curves(self, experiment_id: int, *, project: str | None = None) -> dict[str, Any]:
        """The learning curves of the experiment for charts: ``{"curves": [...],
        "rule_line": [[step, value], ...], "metric": ...}``."""
        experiment = self.store.get_experiment(experiment_id, project=project)
        curves = self.store.experiment_curves(experiment)
        es = experiment.config.early_stopping
        line = rule_line(es, experiment.config.objective, curves) if es is not None else []
        return {
            "metric": (es.metric if es is not None else None) or experiment.config.objective.name,
            "curves": curves,
            "rule_line": line,
        }
