"""The web dashboard: server-rendered pages (Jinja2) with Plotly.js charts, served by the
service's FastAPI app at ``/`` (the REST API stays at ``/api/v1``).

Pages read through the storage interface and :mod:`assay.platform.diagnostics`; nothing here
writes to the database. Plotly.js is vendored (``static/vendor``), so the dashboard works
without internet access.

Example:
    >>> from assay.service.app import create_app
    >>> app = create_app()               # doctest: +SKIP  (mounts the dashboard)
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles


class _CachedStatic(StaticFiles):
    """Static files with long-lived caching (URLs carry a version query string)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def mount_dashboard(app: Any) -> None:
    """Add the dashboard's routes and static files to ``app`` (after the API routers).

    Unknown paths outside ``/api/`` answer browsers with an HTML 404 page; API clients keep
    the JSON error body.
    """
    from assay.dashboards.routes import STATIC, Dashboard, _error_page, router

    app.state.dashboard = Dashboard(app)
    app.mount("/static", _CachedStatic(directory=str(STATIC)), name="static")
    app.include_router(router)
    json_handler = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        browser = "text/html" in request.headers.get("accept", "")
        if browser and exc.status_code == 404 and not request.url.path.startswith("/api/"):
            return _error_page(
                request, 404, "Page not found", f"There is no page at {request.url.path}.",
                "Go back to the experiments list.",
            )  # fmt: skip
        return await json_handler(request, exc)

    if json_handler is not None:
        app.add_exception_handler(StarletteHTTPException, http_error)


__all__ = ["mount_dashboard"]
