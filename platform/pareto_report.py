"""The Pareto front of an experiment with several objectives, and its hypervolume trace.

Like :func:`assay.platform.analysis.best_arm`, the front is chosen by the *model* among the
observed arms: the arms feasible with posterior probability at least ``min_p_feasible`` whose
posterior means are not dominated by another such arm's (with noise, the raw observed front is
biased outwards by the luckiest draws; the posterior means shrink them). Beside it:

* per arm, the posterior mean and 95% credible interval of each objective and constrained
  metric, ``P(feasible)``, and ``P(on the front)``: the share of joint posterior samples (of
  every output at every observed arm) in which the arm is feasible and not dominated by another
  feasible arm;
* the raw observed front: non-dominated observed means among arms whose observed means satisfy
  every outcome constraint;
* the hypervolume of both fronts against the reference point (thresholds, inferred where
  omitted: :mod:`assay.platform.pareto`), and its trace per completed trial (the fronts of the
  arms observed up to that trial, scored by the same final model and reference point) so
  progress is visible.

In an experiment with a control arm run in batches, the model and the observed values are %
effects against the control (:mod:`assay.platform.relative`); ``relative`` says so.

Owns: :class:`ParetoArm`, :class:`HypervolumePoint`, :class:`ParetoReport`,
:func:`pareto_report` and :func:`best_of_front` (``best`` with several objectives).

May import: torch and :mod:`assay.platform` (analysis, generators, models, pareto, relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from assay.platform.analysis import (
    Z95,
    BestArm,
    MetricEstimate,
    best_arm,
    fit_experiment_model,
)
from assay.platform.errors import NotFoundError, ValidationError
from assay.platform.experiment import Experiment
from assay.platform.generators.ehvi import reference_point
from assay.platform.generators.noisy_ei import probability_feasible
from assay.platform.models import FittedModel
from assay.platform.pareto import hypervolume, infer_reference_point, is_non_dominated
from assay.platform.relative import model_thresholds, modelled_outcomes
from assay.platform.space import DTYPE

#: Joint posterior samples behind ``P(on the front)``.
P_FRONT_SAMPLES = 256


@dataclass
class ParetoArm:
    """One observed arm of a multi-objective experiment.

    Args:
        estimates: ``{metric: MetricEstimate}`` for objectives and constrained metrics
            (posterior, or observed means when there is no model yet).
        observed: The arm's observed mean per modelled metric (model units).
        probability_front: ``P(feasible and on the front)`` (``None`` without a model).
        probability_feasible: ``P(every outcome constraint holds)`` (``None`` without a model).
        on_front: On the model's front.
        on_observed_front: On the raw observed front.
        observed_feasible: Its observed means satisfy every outcome constraint.
    """

    arm_name: str
    parameters: dict[str, Any]
    trial_ids: list[int]
    estimates: dict[str, MetricEstimate]
    observed: dict[str, float]
    probability_front: float | None
    probability_feasible: float | None
    on_front: bool
    on_observed_front: bool
    observed_feasible: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm_name": self.arm_name,
            "parameters": self.parameters,
            "trial_ids": self.trial_ids,
            "estimates": {m: e.to_dict() for m, e in self.estimates.items()},
            "observed": self.observed,
            "probability_front": self.probability_front,
            "probability_feasible": self.probability_feasible,
            "on_front": self.on_front,
            "on_observed_front": self.on_observed_front,
            "observed_feasible": self.observed_feasible,
        }


@dataclass
class HypervolumePoint:
    """The hypervolume after a completed trial: of the observed front and of the model's."""

    trial_id: int
    trial_index: int
    observed: float
    model: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "trial_index": self.trial_index,
            "observed": self.observed,
            "model": self.model,
        }


@dataclass
class ParetoReport:
    """The model's front among the observed arms, the observed front, hypervolumes, trace.

    Args:
        objectives: ``[{name, minimize, threshold, relative}]`` as configured.
        reference_point: ``{objective: {"value", "inferred"}}`` in the model's units.
        arms: Every observed arm (on the front first).
        front: Names of the arms on the model's front (observed front without a model).
        observed_front: Names of the arms on the raw observed front.
        hypervolume: Of the model's front (posterior means), ``None`` without a model.
        observed_hypervolume: Of the observed front.
        trace: Per completed trial, in order.
    """

    experiment_id: int
    objectives: list[dict[str, Any]]
    reference_point: dict[str, dict[str, Any]]
    model_based: bool
    relative: bool
    arms: list[ParetoArm]
    front: list[str]
    observed_front: list[str]
    hypervolume: float | None
    observed_hypervolume: float
    trace: list[HypervolumePoint]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "objectives": self.objectives,
            "reference_point": self.reference_point,
            "model_based": self.model_based,
            "relative": self.relative,
            "arms": [a.to_dict() for a in self.arms],
            "front": self.front,
            "observed_front": self.observed_front,
            "hypervolume": self.hypervolume,
            "observed_hypervolume": self.observed_hypervolume,
            "trace": [p.to_dict() for p in self.trace],
            "notes": self.notes,
        }

    def _repr_html_(self) -> str:
        from assay.platform.html import pareto_html

        return pareto_html(self)


