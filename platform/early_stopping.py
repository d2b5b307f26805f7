"""Early stopping of trials from their learning curves, and the experiment's "done?" rule settings.

A running trial reports its learning curve through ``assay.report(step=..., **metrics)``;
several metrics per step are first class. Given the trial's partial curve and the curves of
the experiment's other trials, :func:`decide` says whether to stop it, why, and with which
numbers. Three strategies (:class:`EarlyStoppingConfig`), each sparing the current top-k and
asking for ``patience`` consecutive bad checks:

* ``percentile`` — at the trial's latest step ``s``, compare its objective with the other
  trials' values at ``s`` (each curve's last report at or before ``s``, only curves that
  reached ``s``): stop when it is worse than the ``p``-th percentile of them (``p = 25``: the
  bottom quarter is stopped), the rule of Ax's ``PercentileEarlyStoppingStrategy`` and of
  Optuna's ``PercentilePruner`` / median rule (Golovin et al. 2017, *Google Vizier*, §3.2.2).
  With ``ramp_from`` the rule starts before ``min_curves`` reference curves exist, at a
  percentile that rises linearly to ``p`` (:func:`ramped_percentile`): Optuna's median rule
  runs its first ``n_startup_trials`` trials to the end, about half of its epochs on the
  benchmark's workloads; the ramp spends fewer of them at no loss in what it finds.
* ``threshold`` — stop when a metric is past a fixed bound at or after ``min_progression``.
* ``model`` — predict the trial's final objective with an interval from its partial curve and
  the finished curves (:func:`predict_final`: the affine curve-transfer ensemble of
  Chandrashekaran & Lane 2017, *Speeding up Hyper-parameter Optimization by Extrapolation of
  Learning Curves Using Previous Builds*, ECML-PKDD, fitted on the recent steps, its members
  weighted by a nearest-neighbour kernel on how close the curves are), and stop when the
  probability that it ends better than the best feasible final value is below ``alpha``.

With every strategy, an outcome constraint that is already **clearly violated** also stops
the trial (``constraints: true``, the default): the constraint metric's latest value is past
its bound by more than ``z`` times the curve's own noise (:func:`curve_noise`, a robust
estimate from successive differences), e.g. latency far over its bound.

Pure: no I/O. The service builds :class:`Curve` objects from stored reports.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from assay.platform.errors import ValidationError


class Objective(Protocol):
    """What the rules read of :class:`assay.platform.experiment.Objective` (a Protocol, so
    this module does not import the experiment module, which imports it)."""

    name: str
    minimize: bool


class OutcomeConstraint(Protocol):
    """What the rules read of :class:`assay.platform.experiment.OutcomeConstraint`."""

    metric: str
    op: str
    bound: float
    relative: bool

    @property
    def expression(self) -> str: ...


STRATEGIES = ("percentile", "threshold", "model")
CRITERIA = ("probability", "rate")
EXPERIMENT_RULES = ("improvement", "model")


def _num(
    spec: Mapping[str, Any],
    key: str,
    where: str,
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    open_lo: bool = False,
    open_hi: bool = False,
) -> Any:
    v = spec.get(key, default)
    if v is None:
        return None
    try:  # JSON integers may be too large for a float
        bad = isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
    except OverflowError:
        bad = True
    if integer and not bad and not float(v).is_integer():
        bad = True
    if not bad and lo is not None and (v <= lo if open_lo else v < lo):
        bad = True
    if not bad and hi is not None and (v >= hi if open_hi else v > hi):
        bad = True
    if bad:
        rng = f"{'(' if open_lo else '['}{lo if lo is not None else '-inf'}, " + (
            f"{hi if hi is not None else 'inf'}{')' if open_hi else ']'}"
        )
        kind = "an integer" if integer else "a number"
        raise ValidationError(
            f"{where}.{key} must be {kind} in {rng}, got {v!r}", field=f"{where}.{key}"
        )
    return int(v) if integer else float(v)


def _bool(spec: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    v = spec.get(key, default)
    if not isinstance(v, bool):
        raise ValidationError(f"{where}.{key} must be true or false", field=f"{where}.{key}")
    return v


def _check_keys(spec: Any, known: set[str], where: str) -> None:
    if not isinstance(spec, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    unknown = set(spec) - known
    if unknown:
        first = sorted(unknown)[0]
        raise ValidationError(
            f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}",
            field=f"{where}.{first}",
        )


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Trial-level early stopping settings (the experiment's ``early_stopping={...}``).

    Args:
        strategy: ``"percentile"``, ``"threshold"`` or ``"model"``.
        metric: The curve metric the strategy reads (default: the objective). For
            ``percentile`` and ``model`` it is compared in the objective's direction.
        percentile: ``percentile``: stop when worse than this percentile (0-100) of the other
            trials at the same step (50 = the median rule).
        min_progression: No decision before this step.
        min_curves: ``percentile``: other curves that reached the step; ``model``: finished
            curves needed before anything is stopped.
        top_k: Never stop a trial that ranks among the best ``top_k`` at its step (0: off).
        patience: Stop only after this many consecutive bad checks (reported steps).
        stop_when: ``threshold``: ``"below"`` or ``"above"`` the bound (default: the bad side
            of the objective; required for other metrics).
        bound: ``threshold``: the bound.
        constraints: Also stop on a clearly violated outcome constraint (see module doc).
        z: How many noise standard deviations past its bound counts as clearly violated.
        alpha: ``model``: stop when P(final better than the best feasible) < alpha.
        criterion: ``model``: ``"probability"`` (the rule above) or ``"rate"``: stop when the
            trial's expected improvement over the best feasible per epoch it still needs is
            below the rate at which the experiment's past trials have produced improvement
            per epoch spent (see :func:`improvement_rate`); ``alpha`` is then unused.
        reference: ``percentile``: the curves the line is taken over: ``"all"`` that reached
            the step, or ``"completed"`` ones only (Optuna's median rule: stopped trials leave
            the reference, so the line rises as the experiment goes on).
        compare: ``percentile``: the trial's ``"last"`` value at the step, or its ``"best"``
            so far (Optuna's median rule: one noisy dip does not stop a good trial).
        ramp_from: ``percentile``: start deciding once this many reference curves reached the
            step (at most ``min_curves``), at the lower percentile of
            :func:`ramped_percentile` until ``min_curves`` are there (``None``: wait for
            ``min_curves``, as Optuna's ``n_startup_trials``).

    Example:
        >>> EarlyStoppingConfig.parse({"strategy": "percentile", "percentile": 25}).percentile
        25.0
    """

    strategy: str
    metric: str | None = None
    percentile: float = 50.0
    min_progression: int = 0
    min_curves: int = 3
    top_k: int = 1
    patience: int = 1
    stop_when: str | None = None
    bound: float | None = None
    constraints: bool = True
    z: float = 3.0
    alpha: float = 0.05
    criterion: str = "probability"
    reference: str = "all"
    compare: str = "last"
    ramp_from: int | None = None

    KEYS = frozenset(
        {"strategy", "metric", "percentile", "min_progression", "min_curves", "top_k",
         "patience", "stop_when", "bound", "constraints", "z", "alpha", "criterion",
         "reference", "compare", "ramp_from"}
    )  # fmt: skip

    @classmethod
    def parse(
        cls,
        spec: Mapping[str, Any] | EarlyStoppingConfig,
        *,
        metrics: Sequence[str] | None = None,
        objective: str | None = None,
        where: str = "early_stopping",
    ) -> EarlyStoppingConfig:
        """Validate ``spec``; errors name the field (``early_stopping.<key>``).

        Args:
            spec: The JSON settings.
            metrics: The experiment's metric names (``metric`` must be one of them).
            objective: The objective's name (``threshold`` on another metric needs
                ``stop_when``).
        """
        if isinstance(spec, EarlyStoppingConfig):
            return spec
        _check_keys(spec, set(cls.KEYS), where)
        strategy = spec.get("strategy")
        if strategy not in STRATEGIES:
            raise ValidationError(
                f"{where}.strategy must be one of {list(STRATEGIES)}, got {strategy!r}",
                field=f"{where}.strategy",
            )
        metric = spec.get("metric")
        if metric is not None and (
            not isinstance(metric, str) or (metrics is not None and metric not in metrics)
        ):
            raise ValidationError(
                f"{where}.metric {metric!r} is not a metric of this experiment "
                f"({list(metrics or [])})",
                field=f"{where}.metric",
            )
        stop_when = spec.get("stop_when")
        if stop_when is not None and stop_when not in ("below", "above"):
            raise ValidationError(
                f"{where}.stop_when must be 'below' or 'above', got {stop_when!r}",
                field=f"{where}.stop_when",
            )
        bound = _num(spec, "bound", where, None)
        criterion = spec.get("criterion", "probability")
        if criterion not in CRITERIA:
            raise ValidationError(
                f"{where}.criterion must be one of {list(CRITERIA)}, got {criterion!r}",
                field=f"{where}.criterion",
            )
        for key, allowed in (("reference", ("all", "completed")), ("compare", ("last", "best"))):
            if spec.get(key, allowed[0]) not in allowed:
                raise ValidationError(
                    f"{where}.{key} must be one of {list(allowed)}, got {spec.get(key)!r}",
                    field=f"{where}.{key}",
                )
        if strategy == "threshold":
            if bound is None:
                raise ValidationError(
                    f"{where}.bound is required for the threshold strategy", field=f"{where}.bound"
                )
            if stop_when is None and metric is not None and metric != objective:
                raise ValidationError(
                    f"{where}.stop_when ('below' or 'above') is required for a threshold on "
                    f"{metric!r}, which is not the objective",
                    field=f"{where}.stop_when",
                )
        min_curves = _num(spec, "min_curves", where, 3, lo=1, hi=10_000, integer=True)
        ramp_from = _num(spec, "ramp_from", where, None, lo=1, hi=10_000, integer=True)
        if ramp_from is not None and strategy != "percentile":
            raise ValidationError(
                f"{where}.ramp_from applies to the percentile strategy only, not {strategy!r}",
                field=f"{where}.ramp_from",
            )
        if ramp_from is not None and ramp_from > min_curves:
            raise ValidationError(
                f"{where}.ramp_from must be at most min_curves ({min_curves}), got {ramp_from}",
                field=f"{where}.ramp_from",
            )
        compared = strategy in ("percentile", "model")
        if compared and metric is not None and objective is not None and metric != objective:
            raise ValidationError(
                f"{where}.metric: the {strategy} strategy compares the objective "
                f"{objective!r}; use the threshold strategy for {metric!r}",
                field=f"{where}.metric",
            )
        return cls(
            strategy=strategy,
            metric=metric,
            percentile=_num(spec, "percentile", where, 50.0, lo=0, hi=100, open_lo=True,
                            open_hi=True),
            min_progression=_num(spec, "min_progression", where, 0, lo=0, integer=True),
            min_curves=min_curves,
            top_k=_num(spec, "top_k", where, 1, lo=0, hi=10_000, integer=True),
            patience=_num(spec, "patience", where, 1, lo=1, hi=1000, integer=True),
            stop_when=stop_when,
            bound=bound,
            constraints=_bool(spec, "constraints", where, True),
            z=_num(spec, "z", where, 3.0, lo=0, hi=100, open_lo=True),
            alpha=_num(spec, "alpha", where, 0.05, lo=0, hi=1, open_lo=True, open_hi=True),
            criterion=criterion,
            reference=spec.get("reference", "all"),
            compare=spec.get("compare", "last"),
            ramp_from=ramp_from,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in sorted(self.KEYS)}


