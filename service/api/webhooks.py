"""``/webhooks``: a project's subscriptions (create, list) and each one's delivery log.
A key manages its own project's webhooks; local no-auth mode the ``default`` project's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from assay.service.deps import MAX_ID, EngineDep, PrincipalDep
from assay.service.schemas.common import Strict

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    events: Annotated[list[str], Field(min_length=1, max_length=20)]
    format: Literal["json", "slack"] = "json"
    secret: Annotated[str, Field(min_length=16, max_length=200)] | None = None


class WebhookPublic(BaseModel):
    id: int
    project: str
    url: str
    events: list[str]
    format: str
    active: bool
    created_at: datetime
    #: Shown when created (and to the project's callers): receivers verify with it.
    secret: str


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    id: int
    webhook_id: int
    event: str
    payload: dict
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryPublic]


def _public(h) -> WebhookPublic:  # type: ignore[no-untyped-def]
    return WebhookPublic(id=h.id, project=h.project, url=h.url, events=h.events,
                         format=h.format, active=h.active, created_at=h.created_at,
                         secret=h.secret)  # fmt: skip


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
def create_webhook(body: WebhookCreate, engine: EngineDep, who: PrincipalDep):
    """Subscribe a URL to events: ``trial.completed``, ``trial.failed``,
    ``trial.early_stopped``, ``experiment.completed``, ``experiment.failing`` (and
    ``stopping.recommended``, ``privacy.budget_nearly_spent`` once emitted). Deliveries are
    signed: ``X-Assay-Signature: v1=HMAC-SHA256(secret, "{X-Assay-Timestamp}.{body}")``."""
    hook = engine.create_webhook(body.url, body.events, project=who.write_project,
                                 format=body.format, secret=body.secret)  # fmt: skip
    return _public(hook)


@router.get("", response_model=WebhookList)
def list_webhooks(engine: EngineDep, who: PrincipalDep):
    return WebhookList(webhooks=[_public(h) for h in engine.webhooks(project=who.project)])


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_deliveries(
    webhook_id: Annotated[int, Path(ge=1, le=MAX_ID)], engine: EngineDep, who: PrincipalDep
):
    """The delivery log, newest first: state, attempts, last status or error."""
    rows = engine.webhook_deliveries(webhook_id, project=who.project)
    return DeliveryList(deliveries=[DeliveryPublic(**vars(d)) for d in rows])
