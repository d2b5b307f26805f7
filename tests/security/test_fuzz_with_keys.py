"""schemathesis over the whole OpenAPI schema against a real ``assay serve --auth keys``, as a
viewer and as an admin: whatever is sent, no answer is 5xx and every answer matches the schema
(401/403/415 included)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from assay.service.auth import Role, create_api_key
from assay.storage.factory import open_store


@pytest.mark.slow
def test_no_server_errors_with_keys(tmp_path, live_server_factory) -> None:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    store = open_store(url)
    tokens = {r: create_api_key(store, "fuzz", role=r) for r in (Role.VIEWER, Role.ADMIN)}
    store.close()
    server = live_server_factory(url, auth="keys").start()
    admin = {"Authorization": f"Bearer {tokens[Role.ADMIN]}"}
    exp = {
        "name": "seed", "objective": "y", "generator": "sobol",
        "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    }  # fmt: skip
    httpx.post(server.url + "/api/v1/experiments", json=exp, headers=admin).raise_for_status()
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert any("/keys" in op.path for op in operations)
    for role in (Role.VIEWER, Role.ADMIN):
        for operation in operations:
            _fuzz(operation, {"Authorization": f"Bearer {tokens[role]}"})


def _fuzz(operation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)  # fmt: skip
    def run(case) -> None:
        if ":revoke" in case.path:
            return  # revoking the fuzzing key itself would end the run
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )

    run()