@dataclass(frozen=True)
class StoppingRuleConfig:
    """Experiment-level "is it done?" settings (the experiment's ``stopping={...}``).

    Args:
        rule: ``"improvement"`` (the best feasible value has not improved by more than the
            noise over the last ``window`` trials) or ``"model"`` (the largest posterior
            probability of improving on the recommended arm by ``margin`` is below
            ``threshold``). See :mod:`assay.platform.stopping`.
        window: ``improvement``: the last ``k`` completed trials.
        min_improvement: ``improvement``: the noise level (default: the median SEM of the
            objective's observations, else ``rel_tol`` of their range).
        rel_tol: ``improvement``: fallback noise level, relative to the observed range.
        margin: ``model``: improvement (objective units) that counts.
        threshold: ``model``: done when max P(improve by margin) is below this.
        min_trials: Completed trials needed before the experiment can be called done.
        auto: When true, the orchestrator ends a done run (status ``completed``).
    """

    rule: str
    window: int = 5
    min_improvement: float | None = None
    rel_tol: float = 0.01
    margin: float = 0.0
    threshold: float = 0.05
    min_trials: int = 5
    auto: bool = False

    KEYS = frozenset(
        {"rule", "window", "min_improvement", "rel_tol", "margin", "threshold", "min_trials",
         "auto"}
    )  # fmt: skip

    @classmethod
    def parse(
        cls, spec: Mapping[str, Any] | StoppingRuleConfig, *, where: str = "stopping"
    ) -> StoppingRuleConfig:
        if isinstance(spec, StoppingRuleConfig):
            return spec
        _check_keys(spec, set(cls.KEYS), where)
        rule = spec.get("rule")
        if rule not in EXPERIMENT_RULES:
            raise ValidationError(
                f"{where}.rule must be one of {list(EXPERIMENT_RULES)}, got {rule!r}",
                field=f"{where}.rule",
            )
        return cls(
            rule=rule,
            window=_num(spec, "window", where, 5, lo=1, hi=10_000, integer=True),
            min_improvement=_num(spec, "min_improvement", where, None, lo=0),
            rel_tol=_num(spec, "rel_tol", where, 0.01, lo=0, hi=1),
            margin=_num(spec, "margin", where, 0.0, lo=0),
            threshold=_num(spec, "threshold", where, 0.05, lo=0, hi=1, open_lo=True,
                           open_hi=True),
            min_trials=_num(spec, "min_trials", where, 5, lo=1, hi=100_000, integer=True),
            auto=_bool(spec, "auto", where, False),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in sorted(self.KEYS)}


