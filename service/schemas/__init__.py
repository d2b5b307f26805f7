"""REST request/response bodies (pydantic), and their conversion to and from domain objects.

Families follow ``XCreate`` / ``XUpdate`` / ``XPublic``. Request models check shapes and types;
the domain (``ExperimentConfig``, ``Observation``, ...) then checks meaning, so both the API and
the Python client share one set of rules and one set of error messages.

One module per resource; this package re-exports every body, so
``from assay.service.schemas import X`` works for all of them:

* :mod:`~assay.service.schemas.common` — ``Name``, ``Scalar``, the ``Strict`` request base;
* :mod:`~assay.service.schemas.errors` — the ``{"error": {...}}`` envelope;
* :mod:`~assay.service.schemas.experiments` — parameters, objective, experiments (create,
  update, public, summary, list);
* :mod:`~assay.service.schemas.trials` — ask/attach/complete, trials, events, observation rows;
* :mod:`~assay.service.schemas.analysis` — best arm and relative effects;
* :mod:`~assay.service.schemas.projects` — projects;
* :mod:`~assay.service.schemas.jobs` — job specs, jobs, runs, intermediate reports;
* :mod:`~assay.service.schemas.privacy` — privacy budgets and DP synthetic releases;
* :mod:`~assay.service.schemas.stopping` — early-stopping decisions, experiment stopping,
  learning curves.

The modules may import pydantic, :mod:`assay.platform`, the row types of
:mod:`assay.storage.base` and each other (``projects`` also the engine's project-name rule);
never FastAPI (routing is :mod:`assay.service.api`'s).
"""

from __future__ import annotations

from assay.service.schemas.analysis import (
    ArmEffectsPublic,
    BatchEffectPublic,
    BestArmPublic,
    EffectPublic,
    EffectsPublic,
    EstimatePublic,
    MetricEffectPublic,
    ParetoArmPublic,
    ParetoPublic,
)
from assay.service.schemas.common import (
    Name,
    Scalar,
    Strict,
)
from assay.service.schemas.errors import (
    ErrorBody,
    ErrorResponse,
)
from assay.service.schemas.experiments import (
    ChoiceParameterIn,
    ExperimentCreate,
    ExperimentList,
    ExperimentPublic,
    ExperimentSummaryPublic,
    ExperimentUpdate,
    ExperimentVersionList,
    ExperimentVersionPublic,
    FixedParameterIn,
    FloatParameterIn,
    IntParameterIn,
    ObjectiveIn,
    ParameterIn,
    StatusReasonPublic,
)
from assay.service.schemas.jobs import (
    JobList,
    JobPublic,
    JobSpecIn,
    ReportIn,
    ReportList,
    ReportPublic,
    ResourcesIn,
    RunPublic,
)
from assay.service.schemas.privacy import (
    MAX_CSV_CHARS,
    SAFE_NAME,
    ChargePublic,
    PrivacyBudgetIn,
    PrivacyBudgetPublic,
    SyntheticReleaseCreate,
    SyntheticReleaseList,
    SyntheticReleasePublic,
    TrainingIn,
)
from assay.service.schemas.projects import (
    ProjectCreate,
    ProjectList,
    ProjectPublic,
)
from assay.service.schemas.stopping import (
    CurvePublic,
    CurvesPublic,
    StopDecisionPublic,
    StoppingPublic,
)
from assay.service.schemas.trials import (
    ArmPublic,
    AskBatchRequest,
    AskRequest,
    AskResponse,
    AttachRequest,
    CompleteRequest,
    EventList,
    EventPublic,
    HeartbeatRequest,
    ObservationIn,
    ObservationList,
    ObservationPublic,
    ObservationRowPublic,
    ObservationValue,
    ReasonRequest,
    StartRequest,
    TrialList,
    TrialPublic,
    observation_value,
)

__all__ = [
    "MAX_CSV_CHARS",
    "SAFE_NAME",
    "ArmEffectsPublic",
    "ArmPublic",
    "AskBatchRequest",
    "AskRequest",
    "AskResponse",
    "AttachRequest",
    "BatchEffectPublic",
    "BestArmPublic",
    "ChargePublic",
    "ChoiceParameterIn",
    "CompleteRequest",
    "CurvePublic",
    "CurvesPublic",
    "EffectPublic",
    "EffectsPublic",
    "ErrorBody",
    "ErrorResponse",
    "EstimatePublic",
    "EventList",
    "EventPublic",
    "ExperimentCreate",
    "ExperimentList",
    "ExperimentPublic",
    "ExperimentSummaryPublic",
    "ExperimentUpdate",
    "ExperimentVersionList",
    "ExperimentVersionPublic",
    "FixedParameterIn",
    "FloatParameterIn",
    "HeartbeatRequest",
    "IntParameterIn",
    "JobList",
    "JobPublic",
    "JobSpecIn",
    "MetricEffectPublic",
    "Name",
    "ObjectiveIn",
    "ObservationIn",
    "ObservationList",
    "ObservationPublic",
    "ObservationRowPublic",
    "ObservationValue",
    "ParameterIn",
    "ParetoArmPublic",
    "ParetoPublic",
    "PrivacyBudgetIn",
    "PrivacyBudgetPublic",
    "ProjectCreate",
    "ProjectList",
    "ProjectPublic",
    "ReasonRequest",
    "ReportIn",
    "ReportList",
    "ReportPublic",
    "ResourcesIn",
    "RunPublic",
    "Scalar",
    "StartRequest",
    "StatusReasonPublic",
    "StopDecisionPublic",
    "StoppingPublic",
    "Strict",
    "SyntheticReleaseCreate",
    "SyntheticReleaseList",
    "SyntheticReleasePublic",
    "TrainingIn",
    "TrialList",
    "TrialPublic",
    "observation_value",
]
