"""Analyses of an experiment: the model-based best arm, and helpers shared by the dashboard.

The recommended arm is chosen by the *model*, not by the noisiest raw value: among observed
arms whose posterior probability of satisfying every outcome constraint is at least
``min_p_feasible``, pick the one with the best posterior mean of the objective. With noisy data
the best raw observation is biased upwards (a winner's curse); the GP posterior mean shrinks
each arm towards what its neighbours say. Intervals are 95% credible intervals of the latent
function value ``mu +- 1.96 sigma`` (observation noise excluded).

Alongside, ``P(best)``: the posterior probability that an arm is the best *feasible* observed
arm, estimated from joint posterior samples of every output at all observed arms (per sample:
the feasible arms, then the best objective among them), and ``P(constraint holds)`` per
outcome constraint. In an experiment with a control arm run in batches, the model sees %
effects against the control (:mod:`assay.platform.relative`), so estimates are in % and
:func:`arm_effects` reports each arm's effects per metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from assay.platform.errors import AssayError, ModelFitError, NotFoundError, UnsupportedError
from assay.platform.experiment import Experiment, OutcomeConstraint
from assay.platform.generators.noisy_ei import probability_feasible
from assay.platform.models import FittedModel, fit_outcome_models
from assay.platform.relative import (
    ModelledOutcomes,
    RelativeEffect,
    control_arm_names,
    modelled_outcomes,
    relative_effect,
)
from assay.platform.space import DTYPE

#: Joint posterior samples behind ``P(best)``.
P_BEST_SAMPLES = 2048

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
        relative: Estimates are % effects against the control arm (see
            :mod:`assay.platform.relative`), not raw levels.
        probability_best: ``{arm_name: P(arm is the best feasible observed arm)}``.
        probability_constraints: ``{constraint: P(it holds)}`` at the recommended arm.
        front: With several objectives, the arms on the model's Pareto front (see
            :func:`assay.platform.pareto_report.best_of_front`, which builds it); the
            recommended arm is the one most likely on it and ``probability_best`` holds
            ``P(on the front)``.
    """

    arm_name: str
    parameters: dict[str, Any]
    trial_ids: list[int]
    estimates: dict[str, MetricEstimate]
    probability_feasible: float
    feasible: bool
    model_based: bool
    notes: list[str] = field(default_factory=list)
    relative: bool = False
    probability_best: dict[str, float] = field(default_factory=dict)
    probability_constraints: dict[str, float] = field(default_factory=dict)
    front: list[str] = field(default_factory=list)

    def _repr_html_(self) -> str:
        from assay.platform.html import best_html

        return best_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "front": self.front,
            "arm_name": self.arm_name,
            "parameters": self.parameters,
            "trial_ids": self.trial_ids,
            "estimates": {m: e.to_dict() for m, e in self.estimates.items()},
            "probability_feasible": self.probability_feasible,
            "feasible": self.feasible,
            "model_based": self.model_based,
            "notes": self.notes,
            "relative": self.relative,
            "probability_best": self.probability_best,
            "probability_constraints": self.probability_constraints,
        }


def fit_experiment_model(
    experiment: Experiment, seed: int = 0, outcomes: ModelledOutcomes | None = None
) -> FittedModel | None:
    """Fit the outcome models on all completed data (relativized where the generator
    relativizes, see :func:`assay.platform.relative.modelled_outcomes`), or ``None`` if
    there is too little."""
    data = (outcomes or modelled_outcomes(experiment, relativize=_relativize(experiment))).data
    metrics = [m for m in experiment.config.modelled_metrics if m in data]
    if any(o.name not in data or data[o.name].n < 2 for o in experiment.config.objectives):
        return None
    try:
        return fit_outcome_models(data, metrics, warm_start=experiment.model_state, seed=seed)
    except ModelFitError:
        return None


def _relativize(experiment: Experiment) -> bool:
    """The generator's ``relativize`` setting (default on), so analyses model what it does."""
    return bool(experiment.config.generator_settings.get("relativize", True))


def in_search_space(space: Any, arm: Any) -> bool:
    """Whether the arm's parameters are valid in ``space`` (bounds, choice values,
    constraints): after an experiment's space was narrowed, older arms may not be."""
    try:
        space.validate(arm.parameters)
    except AssayError:
        return False
    return True


