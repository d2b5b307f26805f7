"""Bodies of early stopping and experiment stopping: ``GET /trials/{id}/should_stop``,
``GET /experiments/{id}/stopping`` and ``GET /experiments/{id}/curves``.

May import pydantic and :mod:`assay.platform`; no FastAPI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from assay.platform.early_stopping import Curve, StopDecision
from assay.platform.stopping import StoppingDecision


class StopDecisionPublic(BaseModel):
    """Whether the early-stopping rule would stop the trial now, with its reasoning."""

    trial_id: int
    should_stop: bool
    strategy: str
    reason: str
    step: int | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = {}

    @classmethod
    def from_domain(cls, d: StopDecision) -> StopDecisionPublic:
        return cls(**d.to_dict())

    def to_domain(self) -> StopDecision:
        return StopDecision(**self.model_dump())


class StoppingPublic(BaseModel):
    """Is the experiment done? The rule's recommendation and its figures."""

    done: bool
    rule: str
    reason: str
    auto: bool = False
    details: dict[str, Any] = {}

    @classmethod
    def from_domain(cls, d: StoppingDecision) -> StoppingPublic:
        return cls(**d.to_dict())

    def to_domain(self) -> StoppingDecision:
        return StoppingDecision(**self.model_dump())


class CurvePublic(BaseModel):
    trial_id: int
    state: str
    finished: bool
    points: dict[str, list[tuple[int, float]]]

    @classmethod
    def from_domain(cls, c: Curve) -> CurvePublic:
        return cls(trial_id=c.trial_id, state=c.state, finished=c.finished, points=c.points)


class CurvesPublic(BaseModel):
    """Every trial's learning curve and the early-stopping rule's line per step."""

    metric: str
    curves: list[CurvePublic]
    rule_line: list[tuple[int, float]]
