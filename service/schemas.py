"""REST request/response bodies (pydantic), and their conversion to and from domain objects.

Families follow ``XCreate`` / ``XUpdate`` / ``XPublic``. Request models check shapes and types;
the domain (``ExperimentConfig``, ``Observation``, ...) then checks meaning, so both the API and
the Python client share one set of rules and one set of error messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assay.platform.analysis import (
    ArmEffects,
    BestArm,
    EffectsReport,
    MetricEffect,
    MetricEstimate,
)
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.relative import RelativeEffect
from assay.service.engine import PROJECT_NAME_PATTERN
from assay.storage.base import ExperimentSummary, ProjectSummary, TrialEvent

Name = Annotated[str, Field(min_length=1, max_length=200)]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- parameters --------------------------------------------------------------------------------
class FloatParameterIn(_Strict):
    name: Name
    type: Literal["float"]
    bounds: tuple[float, float]
    log: bool = False


class IntParameterIn(_Strict):
    name: Name
    type: Literal["int"]
    bounds: tuple[int, int]
    log: bool = False


class ChoiceParameterIn(_Strict):
    name: Name
    type: Literal["choice"]
    values: Annotated[list[Scalar], Field(min_length=1, max_length=1000)]
    ordered: bool | None = None


class FixedParameterIn(_Strict):
    name: Name
    type: Literal["fixed"]
    value: Scalar


ParameterIn = Annotated[
    FloatParameterIn | IntParameterIn | ChoiceParameterIn | FixedParameterIn,
    Field(discriminator="type"),
]


class ObjectiveIn(_Strict):
    name: Name
    minimize: bool = False


class ResourcesIn(_Strict):
    cpus: Annotated[float, Field(gt=0, le=4096)] = 1.0
    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    memory_gb: Annotated[float, Field(gt=0, le=1e6)] | None = None


class JobSpecIn(_Strict):
    """Run each trial as a job: ``entrypoint`` ``"package.module:function"`` (called with the
    trial's parameters, returns ``{metric: value | [mean, sem]}``) or ``command`` (an argv
    template with ``{parameter}`` placeholders that writes its metrics as JSON to
    ``$ASSAY_RESULT_PATH``)."""

    entrypoint: Annotated[str, Field(max_length=500)] | None = None
    command: (
        Annotated[
            list[Annotated[str, Field(max_length=10_000)]], Field(min_length=1, max_length=1000)
        ]
        | None
    ) = None
    resources: ResourcesIn = ResourcesIn()
    timeout_s: Annotated[float, Field(gt=0, le=2_592_000)] = 3600.0
    max_retries: Annotated[int, Field(ge=0, le=100)] = 0
    parallelism: Annotated[int, Field(ge=1, le=10_000)] = 1
    max_trials: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    env: dict[str, str] = {}
    executor: Literal["local", "ray", "slurm"] | None = None
    executor_options: dict[str, Any] = {}


class ExperimentCreate(_Strict):
    """A new experiment. ``objective`` is a metric name (maximised) or ``{name, minimize}``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ranking-v2",
                    "parameters": [
                        {"name": "lr", "type": "float", "bounds": [1e-5, 1e-1], "log": True},
                        {"name": "layers", "type": "int", "bounds": [1, 8]},
                        {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
                    ],
                    "objective": "accuracy",
                    "outcome_constraints": ["latency_ms <= 20"],
                    "generator": "noisy_ei",
                    "seed": 0,
                }
            ]
        },
    )

    name: Name
    parameters: Annotated[list[ParameterIn], Field(min_length=1, max_length=500)]
    parameter_constraints: Annotated[list[str], Field(max_length=100)] = []
    objective: Name | ObjectiveIn
    outcome_constraints: Annotated[list[str], Field(max_length=100)] = []
    tracking_metrics: Annotated[list[Name], Field(max_length=500)] = []
    generator: Annotated[str, Field(max_length=50)] = "noisy_ei"
    generator_settings: dict[str, Any] = {}
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    max_trials: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    status_quo: dict[str, Scalar] | None = None
    description: Annotated[str, Field(max_length=10_000)] = ""
    job: JobSpecIn | None = None

    def to_spec(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        if d.get("job") is None:
            d.pop("job", None)
        d["parameters"] = [
            {k: v for k, v in p.items() if not (k == "ordered" and v is None)}
            for p in d["parameters"]
        ]
        return d


class ExperimentUpdate(_Strict):
    status: ExperimentStatus | None = None


class ExperimentPublic(BaseModel):
    id: int
    project: str
    name: str
    status: ExperimentStatus
    config: dict[str, Any]
    trial_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, exp: Experiment) -> ExperimentPublic:
        counts: dict[str, int] = {}
        for t in exp.trials:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        return cls(
            id=exp.id, project=exp.project, name=exp.name, status=exp.status,
            config=exp.config.to_dict(), trial_counts=counts, created_at=exp.created_at,
            updated_at=exp.updated_at,
        )  # fmt: skip

    def to_domain(self) -> Experiment:
        """A snapshot without trials (the remote client fetches trials separately)."""
        return Experiment(
            id=self.id, config=ExperimentConfig.from_dict(self.config), status=self.status,
            project=self.project, created_at=self.created_at, updated_at=self.updated_at,
        )  # fmt: skip


