"""Bodies of the analyses: the recommended (best) arm with its estimates, and the per-arm
relative effects against the control (with their conversion to and from
:mod:`assay.platform.analysis`).

May import pydantic, :mod:`assay.platform` and :mod:`~assay.service.schemas.common`; no FastAPI.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from assay.platform.analysis import (
    ArmEffects,
    BestArm,
    EffectsReport,
    MetricEffect,
    MetricEstimate,
)
from assay.platform.pareto_report import HypervolumePoint, ParetoArm, ParetoReport
from assay.platform.relative import RelativeEffect
from assay.service.schemas.common import Scalar


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
    front: list[str] = Field(
        default_factory=list,
        description="several objectives: the arms on the model's Pareto front (see /pareto)",
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
            list(self.front),
        )  # fmt: skip


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


class ParetoArmPublic(BaseModel):
    arm_name: str
    parameters: dict[str, Scalar]
    trial_ids: list[int]
    estimates: dict[str, EstimatePublic]
    observed: dict[str, float]
    probability_front: float | None = Field(
        description="P(feasible and not dominated by another feasible observed arm)"
    )
    probability_feasible: float | None
    on_front: bool = Field(description="on the model's front (posterior means)")
    on_observed_front: bool = Field(description="on the raw observed front")
    observed_feasible: bool


class HypervolumePointPublic(BaseModel):
    trial_id: int
    trial_index: int
    observed: float
    model: float | None


class ParetoPublic(BaseModel):
    """The model's Pareto front among the observed arms (posterior means, 95% intervals,
    P(on the front), P(feasible)), the observed front beside it, the hypervolume of both
    against the reference point (thresholds, inferred where omitted) and its trace per trial."""

    experiment_id: int
    objectives: list[dict[str, Scalar]]
    reference_point: dict[str, dict[str, Scalar]]
    model_based: bool
    relative: bool
    arms: list[ParetoArmPublic]
    front: list[str]
    observed_front: list[str]
    hypervolume: float | None
    observed_hypervolume: float
    trace: list[HypervolumePointPublic]
    notes: list[str]

    @classmethod
    def from_domain(cls, r: ParetoReport) -> ParetoPublic:
        return cls(**r.to_dict())

    def to_domain(self) -> ParetoReport:
        arms = [
            ParetoArm(
                a.arm_name, dict(a.parameters), list(a.trial_ids),
                {m: MetricEstimate(**e.model_dump()) for m, e in a.estimates.items()},
                dict(a.observed), a.probability_front, a.probability_feasible, a.on_front,
                a.on_observed_front, a.observed_feasible,
            )
            for a in self.arms
        ]  # fmt: skip
        return ParetoReport(
            self.experiment_id, [dict(o) for o in self.objectives],
            {k: dict(v) for k, v in self.reference_point.items()}, self.model_based,
            self.relative, arms, list(self.front), list(self.observed_front), self.hypervolume,
            self.observed_hypervolume, [HypervolumePoint(**p.model_dump()) for p in self.trace],
            list(self.notes),
        )  # fmt: skip