def _front_probability(
    fitted: FittedModel, X: torch.Tensor, signs: torch.Tensor, idx: list[int], constraints: list
) -> tuple[torch.Tensor, torch.Tensor]:
    """``P(feasible and non-dominated among feasible)`` per arm from joint samples."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        Y = fitted.model.posterior(X.to(DTYPE)).rsample(torch.Size([P_FRONT_SAMPLES]))
    feasible = torch.ones(Y.shape[:-1], dtype=torch.bool)
    for oc in constraints:
        if oc.metric not in fitted.metrics:
            continue
        y = Y[..., fitted.output_index(oc.metric)]
        feasible &= y <= oc.bound if oc.op == "<=" else y >= oc.bound
    F = Y[..., idx] * signs
    floor = F.min() - 1.0 - F.abs().max()
    F = torch.where(feasible.unsqueeze(-1), F, floor)
    nd = is_non_dominated(F) & feasible
    return nd.to(DTYPE).mean(0), feasible.to(DTYPE).mean(0)


def pareto_report(
    experiment: Experiment,
    *,
    min_p_feasible: float = 0.9,
    fitted: FittedModel | None = None,
) -> ParetoReport:
    """The Pareto front of a multi-objective experiment (see the module docstring).

    Raises:
        ValidationError: the experiment has one objective (use ``best``), naming
            ``objectives``.
        NotFoundError: no arm has observations of every objective yet.
    """
    config = experiment.config
    if not config.is_multi_objective:
        raise ValidationError(
            f"experiment {experiment.id} has one objective: its result is the best arm "
            "(GET /experiments/{id}/best), not a Pareto front",
            field="objectives",
        )
    outcomes = modelled_outcomes(
        experiment, relativize=bool(config.generator_settings.get("relativize", True))
    )
    notes = list(outcomes.notes)
    data = outcomes.data
    objs = config.objectives
    names_obj = [o.name for o in objs]
    # observed means per arm in model units
    sums: dict[str, dict[str, list[float]]] = {}
    for m, d in data.items():
        for arm_name, y in zip(d.arm_names, d.Y.squeeze(-1).tolist(), strict=True):
            sums.setdefault(arm_name, {}).setdefault(m, []).append(y)
    observed = {a: {m: sum(v) / len(v) for m, v in ms.items()} for a, ms in sums.items()}
    arms_by_name = experiment.arms_by_name()
    trials_of: dict[str, list[int]] = {}
    first_trial: dict[str, tuple[int, int]] = {}
    for t, arm, _ in experiment.observed():
        trials_of.setdefault(arm.name, []).append(t.id)
        first_trial.setdefault(arm.name, (t.index, t.id))
    names = [a for a in observed if all(m in observed[a] for m in names_obj) and a in trials_of]
    if not names:
        raise NotFoundError(
            f"experiment {experiment.id} has no arm with observations of every objective yet",
            details={"experiment_id": experiment.id},
        )
    signs = torch.tensor([o.sign for o in objs], dtype=DTYPE)

    def obs_feasible(a: str) -> bool:
        for oc in outcomes.constraints:
            v = observed[a].get(oc.metric)
            if v is None or not oc.is_satisfied(v):
                return False
        return True

    obs_Y = torch.tensor([[observed[a][m] for m in names_obj] for a in names], dtype=DTYPE)
    obs_Y = obs_Y * signs
    obs_ok = torch.tensor([obs_feasible(a) for a in names], dtype=torch.bool)

    def front_mask(Y: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(Y.shape[0], dtype=torch.bool)
        if bool(ok.any()):
            sub = torch.nonzero(ok).squeeze(-1)
            mask[sub[is_non_dominated(Y[sub])]] = True
        return mask

    obs_front = front_mask(obs_Y, obs_ok)
    thresholds = model_thresholds(experiment, outcomes.relative, notes)
    fitted = fitted or fit_experiment_model(experiment, outcomes=outcomes)
    space = experiment.search_space
    estimates: dict[str, dict[str, MetricEstimate]] = {}
    p_front = p_feas = None
    if fitted is not None and all(m in fitted.metrics for m in names_obj):
        X = space.encode_many([arms_by_name[a].parameters for a in names])
        mean, var = fitted.predict(X)
        idx = [fitted.output_index(m) for m in names_obj]
        model_Y = mean[:, idx] * signs
        pf = probability_feasible(config, fitted, X, outcomes.constraints)
        eligible = pf >= min_p_feasible
        if not bool(eligible.any()):
            eligible = pf == pf.max()
            notes.append(
                f"no arm is feasible with probability >= {min_p_feasible}; the front shows the "
                "arm most likely to be feasible"
            )
        model_front = front_mask(model_Y, eligible)
        ref, inferred = reference_point(config, fitted, X, thresholds, outcomes.constraints)
        pfr, _ = _front_probability(fitted, X, signs, idx, outcomes.constraints)
        p_front = [round(float(p), 4) for p in pfr]
        p_feas = [round(float(p), 4) for p in pf]
        for i, a in enumerate(names):
            estimates[a] = {}
            for m in fitted.metrics:
                j = fitted.output_index(m)
                mu, sd = float(mean[i, j]), math.sqrt(float(var[i, j]))
                estimates[a][m] = MetricEstimate(
                    mu, sd, mu - Z95 * sd, mu + Z95 * sd, observed[a].get(m)
                )
        model_hv: float | None = hypervolume(model_Y[model_front], ref)
        model_based = True
    else:
        if fitted is not None:
            notes.append("not every objective could be modelled yet; showing observed means")
        else:
            notes.append("too few observations for a model; showing observed means")
        model_Y, eligible, model_front = obs_Y, obs_ok, obs_front
        pool = obs_Y[obs_ok] if bool(obs_ok.any()) else obs_Y
        ref = infer_reference_point(pool[is_non_dominated(pool)])
        inferred = []
        for k, t in enumerate(thresholds):
            if t is not None:
                ref[k] = signs[k] * t
            inferred.append(t is None)
        for a in names:
            estimates[a] = {
                m: MetricEstimate(v, None, None, None, v) for m, v in observed[a].items()
            }
        model_hv = None
        model_based = False
    # hypervolume trace: fronts of the arms observed up to each completed trial
    trace: list[HypervolumePoint] = []
    order = sorted({first_trial[a] for a in names})
    for t_index, t_id in order:
        seen = torch.tensor([first_trial[a][0] <= t_index for a in names], dtype=torch.bool)
        o_hv = hypervolume(obs_Y[front_mask(obs_Y, obs_ok & seen)], ref)
        m_hv = (
            hypervolume(model_Y[front_mask(model_Y, eligible & seen)], ref) if model_based else None
        )
        trace.append(HypervolumePoint(t_id, t_index, o_hv, m_hv))
    arms = [
        ParetoArm(
            a, dict(arms_by_name[a].parameters), trials_of[a], estimates[a], observed[a],
            p_front[i] if p_front is not None else None,
            p_feas[i] if p_feas is not None else None,
            bool(model_front[i]), bool(obs_front[i]), bool(obs_ok[i]),
        )
        for i, a in enumerate(names)
    ]  # fmt: skip
    arms.sort(key=lambda r: (not r.on_front, -(r.probability_front or 0.0)))
    return ParetoReport(
        experiment.id,
        [o.to_dict() for o in objs],
        {
            o.name: {"value": float(o.sign * ref[k]), "inferred": inferred[k]}
            for k, o in enumerate(objs)
        },
        model_based,
        outcomes.relative,
        arms,
        [a for i, a in enumerate(names) if model_front[i]],
        [a for i, a in enumerate(names) if obs_front[i]],
        model_hv,
        hypervolume(obs_Y[obs_front], ref),
        trace,
        notes,
    )


def recommend(exp: Experiment) -> BestArm:
    """What ships: the model's best arm (:func:`~assay.platform.analysis.best_arm`) with one
    objective, the Pareto front (:func:`best_of_front`) with several."""
    return best_of_front(exp) if exp.config.is_multi_objective else best_arm(exp)


def best_of_front(
    experiment: Experiment, *, min_p_feasible: float = 0.9, fitted: FittedModel | None = None
) -> BestArm:
    """``best`` with several objectives: the model's Pareto front (:func:`pareto_report`),
    recommending the arm most likely on it (``front`` lists them all)."""
    report = pareto_report(experiment, min_p_feasible=min_p_feasible, fitted=fitted)
    on = [a for a in report.arms if a.on_front] or report.arms
    rec = max(on, key=lambda a: a.probability_front or 0.0)
    notes = [
        f"several objectives: the result is the Pareto front ({len(report.front)} arm(s), see "
        "front and GET /experiments/{id}/pareto); shown: the arm most likely on it",
        *report.notes,
    ]
    return BestArm(
        rec.arm_name, dict(rec.parameters), list(rec.trial_ids), dict(rec.estimates),
        rec.probability_feasible if rec.probability_feasible is not None else 1.0,
        rec.on_front, report.model_based, notes, report.relative,
        {a.arm_name: a.probability_front for a in report.arms if a.probability_front is not None},
        {}, list(report.front),
    )  # fmt: skip
