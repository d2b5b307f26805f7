"""FastAPI dependencies as types (``EngineDep``, ``PrincipalDep``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from assay.platform.errors import ForbiddenError
from assay.service.auth import Principal
from assay.service.engine import Engine


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_job_principal(request: Request) -> Principal:
    """Any credential, including a job's scoped token (check ``trial_scope`` yourself)."""
    if not request.app.state.settings.auth_required:
        return Principal(None, "local")
    return request.app.state.keys.resolve(request.headers.get("authorization"))


def get_principal(request: Request) -> Principal:
    """A project API key (or local no-auth mode); job tokens are refused."""
    who = get_job_principal(request)
    request.state.actor, request.state.project = who.actor, who.project  # for the access log
    if who.trial_scope is not None:
        raise ForbiddenError("a job token may only report metrics and heartbeats for its own trial")
    return who


EngineDep = Annotated[Engine, Depends(get_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
JobPrincipalDep = Annotated[Principal, Depends(get_job_principal)]

#: Database ids are 64-bit: anything larger is a 422, not a driver overflow.
MAX_ID = 2**63 - 1
ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID)]
TrialId = Annotated[int, Path(ge=1, le=MAX_ID)]
EventCursor = Annotated[int, Query(ge=0, le=MAX_ID)]