def _observed_arms(experiment: Experiment) -> dict[str, dict[str, Any]]:
    """``{arm_name: {"arm", "trials", "obs": {metric: [means]}}}`` of observed arms."""
    metrics = experiment.config.metric_names
    observed: dict[str, dict[str, Any]] = {}
    for trial, arm, obs in experiment.observed():
        rec = observed.setdefault(
            arm.name, {"arm": arm, "trials": [], "obs": {m: [] for m in metrics}}
        )
        rec["trials"].append(trial.id)
        for m, o in obs.items():
            rec["obs"].setdefault(m, []).append(o.mean)
    return observed


def posterior_best_and_feasible(
    fitted: FittedModel,
    X: Tensor,
    objective: str,
    minimize: bool,
    constraints: Sequence[OutcomeConstraint],
    *,
    samples: int = P_BEST_SAMPLES,
    seed: int = 0,
) -> tuple[Tensor, list[Tensor | None]]:
    """``P(best feasible)`` per arm and ``P(constraint holds)`` per constraint and arm.

    Draws ``samples`` joint posterior samples of every modelled output at the ``n`` arms
    ``X``; in each sample, an arm is feasible when every constraint holds, and the best
    feasible arm (by the objective) scores one. Samples where no arm is feasible score none,
    so the probabilities may sum to less than one.
    """
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        post = fitted.model.posterior(X.to(DTYPE))
        Y = post.rsample(torch.Size([samples]))  # samples x n x m
    feasible = torch.ones(Y.shape[:-1], dtype=torch.bool)
    p_constraints: list[Tensor | None] = []
    for oc in constraints:
        if oc.metric not in fitted.metrics:
            p_constraints.append(None)
            continue
        y = Y[..., fitted.output_index(oc.metric)]
        ok = y <= oc.bound if oc.op == "<=" else y >= oc.bound
        p_constraints.append(ok.to(DTYPE).mean(0))
        feasible &= ok
    score = Y[..., fitted.output_index(objective)] * (-1.0 if minimize else 1.0)
    score = torch.where(feasible, score, torch.full_like(score, -math.inf))
    any_feasible = feasible.any(dim=-1)
    winner = score.argmax(dim=-1)
    counts = torch.zeros(X.shape[0], dtype=DTYPE)
    counts.index_add_(0, winner[any_feasible], torch.ones(int(any_feasible.sum()), dtype=DTYPE))
    return counts / samples, p_constraints


def best_arm(
    experiment: Experiment, *, min_p_feasible: float = 0.9, fitted: FittedModel | None = None
) -> BestArm:
    """Recommend the best observed arm by the model (see the module docstring).

    Raises:
        NotFoundError: when the experiment has no completed observation of its objective.
    """
    config = experiment.config
    obj = config.objective
    observed = {k: v for k, v in _observed_arms(experiment).items() if v["obs"].get(obj.name)}
    if not observed:
        raise NotFoundError(
            f"experiment {experiment.id} has no completed observation of {obj.name!r} yet",
            details={"experiment_id": experiment.id},
        )
    # Arms outside the current search space (observed before it was narrowed) inform the
    # model but are never recommended.
    names = [k for k in observed if in_search_space(config.search_space, observed[k]["arm"])]
    if not names:
        raise NotFoundError(
            f"experiment {experiment.id}: no observed arm lies in the current search space",
            details={"experiment_id": experiment.id},
        )
    outcomes = modelled_outcomes(experiment, relativize=_relativize(experiment))
    fitted = fitted or fit_experiment_model(experiment, outcomes=outcomes)
    metrics = config.modelled_metrics
    if fitted is None:
        # Not enough data for a model: fall back to observed means, constraints by raw value.
        absolute, _ = model_constraints_absolute(experiment)

        def raw(name: str, m: str) -> float | None:
            v = observed[name]["obs"].get(m)
            return sum(v) / len(v) if v else None

        def ok(name: str) -> bool:
            for oc in absolute:
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
    p_feas = probability_feasible(config, fitted, X, outcomes.constraints)
    i_obj = fitted.output_index(obj.name)
    sign = -1.0 if obj.minimize else 1.0
    score = sign * mean[:, i_obj]
    eligible = p_feas >= min_p_feasible
    notes = list(outcomes.notes)
    if bool(eligible.any()):
        score = torch.where(eligible, score, torch.full_like(score, -math.inf))
        i = int(score.argmax())
    else:
        i = int(p_feas.argmax())
        notes.append(
            f"no arm is feasible with probability >= {min_p_feasible}; showing the arm most "
            "likely to be feasible"
        )
    p_best, p_cons = posterior_best_and_feasible(
        fitted, X, obj.name, obj.minimize, outcomes.constraints
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
        float(p_feas[i]), bool(eligible[i]), True, notes, outcomes.relative,
        {nm: round(float(p), 4) for nm, p in zip(names, p_best, strict=True)},
        {
            src.expression: round(float(p[i]), 4)
            for p, src in zip(p_cons, outcomes.sources, strict=True)
            if p is not None
        },
    )  # fmt: skip


