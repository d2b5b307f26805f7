"""Operations: Prometheus metrics, structured (JSON) logs with request ids, readiness.

* **Metrics** (``prometheus_client``): counters and histograms updated where things happen
  (requests, asks, fits, tells, lease expiries, lock waits and retries, privacy charges), and
  gauges read from the store at scrape time (trials by state, jobs by executor and state), so
  every process and every worker sees the same numbers. With several uvicorn workers set
  ``PROMETHEUS_MULTIPROC_DIR`` (``assay serve --workers N`` does it): each worker writes its
  counters to files there and a scrape of any worker sums them (prometheus_client's
  multiprocess mode), one coherent view.
* ``GET /metrics`` is off unless ``ASSAY_METRICS=true`` (then public) or
  ``ASSAY_METRICS_TOKEN`` is set (then it needs ``Authorization: Bearer <that token>``, a
  token separate from API keys so a scraper holds no project rights).
* **Request logs**: :class:`RequestContextMiddleware` gives every request an id (the caller's
  ``X-Request-ID`` or a new one, echoed back), times it, records the latency histogram by
  route template and status, and logs one ``assay.access`` line with the actor, project,
  experiment/trial ids and duration. :class:`JsonFormatter` writes each log record as one
  JSON object per line (``assay serve --log-format json``).

May import: :mod:`assay.platform`, :mod:`assay.storage` (the store interface, schema
revisions); nothing of the routers.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from assay.platform.experiment import TrialState
from assay.service.webhooks import emit_privacy

log = logging.getLogger("assay.access")

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUEST_SECONDS = Histogram(
    "assay_http_request_duration_seconds",
    "HTTP request latency by method, route template and status code.",
    ["method", "route", "status"],
    buckets=_FAST,
)
ASKS = Counter("assay_asks_total", "Trials created by asks, by verb.", ["verb"])
ASK_SECONDS = Histogram(
    "assay_ask_seconds", "Generation time of one ask (fit + acquisition).", ["verb"], buckets=_SLOW
)
FITS = Counter("assay_model_fits_total", "GP model fits during asks.")
FIT_SECONDS = Histogram(
    "assay_model_fit_seconds", "Time to fit the models of one ask.", buckets=_SLOW
)
ACQUISITION_SECONDS = Histogram(
    "assay_acquisition_seconds",
    "Time to optimize the acquisition function in one model-based ask.",
    buckets=_SLOW,
)
TELLS = Counter("assay_tells_total", "Trials completed with observations.")
TRIAL_ENDS = Counter(
    "assay_trial_ends_total", "Trials ended other than by a tell, by final state.", ["state"]
)
LEASE_EXPIRIES = Counter("assay_lease_expiries_total", "Running trials failed by an expired lease.")
LOCK_WAIT_SECONDS = Histogram(
    "assay_lock_wait_seconds", "Time to acquire an experiment's ask lock.", ["verb"], buckets=_FAST
)
LOCK_RETRIES = Counter(
    "assay_lock_retries_total", "Locked asks run again after a transient storage error.", ["verb"]
)
PRIVACY_EPSILON = Counter(
    "assay_privacy_epsilon_spent_total", "Privacy budget (epsilon) charged.", ["project", "dataset"]
)
PRIVACY_DELTA = Counter(
    "assay_privacy_delta_spent_total", "Privacy budget (delta) charged.", ["project", "dataset"]
)

#: The metric names exported (README "Operations" lists them).
EXPORTED = (
    "assay_http_request_duration_seconds",
    "assay_asks_total",
    "assay_ask_seconds",
    "assay_model_fits_total",
    "assay_model_fit_seconds",
    "assay_acquisition_seconds",
    "assay_tells_total",
    "assay_trial_ends_total",
    "assay_lease_expiries_total",
    "assay_lock_wait_seconds",
    "assay_lock_retries_total",
    "assay_privacy_epsilon_spent_total",
    "assay_privacy_delta_spent_total",
    "assay_trials",
    "assay_jobs",
)


def observe_generation(verb: str, n: int, info: Mapping[str, Any]) -> None:
    """Record one ask from the generator's ``info`` (``ask_seconds``, ``fit_seconds``)."""
    ASKS.labels(verb).inc(n)
    total = info.get("ask_seconds")
    if isinstance(total, int | float):
        ASK_SECONDS.labels(verb).observe(total)
    fit = info.get("fit_seconds")
    if isinstance(fit, int | float):
        FITS.inc()
        FIT_SECONDS.observe(fit)
        if isinstance(total, int | float):
            ACQUISITION_SECONDS.observe(max(0.0, total - fit))


