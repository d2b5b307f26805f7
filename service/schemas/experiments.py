"""Bodies of ``/experiments``: the search-space parameters, objective, creation and update
requests, and the experiment's public record, summary and list (with their conversion to and
from the domain's :class:`~assay.platform.experiment.Experiment`).

May import pydantic, :mod:`assay.platform`, :mod:`assay.storage.base` (the summary row it
converts) and the sibling schema modules (``JobSpecIn``); no FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assay.platform.experiment import Experiment, ExperimentConfig, ExperimentStatus, StatusReason
from assay.service.schemas.common import Name, Scalar, Strict
from assay.service.schemas.jobs import JobSpecIn
from assay.storage.base import ExperimentSummary


class FloatParameterIn(Strict):
    name: Name
    type: Literal["float"]
    bounds: tuple[float, float]
    log: bool = False


class IntParameterIn(Strict):
    name: Name
    type: Literal["int"]
    bounds: tuple[int, int]
    log: bool = False


class ChoiceParameterIn(Strict):
    name: Name
    type: Literal["choice"]
    values: Annotated[list[Scalar], Field(min_length=1, max_length=1000)]
    ordered: bool | None = None


class FixedParameterIn(Strict):
    name: Name
    type: Literal["fixed"]
    value: Scalar


ParameterIn = Annotated[
    FloatParameterIn | IntParameterIn | ChoiceParameterIn | FixedParameterIn,
    Field(discriminator="type"),
]


class ObjectiveIn(Strict):
    """An objective; with several, ``threshold`` is its reference-point coordinate (a number,
    ``">= x"`` for a maximized one, ``"<= x"`` for a minimized one, ``"%"`` relative to the
    control), inferred from the data when omitted."""

    name: Name
    minimize: bool = False
    threshold: float | Annotated[str, Field(max_length=50)] | None = None
    relative: bool = False


class ExperimentCreate(Strict):
    """A new experiment. ``objective`` is a metric name (maximised) or ``{name, minimize}``;
    ``objectives`` (instead) a list of them, with optional thresholds, for several."""

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
    parameter_constraints: Annotated[
        list[Annotated[str, Field(max_length=2000)]], Field(max_length=100)
    ] = []
    objective: Name | ObjectiveIn | None = None
    objectives: Annotated[list[Name | ObjectiveIn], Field(min_length=1, max_length=20)] | None = (
        None
    )
    outcome_constraints: Annotated[
        list[Annotated[str, Field(max_length=2000)]], Field(max_length=100)
    ] = []
    tracking_metrics: Annotated[list[Name], Field(max_length=500)] = []
    generator: Annotated[str, Field(max_length=50)] | None = Field(
        None, description="default: noisy_ei with one objective, noisy_ehvi with several"
    )
    generator_settings: Annotated[dict[Name, Any], Field(max_length=50)] = {}
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    max_trials: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    status_quo: Annotated[dict[Name, Scalar], Field(max_length=500)] | None = None
    description: Annotated[str, Field(max_length=10_000)] = ""
    job: JobSpecIn | None = None
    #: Trial-level early stopping (see :mod:`assay.platform.early_stopping`), validated by
    #: the domain so errors name ``early_stopping.<field>``.
    early_stopping: dict[str, Any] | None = None
    #: Experiment-level stopping rule (see :mod:`assay.platform.stopping`).
    stopping: dict[str, Any] | None = None

    def to_spec(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        for key in ("job", "objective", "objectives", "generator", "early_stopping", "stopping"):
            if d.get(key) is None:
                d.pop(key, None)
        d["parameters"] = [
            {k: v for k, v in p.items() if not (k == "ordered" and v is None)}
            for p in d["parameters"]
        ]
        return d


class ExperimentUpdate(Strict):
    """Change the status, or the definition (each definition change is a new version)."""

    status: ExperimentStatus | None = None
    reason: Annotated[str, Field(max_length=10_000)] | None = None
    bounds: dict[str, list[float]] | None = None
    add_values: dict[str, list[Scalar]] | None = None
    remove_values: dict[str, list[Scalar]] | None = None
    #: New parameters, each a creation spec plus ``default`` (the value past trials are read
    #: with); validated by the domain so errors name ``add_parameters[i].<field>``.
    add_parameters: (
        Annotated[
            list[Annotated[dict[Name, Scalar | list[Scalar]], Field(max_length=10)]],
            Field(max_length=100),
        ]
        | None
    ) = None
    outcome_constraints: list[str] | None = None
    generator: str | None = None
    generator_settings: dict[str, Any] | None = None

    def definition_changes(self) -> dict[str, Any]:
        keys = ("bounds", "add_values", "remove_values", "add_parameters",
                "outcome_constraints", "generator", "generator_settings")  # fmt: skip
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class ExperimentVersionPublic(BaseModel):
    version: int
    config: dict[str, Any]
    changes: list[str]
    actor: str | None
    reason: str | None
    trial_count: int
    at: datetime


class ExperimentVersionList(BaseModel):
    versions: list[ExperimentVersionPublic]


class StatusReasonPublic(BaseModel):
    """Why the experiment has its status: the last status change."""

    status: ExperimentStatus = Field(description="The status it changed to.")
    reason: str | None = Field(None, description="Why (at most 2000 characters).")
    rule: str | None = Field(
        None,
        description="What decided it: a stopping rule (improvement, model), failing_trials "
        "(the orchestrator's failure check), or null for a person.",
    )
    figures: dict[str, Any] = Field(
        default_factory=dict,
        description="The decision's numbers (at most 4000 characters of JSON).",
    )
    actor: str | None = Field(None, description="Who changed it (actor or worker id).")
    at: datetime = Field(description="When (UTC).")

    @classmethod
    def from_domain(cls, r: StatusReason) -> StatusReasonPublic:
        return cls(
            status=r.status, reason=r.reason, rule=r.rule, figures=r.figures, actor=r.actor,
            at=r.at,
        )  # fmt: skip

    def to_domain(self) -> StatusReason:
        return StatusReason(
            self.status, at=self.at, reason=self.reason, actor=self.actor, rule=self.rule,
            figures=self.figures,
        )  # fmt: skip


class ExperimentPublic(BaseModel):
    id: int
    project: str
    name: str
    status: ExperimentStatus
    config: dict[str, Any]
    trial_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime
    #: ``None`` until the status first changes (and for experiments stored before reasons).
    status_reason: StatusReasonPublic | None = None

    @classmethod
    def from_domain(cls, exp: Experiment) -> ExperimentPublic:
        counts: dict[str, int] = {}
        for t in exp.trials:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        return cls(
            id=exp.id, project=exp.project, name=exp.name, status=exp.status,
            config=exp.config.to_dict(), trial_counts=counts, created_at=exp.created_at,
            updated_at=exp.updated_at,
            status_reason=(StatusReasonPublic.from_domain(exp.status_reason)
                           if exp.status_reason is not None else None),
        )  # fmt: skip

    def to_domain(self) -> Experiment:
        """A snapshot without trials (the remote client fetches trials separately)."""
        return Experiment(
            id=self.id, config=ExperimentConfig.from_dict(self.config), status=self.status,
            project=self.project, created_at=self.created_at, updated_at=self.updated_at,
            status_reason=self.status_reason.to_domain() if self.status_reason else None,
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
    total: int | None = None
    offset: int = 0
    limit: int | None = None
