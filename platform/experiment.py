"""Experiment domain objects: objectives, outcome constraints, observations, arms, trials.

Pure Python, no I/O. Storage backends turn rows into these objects and back; the service
validates requests with them before anything is written, so a rejected request changes nothing.

Noisy observations are first class (Letham et al. 2019): an observation is a mean, its
standard error (``sem``; ``None`` when unknown, then the model infers the noise) and optionally
the number of units ``n`` it averages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from assay.platform.early_stopping import EarlyStoppingConfig, StoppingRuleConfig
from assay.platform.errors import (
    ConstraintParseError,
    InvalidTransitionError,
    ObservationError,
    ValidationError,
)
from assay.platform.jobspec import JobSpec
from assay.platform.space import SearchSpace

#: The generator of an experiment with several objectives when none is named.
DEFAULT_MULTI_OBJECTIVE_GENERATOR = "noisy_ehvi"

#: Generators that optimize exactly one objective, and why (the 422 says so).
SINGLE_OBJECTIVE_GENERATORS: dict[str, str] = {
    "noisy_ei": "expected improvement needs one incumbent value to improve on",
    "multi_step": "its lookahead tree values one objective's improvement, and a "
    "multi-step hypervolume lookahead is not implemented",
    "knowledge_gradient": "it values the model's best value of one objective",
}

_METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_metric_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _METRIC_RE.match(name):
        raise ValidationError(
            f"{where}: metric name {name!r} must start with a letter or '_' and contain only "
            "letters, digits and _ . : / -",
            field=where,
        )
    return name


_THRESHOLD_RE = re.compile(
    r"^\s*(?P<op><=|>=)?\s*(?P<bound>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class Objective:
    """A metric to maximize (default) or minimize, with an optional ``threshold``.

    In an experiment with several objectives the thresholds are the *reference point* of the
    hypervolume (Daulton et al. 2020, 2021): the worst value of the objective still worth
    having. A maximized objective's threshold is a lower bound (``">= 0.7"`` or ``0.7``), a
    minimized one's an upper bound (``"<= 50"`` or ``50``); ``relative`` thresholds (``"%"``)
    are % changes against the control arm (``status_quo``). A threshold that is omitted is
    inferred from the data, see :func:`assay.platform.pareto.infer_reference_point`.
    """

    name: str
    minimize: bool = False
    threshold: float | None = None
    relative: bool = False

    def __post_init__(self) -> None:
        check_metric_name(self.name, "objective")
        if self.threshold is not None and (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not math.isfinite(self.threshold)
        ):
            raise ValidationError(
                f"objective {self.name!r}: threshold must be a finite number",
                field="objective.threshold",
            )
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))
        if self.relative and self.threshold is None:
            raise ValidationError(
                f"objective {self.name!r}: relative needs a threshold (in % vs the control)",
                field="objective.relative",
            )

    @classmethod
    def parse(
        cls, spec: str | Mapping[str, Any] | Objective, where: str = "objective"
    ) -> Objective:
        """``"accuracy"`` (maximize), ``{"name": "loss", "minimize": true}``,
        ``{"name": "latency_ms", "minimize": true, "threshold": 50}``,
        ``{"name": "revenue", "threshold": ">= -1%"}`` or an Objective.

        Raises:
            ValidationError: naming ``<where>.<field>``; a threshold whose operator points the
                wrong way (``">="`` on a minimized objective, ``"<="`` on a maximized one) is
                rejected: it would put the reference point on the wrong side of the front.
        """
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, str):
            return cls(check_metric_name(spec, where))
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"name", "minimize", "threshold", "relative"}
            if unknown:
                raise ValidationError(
                    f"{where}: unknown field(s) {sorted(unknown)}", field=f"{where}.{min(unknown)}"
                )
            name = check_metric_name(spec.get("name"), f"{where}.name")
            minimize = spec.get("minimize", False)
            if not isinstance(minimize, bool):
                raise ValidationError(
                    f"{where}.minimize must be true or false", field=f"{where}.minimize"
                )
            relative = spec.get("relative", False)
            if not isinstance(relative, bool):
                raise ValidationError(
                    f"{where}.relative must be true or false", field=f"{where}.relative"
                )
            threshold = spec.get("threshold")
            if isinstance(threshold, str):
                m = _THRESHOLD_RE.match(threshold)
                if m is None:
                    raise ValidationError(
                        f"{where}.threshold: cannot parse {threshold!r}; write a number, "
                        "'>= number' (maximized) or '<= number' (minimized), with % for a "
                        "threshold relative to the control",
                        field=f"{where}.threshold",
                    )
                want = "<=" if minimize else ">="
                if m["op"] and m["op"] != want:
                    raise ValidationError(
                        f"{where}.threshold {threshold!r} has the wrong sign: {name!r} is "
                        f"{'minimized' if minimize else 'maximized'}, so its threshold is "
                        f"{'an upper' if minimize else 'a lower'} bound ('{want} ...')",
                        field=f"{where}.threshold",
                    )
                relative = relative or m["pct"] is not None
                threshold = float(m["bound"])
            elif threshold is not None and (
                isinstance(threshold, bool)
                or not isinstance(threshold, int | float)
                or not math.isfinite(threshold)
            ):
                raise ValidationError(
                    f"{where}.threshold must be a finite number, got {threshold!r}",
                    field=f"{where}.threshold",
                )
            if relative and threshold is None:
                raise ValidationError(
                    f"{where}.relative: a relative objective needs a threshold (% vs control)",
                    field=f"{where}.relative",
                )
            return cls(name, minimize, threshold, relative)
        raise ValidationError(
            f"{where}: expected a metric name or object, got {spec!r}", field=where
        )

    @property
    def sign(self) -> float:
        """``+1`` for a maximized objective, ``-1`` for a minimized one."""
        return -1.0 if self.minimize else 1.0

    @property
    def threshold_expression(self) -> str | None:
        if self.threshold is None:
            return None
        bound = f"{self.threshold:+g}%" if self.relative else f"{self.threshold:g}"
        return f"{self.name} {'<=' if self.minimize else '>='} {bound}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "minimize": self.minimize}
        if self.threshold is not None:
            d["threshold"] = self.threshold
            d["relative"] = self.relative
        return d


_OC_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.:/-]*)\s*(?P<op><=|>=)\s*"
    r"(?P<bound>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class OutcomeConstraint:
    """``metric <= bound`` or ``metric >= bound``; ``relative`` bounds are % vs. control.

    In a model a constraint becomes the callable ``c(Y) <= 0``: ``Y_m - bound`` for ``<=``
    and ``bound - Y_m`` for ``>=`` (BoTorch's convention for constrained acquisition).
    """

    metric: str
    op: str
    bound: float
    relative: bool = False

    def __post_init__(self) -> None:
        check_metric_name(self.metric, "outcome_constraints")
        if self.op not in ("<=", ">="):
            raise ConstraintParseError(
                f"outcome constraint operator must be <= or >=, not {self.op!r}"
            )
        if not math.isfinite(self.bound):
            raise ConstraintParseError("outcome constraint bound must be finite")

    @classmethod
    def parse(
        cls, spec: str | OutcomeConstraint, where: str = "outcome_constraints"
    ) -> OutcomeConstraint:
        """Parse ``"latency_ms <= 20"``, ``"ctr >= 0.01"`` or ``"revenue >= -1%"``."""
        if isinstance(spec, OutcomeConstraint):
            return spec
        if not isinstance(spec, str):
            raise ConstraintParseError(
                f"{where}: expected a string like 'latency_ms <= 20', got {spec!r}", field=where
            )
        m = _OC_RE.match(spec)
        if m is None:
            raise ConstraintParseError(
                f"{where}: cannot parse {spec!r}; write 'metric <= number' or 'metric >= number' "
                "(append % for a bound relative to the control arm)",
                field=where,
            )
        return cls(m["metric"], m["op"], float(m["bound"]), relative=m["pct"] is not None)

    def is_satisfied(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound

    @property
    def expression(self) -> str:
        bound = f"{self.bound:+g}%" if self.relative else f"{self.bound:g}"
        return f"{self.metric} {self.op} {bound}"

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class Observation:
    """One measured metric of one arm: ``mean``, standard error ``sem`` (``None`` = unknown)
    and the sample size ``n`` behind it (optional)."""

    metric: str
    mean: float
    sem: float | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        where = f"observations.{self.metric}"
        if not isinstance(self.mean, int | float) or isinstance(self.mean, bool):
            raise ObservationError(
                f"{where}: mean must be a number, got {self.mean!r}", field=where
            )
        if not math.isfinite(self.mean):
            raise ObservationError(f"{where}: mean must be finite, got {self.mean!r}", field=where)
        if self.sem is not None:
            if not isinstance(self.sem, int | float) or isinstance(self.sem, bool):
                raise ObservationError(
                    f"{where}: sem must be a number, got {self.sem!r}", field=where
                )
            if not math.isfinite(self.sem) or self.sem < 0:
                raise ObservationError(
                    f"{where}: sem must be finite and >= 0, got {self.sem!r}", field=where
                )
        if isinstance(self.n, float) and self.n.is_integer():
            object.__setattr__(self, "n", int(self.n))  # JSON lists arrive as floats
        if self.n is not None and (
            not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1
        ):
            raise ObservationError(
                f"{where}: n must be a positive integer, got {self.n!r}", field=where
            )
        object.__setattr__(self, "mean", float(self.mean))
        if self.sem is not None:
            object.__setattr__(self, "sem", float(self.sem))

    @classmethod
    def parse(cls, metric: str, value: Any) -> Observation:
        """Accept ``0.9``, ``(0.9, 0.01)``, ``(0.9, 0.01, 1000)``, ``(0.9, None)`` or
        ``{"mean": 0.9, "sem": 0.01, "n": 1000}``."""
        where = f"observations.{metric}"
        if isinstance(value, Observation):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"mean", "sem", "n"}
            if unknown or "mean" not in value:
                raise ObservationError(
                    f"{where}: expected {{mean, sem?, n?}}, got keys {sorted(value)}", field=where
                )
            return cls(metric, value["mean"], value.get("sem"), value.get("n"))
        if isinstance(value, list | tuple):
            if not 1 <= len(value) <= 3:
                raise ObservationError(
                    f"{where}: expected (mean, sem) or (mean, sem, n), got {value!r}", field=where
                )
            return cls(metric, *value)
        return cls(metric, value)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mean": self.mean, "sem": self.sem, "n": self.n}


class TrialState(StrEnum):
    CANDIDATE = "candidate"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    EARLY_STOPPED = "early_stopped"

    @property
    def is_terminal(self) -> bool:
        return self not in (TrialState.CANDIDATE, TrialState.RUNNING)

    @property
    def is_pending(self) -> bool:
        """Asked but not yet evaluated: passed to acquisition functions as ``X_pending``."""
        return not self.is_terminal


#: The trial life cycle: ``candidate -> running -> completed | failed | abandoned |
#: early_stopped``. A candidate may also be completed, failed or abandoned directly.
TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    TrialState.CANDIDATE: frozenset(
        {TrialState.RUNNING, TrialState.COMPLETED, TrialState.FAILED, TrialState.ABANDONED}
    ),
    TrialState.RUNNING: frozenset(
        {
            TrialState.COMPLETED,
            TrialState.FAILED,
            TrialState.ABANDONED,
            TrialState.EARLY_STOPPED,
        }
    ),
    TrialState.COMPLETED: frozenset(),
    TrialState.FAILED: frozenset(),
    TrialState.ABANDONED: frozenset(),
    TrialState.EARLY_STOPPED: frozenset(),
}


def check_transition(trial_id: Any, old: TrialState, new: TrialState) -> None:
    """Raise :class:`InvalidTransitionError` unless ``old -> new`` is allowed."""
    if new not in TRANSITIONS[old]:
        hint = " (it was already told)" if old is TrialState.COMPLETED else ""
        raise InvalidTransitionError(
            f"trial {trial_id} is {old.value}{hint}; it cannot become {new.value}",
            details={"trial_id": trial_id, "state": old.value, "requested": new.value},
        )


class ExperimentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILING = "failing"
    ARCHIVED = "archived"


#: The longest status reason kept (characters); a longer one is cut, ending in "…".
STATUS_REASON_MAX_CHARS = 2000
#: The largest figures kept with a status change (characters of their JSON).
STATUS_FIGURES_MAX_CHARS = 4000
_FIGURE_STR_MAX = 200


def _json_figure(value: Any, depth: int = 0) -> Any:
    """``value`` as small JSON: finite numbers, booleans, short strings, and (two levels of)
    lists and objects of them; non-finite numbers become ``None`` (PostgreSQL's JSONB and
    strict JSON have no NaN), anything else its short ``str``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:_FIGURE_STR_MAX]
    if depth < 2 and isinstance(value, Mapping):
        return {str(k)[:100]: _json_figure(v, depth + 1) for k, v in list(value.items())[:50]}
    if depth < 2 and isinstance(value, list | tuple):
        return [_json_figure(v, depth + 1) for v in list(value)[:50]]
    if hasattr(value, "__float__"):  # numpy / torch scalars
        return _json_figure(float(value), depth)
    return str(value)[:_FIGURE_STR_MAX]


