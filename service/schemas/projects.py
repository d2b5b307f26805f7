"""Bodies of ``/projects``: create a project, a project with its experiment count, the list.

May import pydantic, :mod:`assay.storage.base` (the ``ProjectSummary`` row it converts) and the
engine's project-name rule; no FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from assay.service.engine import PROJECT_NAME_PATTERN
from assay.service.schemas.common import Strict
from assay.storage.base import ProjectSummary


class ProjectCreate(Strict):
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
    total: int | None = None
    offset: int = 0
    limit: int | None = None
