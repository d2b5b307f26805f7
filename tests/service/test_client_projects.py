"""The client's project verbs (list, get, create) in every mode: in memory, SQLite,
PostgreSQL and over HTTP (local no-auth server)."""

from __future__ import annotations

import uuid

import pytest

from assay.platform.errors import ConflictError, NotFoundError, ValidationError


def test_projects_list_get_create(client) -> None:
    name = f"team-{client.mode}-{uuid.uuid4().hex[:6]}"
    created = client.create_project(name)
    assert created.name == name and created.experiment_count == 0
    assert name in [p.name for p in client.list_projects()]
    assert client.get_project(name).experiment_count == 0
    client.create_experiment(
        f"exp-{name}", [{"name": "x", "type": "float", "bounds": [0, 1]}], "y", generator="sobol"
    )
    assert client.get_project("default").experiment_count >= 1
    with pytest.raises(ConflictError):
        client.create_project(name)
    with pytest.raises(NotFoundError):
        client.get_project(f"missing-{name}")
    with pytest.raises(ValidationError):
        client.create_project("no spaces allowed")
