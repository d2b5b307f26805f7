"""Fuzz the published OpenAPI schema with schemathesis against a live ``assay serve``:
whatever a client sends, the server never answers 5xx, and every answer matches the schema;
once in local no-auth mode and once with API keys on (the way a team exposes it)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from assay.service.auth import create_api_key
from assay.storage.factory import open_store


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory, live_server_class):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    open_store(url).close()
    server = live_server_class(url).start()
    # Seed some state so that ids 1..3 exist and paths reach real handlers.
    exp = {
        "name": "seed", "objective": "y", "outcome_constraints": ["c <= 1"], "generator": "sobol",
        "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    }  # fmt: skip
    r = httpx.post(server.url + "/api/v1/experiments", json=exp)
    r.raise_for_status()
    httpx.post(server.url + "/api/v1/experiments/1/trials:ask", json={"n": 3}).raise_for_status()
    yield schemathesis.openapi.from_url(server.url + "/openapi.json")
    server.stop()


@pytest.mark.slow
def test_no_server_errors(fuzz_schema) -> None:
    operations = [r.ok() for r in fuzz_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        run()


@pytest.fixture(scope="module")
def fuzz_schema_with_keys(tmp_path_factory, live_server_class):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzzkeys') / 'fuzz.db'}"
    store = open_store(url)
    key = create_api_key(store, "team")
    store.close()
    server = live_server_class(url, auth="keys").start(timeout=180)  # a busy machine
    auth = {"Authorization": f"Bearer {key}"}
    exp = {
        "name": "seed", "objective": "y", "outcome_constraints": ["c <= 1"], "generator": "sobol",
        "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "job": {"entrypoint": "assay.service.demo_job:train_digits", "max_trials": 1},
    }  # fmt: skip
    httpx.post(server.url + "/api/v1/experiments", json=exp, headers=auth).raise_for_status()
    httpx.post(
        server.url + "/api/v1/experiments/1/trials:ask", json={"n": 3}, headers=auth
    ).raise_for_status()
    yield schemathesis.openapi.from_url(server.url + "/openapi.json"), auth
    server.stop()


@pytest.mark.slow
def test_no_server_errors_with_api_keys(fuzz_schema_with_keys) -> None:
    """With auth on (a member key, and without any key): 0 answers >= 500."""
    schema, auth = fuzz_schema_with_keys
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for headers in (auth, {}):

            @given(case=operation.as_strategy())
            @settings(
                max_examples=25 if headers else 5,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case, headers=headers) -> None:
                case.call_and_validate(
                    headers=headers, checks=[not_a_server_error, response_schema_conformance]
                )

            run()
