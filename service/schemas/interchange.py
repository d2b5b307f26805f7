"""Import and export bodies (the document format itself is :mod:`assay.service.interchange`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from assay.service.schemas.common import Strict
from assay.service.schemas.experiments import ExperimentPublic


class ImportRequest(Strict):
    """``document``: an Assay export (``source="assay"``) or an Ax ``Client`` JSON snapshot
    (``source="ax"``); ``name`` renames the experiment (names are unique per project)."""

    document: dict[str, Any]
    source: Literal["assay", "ax"] = "assay"
    name: str | None = Field(default=None, min_length=1, max_length=200)


class ImportReportPublic(BaseModel):
    source: str
    trials: int
    not_carried: list[str]


class ImportResponse(BaseModel):
    experiment: ExperimentPublic
    report: ImportReportPublic
