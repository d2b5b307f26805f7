"""Fixtures of the security suites.

``api`` builds a real app with API keys on a real store and hands out keys by role. Admin
keys are the one place that depends on how roles are stored: :func:`_grant_admin` (rewire it
to ``create_api_key(..., role="admin")`` once keys carry roles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.auth import Principal, Role, create_api_key
from assay.service.settings import Settings
from assay.storage.factory import open_store


def _grant_admin(app, token: str) -> None:  # type: ignore[no-untyped-def]
    """Make ``token`` resolve to an admin principal (stand-in for keys with roles)."""
    from assay.service.auth import hash_token

    resolver = app.state.keys
    admins = getattr(resolver, "_test_admins", None)
    if admins is None:
        admins = resolver._test_admins = set()
        plain = resolver.resolve

        def resolve(authorization: str | None) -> Principal:
            who = plain(authorization)
            token = (authorization or "")[7:].strip()
            if hash_token(token) in admins:
                return dataclasses.replace(who, role=Role.ADMIN)
            return who

        resolver.resolve = resolve
    admins.add(hash_token(token))


class Api:
    """A running app (``TestClient``) with keys of one project by role."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.store = open_store(url)
        self.app = create_app(settings, self.store)
        self.http = TestClient(self.app).__enter__()

    def key(self, role: str = "member", project: str = "team") -> dict[str, str]:
        token = create_api_key(self.store, project, name=f"{role}-key")
        if role == "admin":
            _grant_admin(self.app, token)
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
