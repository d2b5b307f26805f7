"""Fixtures for the dashboard tests: an app over a seeded store, in local and keys mode."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assay.dashboards.sample import seed_experiment, seed_samples
from assay.service.app import create_app
from assay.service.auth import create_api_key
from assay.service.settings import Settings
from assay.storage.memory import MemoryStore


def seed(store, project: str = "default") -> dict[str, int]:
    return seed_samples(store, project=project)


@pytest.fixture
def seeded():
    store = MemoryStore()
    ids = seed(store)
    app = create_app(Settings(reaper_interval_s=0), store)
    # local no-auth mode holds only for a request local in every respect (loopback peer and
    # Host): the test client must look like this machine's browser
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
        yield client, store, ids


@pytest.fixture
def keys_app():
    store = MemoryStore()
    mine = seed(store, project="team-a")
    theirs = seed_experiment(store, "secret", n_trials=3, project="team-b")
    key = create_api_key(store, "team-a", role="viewer")
    app = create_app(Settings(auth="keys", reaper_interval_s=0), store)
    with TestClient(app) as client:
        yield client, key, mine, theirs.id
