"""The webhook outbox in SQL (:class:`~assay.storage.webhooks.WebhookOutbox` on the
``webhooks`` / ``webhook_deliveries`` tables): pending deliveries survive restarts.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.webhooks`,
:mod:`assay.storage.orm` and the sibling modules :mod:`.projects`, :mod:`.session`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.platform.errors import NotFoundError
from assay.platform.experiment import utcnow
from assay.storage.orm import ProjectRow, WebhookDeliveryRow, WebhookRow
from assay.storage.sql.projects import project_id
from assay.storage.sql.session import SqlDatabase
from assay.storage.webhooks import Delivery, Webhook, WebhookOutbox, check_webhook


def _hook(row: WebhookRow, project: str) -> Webhook:
    return Webhook(row.id, project, row.url, list(row.events), row.secret, row.format,
                   row.active, row.created_at)  # fmt: skip


def _delivery(r: WebhookDeliveryRow) -> Delivery:
    return Delivery(r.id, r.webhook_id, r.event, dict(r.payload), r.state, r.attempts,
                    r.next_attempt_at, r.last_status, r.last_error, r.created_at,
                    r.delivered_at)  # fmt: skip


#: How long after a trial transition its "no active webhook" reading may spare the outbox
#: transaction of that trial's event (the event follows the transition at once).
HOOKS_HINT_SECONDS = 1.0


class SqlOutbox(WebhookOutbox):
    def __init__(self, db: SqlDatabase) -> None:
        self.db = db

    def _rows(self, s: Session, project: str | None) -> list[tuple[WebhookRow, str]]:
        stmt = select(WebhookRow, ProjectRow.name).join(
            ProjectRow, ProjectRow.id == WebhookRow.project_id
        )
        if project is not None:
            stmt = stmt.where(ProjectRow.name == project)
        return [(r[0], r[1]) for r in s.execute(stmt.order_by(WebhookRow.id)).all()]

    def create(self, project: str, url: str, events: Sequence[str], secret: str,
               fmt: str = "json") -> Webhook:  # fmt: skip
        check_webhook(url, events, fmt)

        def fn(s: Session) -> Webhook:
            row = WebhookRow(project_id=project_id(s, project), url=url, events=list(events),
                             secret=secret, format=fmt, active=True, created_at=utcnow())  # fmt: skip
            s.add(row)
            s.flush()
            return _hook(row, project)

        return self.db.run_transaction(fn)

    def list(self, project: str | None = None) -> list[Webhook]:
        return self.db.run_transaction(
            lambda s: [_hook(r, p) for r, p in self._rows(s, project)], write=False
        )

    def get(self, webhook_id: int, project: str | None = None) -> Webhook:
        for hook in self.list(project):
            if hook.id == webhook_id:
                return hook
        raise NotFoundError(f"webhook {webhook_id} not found", field="webhook_id")

    def enqueue(
        self, project: str, event: str, payload: dict[str, Any], *, once: str | None = None
    ) -> int:
        hint = getattr(self.db.hooks_hint, "value", None)
        self.db.hooks_hint.value = None  # consumed by this event, whatever it is
        if (
            hint is not None
            and hint[0] == project
            and hint[1] == payload.get("trial_id")
            and time.monotonic() - hint[2] < HOOKS_HINT_SECONDS
        ):
            # The event of the trial transition this thread just made, whose own first
            # statement read that the project has no active subscription: nothing to enqueue.
            return 0
        if once is not None:
            payload = {**payload, "once": once}

        def seen(s: Session, webhook_id: int) -> bool:
            # a JSON column: compare in Python (few deliveries per event and subscription)
            rows = s.scalars(
                select(WebhookDeliveryRow.payload).where(
                    WebhookDeliveryRow.webhook_id == webhook_id, WebhookDeliveryRow.event == event
                )
            )
            return any((p or {}).get("once") == once for p in rows)  # fmt: skip

        def fn(s: Session) -> int:
            n = 0
            now = utcnow()
            for row, _ in self._rows(s, project):
                if row.active and event in row.events:
                    if once is not None and seen(s, row.id):
                        continue
                    s.add(WebhookDeliveryRow(
                        webhook_id=row.id, event=event, payload=payload, state="pending",
                        attempts=0, next_attempt_at=now, created_at=now,
                    ))  # fmt: skip
                    n += 1
            return n

        return self.db.run_transaction(fn)

    def due(self, now: datetime, limit: int = 50) -> list[tuple[Delivery, Webhook]]:
        def fn(s: Session) -> list[tuple[Delivery, Webhook]]:
            rows = s.execute(
                select(WebhookDeliveryRow, WebhookRow, ProjectRow.name)
                .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
                .join(ProjectRow, ProjectRow.id == WebhookRow.project_id)
                .where(WebhookDeliveryRow.state == "pending",
                       WebhookDeliveryRow.next_attempt_at <= now)
                .order_by(WebhookDeliveryRow.id)
                .limit(limit)
            ).all()  # fmt: skip
            return [(_delivery(d), _hook(h, p)) for d, h, p in rows]

        return self.db.run_transaction(fn, write=False)

    def record_attempt(self, delivery_id: int, *, ok: bool, status: int | None,
                       error: str | None, next_attempt_at: datetime | None) -> Delivery:  # fmt: skip
        def fn(s: Session) -> Delivery:
            r = s.get(WebhookDeliveryRow, delivery_id)
            if r is None:
                raise NotFoundError(f"delivery {delivery_id} not found")
            r.attempts += 1
            r.last_status, r.last_error = status, error
            if ok:
                r.state, r.delivered_at = "delivered", utcnow()
            elif next_attempt_at is None:
                r.state = "failed"
            else:
                r.next_attempt_at = next_attempt_at
            s.flush()
            return _delivery(r)

        return self.db.run_transaction(fn)

    def deliveries(self, webhook_id: int) -> list[Delivery]:
        return self.db.run_transaction(
            lambda s: [_delivery(r) for r in s.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id)
                .order_by(WebhookDeliveryRow.id.desc()))],
            write=False,
        )  # fmt: skip