# -- curves ----------------------------------------------------------------------------------
@dataclass
class Curve:
    """One trial's learning curve: ``{metric: [(step, value), ...]}`` sorted by step.

    Args:
        trial_id: The trial.
        points: Per metric, ``(step, value)`` pairs in increasing step (a repeated step keeps
            its last value).
        finished: Whether the trial completed (its curve is whole).
        final: The completed trial's final observations ``{metric: mean}`` (the values the
            optimizer saw), used instead of the curve's last point where present.
        state: The trial's state, for display.
    """

    trial_id: int
    points: dict[str, list[tuple[int, float]]]
    finished: bool = False
    final: dict[str, float] = field(default_factory=dict)
    state: str = "running"

    @classmethod
    def from_reports(
        cls,
        trial_id: int,
        reports: Iterable[tuple[int | None, Mapping[str, float]]],
        *,
        finished: bool = False,
        final: Mapping[str, float] | None = None,
        state: str = "running",
    ) -> Curve:
        """Build from reports in order; a report without a step gets the previous step + 1."""
        by_metric: dict[str, dict[int, float]] = {}
        last = -1
        for step, metrics in reports:
            s = last + 1 if step is None else int(step)
            last = max(last, s)
            for m, v in metrics.items():
                by_metric.setdefault(m, {})[s] = float(v)
        points = {m: sorted(d.items()) for m, d in by_metric.items()}
        return cls(trial_id, points, finished, dict(final or {}), state)

    def steps(self, metric: str) -> list[int]:
        return [s for s, _ in self.points.get(metric, [])]

    def last_step(self, metric: str) -> int | None:
        pts = self.points.get(metric)
        return pts[-1][0] if pts else None

    def value_at(self, metric: str, step: int) -> float | None:
        """The last value reported at or before ``step`` (``None`` before the first)."""
        out = None
        for s, v in self.points.get(metric, []):
            if s > step:
                break
            out = v
        return out

    def final_value(self, metric: str) -> float | None:
        """The final observation when present, else the last reported value."""
        if metric in self.final:
            return self.final[metric]
        pts = self.points.get(metric)
        return pts[-1][1] if pts else None

    def truncated(self, step: int) -> Curve:
        """The curve as it was at ``step`` (points after it dropped)."""
        pts = {m: [(s, v) for s, v in p if s <= step] for m, p in self.points.items()}
        return Curve(self.trial_id, pts, False, {}, self.state)


