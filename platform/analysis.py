"""Analyses of an experiment: the model-based best arm, and helpers shared by the dashboard.

The recommended arm is chosen by the *model*, not by the noisiest raw value: among observed
arms whose posterior probability of satisfying every outcome constraint is at least
``min_p_feasible``, pick the one with the best posterior mean of the objective. With noisy data
the best raw observation is biased upwards (a winner's curse); the GP posterior mean shrinks
each arm towards what its neighbours say. Intervals are 95% credible intervals of the latent
function value ``mu +- 1.96 sigma`` (observation noise excluded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from assay.platform.errors import ModelFitError, NotFoundError
from assay.platform.experiment import Experiment
from assay.platform.generators.noisy_ei import probability_feasible
from assay.platform.models import FittedModel, fit_outcome_models, training_data

Z95 = 1.959963984540054


@dataclass
class MetricEstimate:
    """A posterior (or, without a model, an observed) estimate of one metric at one arm."""

    mean: float
    sem: float | None
    lower: float | None
    upper: float | None
    observed_mean: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "sem": self.sem,
            "lower": self.lower,
            "upper": self.upper,
            "observed_mean": self.observed_mean,
        }


@dataclass
class BestArm:
    """The recommended arm with its predicted metrics.

    Args:
        arm_name: The arm's name.
        parameters: Its parameters.
        trial_ids: The trials that evaluated it.
        estimates: ``{metric: MetricEstimate}`` for objective and constrained metrics.
        probability_feasible: Posterior probability that every outcome constraint holds.
        feasible: Whether it met ``min_p_feasible`` (``False`` means: nothing did, this is the
            most-likely-feasible arm).
        model_based: ``False`` when too little data for a model: raw observed means are shown.
    """

    arm_name: str
    parameters: dict[str, Any]
    trial_ids: list[int]
    estimates: dict[str, MetricEstimate]
    probability_feasible: float
    feasible: bool
    model_based: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm_name": self.arm_name,
            "parameters": self.parameters,
            "trial_ids": self.trial_ids,
            "estimates": {m: e.to_dict() for m, e in self.estimates.items()},
            "probability_feasible": self.probability_feasible,
            "feasible": self.feasible,
            "model_based": self.model_based,
            "notes": self.notes,
        }


def fit_experiment_model(experiment: Experiment, seed: int = 0) -> FittedModel | None:
    """Fit the outcome models on all completed data, or ``None`` if there is too little."""
    data = training_data(experiment)
    metrics = [m for m in experiment.config.modelled_metrics if m in data]
    if experiment.config.objective.name not in data or data[experiment.config.objective.name].n < 2:
        return None
    try:
        return fit_outcome_models(data, metrics, warm_start=experiment.model_state, seed=seed)
    except ModelFitError:
        return None


def best_arm(
    experiment: Experiment, *, min_p_feasible: float = 0.9, fitted: FittedModel | None = None
) -> BestArm:
    """Recommend the best observed arm by the model (see the module docstring).

    Raises:
        NotFoundError: when the experiment has no completed observation of its objective.
    """
    config = experiment.config
    obj = config.objective
    observed: dict[str, dict[str, Any]] = {}
    for trial, arm, obs in experiment.observed():
        rec = observed.setdefault(
            arm.name, {"arm": arm, "trials": [], "obs": {m: [] for m in config.metric_names}}
        )
        rec["trials"].append(trial.id)
        for m, o in obs.items():
            rec["obs"].setdefault(m, []).append(o.mean)
    observed = {k: v for k, v in observed.items() if v["obs"].get(obj.name)}
    if not observed:
        raise NotFoundError(
            f"experiment {experiment.id} has no completed observation of {obj.name!r} yet",
            details={"experiment_id": experiment.id},
        )
    names = list(observed)
    fitted = fitted or fit_experiment_model(experiment)
    metrics = config.modelled_metrics
    if fitted is None:
        # Not enough data for a model: fall back to observed means, constraints by raw value.
        def raw(name: str, m: str) -> float | None:
            v = observed[name]["obs"].get(m)
            return sum(v) / len(v) if v else None

        def ok(name: str) -> bool:
            for oc in config.outcome_constraints:
                v = raw(name, oc.metric)
                if v is None or not oc.is_satisfied(v):
                    return False
            return True

        feasible = [nm for nm in names if ok(nm)]
        pool = feasible or names
        sign = -1.0 if obj.minimize else 1.0
        best = max(pool, key=lambda nm: sign * raw(nm, obj.name))  # type: ignore[operator]
        rec = observed[best]
        est = {
            m: MetricEstimate(v, None, None, None, v)
            for m in metrics
            if (v := raw(best, m)) is not None
        }
        return BestArm(
            best, dict(rec["arm"].parameters), rec["trials"], est,
            1.0 if best in feasible else 0.0, best in feasible, False,
            ["too few observations for a model; showing observed means"],
        )  # fmt: skip

    space = experiment.search_space
    X = space.encode_many([observed[nm]["arm"].parameters for nm in names])
    mean, var = fitted.predict(X)
    p_feas = probability_feasible(config, fitted, X)
    i_obj = fitted.output_index(obj.name)
    sign = -1.0 if obj.minimize else 1.0
    score = sign * mean[:, i_obj]
    eligible = p_feas >= min_p_feasible
    notes = []
    if bool(eligible.any()):
        score = torch.where(eligible, score, torch.full_like(score, -math.inf))
        i = int(score.argmax())
    else:
        i = int(p_feas.argmax())
        notes.append(
            f"no arm is feasible with probability >= {min_p_feasible}; showing the arm most "
            "likely to be feasible"
        )
    rec = observed[names[i]]
    estimates = {}
    for m in fitted.metrics:
        j = fitted.output_index(m)
        mu, sd = float(mean[i, j]), math.sqrt(float(var[i, j]))
        vals = rec["obs"].get(m) or []
        estimates[m] = MetricEstimate(
            mu, sd, mu - Z95 * sd, mu + Z95 * sd, sum(vals) / len(vals) if vals else None
        )
    return BestArm(
        names[i], dict(rec["arm"].parameters), rec["trials"], estimates,
        float(p_feas[i]), bool(eligible[i]), True, notes,
    )  # fmt: skip
