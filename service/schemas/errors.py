"""The error envelope of every 4xx/5xx answer: ``{"error": {"code", "message", "details"}}``.

Owns the response shapes only; the mapping of typed errors to status codes lives with the app.
May import pydantic only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody
