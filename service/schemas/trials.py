"""Bodies of trials: ask (single and batch), attach, complete with observations, the life-cycle
requests (start, heartbeat, fail/abandon reasons), the trial's public record, its events and
the flat observation rows.

May import pydantic, :mod:`assay.platform`, :mod:`assay.storage.base` (the ``TrialEvent`` row it
converts) and :mod:`~assay.service.schemas.common`; no FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from assay.platform.experiment import Arm, Observation, Trial, TrialState
from assay.service.schemas.common import Name, Scalar, Strict
from assay.storage.base import TrialEvent


class AskRequest(Strict):
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
    #: Hold these parameters at these values for this ask only; optimize the rest.
    fixed: dict[str, Scalar] | None = None


class AttachRequest(Strict):
    parameters: Annotated[dict[Name, Scalar], Field(max_length=500)]
    start: bool = True


class ObservationIn(Strict):
    mean: float
    sem: Annotated[float, Field(ge=0)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None


ObservationValue = float | ObservationIn | Annotated[list[float | None], Field(max_length=3)]


class CompleteRequest(Strict):
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

    observations: Annotated[dict[Name, ObservationValue], Field(max_length=1000)] | None = None
    arms: (
        Annotated[
            dict[Name, Annotated[dict[Name, ObservationValue], Field(max_length=1000)]],
            Field(max_length=1000),
        ]
        | None
    ) = None


class ReasonRequest(Strict):
    reason: Annotated[str, Field(max_length=10_000)] | None = None


class StartRequest(Strict):
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] | None = None


class HeartbeatRequest(Strict):
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] = 60.0


def observation_value(v: Any) -> Any:
    """Turn a validated request value into what :meth:`Observation.parse` accepts."""
    if isinstance(v, ObservationIn):
        return v.model_dump()
    return v


class ArmPublic(BaseModel):
    name: str
    parameters: Annotated[dict[Name, Scalar], Field(max_length=500)]


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
    parameters: Annotated[dict[Name, Scalar], Field(max_length=500)]
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
    #: Page size: a full page means more may follow (ask again with ``after`` = last id).
    limit: int | None = None


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
    total: int | None = None
    offset: int = 0
    limit: int | None = None


class AskBatchRequest(Strict):
    """Ask for one batch trial of ``n_arms`` arms deployed together (an A/B-test round). The
    control arm is always included; ``include`` carries existing arms over (names or
    parameter objects)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"n_arms": 8, "idempotency_key": "round-3"}]},
    )

    n_arms: Annotated[int, Field(ge=2, le=64)] = 8
    include: (
        Annotated[
            list[
                Annotated[str, Field(max_length=200)]
                | Annotated[dict[Name, Scalar], Field(max_length=500)]
            ],
            Field(max_length=64),
        ]
        | None
    ) = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    start: bool = True
    lease_seconds: Annotated[float, Field(gt=0, le=604_800)] | None = None