class CountingLedger:
    """A privacy ledger that counts what it charges (``assay_privacy_*_spent_total``) and,
    given the ``store``, emits ``privacy.budget_nearly_spent`` when a charge brings the spend
    over :data:`~assay.service.webhooks.PRIVACY_NEARLY_SPENT` of the budget (once)."""

    def __init__(self, ledger: Any, project: str, store: Any = None) -> None:
        self._ledger, self._project, self._store = ledger, project, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def charge(self, dataset: str, epsilon: float, delta: float, **kw: Any) -> Any:
        before = {c.release_id for c in self._ledger.charges(dataset)}
        charge = self._ledger.charge(dataset, epsilon, delta, **kw)
        if getattr(charge, "release_id", None) not in before:  # a retry is not charged twice
            PRIVACY_EPSILON.labels(self._project, dataset).inc(epsilon)
            PRIVACY_DELTA.labels(self._project, dataset).inc(delta)
        if self._store is not None:
            try:
                status = self._ledger.status(dataset)
            except Exception:  # the charge is stored; an event is best effort
                log.exception("could not read the privacy budget of %s", dataset)
            else:
                emit_privacy(self._store, self._project, dataset, status)
        return charge


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: trials by state, jobs by executor/state."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        trials = GaugeMetricFamily("assay_trials", "Trials by state.", labels=["state"])
        counts = dict.fromkeys((s.value for s in TrialState), 0)
        for exp in self.store.list_experiments():
            for state, n in exp.trial_counts.items():
                counts[state] = counts.get(state, 0) + n
        for state, n in sorted(counts.items()):
            trials.add_metric([state], n)
        yield trials
        jobs = GaugeMetricFamily(
            "assay_jobs", "Jobs by executor and state.", labels=["executor", "state"]
        )
        by: dict[tuple[str, str], int] = {}
        for job in self.store.list_jobs():
            key = (job.executor, str(getattr(job.state, "value", job.state)))
            by[key] = by.get(key, 0) + 1
        for (executor, state), n in sorted(by.items()):
            jobs.add_metric([executor, state], n)
        yield jobs


def render_metrics(store: Any) -> tuple[bytes, str]:
    """The exposition text: this process's (or, in multiprocess mode, every worker's)
    counters and histograms, then the store's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(StoreCollector(store))
    return body + generate_latest(gauges), CONTENT_TYPE_LATEST


def metrics_allowed(settings: Any, authorization: str | None) -> bool | None:
    """``None``: metrics are off (404); ``False``: a token is required and missing/wrong
    (401); ``True``: serve them."""
    token = settings.metrics_token
    if token:
        given = (authorization or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    return True if settings.metrics else None


# -- logs -------------------------------------------------------------------------------------
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Record attributes a :class:`logging.LogRecord` always has (the rest are ``extra`` fields).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and every
    ``extra`` field (request id, actor, project, experiment/trial ids, duration)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Route every log record (Assay's and uvicorn's) to stderr as text or JSON lines."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def route_template(scope: Mapping[str, Any]) -> str:
    """The matched route's path template with its router prefix (``/api/v1/trials/{trial_id}``),
    so metric labels stay few; ``unmatched`` for a 404 outside every route."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path", None) or getattr(scope.get("route"), "path_format", None)
    return path or "unmatched"


class RequestContextMiddleware:
    """ASGI middleware: request id, latency histogram by route template, one access log line.

    The principal dependency writes ``actor``/``project`` into ``scope["state"]`` (shared with
    the route's request), and the router leaves the matched route and path parameters in the
    scope, so they are known once the response has started."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(seconds)
            params = scope.get("path_params") or {}
            extra = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "actor": state.get("actor"),
                "project": state.get("project"),
            }
            for key in ("experiment_id", "trial_id", "job_id"):
                if key in params:
                    raw = params[key]
                    extra[key] = int(raw) if str(raw).isdigit() else raw
            log.info(
                "%s %s %s %.1f ms", scope["method"], scope["path"], status, seconds * 1000,
                extra=extra,
            )  # fmt: skip