def model_constraints_absolute(
    experiment: Experiment,
) -> tuple[list[OutcomeConstraint], list[str]]:
    """The outcome constraints with absolute bounds (relative ones via the control's level)."""
    from assay.platform.relative import model_constraints

    notes: list[str] = []
    constraints, _ = model_constraints(experiment, False, notes)
    return constraints, notes


# -- A/B tests: effects of each arm against the control ------------------------------------
@dataclass
class MetricEffect:
    """One arm's effect on one metric, in % against the control.

    Args:
        observed: The pooled observed effect over the arm's batches (inverse-variance
            weighted when every SEM is known, else the plain mean), or ``None``.
        batches: ``[(trial_id, effect)]``, one per batch the arm shared with the control.
        model: The model's posterior of the effect (relative model only), else ``None``.
    """

    metric: str
    observed: RelativeEffect | None
    batches: list[tuple[int, RelativeEffect]] = field(default_factory=list)
    model: MetricEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        from assay.platform.relative import to_json

        return {
            "metric": self.metric,
            "observed": to_json(self.observed) if self.observed is not None else None,
            "batches": [{"trial_id": t, **to_json(e)} for t, e in self.batches],
            "model": self.model.to_dict() if self.model is not None else None,
        }


@dataclass
class ArmEffects:
    """Everything known about one arm against the control."""

    arm_name: str
    parameters: dict[str, Any]
    trial_ids: list[int]
    is_control: bool
    metrics: dict[str, MetricEffect]
    probability_feasible: float | None = None
    probability_constraints: dict[str, float] = field(default_factory=dict)
    probability_best: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm_name": self.arm_name,
            "parameters": self.parameters,
            "trial_ids": self.trial_ids,
            "is_control": self.is_control,
            "metrics": {m: e.to_dict() for m, e in self.metrics.items()},
            "probability_feasible": self.probability_feasible,
            "probability_constraints": self.probability_constraints,
            "probability_best": self.probability_best,
        }


@dataclass
class EffectsReport:
    """Per arm and metric: % effect against the control with its CI, and the model's
    ``P(feasible)`` / ``P(best)`` (see :func:`arm_effects`)."""

    experiment_id: int
    control_arm: str | None
    metrics: list[str]
    constraints: list[str]
    relative_model: bool
    arms: list[ArmEffects]
    notes: list[str] = field(default_factory=list)

    def _repr_html_(self) -> str:
        from assay.platform.html import effects_html

        return effects_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "control_arm": self.control_arm,
            "metrics": self.metrics,
            "constraints": self.constraints,
            "relative_model": self.relative_model,
            "arms": [a.to_dict() for a in self.arms],
            "notes": self.notes,
        }


def _pool(effects: list[RelativeEffect]) -> RelativeEffect | None:
    """Inverse-variance weighted mean of independent estimates of the same effect."""
    if not effects:
        return None
    if all(e.sem is not None and e.sem > 0 for e in effects):
        w = [1.0 / e.sem**2 for e in effects]  # type: ignore[operator]
        mean = sum(wi * e.effect for wi, e in zip(w, effects, strict=True)) / sum(w)
        return RelativeEffect(mean, math.sqrt(1.0 / sum(w)))
    return RelativeEffect(sum(e.effect for e in effects) / len(effects), None)


