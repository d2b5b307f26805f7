"""Fixtures of the security suites: the real app behind ``fastapi.testclient``, seen either
from this machine (loopback peer and ``Host``: local no-auth mode applies) or from outside;
``make_api`` builds apps with API keys on a fresh store and hands out keys by role."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.auth import Role, create_api_key
from assay.service.settings import Settings
from assay.storage.factory import open_store

EXP = {
    "name": "sec",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "seed": 1,
}


def local_client(app, **kw) -> TestClient:
    """A client that looks local in every respect (loopback peer, loopback ``Host``)."""
    return TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50123), **kw)


def remote_client(app, **kw) -> TestClient:
    """A client from another machine (public peer address and host name)."""
    return TestClient(app, base_url="http://assay.example.com", client=("203.0.113.7", 50123), **kw)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keys_app(store):
    """An app that requires keys, with one key per role in project ``team``."""
    app = create_app(Settings(auth="keys", reaper_interval_s=0), store=store)
    app.state.tokens = {r: create_api_key(store, "team", name=r.value, role=r) for r in Role}
    return app


@pytest.fixture
def keyed(keys_app):
    with remote_client(keys_app) as c:
        c.tokens = keys_app.state.tokens
        yield c


@pytest.fixture
def sec():
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import a
    conftest): ``sec.local(app)``, ``sec.remote(app)``, ``sec.bearer(token)``, ``sec.EXP``."""
    return SimpleNamespace(local=local_client, remote=remote_client, bearer=bearer, EXP=EXP)


class Api:
    """A running app (``TestClient``) with keys of one project by role."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.store = open_store(url)
        self.app = create_app(settings, self.store)
        self.http = TestClient(self.app).__enter__()

    def key(self, role: str = "member", project: str = "team") -> dict[str, str]:
        token = create_api_key(self.store, project, name=f"{role}-key", role=Role(role))
        return {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self.http.__exit__(None, None, None)
        self.store.close()


@pytest.fixture
def make_api(tmp_path) -> Callable[..., Api]:
    """``make_api(**settings)``: an app with API keys on a fresh SQLite file."""
    made: list[Api] = []

    def make(**overrides) -> Api:
        settings = Settings(auth="keys", reaper_interval_s=0, orchestrator=False, **overrides)
        api = Api(settings, f"sqlite:///{tmp_path / f'sec{len(made)}.db'}")
        made.append(api)
        return api

    yield make
    for a in made:
        a.close()