class ExperimentSummaryPublic(BaseModel):
    id: int
    name: str
    project: str
    status: ExperimentStatus
    generator: str
    objective: str
    minimize: bool
    trial_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, s: ExperimentSummary) -> ExperimentSummaryPublic:
        return cls(**s.__dict__)

    def to_domain(self) -> ExperimentSummary:
        return ExperimentSummary(**self.model_dump())


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummaryPublic]


# -- projects ----------------------------------------------------------------------------------
class ProjectCreate(_Strict):
    """Create an empty project (local no-auth mode only; API keys are scoped to one project,
    so a key gets 403: create projects with ``assay keys create --project NAME``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ads"}]})

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=PROJECT_NAME_PATTERN)]


class ProjectPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "ads", "created_at": "2025-01-01T00:00:00Z", "experiment_count": 3}
            ]
        }
    )

    name: str
    created_at: datetime | None
    experiment_count: int

    @classmethod
    def from_domain(cls, p: ProjectSummary) -> ProjectPublic:
        return cls(name=p.name, created_at=p.created_at, experiment_count=p.experiment_count)


class ProjectList(BaseModel):
    projects: list[ProjectPublic]


# -- trials ------------------------------------------------------------------------------------
class AskRequest(_Strict):
    """Ask for new trials. A retried request with the same ``idempotency_key`` returns the
    trials created the first time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"n": 2, "idempotency_key": "worker-7-step-12"}]},
    )

    n: Annotated[int, Field(ge=1, le=100)] = 1
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    start: bool = True
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] | None = None


class AttachRequest(_Strict):
    parameters: dict[str, Scalar]
    start: bool = True