def curve_noise(values: Sequence[float], last: int = 10) -> float | None:
    """A robust estimate of a curve's observation noise from its last ``last`` points.

    Successive differences of a slowly varying curve are dominated by noise:
    ``d_i = y_i - y_{i-1}`` has standard deviation ``sqrt(2) sigma`` (von Neumann's
    mean-square successive difference, 1941), and taking the differences' deviations from
    their mean also removes a linear trend: ``sigma = sd(d) / sqrt(2)``. ``None`` with fewer
    than 3 points.

    Example:
        >>> round(curve_noise([1.0, 1.1, 1.0, 1.1, 1.0, 1.1]), 3)
        0.077
    """
    v = list(values)[-last:]
    if len(v) < 3:
        return None
    d = [b - a for a, b in itertools.pairwise(v)]
    return statistics.stdev(d) / math.sqrt(2.0)


# -- decisions -------------------------------------------------------------------------------
@dataclass
class StopDecision:
    """Whether to stop one trial now, and why.

    Args:
        trial_id: The trial.
        should_stop: The decision.
        strategy: Which rule decided (``"percentile"``, ``"threshold"``, ``"model"``,
            ``"constraint"``) or ``"none"`` when the experiment has no early stopping.
        reason: One sentence with the numbers.
        step: The step the decision was taken at.
        metric: The metric it read.
        value: The trial's value of ``metric`` at ``step``.
        threshold: The rule's line at ``step`` (percentile value, bound, or best feasible).
        details: Everything else (other curves' count, predicted final and interval, ...).
    """

    trial_id: int
    should_stop: bool
    strategy: str
    reason: str
    step: int | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "should_stop": self.should_stop,
            "strategy": self.strategy,
            "reason": self.reason,
            "step": self.step,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "details": self.details,
        }


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), ``q`` in [0, 1]."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def ramped_percentile(
    percentile: float, curves: int, min_curves: int, ramp_from: int | None
) -> float | None:
    """The percentile the ``percentile`` strategy applies with ``curves`` reference curves.

    Without a ramp it is ``p`` from ``min_curves`` (``m``) curves on, ``None`` (no decision)
    below. With ``ramp_from = r <= m`` the rule starts at ``r`` curves and the percentile rises
    linearly, ``p_n = p (n - r + 1) / (m - r + 1)`` for ``r <= n < m``, ``p`` from ``m`` on.

    Why a ramp and not a lower ``min_curves``: the line is an interpolated order statistic of
    the ``n`` reference values at the step. If the trial's value lies at quantile ``u`` of the
    population the reference curves come from, the number of them below it is ``Bin(n, u)``,
    so it is stopped below the ``k``-th lowest with probability ``P(Bin(n, u) < k)`` (David &
    Nagaraja 2003, *Order Statistics*, §2.1). The median with ``n = 3`` curves stops a
    median-quality trial (``u = 1/2``) half the time on three noisy values; the ramp with
    ``r = 3, m = 5, p = 50`` (``p_3 = 16.7``, ``p_4 = 33.3``, lines between the lowest and the
    second lowest, then at the second lowest of four) stops it with probability at most
    ``1/2`` and at least ``1/8`` at three curves and ``5/16`` at four, while a bottom-fifth
    trial (``u = 0.2``) is already stopped with probability at least ``0.51`` and ``0.82``:
    cheap trials are cut before the rule's reference is complete, good ones are spared as the
    median rule would spare them. Golovin et al. (2017, *Google Vizier*, §3.2.2) for the
    median rule; Optuna's ``MedianPruner`` waits ``n_startup_trials = 5``.

    Example:
        >>> [ramped_percentile(50, n, 5, 3) for n in (2, 3, 4, 5, 9)]
        [None, 16.666666666666668, 33.333333333333336, 50, 50]
    """
    if curves >= min_curves:
        return percentile
    if ramp_from is None or curves < ramp_from:
        return None
    return percentile * (curves - ramp_from + 1) / (min_curves - ramp_from + 1)


def _in_top_k(
    curve: Curve, others: Sequence[Curve], metric: str, step: int, sign: float, k: int
) -> tuple[bool, int]:
    """Whether ``curve`` ranks among the best ``k`` of all curves that reached ``step``."""
    mine = curve.value_at(metric, step)
    if mine is None or k <= 0:
        return False, 0
    better = 0
    for c in others:
        last = c.last_step(metric)
        v = c.value_at(metric, step)
        if last is not None and last >= step and v is not None and sign * v > sign * mine:
            better += 1
    return better < k, better + 1


def _check_steps(curve: Curve, metric: str, config: EarlyStoppingConfig) -> list[int]:
    """The trial's last ``patience`` reported steps at or after ``min_progression``
    (fewer when it has not reported that many yet)."""
    steps = [s for s in curve.steps(metric) if s >= config.min_progression]
    return steps[-config.patience :]


def _constraint_decision(
    config: EarlyStoppingConfig, curve: Curve, constraints: Sequence[OutcomeConstraint]
) -> StopDecision | None:
    """Stop on an outcome constraint already clearly violated: the constraint metric is past
    its bound by more than ``z`` noise SDs at each of the last ``patience`` checks."""
    for oc in constraints:
        if oc.relative or oc.metric not in curve.points:
            continue
        steps = _check_steps(curve, oc.metric, config)
        if len(steps) < config.patience or not steps:
            continue
        values = [v for _, v in curve.points[oc.metric]]
        sigma = curve_noise(values)
        if sigma is None:
            continue
        sign = 1.0 if oc.op == "<=" else -1.0  # excess = how far on the violating side
        excesses = [sign * (curve.value_at(oc.metric, s) - oc.bound) for s in steps]  # type: ignore[operator]
        margin = config.z * sigma
        if all(e > margin for e in excesses):
            v = curve.value_at(oc.metric, steps[-1])
            return StopDecision(
                curve.trial_id, True, "constraint",
                f"outcome constraint {oc.expression} is clearly violated: {oc.metric} = {v:.4g} "
                f"at step {steps[-1]}, past the bound by {excesses[-1]:.3g} > z*noise = "
                f"{config.z:g}*{sigma:.3g} for {len(steps)} consecutive check(s)",
                steps[-1], oc.metric, v, oc.bound,
                {"constraint": oc.expression, "noise_sd": sigma, "z": config.z,
                 "excess": excesses[-1], "checks": steps},
            )  # fmt: skip
    return None


