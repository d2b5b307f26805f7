"""Typed errors for Assay.

One root, :class:`AssayError`, with specific subclasses that *also* inherit the matching
builtin (the BoTorch convention, ``InfeasibilityError(BotorchError, ValueError)``), so callers
can catch either the domain type or the builtin they already know:

>>> try:
...     raise SearchSpaceError("bounds are empty", field="parameters[0].bounds")
... except ValueError as e:
...     print(e.field)
parameters[0].bounds

Every error carries a stable machine-readable ``code``, a human ``message``, the offending
``field`` (a JSON-path-like string into the request, when there is one) and free-form
``details``. The service maps each class to one HTTP status in one place; nothing else decides
status codes.
"""

from __future__ import annotations

from typing import Any


class AssayError(Exception):
    """Root of every error Assay raises on purpose."""

    code: str = "assay_error"

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details: dict[str, Any] = dict(details or {})
        if field is not None:
            self.details.setdefault("field", field)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body ``{"code", "message", "details"}`` used by the REST API."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(AssayError, ValueError):
    """Input that can never be valid: wrong type, out of range, unknown name."""

    code = "invalid_input"


class SearchSpaceError(ValidationError):
    """An invalid parameter definition, parameter constraint or parameter value."""

    code = "invalid_search_space"


class ConstraintParseError(ValidationError):
    """A parameter or outcome constraint string that cannot be parsed."""

    code = "invalid_constraint"


class ObservationError(ValidationError):
    """An invalid observation: unknown metric, non-finite value, negative SEM, ..."""

    code = "invalid_observation"


class NotFoundError(AssayError, KeyError):
    """The experiment, trial, project or key does not exist (or is not visible to the caller)."""

    code = "not_found"


class ConflictError(AssayError, RuntimeError):
    """The request is valid but conflicts with stored state (e.g. a duplicate name)."""

    code = "conflict"


class InvalidTransitionError(ConflictError):
    """A trial state change the life cycle does not allow (e.g. telling a trial twice)."""

    code = "invalid_transition"


class UnsupportedError(AssayError, NotImplementedError):
    """A valid request for something this generator or backend does not do."""

    code = "unsupported"


class AuthenticationError(AssayError, PermissionError):
    """Missing or invalid credentials."""

    code = "unauthenticated"


class ForbiddenError(AssayError, PermissionError):
    """Valid credentials that do not allow this request (e.g. a job's scoped token)."""

    code = "forbidden"


class ModelFitError(AssayError, RuntimeError):
    """A surrogate model could not be fitted even after the fallbacks."""

    code = "model_fit_failed"


class GenerationError(AssayError, RuntimeError):
    """No candidate could be generated (e.g. the search space is exhausted)."""

    code = "generation_failed"


class StorageError(AssayError, RuntimeError):
    """The database failed in a way the caller cannot fix (after bounded retries)."""

    code = "storage_error"


class StorageBusyError(StorageError):
    """A transient database failure that outlasted the bounded retries: a deadlock, a
    serialization failure, a locked SQLite database, or a concurrent writer that took the same
    trial number. Nothing was stored; the same request is safe to retry (the service answers
    503 with ``Retry-After: retry_after_s``)."""

    code = "storage_busy"
    retry_after_s: int = 1


class LockTimeoutError(StorageBusyError):
    """Another request held the experiment's ask lock longer than the bounded wait
    (PostgreSQL ``lock_timeout``, the SQLite ``flock`` timeout): not retried inside the
    request, so a stuck lock costs each waiter at most the timeout (503 + ``Retry-After``)."""

    code = "lock_timeout"
    retry_after_s: int = 2


class SchemaOutOfDateError(StorageError):
    """The database schema is older than this version of Assay."""

    code = "schema_out_of_date"


class PrivacyBudgetExceededError(ConflictError):
    """A release would spend more ε or δ than the dataset's remaining privacy budget; nothing
    was stored.

    ``details`` carries ``dataset``, ``release_id``, the requested and remaining amounts.
    """

    code = "privacy_budget_exceeded"