class ObservationIn(_Strict):
    mean: float
    sem: Annotated[float, Field(ge=0)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None


ObservationValue = float | ObservationIn | list[float | None]


class CompleteRequest(_Strict):
    """Observations of a trial: ``observations`` ``{metric: value}`` for a single-arm trial, or
    ``arms`` ``{arm_name: {metric: value}}`` for a batch trial. A value is a number (SEM
    unknown), ``[mean, sem]``, ``[mean, sem, n]`` or ``{"mean", "sem", "n"}``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"observations": {"accuracy": {"mean": 0.91, "sem": 0.01}, "latency_ms": 18.3}}
            ]
        },
    )

    observations: dict[str, ObservationValue] | None = None
    arms: dict[str, dict[str, ObservationValue]] | None = None


class ReasonRequest(_Strict):
    reason: Annotated[str, Field(max_length=10_000)] | None = None


class StartRequest(_Strict):
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] | None = None


class HeartbeatRequest(_Strict):
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] = 60.0


def observation_value(v: Any) -> Any:
    """Turn a validated request value into what :meth:`Observation.parse` accepts."""
    if isinstance(v, ObservationIn):
        return v.model_dump()
    return v


class ArmPublic(BaseModel):
    name: str
    parameters: dict[str, Scalar]


class ObservationPublic(BaseModel):
    mean: float
    sem: float | None
    n: int | None


class TrialPublic(BaseModel):
    id: int
    experiment_id: int
    index: int
    state: TrialState
    generator: str
    arms: list[ArmPublic]
    parameters: dict[str, Scalar]
    observations: dict[str, dict[str, ObservationPublic]]
    created_at: datetime
    updated_at: datetime
    lease_expires_at: datetime | None
    reason: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_domain(cls, t: Trial) -> TrialPublic:
        return cls(
            id=t.id, experiment_id=t.experiment_id, index=t.index, state=t.state,
            generator=t.generator,
            arms=[ArmPublic(name=a.name, parameters=a.parameters) for a in t.arms],
            parameters=t.arms[0].parameters if t.arms else {},
            observations={
                arm: {m: ObservationPublic(mean=o.mean, sem=o.sem, n=o.n) for m, o in obs.items()}
                for arm, obs in t.observations.items()
            },
            created_at=t.created_at, updated_at=t.updated_at,
            lease_expires_at=t.lease_expires_at, reason=t.reason, metadata=t.metadata,
        )  # fmt: skip

    def to_domain(self) -> Trial:
        return Trial(
            id=self.id, experiment_id=self.experiment_id, index=self.index, state=self.state,
            generator=self.generator,
            arms=[Arm(a.name, dict(a.parameters)) for a in self.arms],
            observations={
                arm: {m: Observation(m, o.mean, o.sem, o.n) for m, o in obs.items()}
                for arm, obs in self.observations.items()
            },
            created_at=self.created_at, updated_at=self.updated_at,
            lease_expires_at=self.lease_expires_at, reason=self.reason,
            metadata=dict(self.metadata),
        )  # fmt: skip


class TrialList(BaseModel):
    trials: list[TrialPublic]
    total: int
    offset: int
    limit: int


class AskResponse(BaseModel):
    trials: list[TrialPublic]


class EventPublic(BaseModel):
    id: int
    trial_id: int
    experiment_id: int
    from_state: TrialState | None
    to_state: TrialState
    at: datetime
    actor: str | None
    reason: str | None

    @classmethod
    def from_domain(cls, e: TrialEvent) -> EventPublic:
        return cls(
            id=e.id, trial_id=e.trial_id, experiment_id=e.experiment_id,
            from_state=e.from_state, to_state=e.to_state, at=e.at, actor=e.actor,
            reason=e.reason,
        )  # fmt: skip

    def to_domain(self) -> TrialEvent:
        return TrialEvent(
            self.id, self.trial_id, self.experiment_id, self.from_state, self.to_state, self.at,
            self.actor, self.reason,
        )  # fmt: skip


class EventList(BaseModel):
    events: list[EventPublic]


class ObservationRowPublic(BaseModel):
    trial_id: int
    trial_index: int
    arm: str
    metric: str
    mean: float
    sem: float | None
    n: int | None


class ObservationList(BaseModel):
    observations: list[ObservationRowPublic]


# -- analysis ----------------------------------------------------------------------------------
class EstimatePublic(BaseModel):
    mean: float
    sem: float | None
    lower: float | None
    upper: float | None
    observed_mean: float | None


class BestArmPublic(BaseModel):
    arm_name: str
    parameters: dict[str, Scalar]
    trial_ids: list[int]
    estimates: dict[str, EstimatePublic]
    probability_feasible: float
    feasible: bool
    model_based: bool
    notes: list[str]
    relative: bool = Field(
        False, description="estimates are % effects against the control arm, not raw levels"
    )
    probability_best: dict[str, float] = Field(
        default_factory=dict, description="P(arm is the best feasible observed arm), per arm"
    )
    probability_constraints: dict[str, float] = Field(
        default_factory=dict, description="P(constraint holds) at the recommended arm"
    )

    @classmethod
    def from_domain(cls, b: BestArm) -> BestArmPublic:
        return cls(**b.to_dict())

    def to_domain(self) -> BestArm:
        return BestArm(
            self.arm_name, dict(self.parameters), list(self.trial_ids),
            {m: MetricEstimate(**e.model_dump()) for m, e in self.estimates.items()},
            self.probability_feasible, self.feasible, self.model_based, list(self.notes),
            self.relative, dict(self.probability_best), dict(self.probability_constraints),
        )  # fmt: skip


class AskBatchRequest(_Strict):
    """Ask for one batch trial of ``n_arms`` arms deployed together (an A/B-test round). The
    control arm is always included; ``include`` carries existing arms over (names or
    parameter objects)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"n_arms": 8, "idempotency_key": "round-3"}]},
    )

    n_arms: Annotated[int, Field(ge=2, le=64)] = 8
    include: Annotated[list[str | dict[str, Scalar]], Field(max_length=64)] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    start: bool = True
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] | None = None