def decide(
    config: EarlyStoppingConfig,
    objective: Objective,
    curve: Curve,
    others: Sequence[Curve],
    *,
    constraints: Sequence[OutcomeConstraint] = (),
    best_feasible: float | None = None,
) -> StopDecision:
    """Decide whether to stop the trial of ``curve`` now.

    Args:
        config: The experiment's early stopping settings.
        objective: The objective (its direction orients "worse").
        curve: The running trial's partial curve.
        others: The other trials' curves (running and finished).
        constraints: The experiment's outcome constraints (relative ones are skipped).
        best_feasible: ``model``: the best final objective value among completed feasible
            trials (``None``: nothing to beat yet, no decision).

    Returns:
        A :class:`StopDecision` (``should_stop=False`` with the reason when too early).

    Example:
        >>> cfg = EarlyStoppingConfig.parse({"strategy": "threshold", "bound": 0.5})
        >>> from assay.platform.experiment import Objective
        >>> c = Curve.from_reports(1, [(1, {"acc": 0.3}), (2, {"acc": 0.4})])
        >>> decide(cfg, Objective("acc"), c, []).should_stop
        True
    """
    others = [c for c in others if c.trial_id != curve.trial_id]
    if config.constraints:
        d = _constraint_decision(config, curve, constraints)
        if d is not None:
            return d
    metric = config.metric or objective.name
    sign = -1.0 if objective.minimize else 1.0
    steps = _check_steps(curve, metric, config)
    if not steps:
        last = curve.last_step(metric)
        where = f"step {last}" if last is not None else "no report of it yet"
        return StopDecision(
            curve.trial_id, False, config.strategy,
            f"too early: {metric} at {where}, min_progression is {config.min_progression}",
            last, metric, None, None,
        )  # fmt: skip
    if config.strategy == "threshold":
        return _decide_threshold(config, objective, curve, metric, steps)
    step = steps[-1]
    value = curve.value_at(metric, step)
    if config.top_k > 0:
        top, rank = _in_top_k(curve, others, metric, step, sign, config.top_k)
        if top:
            return StopDecision(
                curve.trial_id, False, config.strategy,
                f"spared: ranks {rank} at step {step}, within the top {config.top_k}",
                step, metric, value, None, {"rank": rank},
            )  # fmt: skip
    fn = _decide_percentile if config.strategy == "percentile" else _decide_model
    checks = [fn(config, objective, curve, others, metric, s, best_feasible) for s in steps]
    last_d = checks[-1]
    if len(steps) < config.patience:
        last_d.should_stop = False
        last_d.reason = f"{last_d.reason}; waiting for patience ({len(steps)}/{config.patience})"
    elif not all(c.should_stop for c in checks):
        bad = sum(c.should_stop for c in checks)
        last_d.should_stop = False
        if bad:
            last_d.reason = (
                f"{last_d.reason}; only {bad} of the last {config.patience} checks were bad"
            )
    last_d.details["checks"] = steps
    return last_d


def _decide_threshold(
    config: EarlyStoppingConfig,
    objective: Objective,
    curve: Curve,
    metric: str,
    steps: list[int],
) -> StopDecision:
    assert config.bound is not None
    when = config.stop_when or ("above" if objective.minimize else "below")
    values = [curve.value_at(metric, s) for s in steps]
    bad = [v is not None and (v < config.bound if when == "below" else v > config.bound)
           for v in values]  # fmt: skip
    value = values[-1]
    stop = len(steps) >= config.patience and all(bad)
    if stop:
        reason = (
            f"{metric} = {value:.4g} at step {steps[-1]} is {when} the bound {config.bound:g} "
            f"for {len(steps)} consecutive check(s)"
        )
    else:
        reason = (
            f"{metric} = {value:.4g} at step {steps[-1]}; stops when {when} {config.bound:g} "
            f"for {config.patience} consecutive check(s) ({sum(bad)} so far)"
        )
    return StopDecision(
        curve.trial_id, stop, "threshold", reason, steps[-1], metric, value, config.bound,
        {"stop_when": when, "checks": steps},
    )  # fmt: skip


def _decide_percentile(
    config: EarlyStoppingConfig,
    objective: Objective,
    curve: Curve,
    others: Sequence[Curve],
    metric: str,
    step: int,
    best_feasible: float | None,
) -> StopDecision:
    sign = -1.0 if objective.minimize else 1.0
    value = curve.value_at(metric, step)
    assert value is not None
    if config.compare == "best":  # the best value reported up to the step
        value = sign * max(sign * v for s, v in curve.points[metric] if s <= step)
    peers = [
        v
        for c in others
        if (config.reference == "all" or c.finished)
        and (ls := c.last_step(metric)) is not None
        and ls >= step
        and (v := c.value_at(metric, step)) is not None
    ]
    pct = ramped_percentile(config.percentile, len(peers), config.min_curves, config.ramp_from)
    if pct is None:
        need = config.min_curves if config.ramp_from is None else config.ramp_from
        return StopDecision(
            curve.trial_id, False, "percentile",
            f"only {len(peers)} other curve(s) reached step {step}; "
            f"{'min_curves' if config.ramp_from is None else 'ramp_from'} is {need}",
            step, metric, value, None, {"curves": len(peers)},
        )  # fmt: skip
    # In "goodness" units (higher is better) the bottom p% is below the p-th percentile.
    line = sign * _quantile([sign * v for v in peers], pct / 100.0)
    stop = sign * value < sign * line
    word = "worse" if stop else "not worse"
    ramp = (f" (ramped from {config.percentile:g}: {len(peers)} of min_curves "
            f"{config.min_curves})" if pct != config.percentile else "")  # fmt: skip
    return StopDecision(
        curve.trial_id, stop, "percentile",
        f"{metric}{' (best so far)' if config.compare == 'best' else ''} = {value:.4g} at step "
        f"{step} is {word} than the {pct:.3g}th percentile{ramp} {line:.4g} of "
        f"{len(peers)} other {'completed ' if config.reference == 'completed' else ''}trials "
        f"at that step",
        step, metric, value, line,
        {"curves": len(peers), "percentile": pct, "reference": config.reference,
         "compare": config.compare, "ramp_from": config.ramp_from},
    )  # fmt: skip


