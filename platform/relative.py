"""Effects relative to a control arm, and the data the models see in A/B-test experiments.

Online experiments (Letham et al. 2019, §5) deploy several arms at once next to a control (the
*status quo*) and report, per arm and metric, a mean and its standard error. Levels drift from
batch to batch (day of week, seasonality, novelty), so each arm is compared with the control
*of the same batch*: the relative effect

    r = (y_t - y_c) / |y_c|                     (x 100 for %)

cancels any multiplicative batch effect ``y -> s_b y`` exactly. Its standard error comes from
the delta method for a ratio of independent estimates (first-order Taylor expansion of
``y_t / y_c`` about the means)::

    Var(r) ~= sem_t^2 / y_c^2 + y_t^2 sem_c^2 / y_c^4

and, with ``bias_correction``, the second-order term of ``E[y_t / y_c] ~= mu_t / mu_c (1 +
sem_c^2 / mu_c^2)`` is removed: ``r <- r - y_t sem_c^2 / (y_c^2 |y_c|)``. Dividing by ``|y_c|``
keeps the direction of a metric whose control level is negative.

**Modelling choice.** When an experiment has a control arm observed in completed batches,
generation and recommendation model *relativized* data by default (``relativize=True`` in the
``noisy_ei`` generator settings): each arm's % effect against its own batch's control, with
the delta-method SEM as fixed observation noise; the control sits at 0 % (with a nominal
noise of 1% of the SEM it passes on to its batch's effects). Relative
outcome constraints (``"revenue >= -1%"``) then apply directly; absolute ones are converted to
% with the control's pooled level. Rows from batches without the control's data are left out
(they cannot be relativized) and a note says so. The control's own measurement error is
shared by every arm of its batch; the model treats it as independent per-arm noise (it is
part of each arm's delta-method variance), which is conservative but ignores the
correlation. With ``relativize=False`` the raw means are modelled and relative constraints
are converted to absolute bounds with the control's pooled level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.platform.experiment import Arm, Experiment, OutcomeConstraint, Trial
from assay.platform.models import MetricData, training_data

Z95 = 1.959963984540054


@dataclass(frozen=True)
class RelativeEffect:
    """A % effect against the control with its delta-method standard error.

    Args:
        effect: ``100 (y_t - y_c) / |y_c|`` (bias-corrected if asked).
        sem: Its standard error in % points, or ``None`` when either SEM is unknown.
    """

    effect: float
    sem: float | None

    @property
    def lower(self) -> float | None:
        return None if self.sem is None else self.effect - Z95 * self.sem

    @property
    def upper(self) -> float | None:
        return None if self.sem is None else self.effect + Z95 * self.sem

    @property
    def p_value(self) -> float | None:
        """Two-sided p-value of ``effect = 0`` under the normal approximation."""
        if self.sem is None:
            return None
        if self.sem == 0:
            return 0.0 if self.effect != 0 else 1.0
        return math.erfc(abs(self.effect / self.sem) / math.sqrt(2.0))


def relative_effect(
    mean: float,
    sem: float | None,
    control_mean: float,
    control_sem: float | None,
    *,
    bias_correction: bool = True,
) -> RelativeEffect:
    """The % effect of a treatment against a control, with its delta-method SEM.

    Raises:
        ZeroDivisionError: when the control mean is 0 (no relative effect is defined).
    """
    if control_mean == 0:
        raise ZeroDivisionError("the control's mean is 0: a relative effect is undefined")
    c, ac = control_mean, abs(control_mean)
    r = (mean - c) / ac
    if sem is None or control_sem is None:
        return RelativeEffect(100.0 * r, None)
    if bias_correction:
        r -= mean * control_sem**2 / (c * c * ac)
    var = sem**2 / c**2 + mean**2 * control_sem**2 / c**4
    return RelativeEffect(100.0 * r, 100.0 * math.sqrt(var))


def control_arm_names(experiment: Experiment) -> set[str]:
    """Names of the arms whose parameters equal the experiment's status quo."""
    sq = experiment.config.status_quo
    return {c.name for t in experiment.trials if (c := t.control_arm(sq)) is not None}


def control_levels(experiment: Experiment, metric: str) -> list[float]:
    """The control's observed means of ``metric``, one per completed trial that has it."""
    controls = control_arm_names(experiment)
    return [
        obs[metric].mean
        for _, arm, obs in experiment.observed()
        if arm.name in controls and metric in obs
    ]


def pooled_control_level(experiment: Experiment, metric: str) -> float | None:
    """The mean of the control's observed means of ``metric`` (``None`` if never observed)."""
    levels = control_levels(experiment, metric)
    return sum(levels) / len(levels) if levels else None


Row = tuple[Arm, float, "float | None", Trial]


def relativize_rows(
    experiment: Experiment,
    rows: dict[str, list[Row]],
    *,
    bias_correction: bool = True,
    notes: list[str] | None = None,
) -> dict[str, list[Row]]:
    """Replace each arm's ``(mean, sem)`` by its % effect against its trial's control.

    The control's own rows become ``(0, 0)``; rows of trials without the control's
    observation of that metric (or with a control mean of 0) are dropped and counted in
    ``notes``. A ``transform`` for :func:`assay.platform.models.training_data`.
    """
    controls = control_arm_names(experiment)
    out: dict[str, list[Row]] = {}
    for metric, rs in rows.items():
        control_of = {trial.id: (mean, sem) for arm, mean, sem, trial in rs if arm.name in controls}
        kept: list[Row] = []
        dropped = zero = 0
        for arm, mean, sem, trial in rs:
            c = control_of.get(trial.id)
            if c is None:
                dropped += 1
            elif arm.name in controls:
                kept.append((arm, 0.0, _control_sem(c, sem), trial))
            elif c[0] == 0:
                zero += 1
            else:
                eff = relative_effect(mean, sem, c[0], c[1], bias_correction=bias_correction)
                kept.append((arm, eff.effect, eff.sem, trial))
        if notes is not None and dropped:
            notes.append(
                f"{metric}: {dropped} observation(s) from trials without the control's data "
                "left out of the relative model"
            )
        if notes is not None and zero:
            notes.append(f"{metric}: {zero} observation(s) left out: the control's mean was 0")
        out[metric] = kept
    return out


def _control_sem(control: tuple[float, float | None], sem: float | None) -> float | None:
    """The noise of the control's own row (0 % by definition): a nominal 1% of the SEM
    its batch's effects inherit from it (``100 sem_c / |y_c|``), nearly pinning the model
    at the control without a degenerate zero noise."""
    if sem is None or control[0] == 0:
        return None
    return 0.01 * 100.0 * sem / abs(control[0])


@dataclass
class ModelledOutcomes:
    """What the surrogate models are fitted to, and the constraints in the same units.

    Args:
        data: Training data per modelled metric.
        constraints: The experiment's outcome constraints with bounds in model units (``%``
            vs. control when ``relative``); a constraint that cannot be expressed yet is
            left out and explained in ``notes``.
        relative: Whether ``data`` holds % effects against the control.
        notes: What was converted or left out, for logs and the UI.
    """

    data: dict[str, MetricData]
    constraints: list[OutcomeConstraint]
    relative: bool
    notes: list[str] = field(default_factory=list)
    #: The source constraint of each entry of ``constraints`` (same order).
    sources: list[OutcomeConstraint] = field(default_factory=list)

    def units(self, metric: str) -> str:
        return "% vs control" if self.relative else "absolute"


def _has_control_data(experiment: Experiment) -> bool:
    controls = control_arm_names(experiment)
    obj = experiment.config.objective.name
    for trial, arm, obs in experiment.observed():
        if arm.name in controls and obj in obs and trial.is_batch:
            return True
    return False


def uses_relative_model(experiment: Experiment, relativize: bool = True) -> bool:
    """Whether the models see % effects: asked for, a control set, and some batch trial
    observed the control's objective."""
    return bool(relativize and experiment.config.status_quo is not None) and _has_control_data(
        experiment
    )


def model_constraints(
    experiment: Experiment, relative: bool, notes: list[str] | None = None
) -> tuple[list[OutcomeConstraint], list[OutcomeConstraint]]:
    """The outcome constraints in model units, and their sources (same order).

    ``relative``: relative bounds stay, an absolute bound ``b`` becomes ``100 (b - c) / |c|``
    with the control's pooled level ``c``. Absolute model: a relative bound ``p %`` becomes
    ``c + |c| p / 100``. A constraint needing ``c`` before the control is observed (or when
    ``c = 0``) is left out with a note.
    """
    out, sources = [], []
    for oc in experiment.config.outcome_constraints:
        if oc.relative == relative:
            out.append(oc)
            sources.append(oc)
            continue
        c = pooled_control_level(experiment, oc.metric)
        if c is None or c == 0:
            if notes is not None:
                notes.append(
                    f"constraint {oc.expression!r} not enforced yet: the control's level of "
                    f"{oc.metric!r} is {'0' if c == 0 else 'not observed'}"
                )
            continue
        bound = 100.0 * (oc.bound - c) / abs(c) if relative else c + abs(c) * oc.bound / 100.0
        out.append(dataclasses.replace(oc, bound=bound, relative=relative))
        sources.append(oc)
    return out, sources


def modelled_outcomes(
    experiment: Experiment,
    metrics: Sequence[str] | None = None,
    *,
    relativize: bool = True,
    bias_correction: bool = True,
) -> ModelledOutcomes:
    """Training data and constraints for the experiment's models (see the module docstring)."""
    notes: list[str] = []
    relative = uses_relative_model(experiment, relativize)
    transform = None
    if relative:

        def transform(exp: Experiment, rows: dict[str, list[Row]]) -> dict[str, list[Row]]:
            return relativize_rows(exp, rows, bias_correction=bias_correction, notes=notes)

    data = training_data(experiment, metrics, transform=transform)
    constraints, sources = model_constraints(experiment, relative, notes)
    return ModelledOutcomes(data, constraints, relative, notes, sources)


def to_json(eff: RelativeEffect) -> dict[str, Any]:
    return {
        "effect": eff.effect,
        "sem": eff.sem,
        "lower": eff.lower,
        "upper": eff.upper,
        "p_value": eff.p_value,
    }


def model_thresholds(
    experiment: Experiment, relative: bool, notes: list[str] | None = None
) -> list[float | None]:
    """Each objective's threshold (reference-point coordinate) in model units, in the
    objectives' order, with the same conversion as :func:`model_constraints`: in a relative
    model an absolute threshold ``b`` becomes ``100 (b - c) / |c|``, in an absolute model a
    relative one ``p %`` becomes ``c + |c| p / 100``. ``None``: no threshold (or one that
    needs the control's level before it is observed); the reference point infers it."""
    out: list[float | None] = []
    for o in experiment.config.objectives:
        if o.threshold is None or o.relative == relative:
            out.append(o.threshold)
            continue
        c = pooled_control_level(experiment, o.name)
        if c is None or c == 0:
            if notes is not None:
                notes.append(
                    f"threshold {o.threshold_expression!r} inferred for now: the control's "
                    f"level of {o.name!r} is {'0' if c == 0 else 'not observed'}"
                )
            out.append(None)
            continue
        t = o.threshold
        out.append(100.0 * (t - c) / abs(c) if relative else c + abs(c) * t / 100.0)
    return out
