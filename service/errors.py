"""Typed errors ↔ HTTP, in one place: the status table, the JSON error body, and the way back.

The REST app answers every :class:`~assay.platform.errors.AssayError` with the status
:func:`status_for` gives and the body :func:`error_response` builds; the dashboard renders
its error pages with the same statuses; the remote client (:mod:`assay.service.remote`)
turns an answer back into the typed exception with :func:`error_from_body`, so in-process
and remote callers catch the same classes.

=========================================  ======
``NotFoundError``                          404
``AuthenticationError``                    401
``ForbiddenError``                         403
``ConflictError`` / ``InvalidTransition``  409
``GenerationError`` (space exhausted)      409
``UnsupportedError``                       400
``ValidationError`` and request shapes     422 (malformed JSON: 400)
``StorageError`` (schema out of date,      503 (busy: with ``Retry-After``)
busy database)
anything else                              500 (logged; the body says nothing internal)
=========================================  ======

Owns: the table above, the error body ``{"error": {"code", "message", "details"}}``, and the
reverse lookup (code or status → class). May import: :mod:`assay.platform.errors` and
Starlette's response class; nothing else of Assay, so the app, the dashboard and the client
can all depend on it without a cycle.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from assay.platform.errors import (
    AssayError,
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    GenerationError,
    NotFoundError,
    SchemaOutOfDateError,
    StorageBusyError,
    StorageError,
    UnsupportedError,
    ValidationError,
)

#: ``(error class, HTTP status)``, most specific first: the first ``isinstance`` match wins.
STATUS_BY_ERROR: list[tuple[type[AssayError], int]] = [
    (NotFoundError, 404),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (ConflictError, 409),
    (GenerationError, 409),
    (UnsupportedError, 400),
    (ValidationError, 422),
    (SchemaOutOfDateError, 503),
    (StorageError, 503),
]


def status_for(error: AssayError) -> int:
    """The HTTP status of a typed error (500 for one the table does not name)."""
    for cls, code in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return code
    return 500


def _most_general_by_status() -> dict[int, type[AssayError]]:
    """For each status of the table, its most general class (``StorageError`` for 503,
    ``ConflictError`` for 409): what an answer with that status and an unknown code is."""
    out: dict[int, type[AssayError]] = {}
    for cls, status in STATUS_BY_ERROR:
        known = out.get(status)
        if known is None or issubclass(known, cls):
            out[status] = cls
    return out


#: The reverse of :data:`STATUS_BY_ERROR`, for answers whose code names no known class.
ERROR_BY_STATUS: dict[int, type[AssayError]] = _most_general_by_status()


def error_classes_by_code() -> dict[str, type[AssayError]]:
    """Every :class:`AssayError` subclass defined so far, by its ``code`` (the first class
    found keeps a code shared by a subclass)."""
    out: dict[str, type[AssayError]] = {}
    stack: list[type[AssayError]] = [AssayError]
    while stack:
        cls = stack.pop()
        out.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return out


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error body: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer (see :func:`error_body`)."""
    return JSONResponse(
        status_code=status, content=error_body(code, message, details), headers=headers
    )


def response_for(error: AssayError) -> JSONResponse:
    """The answer to a typed error: its status, its body, and ``Retry-After`` when the
    database was only busy (the client may retry)."""
    headers = None
    if isinstance(error, StorageBusyError):
        headers = {"Retry-After": str(error.retry_after_s)}
    return error_response(status_for(error), error.code, error.message, error.details, headers)


def error_from_body(status: int, body: Any, text: str = "") -> AssayError:
    """The typed error an HTTP error answer stands for (what the remote client raises).

    Args:
        status: The HTTP status.
        body: The decoded JSON body (anything: a body that is not an Assay error body
            falls back to the status).
        text: The raw body, quoted in the message when it is not an Assay error body.
    """
    try:
        err = body["error"]
        code, message, details = err["code"], err["message"], err.get("details") or {}
    except (KeyError, TypeError, AttributeError):
        code, message, details = "http_error", f"HTTP {status}: {text[:200]}", {}
    cls = error_classes_by_code().get(code) or ERROR_BY_STATUS.get(status, AssayError)
    error = cls(message, details=details)
    error.field = details.get("field")
    error.code = code
    return error
