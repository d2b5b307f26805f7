"""Experiment-level stopping: "is this experiment done?".

Two rules, configured by :class:`~assay.platform.early_stopping.StoppingRuleConfig`:

* ``improvement`` (:func:`improvement_rule`) — the best feasible objective value has not
  improved by more than the noise over the last ``window`` completed trials. The noise level
  is ``min_improvement`` when given, else the median standard error of the objective's
  observations (the noise a difference of best values must beat), else ``rel_tol`` times the
  observed range. The rule of Ax's ``ImprovementGlobalStoppingStrategy`` and of the
  "no improvement in k rounds" criterion of Vizier (Golovin et al. 2017), made noise-aware.
* ``model`` (:func:`model_rule`) — the GP posterior's largest probability, over a scrambled
  Sobol sample of the search space plus the observed arms, of improving on the recommended
  arm's predicted objective by ``margin`` while satisfying every outcome constraint,
  ``max_x P(f(x) > f* + margin) · P(feasible | x)`` (the probability of improvement of Kushner
  1964 with a margin, weighted by feasibility as in Gardner et al. 2014). Done when it is
  below ``threshold``: no point is still likely to be meaningfully better.

Pure: no I/O.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

from assay.platform.analysis import best_arm, fit_experiment_model
from assay.platform.early_stopping import StoppingRuleConfig
from assay.platform.errors import NotFoundError
from assay.platform.experiment import Experiment, TrialState
from assay.platform.generators.noisy_ei import probability_feasible
from assay.platform.relative import modelled_outcomes
from assay.platform.space import DTYPE


@dataclass
class StoppingDecision:
    """Whether the experiment is done, by one rule, with its figures.

    Args:
        done: The recommendation.
        rule: ``"improvement"``, ``"model"`` or ``"none"`` (no rule configured).
        reason: One sentence with the numbers.
        auto: Whether the orchestrator ends the run when ``done``.
        details: The figures (best values, noise, probabilities, ...).
    """

    done: bool
    rule: str
    reason: str
    auto: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "rule": self.rule,
            "reason": self.reason,
            "auto": self.auto,
            "details": self.details,
        }


def feasible_series(experiment: Experiment) -> list[tuple[float, float | None, bool]]:
    """``(objective mean, sem, feasible by raw value)`` of completed single-arm data, in
    trial order (each arm of a batch trial counts)."""
    config = experiment.config
    obj = config.objective.name
    absolute = [c for c in config.outcome_constraints if not c.relative]
    out = []
    for t in sorted(experiment.trials, key=lambda t: t.index):
        if t.state is not TrialState.COMPLETED:
            continue
        for a in t.arms:
            obs = t.observations.get(a.name, {})
            if obj not in obs:
                continue
            ok = all(c.metric in obs and c.is_satisfied(obs[c.metric].mean) for c in absolute)
            out.append((obs[obj].mean, obs[obj].sem, ok))
    return out


def improvement_rule(
    series: list[tuple[float, float | None, bool]],
    *,
    minimize: bool,
    window: int,
    min_trials: int,
    min_improvement: float | None = None,
    rel_tol: float = 0.01,
) -> StoppingDecision:
    """The improvement rule on a series of ``(value, sem, feasible)`` in trial order.

    ``best(k)`` is the best feasible value among the first ``k`` points. With ``n`` points the
    experiment is done when ``n >= max(min_trials, window + 1)`` and
    ``improvement = ±(best(n) - best(n - window)) <= noise`` (sign by direction).

    Example:
        >>> flat = [(1.0, 0.1, True)] * 8
        >>> improvement_rule(flat, minimize=False, window=3, min_trials=5).done
        True
    """
    n = len(series)
    need = max(min_trials, window + 1)
    if n < need:
        return StoppingDecision(
            False, "improvement", f"{n} completed trial(s); the rule needs {need}",
            details={"trials": n, "needed": need},
        )  # fmt: skip
    sign = -1.0 if minimize else 1.0

    def best(points: list[tuple[float, float | None, bool]]) -> float | None:
        vals = [sign * v for v, _, ok in points if ok]
        return sign * max(vals) if vals else None

    before, now = best(series[: n - window]), best(series)
    sems = [s for _, s, _ in series if s is not None]
    if min_improvement is not None:
        noise, source = min_improvement, "min_improvement"
    elif sems:
        noise, source = statistics.median(sems), "median SEM"
    else:
        values = [v for v, _, _ in series]
        noise, source = rel_tol * (max(values) - min(values)), "rel_tol x range"
    details: dict[str, Any] = {
        "trials": n, "window": window, "best_before": before, "best_now": now,
        "noise": noise, "noise_source": source,
    }  # fmt: skip
    if now is None:
        return StoppingDecision(
            False, "improvement", "no feasible trial yet: keep going", details=details
        )
    if before is None:
        details["improvement"] = None
        return StoppingDecision(
            False, "improvement",
            f"the first feasible value came within the last {window} trials: keep going",
            details=details,
        )  # fmt: skip
    improvement = sign * (now - before)
    details["improvement"] = improvement
    done = improvement <= noise
    verb = "has not improved" if done else "improved"
    return StoppingDecision(
        done, "improvement",
        f"the best feasible value {verb} by more than the noise over the last {window} trials: "
        f"{before:.4g} -> {now:.4g} (improvement {improvement:.3g} "
        f"{'<=' if done else '>'} {source} {noise:.3g})",
        details=details,
    )  # fmt: skip


def model_rule(
    experiment: Experiment,
    *,
    margin: float,
    threshold: float,
    min_trials: int,
    n_points: int = 512,
) -> StoppingDecision:
    """The model rule (see the module docstring).

    Args:
        experiment: The experiment with its completed trials.
        margin: The improvement over the recommended arm that counts (objective units, or
            % points when the model relativizes against a control).
        threshold: Done when the largest probability is below this.
        min_trials: Completed trials needed first.
        n_points: Size of the Sobol sample the maximum is taken over.
    """
    n = len(feasible_series(experiment))
    if n < min_trials:
        return StoppingDecision(
            False, "model", f"{n} completed trial(s); the rule needs {min_trials}",
            details={"trials": n, "needed": min_trials},
        )  # fmt: skip
    config = experiment.config
    obj = config.objective
    outcomes = modelled_outcomes(
        experiment, relativize=bool(config.generator_settings.get("relativize", True))
    )
    fitted = fit_experiment_model(experiment, outcomes=outcomes)
    if fitted is None:
        return StoppingDecision(
            False, "model", "too little data for a model: keep going", details={"trials": n}
        )
    try:
        best = best_arm(experiment, fitted=fitted)
    except NotFoundError:
        return StoppingDecision(False, "model", "no observation yet", details={"trials": n})
    incumbent = best.estimates[obj.name].mean
    space = experiment.search_space
    points, _ = space.sobol(n_points, seed=config.seed or 0, skip=0)
    observed = [a.parameters for t in experiment.trials for a in t.arms
                if space.is_encodable(a.parameters)]  # fmt: skip
    X = space.encode_many(points + observed).to(DTYPE)
    mean, var = fitted.predict(X)
    i = fitted.output_index(obj.name)
    sign = -1.0 if obj.minimize else 1.0
    sd = var[:, i].clamp_min(1e-18).sqrt()
    z = (sign * (mean[:, i] - incumbent) - margin) / sd
    p_improve = torch.special.ndtr(z)
    p_feas = probability_feasible(config, fitted, X, outcomes.constraints)
    score = p_improve * p_feas
    k = int(score.argmax())
    p_max = float(score[k])
    done = p_max < threshold
    where = points[k] if k < len(points) else observed[k - len(points)]
    return StoppingDecision(
        done, "model",
        f"max P(improving on the recommended arm {best.arm_name} "
        f"({obj.name} = {incumbent:.4g}) by {margin:g}) = {p_max:.3g} "
        f"{'<' if done else '>='} threshold {threshold:g}",
        details={
            "trials": n, "recommended_arm": best.arm_name, "incumbent": incumbent,
            "margin": margin, "threshold": threshold, "max_probability": p_max,
            "argmax_parameters": where, "points": int(X.shape[0]),
            "relative": outcomes.relative,
        },
    )  # fmt: skip


def experiment_stopping(experiment: Experiment) -> StoppingDecision:
    """Apply the experiment's ``stopping`` rule (``rule="none"`` when it has none: the
    improvement rule with its defaults is then reported as advice, never as ``done``)."""
    rule = experiment.config.stopping
    if rule is None:
        advice = experiment_stopping_by(experiment, StoppingRuleConfig("improvement"))
        return StoppingDecision(
            False, "none",
            f"no stopping rule configured; the improvement rule (defaults) says: {advice.reason}",
            details={"advice": advice.to_dict()},
        )  # fmt: skip
    return experiment_stopping_by(experiment, rule)


def experiment_stopping_by(experiment: Experiment, rule: StoppingRuleConfig) -> StoppingDecision:
    """Apply one rule to the experiment."""
    if rule.rule == "improvement":
        d = improvement_rule(
            feasible_series(experiment), minimize=experiment.config.objective.minimize,
            window=rule.window, min_trials=rule.min_trials,
            min_improvement=rule.min_improvement, rel_tol=rule.rel_tol,
        )  # fmt: skip
    else:
        d = model_rule(
            experiment, margin=rule.margin, threshold=rule.threshold, min_trials=rule.min_trials
        )
    d.auto = rule.auto
    return d
