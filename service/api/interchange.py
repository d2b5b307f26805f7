"""``/experiments/{id}/export`` and ``/experiments:import``: the versioned JSON document of an
experiment (``docs/export-format.md``), and creating an experiment from one (or from an Ax
``Client`` snapshot)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from assay.service.deps import EngineDep, ExperimentId, PrincipalDep
from assay.service.interchange import from_ax_snapshot
from assay.service.schemas import ExperimentPublic
from assay.service.schemas.interchange import ImportReportPublic, ImportRequest, ImportResponse

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.get("/{experiment_id}/export")
def export_experiment(
    experiment_id: ExperimentId, engine: EngineDep, who: PrincipalDep
) -> dict[str, Any]:
    """The experiment, its trials (arms, observations with SEMs, states, history) and its
    generator and model state, as a versioned JSON document."""
    return engine.export_experiment(experiment_id, project=who.project)


@router.post(":import", status_code=status.HTTP_201_CREATED, response_model=ImportResponse)
def import_experiment(body: ImportRequest, engine: EngineDep, who: PrincipalDep):
    """Create an experiment from a document; the report lists what could not be carried. The
    document is validated in full before anything is stored (4xx names the field)."""
    document = from_ax_snapshot(body.document) if body.source == "ax" else body.document
    result = engine.import_experiment(
        document, project=who.write_project, name=body.name, actor=who.actor
    )
    return ImportResponse(
        experiment=ExperimentPublic.from_domain(result.experiment),
        report=ImportReportPublic(**result.report.to_dict()),
    )
