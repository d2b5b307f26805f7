"""FastAPI dependencies as types (``EngineDep``, ``PrincipalDep``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from assay.service.auth import Principal
from assay.service.engine import Engine


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_principal(request: Request) -> Principal:
    if not request.app.state.settings.auth_required:
        return Principal(None, "local")
    return request.app.state.keys.resolve(request.headers.get("authorization"))


EngineDep = Annotated[Engine, Depends(get_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

#: Database ids are 64-bit: anything larger is a 422, not a driver overflow.
MAX_ID = 2**63 - 1
ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID)]
TrialId = Annotated[int, Path(ge=1, le=MAX_ID)]
EventCursor = Annotated[int, Query(ge=0, le=MAX_ID)]
