"""FastAPI dependencies as types (``EngineDep``, ``PrincipalDep``, ``AdminDep``).

Roles are enforced here, once, for every REST route (:func:`role_needed`): reads need
``viewer``, every other method ``member``, and the admin surface (keys, privacy budget
changes, webhooks) ``admin``; a short role answers 403 naming the role needed.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from assay.platform.errors import ForbiddenError
from assay.service.auth import LOCAL, Principal, Role, needs_key
from assay.service.engine import Engine
from assay.service.jobs.policy import JobPolicy

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``(method or None for any, path pattern)`` of the routes only an admin key may call.
ADMIN_ROUTES: list[tuple[str | None, re.Pattern[str]]] = [
    (None, re.compile(r"^(/api/v1)?/keys(/|$)")),
    ("PUT", re.compile(r"^(/api/v1)?/datasets/[^/]+/privacy-budget$")),
    # webhook subscriptions carry their signing secrets: the project's admins only
    (None, re.compile(r"^(/api/v1)?/webhooks(/|$)")),
]


def role_needed(method: str, path: str) -> Role:
    """The least role that may call ``method path`` on the REST API."""
    for m, pattern in ADMIN_ROUTES:
        if (m is None or m == method) and pattern.match(path):
            return Role.ADMIN
    return Role.VIEWER if method in READ_METHODS else Role.MEMBER


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_job_principal(request: Request) -> Principal:
    """Any credential, including a job's scoped token (check ``trial_scope`` yourself)."""
    if not needs_key(request):
        return LOCAL
    who = request.app.state.keys.resolve(request.headers.get("authorization"))
    # the matched route's template (relative to its router's prefix), whatever the mount point
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path
    who.require(role_needed(request.method, path), f"{request.method} {path}")
    return who


def get_principal(request: Request) -> Principal:
    """A project API key with the role this route needs (or local no-auth mode); job tokens
    are refused."""
    who = get_job_principal(request)
    request.state.actor, request.state.project = who.actor, who.project  # for the access log
    if who.trial_scope is not None:
        raise ForbiddenError("a job token may only report metrics and heartbeats for its own trial")
    return who


def get_job_policy(request: Request) -> JobPolicy:
    """The server's job rules, from its settings (:mod:`assay.service.jobs.policy`)."""
    return JobPolicy.from_settings(request.app.state.settings)


def may_administer(who: Principal) -> bool:
    """Admin actions (privacy budgets, arbitrary job specs): an admin key, or local no-auth
    mode (the caller is this machine's user)."""
    return who.is_admin or (who.project is None and who.trial_scope is None)


def may_run_arbitrary_jobs(who: Principal) -> bool:
    """An admin key, or local no-auth mode (the caller is this machine's user); either still
    needs a server started with ``--allow-arbitrary-jobs``."""
    return who.is_admin or (who.project is None and who.trial_scope is None)


def check_job_spec_allowed(request: Request, who: Principal, job: object) -> None:
    """403/422 unless ``who`` may run the job spec ``job`` (a dict or ``JobSpec``) here."""
    from assay.platform.jobspec import JobSpec

    if job is None:
        return
    spec = job if isinstance(job, JobSpec) else JobSpec.from_dict(job)  # type: ignore[arg-type]
    get_job_policy(request).check(spec, admin=may_run_arbitrary_jobs(who))


EngineDep = Annotated[Engine, Depends(get_engine)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
JobPrincipalDep = Annotated[Principal, Depends(get_job_principal)]

#: Database ids are 64-bit: anything larger is a 422, not a driver overflow.
MAX_ID = 2**63 - 1
ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID)]
TrialId = Annotated[int, Path(ge=1, le=MAX_ID)]
EventCursor = Annotated[int, Query(ge=0, le=MAX_ID)]

#: The most rows one list page carries (every list endpoint pages; the client pages through).
MAX_PAGE = 1000
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"rows per page (<= {MAX_PAGE})")]
PageOffset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
