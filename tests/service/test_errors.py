"""Typed errors ↔ HTTP in one table: each status the app answers maps back to the class the
remote client raises, 403 included, and an answer's code wins over its status."""

from __future__ import annotations

import pytest

from assay.platform import errors as E
from assay.service.errors import (
    ERROR_BY_STATUS,
    STATUS_BY_ERROR,
    error_from_body,
    response_for,
    status_for,
)


@pytest.mark.parametrize(
    ("cls", "status"), STATUS_BY_ERROR, ids=lambda x: getattr(x, "__name__", x)
)
def test_every_status_maps_back_to_a_class_the_error_is(cls, status) -> None:
    err = cls("boom", field="x")
    assert status_for(err) == status
    back = error_from_body(status, {"error": {"code": "no_such_code", "message": "boom"}})
    assert isinstance(back, ERROR_BY_STATUS[status])
    assert issubclass(cls, ERROR_BY_STATUS[status]) or status == 409


def test_forbidden_is_403_both_ways() -> None:
    assert status_for(E.ForbiddenError("no")) == 403
    assert isinstance(
        error_from_body(403, {"error": {"code": "x", "message": "no"}}), E.ForbiddenError
    )


def test_the_code_wins_and_the_field_comes_back() -> None:
    body = {"error": {"code": "invalid_transition", "message": "told", "details": {"field": "f"}}}
    err = error_from_body(409, body)
    assert type(err) is E.InvalidTransitionError and err.field == "f" and err.message == "told"


def test_a_body_that_is_not_an_error_body_falls_back_to_the_status() -> None:
    err = error_from_body(503, None, "<html>bad gateway</html>")
    assert isinstance(err, E.StorageError) and err.code == "http_error"
    assert err.message == "HTTP 503: <html>bad gateway</html>"
    assert type(error_from_body(418, ["x"], "teapot")) is E.AssayError


def test_unknown_errors_are_500_and_busy_ones_say_when_to_retry() -> None:
    assert status_for(E.ModelFitError("fit")) == 500
    busy = response_for(E.StorageBusyError("busy"))
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.body == b'{"error":{"code":"storage_busy","message":"busy","details":{}}}'