@dataclass
class FinalPrediction:
    """A predicted final value with its standard deviation and 95% interval."""

    mean: float
    sd: float
    members: int
    horizon: int

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - 1.96 * self.sd, self.mean + 1.96 * self.sd


def predict_final(
    curve: Curve,
    finished: Sequence[Curve],
    metric: str,
    *,
    window: int = 5,
    neighbours: int = 3,
) -> FinalPrediction | None:
    """Predict the final value of a partial curve from finished ones, with its uncertainty.

    An affine curve-transfer ensemble after Chandrashekaran & Lane (2017), with its members
    weighted by a nearest-neighbour kernel. Over the partial curve's last ``window`` reported
    steps ``t``, each finished curve ``f_j`` that reached them is mapped onto the partial
    curve ``y`` by least squares, ``y(t) ≈ a_j f_j(t) + b_j`` (a pure shift ``a_j = 1`` with
    fewer than 4 points; ``a_j`` clamped to ``[0.5, 2]``: a short window cannot identify a
    larger rescaling, and an unbounded one extrapolates far past any final ever seen), and
    predicts ``μ_j = a_j f_j(T) + b_j`` at its final value. A transfer is trusted when the
    two curves are *close*, not merely of the same shape: member weights are a Gaussian
    kernel on the mean squared distance between the raw curves over the window,
    ``w_j ∝ exp(-D_j / 2h²)``, ``D_j = mean_t (y(t) - f_j(t))²``, with the adaptive
    (k-nearest-neighbour) bandwidth ``h² = D_(k)``, the ``neighbours``-th smallest distance
    (Nadaraya 1964; Watson 1964; the bandwidth as in Loftsgaarden & Quesenberry 1965). The
    prediction is the mixture's mean; its variance is the mixture's: the members' spread
    plus, per member, the squared residual of its fit and the noise of its own final value
    (:func:`curve_noise` of ``f_j``): ``Var = Σ w_j [(μ_j - μ)² + mse_j + σ_j²]``.

    On the digits-MLP curves of ``benchmarks/early_stopping.py`` (tuning seeds 100-104), a
    trial stopped with ``P(final > best) < 0.05`` at steps 1-8 never went on to beat the
    best; the previous form (transfer fitted on the whole prefix with ``a_j`` up to 20,
    weights ``1/(mse_j + σ²)`` blind to level) predicted accuracies above 1 with intervals
    wider than the metric's range, and so stopped little.

    Args:
        curve: The partial curve.
        finished: Complete curves of the same experiment.
        metric: The metric to predict.
        window: Reported steps of the partial curve the transfer is fitted on.
        neighbours: ``k`` of the adaptive kernel bandwidth.

    Returns:
        The prediction, or ``None`` when no finished curve reached the partial one's last step.

    Example:
        >>> done = [Curve(j, {"m": [(1, v), (2, v + 0.1), (3, v + 0.2)]}, True)
        ...         for j, v in enumerate([0.1, 0.5, 0.9])]
        >>> p = predict_final(Curve(9, {"m": [(1, 0.52), (2, 0.62)]}), done, "m")
        >>> round(p.mean, 2)
        0.72
    """
    pts = curve.points.get(metric, [])
    if not pts:
        return None
    recent = pts[-window:]
    steps = [s for s, _ in recent]
    y = [v for _, v in recent]
    last = pts[-1][0]
    members: list[tuple[float, float, float, float]] = []  # (prediction, D, mse, final noise)
    horizon = last
    for f in finished:
        fin = f.final_value(metric)
        f_last = f.last_step(metric)
        if fin is None or f_last is None or f_last < last:
            continue
        pairs = [(x, v) for s, v in zip(steps, y, strict=True)
                 if (x := f.value_at(metric, s)) is not None]  # fmt: skip
        if not pairs:
            continue
        xs = [p[0] for p in pairs]
        ys = [p[1] for p in pairs]
        a = 1.0
        if len(pairs) >= 4:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            sxx = sum((u - mx) ** 2 for u in xs)
            if sxx > 1e-12:
                a = sum((u - mx) * (v - my) for u, v in pairs) / sxx
                a = min(max(a, 0.5), 2.0)
        b = statistics.fmean(v - a * u for u, v in pairs)
        mse = statistics.fmean((v - a * u - b) ** 2 for u, v in pairs)
        dist = statistics.fmean((v - u) ** 2 for u, v in pairs)
        noise = curve_noise([v for _, v in f.points[metric]]) or 0.0
        members.append((a * fin + b, dist, mse, noise))
        horizon = max(horizon, f_last)
    if not members:
        return None
    dists = sorted(m[1] for m in members)
    h2 = max(dists[min(neighbours, len(dists)) - 1], 1e-12)
    weights = [math.exp(-0.5 * m[1] / h2) for m in members]
    total = sum(weights)
    weights = [w / total for w in weights]
    mean = sum(w * m[0] for w, m in zip(weights, members, strict=True))
    var = sum(
        w * ((mu - mean) ** 2 + mse + noise**2)
        for w, (mu, _, mse, noise) in zip(weights, members, strict=True)
    )
    return FinalPrediction(mean, math.sqrt(max(var, 1e-18)), len(members), horizon)