def cap_figures(figures: Mapping[str, Any] | None) -> dict[str, Any]:
    """The figures made JSON-safe (:func:`_json_figure`) and at most
    :data:`STATUS_FIGURES_MAX_CHARS` characters of JSON: entries are dropped from the end
    until they fit, and ``"truncated": true`` says so.

    >>> cap_figures({"best": 0.5, "noise": float("nan")})
    {'best': 0.5, 'noise': None}
    >>> cap_figures({"x": "a" * 300})["x"] == "a" * 200
    True
    """
    out = {str(k)[:100]: _json_figure(v) for k, v in (figures or {}).items()}
    cut = False
    while out and len(json.dumps(out)) > STATUS_FIGURES_MAX_CHARS - len(', "truncated": true'):
        out.pop(next(reversed(out)))
        cut = True
    if cut:
        out["truncated"] = True
    return out


@dataclass(frozen=True)
class StatusReason:
    """Why the experiment has its status: the last status change, who made it, when and why.

    Written with every status change (a manual one with its optional reason, the
    orchestrator's ``failing`` verdict, an automatic stop). Kept small: the reason is cut at
    :data:`STATUS_REASON_MAX_CHARS`, the figures at :data:`STATUS_FIGURES_MAX_CHARS` (see
    :func:`cap_figures`).

    Args:
        status: The status it changed to.
        at: When (UTC).
        reason: One sentence, or ``None`` when none was given.
        actor: Who: an API key's actor, a worker id, ``None``.
        rule: What decided it: a stopping rule (``improvement``, ``model``), ``failing_trials``
            (the orchestrator's failure check), ``None`` for a person.
        figures: The decision's numbers (e.g. the stopping rule's best values and noise).
    """

    status: ExperimentStatus
    at: datetime = field(default_factory=utcnow)
    reason: str | None = None
    actor: str | None = None
    rule: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ExperimentStatus(self.status))
        reason = self.reason
        if reason is not None and len(reason) > STATUS_REASON_MAX_CHARS:
            reason = reason[: STATUS_REASON_MAX_CHARS - 1] + "…"
        object.__setattr__(self, "reason", reason or None)
        if self.actor is not None:
            object.__setattr__(self, "actor", str(self.actor)[:200])
        if self.rule is not None:
            object.__setattr__(self, "rule", str(self.rule)[:100])
        object.__setattr__(self, "figures", cap_figures(self.figures))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "rule": self.rule,
            "figures": dict(self.figures),
            "actor": self.actor,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StatusReason:
        """Read a stored or exported record (``at`` an ISO time; missing keys are ``None``).

        Raises:
            ValidationError: not an object, an unknown status or a bad time.
        """
        if not isinstance(d, Mapping):
            raise ValidationError("status_reason must be an object", field="status_reason")
        try:
            status = ExperimentStatus(d.get("status"))
        except ValueError:
            raise ValidationError(
                f"status_reason.status: unknown status {d.get('status')!r}",
                field="status_reason.status",
            ) from None
        at = d.get("at")
        try:
            when = datetime.fromisoformat(at) if isinstance(at, str) else utcnow()
        except ValueError:
            raise ValidationError(
                f"status_reason.at: not an ISO time: {at!r}", field="status_reason.at"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reason, figures = d.get("reason"), d.get("figures") or {}
        if reason is not None and not isinstance(reason, str):
            raise ValidationError("status_reason.reason must be a string", field="status_reason")
        if not isinstance(figures, Mapping):
            raise ValidationError("status_reason.figures must be an object", field="status_reason")
        return cls(
            status=status, at=when, reason=reason, actor=d.get("actor"), rule=d.get("rule"),
            figures=dict(figures),
        )  # fmt: skip


@dataclass
class Arm:
    """A named parameter assignment. Arms are per experiment and reused across trials."""

    name: str
    parameters: dict[str, Any]


@dataclass
class Trial:
    """One evaluation: usually one arm; a batch trial (A/B test) deploys several at once."""

    id: int
    experiment_id: int
    index: int
    arms: list[Arm]
    state: TrialState = TrialState.CANDIDATE
    generator: str = "manual"
    #: ``{arm_name: {metric: Observation}}`` (final observations).
    observations: dict[str, dict[str, Observation]] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    lease_expires_at: datetime | None = None
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def arm(self) -> Arm:
        return self.arms[0]

    def _repr_html_(self) -> str:
        from assay.platform.html import trial_html

        return trial_html(self)

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters of a single-arm trial."""
        return self.arms[0].parameters

    @property
    def values(self) -> dict[str, Observation]:
        """The observations of a single-arm trial, by metric."""
        return self.observations.get(self.arms[0].name, {})

    @property
    def is_batch(self) -> bool:
        """Whether the trial deploys several arms at once (one round of an A/B test)."""
        return len(self.arms) > 1

    def control_arm(self, status_quo: Mapping[str, Any] | None) -> Arm | None:
        """The trial's control arm: the arm whose parameters equal ``status_quo`` (the
        experiment's control, :attr:`ExperimentConfig.status_quo`), or ``None`` when there
        is no status quo or the trial does not deploy it.

        The one lookup of the control: effects, relative models, batch validation and the
        dashboard all find the control through it.

        Example:
            >>> t = Trial(1, 1, 0, [Arm("status_quo", {"x": 0.5}), Arm("0_1", {"x": 0.2})])
            >>> t.control_arm({"x": 0.5}).name
            'status_quo'
        """
        if status_quo is None:
            return None
        sig = SearchSpace.signature(status_quo)
        return next((a for a in self.arms if SearchSpace.signature(a.parameters) == sig), None)


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment, validated on construction.

    Args:
        name: Human name (unique per project in the service).
        search_space: The parameters and linear parameter constraints.
        objectives: One objective, or several (a multi-objective experiment: the generator
            then models all of them and the result is a Pareto front, see
            :mod:`assay.platform.pareto`).
        outcome_constraints: Constraints on other metrics, e.g. ``latency_ms <= 20``.
        tracking_metrics: Further metrics that may be reported but are not optimized.
        generator: ``"noisy_ei"`` (default with one objective), ``"noisy_ehvi"`` (default
            with several), ``"parego"``, ``"sobol"`` (more may be registered).
        generator_settings: Generator options (e.g. ``{"n_initial": 8}``).
        seed: Makes proposals reproducible for the same data.
        max_trials: Optional budget (generators may use it, e.g. to shorten lookahead).
        status_quo: Optional control arm parameters.
        job: Optional job spec: run each trial as a job (see :mod:`assay.platform.jobspec`).
        early_stopping: Optional trial-level early stopping from learning curves (see
            :mod:`assay.platform.early_stopping`).
        stopping: Optional experiment-level "done?" rule (see :mod:`assay.platform.stopping`).
        parameter_defaults: ``{parameter: value}`` for parameters added to a running
            experiment (:func:`assay.platform.evolve.apply_definition_changes`): arms made
            before the parameter existed are read with this value wherever the experiment's
            data is modelled or analysed (:meth:`fill_defaults`). Stored with the version.
    """

    name: str
    search_space: SearchSpace
    objectives: list[Objective]
    outcome_constraints: list[OutcomeConstraint] = field(default_factory=list)
    tracking_metrics: list[str] = field(default_factory=list)
    generator: str = "noisy_ei"
    generator_settings: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    max_trials: int | None = None
    status_quo: dict[str, Any] | None = None
    description: str = ""
    job: JobSpec | None = None
    early_stopping: EarlyStoppingConfig | None = None
    stopping: StoppingRuleConfig | None = None
    parameter_defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 200:
            raise ValidationError("name must be a non-empty string (<= 200 chars)", field="name")
        if not self.objectives:
            raise ValidationError("an experiment needs an objective", field="objective")
        names = [o.name for o in self.objectives]
        for i, o in enumerate(self.objectives):
            if o.name in names[:i]:
                raise ValidationError(
                    f"objectives[{i}]: {o.name!r} is already an objective (duplicate name)",
                    field=f"objectives[{i}].name",
                )
            if o.relative and self.status_quo is None:
                raise ValidationError(
                    f"objectives[{i}]: the threshold of {o.name!r} is relative (%): the "
                    "experiment needs a status_quo (control arm) to compare against",
                    field=f"objectives[{i}].threshold",
                )
        if len(self.objectives) > 1 and self.generator in SINGLE_OBJECTIVE_GENERATORS:
            raise ValidationError(
                f"generator {self.generator!r} optimizes one objective: "
                f"{SINGLE_OBJECTIVE_GENERATORS[self.generator]}; with several objectives use "
                "'noisy_ehvi' (the default), 'parego' or 'sobol'",
                field="generator",
            )
        for i, m in enumerate(self.tracking_metrics):
            check_metric_name(m, f"tracking_metrics[{i}]")
        for i, c in enumerate(self.outcome_constraints):
            if c.metric in names:
                raise ConstraintParseError(
                    f"outcome_constraints[{i}]: {c.metric!r} is an objective; it cannot also "
                    "be an outcome constraint (give the objective a threshold instead)",
                    field=f"outcome_constraints[{i}]",
                )
            if c.relative and self.status_quo is None:
                raise ConstraintParseError(
                    f"outcome_constraints[{i}] {c.expression!r} is relative (%): the experiment "
                    "needs a status_quo (control arm) to compare against",
                    field=f"outcome_constraints[{i}]",
                )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ValidationError("seed must be an integer", field="seed")
        if self.max_trials is not None and (
            not isinstance(self.max_trials, int) or self.max_trials < 1
        ):
            raise ValidationError("max_trials must be a positive integer", field="max_trials")
        if self.status_quo is not None:
            self.status_quo = self.search_space.validate(self.status_quo)
        if self.early_stopping is not None:
            self.early_stopping = EarlyStoppingConfig.parse(
                self.early_stopping, metrics=self.metric_names, objective=self.objective.name
            )
        if self.stopping is not None:
            self.stopping = StoppingRuleConfig.parse(self.stopping)
        if not isinstance(self.parameter_defaults, Mapping):
            raise ValidationError(
                "parameter_defaults must be an object", field="parameter_defaults"
            )
        defaults: dict[str, Any] = {}
        for name, value in self.parameter_defaults.items():
            if name not in self.search_space:
                raise ValidationError(
                    f"parameter_defaults: {name!r} is not a parameter",
                    field=f"parameter_defaults.{name}",
                )
            try:
                defaults[name] = self.search_space[name].validate(value)
            except ValidationError as e:
                raise ValidationError(
                    f"parameter_defaults.{name}: {e.message}", field=f"parameter_defaults.{name}"
                ) from None
        self.parameter_defaults = defaults
        self.search_space.defaults = dict(defaults)

    def fill_defaults(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with :attr:`parameter_defaults` for the parameters it lacks (an arm
        made before those parameters were added)."""
        missing = {k: v for k, v in self.parameter_defaults.items() if k not in params}
        return {**params, **missing} if missing else dict(params)

    @property
    def objective(self) -> Objective:
        """The first objective (the only one of a single-objective experiment)."""
        return self.objectives[0]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def trial_budget(self) -> int | None:
        """The trial budget: the job spec's ``max_trials`` when set, else ``max_trials``.

        The one definition the service (how many trials to ask for) and the generators
        (e.g. ``multi_step`` shortening its horizon near the end) share."""
        if self.job is not None and self.job.max_trials is not None:
            return self.job.max_trials
        return self.max_trials

    @property
    def metric_names(self) -> list[str]:
        """Objective first, then constrained, then tracking metrics (no duplicates)."""
        out: list[str] = []
        for m in (
            [o.name for o in self.objectives]
            + [c.metric for c in self.outcome_constraints]
            + list(self.tracking_metrics)
        ):
            if m not in out:
                out.append(m)
        return out

    @property
    def modelled_metrics(self) -> list[str]:
        """Objective then constrained metrics: the outcomes the generator models."""
        names = [o.name for o in self.objectives] + [c.metric for c in self.outcome_constraints]
        return list(dict.fromkeys(names))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Build from the JSON form the REST API and the client accept.

        Keys: ``name``, ``parameters``, ``parameter_constraints``, ``objective`` (or
        ``objectives``), ``outcome_constraints``, ``tracking_metrics``, ``generator``,
        ``generator_settings``, ``seed``, ``max_trials``, ``status_quo``, ``description``.
        """
        known = {
            "name", "parameters", "parameter_constraints", "objective", "objectives",
            "outcome_constraints", "tracking_metrics", "generator", "generator_settings",
            "seed", "max_trials", "status_quo", "description", "job", "early_stopping",
            "stopping", "parameter_defaults",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            raise ValidationError(
                f"unknown experiment field(s) {sorted(unknown)}", field=sorted(unknown)[0]
            )
        if "parameters" not in d:
            raise ValidationError("parameters are required", field="parameters")
        constraints = d.get("parameter_constraints") or []
        if not isinstance(constraints, Sequence) or isinstance(constraints, str):
            raise ValidationError(
                "parameter_constraints must be a list of strings", field="parameter_constraints"
            )
        space = SearchSpace(d["parameters"], constraints)
        if "objectives" in d and "objective" in d:
            raise ValidationError("give objective or objectives, not both", field="objectives")
        raw_obj = d.get("objectives", [d["objective"]] if "objective" in d else [])
        if not isinstance(raw_obj, list):
            raise ValidationError("objectives must be a list", field="objectives")
        objectives = [Objective.parse(o, f"objectives[{i}]") for i, o in enumerate(raw_obj)]
        raw_oc = d.get("outcome_constraints") or []
        if not isinstance(raw_oc, list):
            raise ValidationError("outcome_constraints must be a list", field="outcome_constraints")
        ocs = [
            OutcomeConstraint.parse(c, f"outcome_constraints[{i}]") for i, c in enumerate(raw_oc)
        ]
        tracking = d.get("tracking_metrics") or []
        if not isinstance(tracking, list):
            raise ValidationError("tracking_metrics must be a list", field="tracking_metrics")
        settings = d.get("generator_settings") or {}
        if not isinstance(settings, Mapping):
            raise ValidationError(
                "generator_settings must be an object", field="generator_settings"
            )
        generator = d.get("generator")
        if generator is None:  # the default depends on the number of objectives
            generator = DEFAULT_MULTI_OBJECTIVE_GENERATOR if len(objectives) > 1 else "noisy_ei"
        if not isinstance(generator, str):
            raise ValidationError("generator must be a string", field="generator")
        return cls(
            name=d.get("name", ""),
            search_space=space,
            objectives=objectives,
            outcome_constraints=ocs,
            tracking_metrics=list(tracking),
            generator=generator,
            generator_settings=dict(settings),
            seed=d.get("seed"),
            max_trials=d.get("max_trials"),
            status_quo=d.get("status_quo"),
            description=d.get("description", "") or "",
            job=JobSpec.from_dict(d["job"], space.names) if d.get("job") is not None else None,
            early_stopping=d.get("early_stopping"),
            stopping=d.get("stopping"),
            parameter_defaults=d.get("parameter_defaults") or {},
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            **self.search_space.to_dict(),
            "objectives": [o.to_dict() for o in self.objectives],
            "outcome_constraints": [c.expression for c in self.outcome_constraints],
            "tracking_metrics": list(self.tracking_metrics),
            "generator": self.generator,
            "generator_settings": dict(self.generator_settings),
            "seed": self.seed,
            "max_trials": self.max_trials,
            "status_quo": self.status_quo,
            "description": self.description,
            "job": self.job.to_dict() if self.job is not None else None,
            "early_stopping": (
                self.early_stopping.to_dict() if self.early_stopping is not None else None
            ),
            "stopping": self.stopping.to_dict() if self.stopping is not None else None,
        }
        if self.parameter_defaults:  # only experiments that gained a parameter carry it
            out["parameter_defaults"] = dict(self.parameter_defaults)
        return out

    def parse_observations(self, raw: Mapping[str, Any]) -> dict[str, Observation]:
        """Validate ``{metric: value}`` for one arm (see :meth:`Observation.parse`).

        Raises :class:`ObservationError` naming the metric for an unknown metric or bad value.
        """
        if not isinstance(raw, Mapping) or not raw:
            raise ObservationError(
                "observations must be a non-empty object {metric: value}", field="observations"
            )
        known = set(self.metric_names)
        out = {}
        for metric, value in raw.items():
            if metric not in known:
                raise ObservationError(
                    f"unknown metric {metric!r}; this experiment knows {sorted(known)} "
                    "(declare extra metrics as tracking_metrics)",
                    field=f"observations.{metric}",
                )
            out[metric] = Observation.parse(metric, value)
        return out

    def parse_trial_observations(
        self, trial: Trial, raw: Mapping[str, Any], *, batch: bool
    ) -> dict[str, dict[str, Observation]]:
        """Validate what completes ``trial``: ``{metric: value}`` for a single-arm trial
        (``batch=False``) or ``{arm_name: {metric: value}}`` (``batch=True``).

        A batch with the control arm is analysed against it, so the control must report every
        metric any other arm reports and, when the model relativizes (the ``relativize``
        generator setting, on by default), every modelled metric needs its SEM: the
        delta-method intervals of the % effects are built from them (Letham et al. 2019, §5).

        Returns:
            ``{arm_name: {metric: Observation}}``, ready to store.

        Raises:
            ObservationError: naming the field (``observations.<arm>.<metric>``) for a
                single-arm tell of a batch trial, an unknown arm or metric, a bad value, or a
                batch whose control data is missing.
        """
        if not batch:
            if len(trial.arms) != 1:
                raise ObservationError(
                    f"trial {trial.id} has {len(trial.arms)} arms; use tell_batch with "
                    "{arm_name: {metric: value}}",
                    field="observations",
                )
            return {trial.arms[0].name: self.parse_observations(raw)}
        if not isinstance(raw, Mapping) or not raw:
            raise ObservationError(
                "observations must be {arm_name: {metric: value}}", field="observations"
            )
        names = {a.name for a in trial.arms}
        out = {}
        for arm_name, obs in raw.items():
            if arm_name not in names:
                raise ObservationError(
                    f"trial {trial.id} has no arm {arm_name!r}; its arms are {sorted(names)}",
                    field=f"observations.{arm_name}",
                )
            try:
                out[arm_name] = self.parse_observations(obs)
            except ObservationError as e:  # name the arm too: observations.<arm>.<metric>
                field = (e.field or "observations").replace(
                    "observations", f"observations.{arm_name}", 1
                )
                raise ObservationError(f"arm {arm_name!r}: {e.message}", field=field) from e
        self._check_batch_against_control(trial, out)
        return out

    def _check_batch_against_control(
        self, trial: Trial, out: Mapping[str, Mapping[str, Observation]]
    ) -> None:
        """The control-arm rules of :meth:`parse_trial_observations`."""
        if not trial.is_batch:
            return
        arm = trial.control_arm(self.status_quo)
        if arm is None:
            return
        control = arm.name
        reported = {m for name, obs in out.items() if name != control for m in obs}
        have = set(out.get(control, {}))
        if reported and not have:
            raise ObservationError(
                f"batch trial {trial.id} lacks data for its control arm {control!r}: effects "
                "are measured against the control of the same batch",
                field=f"observations.{control}",
            )
        missing = sorted(reported - have)
        if missing:
            raise ObservationError(
                f"batch trial {trial.id}: the control arm {control!r} has no {missing[0]!r}, "
                "which other arms report",
                field=f"observations.{control}.{missing[0]}",
            )
        if not self.generator_settings.get("relativize", True):
            return
        modelled = set(self.modelled_metrics)
        for name, obs in out.items():
            for m, o in obs.items():
                if m in modelled and o.sem is None:
                    raise ObservationError(
                        f"batch trial {trial.id}: {name!r} reports {m!r} without a standard "
                        "error; relative effects against the control need (mean, sem[, n])",
                        field=f"observations.{name}.{m}.sem",
                    )


@dataclass
class Experiment:
    """An experiment and its trials (a snapshot; storage owns persistence)."""

    id: int
    config: ExperimentConfig
    trials: list[Trial] = field(default_factory=list)
    status: ExperimentStatus = ExperimentStatus.ACTIVE
    project: str = "default"
    #: Generator-private JSON state (e.g. Sobol position, a warm-start tree).
    generator_state: dict[str, Any] = field(default_factory=dict)
    #: Fitted model hyperparameters per metric, JSON (for warm starts).
    model_state: dict[str, Any] = field(default_factory=dict)
    #: Job orchestration state: ``None`` (not run as jobs), ``running``, ``paused``,
    #: ``stopped`` or ``done``.
    run_state: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    #: Why it has its status (the last change: reason, rule, figures, actor, time); ``None``
    #: for an experiment whose status never changed (or one stored before reasons were kept).
    status_reason: StatusReason | None = None
    #: A generation view only (:meth:`with_early_stopped_data`): early-stopped trials that
    #: carry observations count as observed. Never stored.
    early_stopped_observed: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    def _repr_html_(self) -> str:
        from assay.platform.html import experiment_html

        return experiment_html(self)

    @property
    def search_space(self) -> SearchSpace:
        return self.config.search_space

    def _filled(self, arm: Arm) -> Arm:
        """``arm`` read under the current definition (defaults of added parameters)."""
        if not self.config.parameter_defaults:
            return arm
        return Arm(arm.name, self.config.fill_defaults(arm.parameters))

    def arms_by_name(self) -> dict[str, Arm]:
        """Every arm, with the defaults of parameters added after it was made."""
        return {a.name: self._filled(a) for t in self.trials for a in t.arms}

    def remaining_budget(self) -> int | None:
        """Trials the budget (:attr:`ExperimentConfig.trial_budget`) still allows: failed and
        abandoned trials do not count against it (``None``: no budget)."""
        budget = self.config.trial_budget
        if budget is None:
            return None
        used = sum(
            1 for t in self.trials if t.state not in (TrialState.FAILED, TrialState.ABANDONED)
        )
        return max(0, budget - used)

    def name_arms(
        self, index: int, assignments: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Name the arms of a new trial number ``index``: an assignment equal to an existing
        arm reuses that arm's name (arms are stable across trials, the control is
        ``"status_quo"``); new ones are ``"{index}_{k}"``.

        Returns:
            ``[(arm_name, parameters)]`` in the order of ``assignments``.
        """
        by_sig = {SearchSpace.signature(a.parameters): a.name for t in self.trials for a in t.arms}
        if self.config.status_quo is not None:
            by_sig.setdefault(SearchSpace.signature(self.config.status_quo), "status_quo")
        out = []
        for k, params in enumerate(assignments):
            sig = SearchSpace.signature(params)
            name = by_sig.get(sig) or f"{index}_{k}"
            by_sig[sig] = name
            out.append((name, dict(params)))
        return out

    def with_early_stopped_data(self, values: Mapping[int, Mapping[str, float]]) -> Experiment:
        """A view for one ask in which each early-stopped single-arm trial in ``values``
        (``{trial_id: {metric: value}}``, e.g. from
        :func:`~assay.platform.early_stopping.early_stopped_values`) carries those values as
        its observations and counts as observed (:meth:`observed`): the model sees the
        stopped trials, and they count toward the initial design. The experiment itself is
        unchanged; the view is never stored."""
        trials = []
        for t in self.trials:
            vals = values.get(t.id)
            if vals and t.state is TrialState.EARLY_STOPPED and not t.is_batch:
                obs = {m: Observation(m, float(v)) for m, v in vals.items()}
                t = replace(t, observations={t.arms[0].name: obs})
            trials.append(t)
        return replace(self, trials=trials, early_stopped_observed=True)

    def pending_arms(self) -> list[Arm]:
        """Arms of trials asked but not yet finished (``X_pending`` for generation)."""
        space = self.search_space
        return [
            self._filled(a) for t in self.trials if t.state.is_pending for a in t.arms
            if space.is_encodable(a.parameters)
        ]  # fmt: skip

    def observed(self) -> list[tuple[Trial, Arm, dict[str, Observation]]]:
        """``(trial, arm, {metric: obs})`` for every completed arm with data (arms at a
        choice value since removed are left out: they cannot be encoded); in a view made by
        :meth:`with_early_stopped_data`, early-stopped arms with data too."""
        states = (
            (TrialState.COMPLETED, TrialState.EARLY_STOPPED)
            if self.early_stopped_observed
            else (TrialState.COMPLETED,)
        )
        out = []
        for t in self.trials:
            if t.state in states:
                for a in t.arms:
                    obs = t.observations.get(a.name)
                    if obs and self.search_space.is_encodable(a.parameters):
                        out.append((t, self._filled(a), obs))
        return out