def arm_effects(
    experiment: Experiment, *, fitted: FittedModel | None = None, bias_correction: bool = True
) -> EffectsReport:
    """Each arm's % effects against the control of the batches it ran in (delta method, see
    :func:`assay.platform.relative.relative_effect`), pooled over batches, plus — once a
    model can be fitted — the model's effect estimates, ``P(each constraint holds)``,
    ``P(feasible)`` and ``P(best feasible arm)``.

    The model here is always the *relative* one, whatever the generator's ``relativize``
    setting: an effect is a % change against the control by definition, so its posterior
    must be one of % effects (a raw-level model's estimates would need the control's level,
    which shifts from batch to batch). :func:`best_arm` follows the setting instead, so it
    recommends from the same model that generated the arms; with ``relativize=False`` the two
    may therefore disagree a little on ``P(best)`` / ``P(feasible)``, and
    ``relative_model`` in the report says which model was used (``False``: none yet).

    Raises:
        UnsupportedError: the experiment has no control arm (``status_quo``).
    """
    config = experiment.config
    if config.status_quo is None:
        raise UnsupportedError(
            f"experiment {experiment.id} has no control arm: set status_quo to see effects",
            field="status_quo",
        )
    controls = control_arm_names(experiment)
    metrics = config.metric_names
    per_arm: dict[str, dict[str, list[tuple[int, RelativeEffect]]]] = {}
    arms: dict[str, Any] = {}
    trial_ids: dict[str, list[int]] = {}
    notes: list[str] = []
    for trial in experiment.trials:
        if not trial.observations or not trial.is_batch:
            continue
        control = next((a for a in trial.arms if a.name in controls), None)
        c_obs = trial.observations.get(control.name, {}) if control is not None else {}
        if not c_obs:
            notes.append(f"trial {trial.id} has no control data: no effects from it")
            continue
        for arm in trial.arms:
            obs = trial.observations.get(arm.name)
            if not obs:
                continue
            arms[arm.name] = arm
            trial_ids.setdefault(arm.name, []).append(trial.id)
            if arm.name in controls:
                continue
            rec = per_arm.setdefault(arm.name, {})
            for m, o in obs.items():
                c = c_obs.get(m)
                if c is None or c.mean == 0:
                    continue
                eff = relative_effect(o.mean, o.sem, c.mean, c.sem, bias_correction=bias_correction)
                rec.setdefault(m, []).append((trial.id, eff))
    outcomes = modelled_outcomes(experiment, relativize=True, bias_correction=bias_correction)
    notes += outcomes.notes
    if fitted is None and outcomes.relative:
        fitted = fit_experiment_model(experiment, outcomes=outcomes)
    names = list(arms)
    model_rows: dict[str, dict[str, MetricEstimate]] = {}
    p_feas: dict[str, float] = {}
    p_cons: dict[str, dict[str, float]] = {}
    p_best: dict[str, float] = {}
    if fitted is not None and outcomes.relative and names:
        X = experiment.search_space.encode_many([arms[n].parameters for n in names])
        mean, var = fitted.predict(X)
        pf = probability_feasible(config, fitted, X, outcomes.constraints)
        pb, pc = posterior_best_and_feasible(
            fitted, X, config.objective.name, config.objective.minimize, outcomes.constraints
        )
        for i, n in enumerate(names):
            model_rows[n] = {}
            for m in fitted.metrics:
                j = fitted.output_index(m)
                mu, sd = float(mean[i, j]), math.sqrt(float(var[i, j]))
                model_rows[n][m] = MetricEstimate(mu, sd, mu - Z95 * sd, mu + Z95 * sd)
            p_feas[n] = round(float(pf[i]), 4)
            p_best[n] = round(float(pb[i]), 4)
            p_cons[n] = {
                src.expression: round(float(p[i]), 4)
                for p, src in zip(pc, outcomes.sources, strict=True)
                if p is not None
            }
    elif names:
        notes.append("no relative model yet: model-based probabilities are not available")
    out = []
    for n in names:
        is_control = n in controls
        effects = {}
        for m in metrics:
            batches = per_arm.get(n, {}).get(m, [])
            model = model_rows.get(n, {}).get(m)
            if is_control:
                batches = []
            if batches or model is not None:
                effects[m] = MetricEffect(m, _pool([e for _, e in batches]), batches, model)
        arm = ArmEffects(
            n, dict(arms[n].parameters), trial_ids.get(n, []), is_control, effects,
            p_feas.get(n), p_cons.get(n, {}), p_best.get(n),
        )  # fmt: skip
        out.append(arm)
    out.sort(key=lambda a: (not a.is_control, -(a.probability_best or 0.0)))
    return EffectsReport(
        experiment.id, next(iter(sorted(controls)), None), metrics,
        [oc.expression for oc in config.outcome_constraints], outcomes.relative, out, notes,
    )  # fmt: skip