#: What a model-based generator does with early-stopped trials (its ``early_stopped``
#: setting; see :func:`early_stopped_values`).
EarlyStoppedData = Literal["exclude", "last_value", "predicted"]
EARLY_STOPPED_DATA: tuple[str, ...] = get_args(EarlyStoppedData)


def early_stopped_values(
    curves: Sequence[Curve], metrics: Sequence[str], mode: str
) -> dict[int, dict[str, float]]:
    """The values an early-stopped trial contributes to the model, per metric:
    ``{trial_id: {metric: value}}`` for the early-stopped curves.

    ``mode`` (a model-based generator's ``early_stopped`` setting):

    - ``"exclude"``: nothing (only completed trials are data);
    - ``"last_value"``: the last value the trial reported. It is a measurement of the arm at
      a lower fidelity (fewer epochs), so it understates a curve that was still rising (Ax,
      too, fits early-stopped trials' data: their status expects data);
    - ``"predicted"``: the final value :func:`predict_final` extrapolates from the partial
      curve and the finished ones (the ``model`` strategy's curve-transfer ensemble), the
      last value where it cannot (no finished curve reached the stop step).

    Why stopped trials should be data at all: excluded, they leave the model blind where the
    rule found poor arms, and, since only arms with data count toward the initial design, an
    experiment that stops three trials in four stays in its quasi-random design about four
    times as long (``max(2d + 1, 5)`` *completed* trials), which is the whole budget of a
    short tuning run. Tree-structured Parzen estimators use stopped (pruned) trials for the
    same reason, ranked below the completed ones (Optuna's TPE; Bergstra et al. 2011).

    Example:
        >>> done = Curve(1, {"m": [(1, 0.5), (2, 0.7), (3, 0.8)]}, True, {"m": 0.8})
        >>> cut = Curve(2, {"m": [(1, 0.4)]}, False, {}, "early_stopped")
        >>> early_stopped_values([done, cut], ["m"], "last_value")
        {2: {'m': 0.4}}
        >>> round(early_stopped_values([done, cut], ["m"], "predicted")[2]["m"], 2)
        0.7
    """
    if mode not in EARLY_STOPPED_DATA:
        raise ValidationError(
            f"early_stopped must be one of {list(EARLY_STOPPED_DATA)}, got {mode!r}",
            field="early_stopped",
        )
    if mode == "exclude":
        return {}
    finished = [c for c in curves if c.finished]
    out: dict[int, dict[str, float]] = {}
    for c in curves:
        if c.finished or c.state != "early_stopped":
            continue
        vals: dict[str, float] = {}
        for m in metrics:
            last = c.last_step(m)
            if last is None:
                continue
            value = c.value_at(m, last)
            if value is None or not math.isfinite(value):
                continue
            if mode == "predicted":
                pred = predict_final(c, finished, m)  # skips curves without ``m``
                if pred is not None and math.isfinite(pred.mean):
                    value = pred.mean
            vals[m] = float(value)
        if vals:
            out[c.trial_id] = vals
    return out


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def expected_improvement(mean: float, sd: float, best: float, sign: float = 1.0) -> float:
    """``E[max(sign (Y - best), 0)]`` for ``Y ~ N(mean, sd²)``: ``sd (φ(z) + z Φ(z))`` with
    ``z = sign (mean - best) / sd`` (Jones, Schonlau & Welch 1998); the plain excess when
    ``sd`` is 0.

    Example:
        >>> round(expected_improvement(0.0, 1.0, 0.0), 4)  # φ(0)
        0.3989
    """
    if sd <= 1e-12:
        return max(sign * (mean - best), 0.0)
    z = sign * (mean - best) / sd
    return sd * (math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) + z * _normal_cdf(z))


def improvement_rate(
    others: Sequence[Curve], metric: str, best: float, sign: float = 1.0
) -> tuple[float, float, int]:
    """The expected improvement over ``best`` that the experiment's ended trials have yielded
    per step (epoch) spent on them: ``Σ_j EI_j / Σ_j c_j``.

    Over the trials that ended (finished or stopped; running ones have not yet paid their
    cost), ``c_j`` is the last step a trial reached (the epochs it consumed) and ``EI_j`` is
    :func:`expected_improvement` of a finished trial's final value, read as
    ``N(final_j, σ_j²)`` with ``σ_j`` its :func:`curve_noise` — the chance that its true value
    is above ``best`` given how noisy the curve is. A stopped trial yields nothing (it was
    stopped because it would not win) but its epochs count. The ratio estimates what the
    epochs a running trial still needs would buy if spent on new trials under the same
    policy instead: the cost-aware comparison of Freeze-Thaw BO (Swersky, Snoek & Adams 2014),
    in the "improvement per unit cost" form of Snoek, Larochelle & Adams (2012, EI per
    second), here with the rate of new trials estimated from the experiment's own history.

    Returns:
        ``(rate, epochs, trials)``; rate 0 when nothing has ended.
    """
    gain, cost, n = 0.0, 0.0, 0
    for c in others:
        last = c.last_step(metric)
        if last is None or (not c.finished and c.state == "running"):
            continue
        n += 1
        cost += max(last, 1)
        if c.finished:
            fin = c.final_value(metric)
            if fin is not None:
                noise = curve_noise([v for _, v in c.points[metric]]) or 0.0
                gain += expected_improvement(fin, noise, best, sign)
    return (gain / cost if cost > 0 else 0.0), cost, n


