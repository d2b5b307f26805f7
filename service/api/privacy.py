"""Private data: per-dataset privacy budgets and DP synthetic releases of a table.

::

    PUT  /datasets/{name}/privacy-budget                      set / raise the (ε, δ) budget
    GET  /datasets/{name}/privacy-budget                      budget, spend, charged releases
    POST /datasets/{name}/synthetic-releases                  release a DP synthetic copy (202)
    GET  /datasets/{name}/synthetic-releases                  this dataset's releases
    GET  /datasets/{name}/synthetic-releases/{release_id}         status + privacy report
    GET  /datasets/{name}/synthetic-releases/{release_id}/table   the synthetic CSV

Budgets live in the store's privacy ledger (:mod:`assay.storage.privacy_ledger` on SQL), one
per (project, dataset); another project's datasets answer 404 like its experiments.

A release request is checked in full before anything happens, then trains in the background:
the answer is ``202`` with ``Location`` = the status URL; a repeated request (same
``release_id``) answers the existing release (``200`` once finished). How releases are checked,
trained, charged and kept is :mod:`assay.service.releases`; the bodies are
:mod:`assay.service.schemas.privacy`. This router only does HTTP: paths, status codes, headers,
URLs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from assay.platform.errors import ForbiddenError
from assay.service.deps import EngineDep, PageLimit, PageOffset, PrincipalDep, may_administer
from assay.service.observability import CountingLedger
from assay.service.releases import ReleaseStore, start_release
from assay.service.schemas.privacy import (
    SAFE_NAME,
    ChargePublic,
    PrivacyBudgetIn,
    PrivacyBudgetPublic,
    SyntheticReleaseCreate,
    SyntheticReleaseList,
    SyntheticReleasePublic,
)

router = APIRouter(tags=["privacy"])

DatasetName = Annotated[str, PathParam(pattern=f"^{SAFE_NAME}$", max_length=200)]
ReleaseId = Annotated[str, PathParam(pattern=f"^{SAFE_NAME}$", max_length=200)]


def _releases(request: Request, project: str, dataset: str) -> ReleaseStore:
    settings = request.app.state.settings
    return ReleaseStore(settings.release_dir, settings.data_dir, project, dataset)


def _public(dataset: str, rec: dict[str, Any]) -> SyntheticReleasePublic:
    base = f"/api/v1/datasets/{dataset}/synthetic-releases/{rec['release_id']}"
    return SyntheticReleasePublic(
        release_id=rec["release_id"], dataset=dataset, status=rec["status"],
        method=rec["method"], epsilon=rec["epsilon"], delta=rec["delta"],
        rows_in=rec["rows_in"], created_at=rec["created_at"],
        finished_at=rec.get("finished_at"), status_url=base,
        table_url=f"{base}/table" if rec["status"] == "succeeded" else None,
        report=rec.get("report"), error=rec.get("error"),
    )  # fmt: skip


# -- budgets -------------------------------------------------------------------------------
def _budget_public(ledger: Any, dataset: str) -> PrivacyBudgetPublic:
    st = ledger.status(dataset).to_dict()
    charges = [ChargePublic(**{k: v for k, v in c.__dict__.items() if k != "dataset"})
               for c in ledger.charges(dataset)]  # fmt: skip
    return PrivacyBudgetPublic(**st, charges=charges)


@router.put("/datasets/{name}/privacy-budget", response_model=PrivacyBudgetPublic)
def put_budget(name: DatasetName, body: PrivacyBudgetIn, engine: EngineDep, who: PrincipalDep):
    """Create or change the dataset's budget (never below what is already spent: 409).
    Admin keys only (403 otherwise): a key that could raise its own budget has none."""
    if not may_administer(who):
        raise ForbiddenError(
            "only an admin key may create or change a privacy budget", field="epsilon"
        )
    ledger = engine.store.privacy_ledger(who.write_project)
    ledger.set_budget(name, body.epsilon, body.delta)
    return _budget_public(ledger, name)


@router.get("/datasets/{name}/privacy-budget", response_model=PrivacyBudgetPublic)
def get_budget(name: DatasetName, engine: EngineDep, who: PrincipalDep):
    """The budget, what is spent and remains, and every charged release (oldest first)."""
    return _budget_public(engine.store.privacy_ledger(who.write_project), name)


# -- releases ------------------------------------------------------------------------------
@router.post(
    "/datasets/{name}/synthetic-releases",
    response_model=SyntheticReleasePublic,
    status_code=202,
    responses={200: {"model": SyntheticReleasePublic,
                     "description": "a repeated request: the finished release"}},
)  # fmt: skip
def create_release(
    name: DatasetName,
    body: SyntheticReleaseCreate,
    request: Request,
    response: Response,
    engine: EngineDep,
    who: PrincipalDep,
):
    """Release a DP synthetic copy of a table (202 + ``Location``; poll the status URL)."""
    project = who.write_project
    rec, started = start_release(
        _releases(request, project, name), body, lambda: CountingLedger(engine.store.privacy_ledger(project), project, engine.store),
        max_queue=request.app.state.settings.max_release_queue,
    )  # fmt: skip
    if not started:
        response.status_code = 202 if rec["status"] == "running" else 200
    out = _public(name, rec)
    response.headers["Location"] = out.status_url
    return out


@router.get("/datasets/{name}/synthetic-releases", response_model=SyntheticReleaseList)
def list_releases(
    name: DatasetName,
    request: Request,
    who: PrincipalDep,
    offset: PageOffset = 0,
    limit: PageLimit = 1000,
):
    """This dataset's releases on this server, newest first, paginated."""
    records = _releases(request, who.write_project, name).records()
    return SyntheticReleaseList(
        releases=[_public(name, r) for r in records[offset : offset + limit]],
        total=len(records), offset=offset, limit=limit,
    )  # fmt: skip


@router.get(
    "/datasets/{name}/synthetic-releases/{release_id}", response_model=SyntheticReleasePublic
)
def get_release(name: DatasetName, release_id: ReleaseId, request: Request, who: PrincipalDep):
    """A release's status; once ``succeeded``, its privacy report and ``table_url``."""
    return _public(name, _releases(request, who.write_project, name).get(release_id))


@router.get(
    "/datasets/{name}/synthetic-releases/{release_id}/table",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the synthetic table (CSV)"}},
)
def get_release_table(
    name: DatasetName, release_id: ReleaseId, request: Request, who: PrincipalDep
):
    """The synthetic table as CSV (409 while the release is running or if it failed)."""
    table = _releases(request, who.write_project, name).table(release_id)
    return FileResponse(
        table,
        media_type="text/csv",
        filename=f"{name}-{release_id}.csv",
    )
