"""The FastAPI application: ``create_app(settings)`` composes the routers under ``/api/v1``,
installs the error handlers (typed errors become HTTP once, through the table in
:mod:`assay.service.errors`; every error body is ``{"error": {"code", "message", "details"}}``),
mounts the dashboard, and runs the lease reaper in the background.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from assay import __version__
from assay.dashboards.jobs import StoreJobsView
from assay.dashboards.routes import mount_dashboard
from assay.platform.errors import AssayError
from assay.service.api import (
    experiments,
    interchange,
    jobs,
    keys,
    privacy,
    projects,
    trials,
    webhooks,
)
from assay.service.auth import KeyResolver, is_loopback_host, needs_key
from assay.service.engine import Engine
from assay.service.errors import error_response, response_for, status_for
from assay.service.limits import BodyLimitMiddleware, ModelWork
from assay.service.observability import (
    LEASE_EXPIRIES,
    RequestContextMiddleware,
    configure_logging,
    metrics_allowed,
    render_metrics,
)
from assay.service.periodic import PeriodicTask
from assay.service.schemas import ErrorResponse
from assay.service.security import SecurityMiddleware
from assay.service.settings import Settings
from assay.service.webhooks import Deliverer
from assay.storage.base import Store

log = logging.getLogger("assay.service")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AssayError)
    async def assay_error(_: Request, exc: AssayError) -> JSONResponse:
        if status_for(exc) >= 500:
            log.warning("request failed: %s", exc)
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def request_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ()) if x not in ("body",)]
            errors.append({"field": ".".join(loc), "problem": e.get("msg", "invalid")})
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(
                400, "malformed_json", "the request body is not valid JSON", {"errors": errors}
            )
        first = errors[0] if errors else {"field": "", "problem": "invalid request"}
        return error_response(
            422,
            "invalid_request",
            f"{first['field'] or 'request'}: {first['problem']}",
            {"field": first["field"], "errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error; see the server log")


class LeaseReaper(PeriodicTask):
    """Periodically fails running trials whose heartbeat lease expired."""

    thread_name = "assay-reaper"

    def __init__(self, store: Store, interval_s: float) -> None:
        super().__init__(interval_s)
        self.store = store

    def tick(self) -> None:
        reaped = self.store.reap_expired_leases(datetime.now(UTC))
        LEASE_EXPIRIES.inc(len(reaped))
        if reaped:
            log.info("reaped %d trial(s) with expired leases", len(reaped))


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    *,
    orchestrator: Any | None = None,
) -> FastAPI:
    """Build the app. ``store`` defaults to ``settings.database_url`` (schema must be current);
    ``orchestrator`` (optional) is started and stopped with the app."""
    settings = settings or Settings()
    if store is None:
        from assay.storage.factory import open_store

        store = open_store(settings.database_url, migrate=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = LeaseReaper(store, settings.reaper_interval_s)
        reaper.start()
        deliverer = Deliverer(store, settings.webhook_interval_s,
                              backoff_s=settings.webhook_backoff_s)  # fmt: skip
        deliverer.start()
        if orchestrator is not None:
            orchestrator.start()
        try:
            yield
        finally:
            if orchestrator is not None:
                orchestrator.stop()
            reaper.stop()
            deliverer.stop()

    app = FastAPI(
        title="Assay",
        version=__version__,
        description=(
            "Adaptive experimentation: noisy-constrained Bayesian optimization as a service. "
            "Authenticate with `Authorization: Bearer <key>` unless the server runs in local "
            "no-auth mode."
        ),
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            415: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    app.state.settings = settings
    app.state.store = store
    app.state.engine = Engine(store)
    app.state.engine.log_dir = settings.log_dir  # log readers stay below it (no links)
    app.state.keys = KeyResolver(store, settings.key_cache_s)
    app.state.model_work = ModelWork(settings.model_slots, settings.model_wait_s)
    if hasattr(store, "lock_timeout_s"):
        store.lock_timeout_s = settings.ask_lock_timeout_s
    # Outermost: an oversized body is refused before routing, parsing and authentication.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
    )
    _install_error_handlers(app)
    # Compressed responses: dashboard pages (a 2,000-trial page inlines its data) and large
    # JSON. Small bodies (an ask, a tell) pass uncompressed; static files that have a
    # pre-compressed ``.gz`` are sent as is (``Content-Encoding`` already set).
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)

    app.add_middleware(SecurityMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/api/v1/health", tags=["system"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness: the process answers (no database access); ``auth`` says whether
        *this* request would need a key."""
        return {
            "status": "ok",
            "version": __version__,
            "auth": "keys" if needs_key(request) else "none",
        }

    @app.get(
        "/api/v1/ready",
        tags=["system"],
        responses={503: {"description": "not ready; the body says which check failed"}},
    )
    def ready() -> JSONResponse:
        """Readiness: the database answers, its schema is at this version's Alembic head,
        and the in-process orchestrator (when there is one) is alive. 503 otherwise."""
        checks = readiness(store, orchestrator)
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus exposition (off unless enabled; see :mod:`assay.service.observability`)."""
        allowed = metrics_allowed(settings, request.headers.get("authorization"))
        if allowed is None:
            return error_response(404, "not_found", "metrics are not enabled on this server")
        if not allowed:
            return error_response(401, "unauthorized", "metrics need their bearer token")
        body, content_type = render_metrics(store)
        return Response(body, media_type=content_type)

    app.include_router(projects.router, prefix="/api/v1")
    app.include_router(interchange.router, prefix="/api/v1")  # before /experiments/{id}
    app.include_router(experiments.router, prefix="/api/v1")
    app.include_router(trials.router, prefix="/api/v1")
    app.include_router(jobs.router, prefix="/api/v1")
    app.include_router(webhooks.router, prefix="/api/v1")
    app.include_router(privacy.router, prefix="/api/v1")  # budgets, DP synthetic releases
    app.include_router(keys.router, prefix="/api/v1")  # admin: the project's API keys
    mount_dashboard(app)  # pages at /, static files at /static
    app.state.jobs_view = StoreJobsView(store, log_dir=settings.log_dir)
    return app


def readiness(store: Store, orchestrator: Any | None) -> dict[str, dict[str, Any]]:
    """The checks of ``/api/v1/ready``: database reachable, schema current, orchestrator."""
    from assay.storage.migrate import head_revision

    checks: dict[str, dict[str, Any]] = {}
    if hasattr(store, "schema_revision"):
        try:
            current = store.schema_revision  # a round trip to the database
        except Exception as e:  # any driver error means "not reachable"
            checks["database"] = {"ok": False, "error": type(e).__name__}
            checks["schema"] = {"ok": False, "error": "database unreachable"}
        else:
            head = head_revision()
            checks["database"] = {"ok": True}
            checks["schema"] = {"ok": current == head, "current": current, "head": head}
    else:
        checks["database"] = {"ok": True, "kind": "memory"}
    if orchestrator is not None:
        checks["orchestrator"] = {"ok": bool(getattr(orchestrator, "alive", True))}
    return checks


#: Set by ``assay serve`` for its ``uvicorn --factory`` workers: the address it bound.
BOUND_HOST_ENV = "ASSAY_BOUND_HOST"


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several worker processes).

    The factory cannot see the address uvicorn binds (``--host 0.0.0.0`` is the usual
    container set-up), so it requires keys unless ``assay serve`` started it and says, in
    ``ASSAY_BOUND_HOST``, that it bound a loopback address; ``ASSAY_AUTH=none`` without that
    is refused.
    """
    import os

    settings = Settings()
    if settings.log_format == "json":
        configure_logging("json")
    bound = os.environ.get(BOUND_HOST_ENV)
    if bound is None or not is_loopback_host(bound):
        if settings.auth == "none":
            raise RuntimeError(
                "ASSAY_AUTH=none needs a loopback bind that this factory can verify; start "
                "the server with 'assay serve' or use ASSAY_AUTH=keys"
            )
        settings = settings.model_copy(update={"auth": "keys"})
    else:
        settings = settings.model_copy(update={"host": bound})
    return create_app(settings)
