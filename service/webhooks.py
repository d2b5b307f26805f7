"""Webhooks: events written to the outbox, delivered by a background deliverer, signed.

Each delivery is an HTTP ``POST`` of a JSON body to the subscription's URL with headers
``X-Assay-Event``, ``X-Assay-Delivery`` (its id: receivers deduplicate on it, delivery is at
least once), ``X-Assay-Timestamp`` (Unix seconds) and ``X-Assay-Signature: v1=<hex>``, the
HMAC-SHA256 with the subscription's secret over ``"{timestamp}.{body}"`` (receivers reject
stale timestamps against replay; :func:`verify` does both). A non-2xx answer or a network
error is retried with exponential back-off (``backoff_s * 2**attempt``, at most 5 minutes)
up to :data:`~assay.storage.webhooks.MAX_ATTEMPTS`; every attempt is in the delivery log.
``format="slack"`` posts a Slack-compatible ``{"text": ...}`` body instead.

May import: :mod:`assay.platform`, :mod:`assay.storage`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from assay.service.periodic import PeriodicTask
from assay.storage.base import Store
from assay.storage.webhooks import MAX_ATTEMPTS, Delivery, Webhook

log = logging.getLogger("assay.webhooks")


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, headers: Any, body: bytes, *, tolerance_s: float = 300.0) -> bool:
    """A receiver's check: the signature matches and the timestamp is recent."""
    try:
        ts = int(headers["X-Assay-Timestamp"])
    except (KeyError, ValueError, TypeError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), headers.get("X-Assay-Signature", ""))


def slack_body(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: one line of text."""
    where = (f"dataset {payload['dataset']}" if "dataset" in payload
             else f"experiment {payload.get('experiment_id')}")  # fmt: skip
    if "trial_index" in payload:
        where += f", trial #{payload['trial_index']}"
    detail = payload.get("summary") or ""
    return {"text": f"Assay: {event} ({where}) {detail}".strip()}


def body_for(hook: Webhook, delivery: Delivery) -> bytes:
    if hook.format == "slack":
        content = slack_body(delivery.event, delivery.payload)
    else:
        content = {"id": delivery.id, "event": delivery.event, "created_at":
                   delivery.created_at.isoformat(), "data": delivery.payload}  # fmt: skip
    return json.dumps(content, sort_keys=True).encode()


#: ``privacy.budget_nearly_spent`` fires when a charge brings the spent ε to this share of
#: the dataset's ε budget (once per dataset and budget value).
PRIVACY_NEARLY_SPENT = 0.8


def emit(
    store: Store, project: str, event: str, payload: dict[str, Any], *, once: str | None = None
) -> None:
    """Write ``event`` to the outbox of every matching subscription; a failure is logged,
    never raised (the change that caused the event is already stored). ``once``: a key that
    makes the event at most once per subscription (see ``WebhookOutbox.enqueue``)."""
    try:
        store.webhooks().enqueue(project, event, payload, once=once)
    except Exception:
        log.exception("could not enqueue webhook event %s", event)


def emit_stopping(store: Store, project: str, experiment_id: int, decision: Any) -> None:
    """``stopping.recommended`` for a ``done`` decision, once per experiment and definition
    version (GET /stopping and the orchestrator's check may find it on every poll)."""
    if not decision.done:
        return
    try:
        version = len(store.experiment_versions(experiment_id)) or 1
    except Exception:
        log.exception("could not read the versions of experiment %s", experiment_id)
        return
    emit(store, project, "stopping.recommended",
         {"experiment_id": experiment_id, "version": version, "rule": decision.rule,
          "summary": decision.reason, "auto": decision.auto},
         once=f"stopping:{experiment_id}:v{version}")  # fmt: skip


def emit_privacy(store: Store, project: str, dataset: str, status: Any) -> None:
    """``privacy.budget_nearly_spent`` when spent ε reaches :data:`PRIVACY_NEARLY_SPENT` of
    the budget: once per dataset and budget (raising the budget re-arms it)."""
    budget, spent = float(status.epsilon_budget), float(status.epsilon_spent)
    if budget <= 0 or spent < PRIVACY_NEARLY_SPENT * budget:
        return
    emit(store, project, "privacy.budget_nearly_spent",
         {"dataset": dataset, "epsilon_budget": budget, "epsilon_spent": spent,
          "epsilon_remaining": max(0.0, budget - spent),
          "summary": f"dataset {dataset!r}: {spent:g} of epsilon {budget:g} spent"},
         once=f"privacy:{dataset}:{budget!r}")  # fmt: skip


class Deliverer(PeriodicTask):
    """Delivers due outbox entries every ``interval_s`` in a background thread."""

    thread_name = "assay-webhooks"
    join_timeout_s = 10.0

    def __init__(self, store: Store, interval_s: float = 1.0, *, backoff_s: float = 2.0,
                 timeout_s: float = 10.0) -> None:  # fmt: skip
        super().__init__(interval_s)
        self.store, self.backoff_s = store, backoff_s
        self._http = httpx.Client(timeout=timeout_s)

    def stop(self) -> None:
        super().stop()
        self._http.close()

    def tick(self) -> None:
        self.deliver_due()

    def deliver_due(self, now: datetime | None = None) -> int:
        """One pass over the due deliveries; how many were attempted."""
        outbox = self.store.webhooks()
        due = outbox.due(now or datetime.now(UTC))
        for delivery, hook in due:
            body = body_for(hook, delivery)
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Assay-Event": delivery.event,
                "X-Assay-Delivery": str(delivery.id),
                "X-Assay-Timestamp": str(ts),
                "X-Assay-Signature": sign(hook.secret, ts, body),
            }
            status, error = None, None
            try:
                r = self._http.post(hook.url, content=body, headers=headers)
                status = r.status_code
                ok = 200 <= status < 300
                if not ok:
                    error = f"HTTP {status}"
            except httpx.HTTPError as e:
                ok, error = False, f"{type(e).__name__}: {e}"[:500]
            attempts = delivery.attempts + 1
            retry_at = None
            if not ok and attempts < MAX_ATTEMPTS:
                delay = min(self.backoff_s * 2 ** (attempts - 1), 300.0)
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            outbox.record_attempt(delivery.id, ok=ok, status=status, error=error,
                                  next_attempt_at=retry_at)  # fmt: skip
        return len(due)