def _decide_model(
    config: EarlyStoppingConfig,
    objective: Objective,
    curve: Curve,
    others: Sequence[Curve],
    metric: str,
    step: int,
    best_feasible: float | None,
) -> StopDecision:
    sign = -1.0 if objective.minimize else 1.0
    partial = curve.truncated(step)
    value = partial.value_at(metric, step)
    finished = [c for c in others if c.finished and metric in c.points]
    if len(finished) < config.min_curves:
        return StopDecision(
            curve.trial_id, False, "model",
            f"only {len(finished)} finished curve(s); min_curves is {config.min_curves}",
            step, metric, value, best_feasible, {"curves": len(finished)},
        )  # fmt: skip
    if best_feasible is None:
        return StopDecision(
            curve.trial_id, False, "model", "no feasible completed trial to beat yet",
            step, metric, value, None, {"curves": len(finished)},
        )  # fmt: skip
    pred = predict_final(partial, finished, metric)
    if pred is None:
        return StopDecision(
            curve.trial_id, False, "model",
            f"no finished curve reached step {step}; cannot extrapolate",
            step, metric, value, best_feasible, {"curves": len(finished)},
        )  # fmt: skip
    p_better = 1.0 - _normal_cdf(sign * (best_feasible - pred.mean) / pred.sd)
    lo, hi = pred.interval
    if config.criterion == "rate":
        return _decide_rate(config, curve, others, metric, step, value, best_feasible, sign,
                            pred, p_better)  # fmt: skip
    stop = p_better < config.alpha
    word = "<" if stop else ">="
    return StopDecision(
        curve.trial_id, stop, "model",
        f"predicted final {metric} = {pred.mean:.4g} (95% interval {lo:.4g} to {hi:.4g}) at "
        f"step {step}: P(better than the best feasible {best_feasible:.4g}) = {p_better:.3g} "
        f"{word} alpha = {config.alpha:g}",
        step, metric, value, best_feasible,
        {"predicted_final": pred.mean, "predicted_sd": pred.sd, "interval": [lo, hi],
         "p_better": p_better, "alpha": config.alpha, "curves": pred.members,
         "horizon": pred.horizon},
    )  # fmt: skip


def _decide_rate(
    config: EarlyStoppingConfig,
    curve: Curve,
    others: Sequence[Curve],
    metric: str,
    step: int,
    value: float | None,
    best: float,
    sign: float,
    pred: FinalPrediction,
    p_better: float,
) -> StopDecision:
    """The ``rate`` criterion: stop when ``EI_i < (T - s) * rate``, the trial's expected
    improvement over the best feasible (from its predicted final, :func:`predict_final`) is
    below what its remaining ``T - s`` epochs would yield at the experiment's
    :func:`improvement_rate`; ``T`` is the finished curves' last step."""
    ei = expected_improvement(pred.mean, pred.sd, best, sign)
    rate, spent, ended = improvement_rate(others, metric, best, sign)
    remaining = pred.horizon - step
    lo, hi = pred.interval
    stop = remaining > 0 and ei < remaining * rate
    word = "<" if stop else ">="
    return StopDecision(
        curve.trial_id, stop, "model",
        f"predicted final {metric} = {pred.mean:.4g} (95% interval {lo:.4g} to {hi:.4g}) at "
        f"step {step}: expected improvement on the best feasible {best:.4g} = {ei:.3g} "
        f"{word} {remaining} remaining step(s) x {rate:.3g} per step (what {ended} ended "
        f"trials yielded over {spent:g} steps)",
        step, metric, value, best,
        {"predicted_final": pred.mean, "predicted_sd": pred.sd, "interval": [lo, hi],
         "p_better": p_better, "expected_improvement": ei, "rate": rate,
         "remaining": remaining, "criterion": "rate", "curves": pred.members,
         "horizon": pred.horizon},
    )  # fmt: skip


def rule_line(
    config: EarlyStoppingConfig, objective: Objective, curves: Sequence[Curve]
) -> list[tuple[int, float]]:
    """The rule's line per step, for charts: the percentile of all curves at each step that
    at least ``min_curves + 1`` curves reached (``percentile``; completed ones only with
    ``reference="completed"``; from ``ramp_from + 1`` curves on at the ramped percentile of
    :func:`ramped_percentile`), or the bound at and after
    ``min_progression`` (``threshold``); empty for ``model`` (its line is per trial)."""
    metric = config.metric or objective.name
    all_steps = sorted({s for c in curves for s in c.steps(metric)})
    if config.strategy == "threshold":
        assert config.bound is not None
        return [(s, config.bound) for s in all_steps if s >= config.min_progression]
    if config.strategy != "percentile":
        return []
    sign = -1.0 if objective.minimize else 1.0
    out = []
    for s in all_steps:
        if s < config.min_progression:
            continue
        vals = [
            v
            for c in curves
            if (config.reference == "all" or c.finished)
            and (ls := c.last_step(metric)) is not None
            and ls >= s
            and (v := c.value_at(metric, s)) is not None
        ]
        # A trial's own curve is among ``vals``: its line is over the others, one fewer.
        pct = ramped_percentile(config.percentile, len(vals) - 1, config.min_curves,
                                config.ramp_from)  # fmt: skip
        if pct is not None:
            line = sign * _quantile([sign * v for v in vals], pct / 100.0)
            out.append((s, line))
    return out
