"""Webhook subscriptions and their outbox: what to deliver, to whom, and the delivery log.

An event (trial completed/failed/early-stopped, experiment completed/failing, ...) is written
to the outbox once per matching subscription of its project (``enqueue``); a deliverer
(:mod:`assay.service.webhooks`) takes due deliveries, posts them, and records each attempt
(``record_attempt``): delivered, or retried later with back-off, or failed for good after the
last attempt. In SQL the outbox is a table, so pending deliveries survive restarts
(at-least-once delivery).

May import: the standard library and :mod:`assay.platform`.
"""

from __future__ import annotations

import copy
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from assay.platform.errors import NotFoundError, ValidationError
from assay.platform.experiment import utcnow

#: The events a subscription may ask for.
EVENTS = (
    "trial.completed", "trial.failed", "trial.early_stopped", "experiment.completed",
    "experiment.failing", "stopping.recommended", "privacy.budget_nearly_spent",
)  # fmt: skip
#: Attempts before a delivery is given up.
MAX_ATTEMPTS = 8


@dataclass
class Webhook:
    id: int
    project: str
    url: str
    events: list[str]
    secret: str
    format: str = "json"  # or "slack"
    active: bool = True
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Delivery:
    id: int
    webhook_id: int
    event: str
    payload: dict[str, Any]
    state: str = "pending"  # delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = field(default_factory=utcnow)
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    delivered_at: datetime | None = None


def check_webhook(url: str, events: Sequence[str], fmt: str) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError("url must be an http(s) URL", field="url")
    unknown = [e for e in events if e not in EVENTS]
    if not events or unknown:
        raise ValidationError(f"events must be some of {list(EVENTS)}", field="events")
    if fmt not in ("json", "slack"):
        raise ValidationError("format must be 'json' or 'slack'", field="format")


class WebhookOutbox(ABC):
    """Subscriptions and deliveries (see the module docstring)."""

    @abstractmethod
    def create(self, project: str, url: str, events: Sequence[str], secret: str,
               fmt: str = "json") -> Webhook: ...  # fmt: skip

    @abstractmethod
    def list(self, project: str | None = None) -> list[Webhook]: ...

    @abstractmethod
    def get(self, webhook_id: int, project: str | None = None) -> Webhook: ...

    @abstractmethod
    def enqueue(
        self, project: str, event: str, payload: dict[str, Any], *, once: str | None = None
    ) -> int:
        """One pending delivery per active subscription of ``project`` to ``event``.

        ``once``: a key (also put in the payload as ``"once"``); a subscription that already
        has a delivery of ``event`` with that key gets no second one (events that a poll may
        find again, e.g. ``stopping.recommended``)."""

    @abstractmethod
    def due(self, now: datetime, limit: int = 50) -> list[tuple[Delivery, Webhook]]:
        """Pending deliveries whose next attempt is due, oldest first."""

    @abstractmethod
    def record_attempt(
        self,
        delivery_id: int,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> Delivery:
        """One attempt: delivered (``ok``), retried at ``next_attempt_at``, or failed
        (``next_attempt_at`` None)."""  # fmt: skip

    @abstractmethod
    def deliveries(self, webhook_id: int) -> list[Delivery]:
        """The delivery log of one subscription, newest first."""


class MemoryOutbox(WebhookOutbox):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[int, Webhook] = {}
        self._deliveries: dict[int, Delivery] = {}
        self._ids, self._dids = itertools.count(1), itertools.count(1)

    def create(self, project: str, url: str, events: Sequence[str], secret: str,
               fmt: str = "json") -> Webhook:  # fmt: skip
        check_webhook(url, events, fmt)
        with self._lock:
            hook = Webhook(next(self._ids), project, url, list(events), secret, fmt)
            self._hooks[hook.id] = hook
            return copy.deepcopy(hook)

    def list(self, project: str | None = None) -> list[Webhook]:
        with self._lock:
            return [copy.deepcopy(h) for h in self._hooks.values()
                    if project is None or h.project == project]  # fmt: skip

    def get(self, webhook_id: int, project: str | None = None) -> Webhook:
        with self._lock:
            hook = self._hooks.get(webhook_id)
            if hook is None or (project is not None and hook.project != project):
                raise NotFoundError(f"webhook {webhook_id} not found", field="webhook_id")
            return copy.deepcopy(hook)

    def enqueue(
        self, project: str, event: str, payload: dict[str, Any], *, once: str | None = None
    ) -> int:
        if once is not None:
            payload = {**payload, "once": once}
        with self._lock:
            n = 0
            for h in self._hooks.values():
                if h.active and h.project == project and event in h.events:
                    if once is not None and any(
                        d.webhook_id == h.id and d.event == event and d.payload.get("once") == once
                        for d in self._deliveries.values()
                    ):
                        continue
                    d = Delivery(next(self._dids), h.id, event, copy.deepcopy(payload))
                    self._deliveries[d.id] = d
                    n += 1
            return n

    def due(self, now: datetime, limit: int = 50) -> list[tuple[Delivery, Webhook]]:
        with self._lock:
            out = [(copy.deepcopy(d), copy.deepcopy(self._hooks[d.webhook_id]))
                   for d in sorted(self._deliveries.values(), key=lambda d: d.id)
                   if d.state == "pending" and d.next_attempt_at <= now]  # fmt: skip
            return out[:limit]

    def record_attempt(self, delivery_id: int, *, ok: bool, status: int | None,
                       error: str | None, next_attempt_at: datetime | None) -> Delivery:  # fmt: skip
        with self._lock:
            d = self._deliveries[delivery_id]
            d.attempts += 1
            d.last_status, d.last_error = status, error
            if ok:
                d.state, d.delivered_at = "delivered", utcnow()
            elif next_attempt_at is None:
                d.state = "failed"
            else:
                d.next_attempt_at = next_attempt_at
            return copy.deepcopy(d)

    def deliveries(self, webhook_id: int) -> list[Delivery]:
        with self._lock:
            return [copy.deepcopy(d) for d in sorted(self._deliveries.values(),
                    key=lambda d: -d.id) if d.webhook_id == webhook_id]  # fmt: skip
