"""``/projects``: list, get, create.

Visibility follows the experiments: an API key sees only its own project (another project's
name answers 404, so names do not leak); local no-auth mode sees every project. Creating a
project is an administrative act: allowed in no-auth mode, 403 for an API key (a key is scoped
to the one project it belongs to; ``assay keys create --project NAME`` creates a project
together with its first key).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from assay.platform.errors import ForbiddenError
from assay.service.deps import EngineDep, PageLimit, PageOffset, PrincipalDep
from assay.service.engine import PROJECT_NAME_PATTERN
from assay.service.schemas import ProjectCreate, ProjectList, ProjectPublic

router = APIRouter(prefix="/projects", tags=["projects"])

ProjectName = Annotated[str, Path(min_length=1, max_length=200, pattern=PROJECT_NAME_PATTERN)]


@router.get("", response_model=ProjectList)
def list_projects(
    engine: EngineDep, who: PrincipalDep, offset: PageOffset = 0, limit: PageLimit = 1000
):
    """Projects with their experiment counts (a key: only its own), paginated."""
    rows = engine.projects(project=who.project)
    return ProjectList(
        projects=[ProjectPublic.from_domain(p) for p in rows[offset : offset + limit]],
        total=len(rows), offset=offset, limit=limit,
    )  # fmt: skip


@router.get("/{name}", response_model=ProjectPublic)
def get_project(name: ProjectName, engine: EngineDep, who: PrincipalDep):
    return ProjectPublic.from_domain(engine.get_project(name, project=who.project))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectPublic,
    responses={403: {"description": "API keys cannot create projects"}},
)
def create_project(body: ProjectCreate, engine: EngineDep, who: PrincipalDep):
    """Create an empty project (no-auth mode only). 409 if the name exists."""
    if who.project is not None:
        raise ForbiddenError(
            f"an API key is scoped to project {who.project!r} and cannot create projects; "
            "use 'assay keys create --project NAME' on the server",
            details={"project": who.project},
        )
    return ProjectPublic.from_domain(engine.create_project(body.name))