class EffectPublic(BaseModel):
    """A % effect against the control: ``effect`` +- 1.96 ``sem`` (delta method)."""

    effect: float
    sem: float | None
    lower: float | None
    upper: float | None
    p_value: float | None


class BatchEffectPublic(EffectPublic):
    trial_id: int


class MetricEffectPublic(BaseModel):
    metric: str
    observed: EffectPublic | None
    batches: list[BatchEffectPublic]
    model: EstimatePublic | None


class ArmEffectsPublic(BaseModel):
    arm_name: str
    parameters: dict[str, Scalar]
    trial_ids: list[int]
    is_control: bool
    metrics: dict[str, MetricEffectPublic]
    probability_feasible: float | None
    probability_constraints: dict[str, float]
    probability_best: float | None


class EffectsPublic(BaseModel):
    """Per arm and metric: % effect against the control with its 95% CI, pooled over the
    batches the arm ran in; the model's estimate, P(each constraint), P(feasible), P(best)."""

    experiment_id: int
    control_arm: str | None
    metrics: list[str]
    constraints: list[str]
    relative_model: bool
    arms: list[ArmEffectsPublic]
    notes: list[str]

    @classmethod
    def from_domain(cls, r: EffectsReport) -> EffectsPublic:
        return cls(**r.to_dict())

    def to_domain(self) -> EffectsReport:
        def eff(e: EffectPublic | None) -> RelativeEffect | None:
            return None if e is None else RelativeEffect(e.effect, e.sem)

        def est(e: EstimatePublic | None) -> MetricEstimate | None:
            return None if e is None else MetricEstimate(**e.model_dump())

        arms = [
            ArmEffects(
                a.arm_name, dict(a.parameters), list(a.trial_ids), a.is_control,
                {
                    m: MetricEffect(
                        m, eff(me.observed),
                        [(b.trial_id, RelativeEffect(b.effect, b.sem)) for b in me.batches],
                        est(me.model),
                    )
                    for m, me in a.metrics.items()
                },
                a.probability_feasible, dict(a.probability_constraints), a.probability_best,
            )
            for a in self.arms
        ]  # fmt: skip
        return EffectsReport(
            self.experiment_id, self.control_arm, list(self.metrics), list(self.constraints),
            self.relative_model, arms, list(self.notes),
        )  # fmt: skip


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


# -- jobs --------------------------------------------------------------------------------------
class JobPublic(BaseModel):
    id: int
    trial_id: int
    experiment_id: int
    executor: str
    worker: str
    state: str
    attempt: int
    resources: dict[str, Any]
    host: str | None
    gpus: list[int]
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    error: str | None
    cancel_requested: bool
    last_step: int | None = None
    #: The last bytes of the job's log, when the request asked for them (``log_tail_bytes``).
    log_tail: str | None = None

    @classmethod
    def from_domain(
        cls, j: Any, last_step: int | None = None, log_tail: str | None = None
    ) -> JobPublic:
        return cls(
            id=j.id, trial_id=j.trial_id, experiment_id=j.experiment_id, executor=j.executor,
            worker=j.worker, state=j.state.value, attempt=j.attempt, resources=j.resources,
            host=j.host, gpus=j.gpus, created_at=j.created_at, started_at=j.started_at,
            ended_at=j.ended_at, exit_code=j.exit_code, error=j.error,
            cancel_requested=j.cancel_requested, last_step=last_step, log_tail=log_tail,
        )  # fmt: skip


class JobList(BaseModel):
    jobs: list[JobPublic]


class RunPublic(BaseModel):
    experiment_id: int
    run_state: str | None
    status: ExperimentStatus
    parallelism: int
    active_jobs: int
    trial_counts: dict[str, int]


class ReportIn(_Strict):
    step: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    metrics: Annotated[
        dict[Annotated[str, Field(max_length=200)], float], Field(min_length=1, max_length=1000)
    ]


class ReportPublic(BaseModel):
    id: int
    trial_id: int
    step: int | None
    metrics: dict[str, float]
    at: datetime


class ReportList(BaseModel):
    reports: list[ReportPublic]
