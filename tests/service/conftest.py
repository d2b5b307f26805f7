"""Fixtures of the service suites: one live ``assay serve`` for the HTTP client mode, and the
Python client in each of its four modes (in memory, embedded SQLite, embedded PostgreSQL, and
over HTTP against that server), so every client suite runs once per backend."""

from __future__ import annotations

import pytest

import assay


@pytest.fixture(scope="session")
def http_server(tmp_path_factory, live_server_class):
    """A real ``assay serve`` (no auth, loopback) on a migrated SQLite file, shared by the
    session's HTTP-mode clients; suites keep apart by naming their experiments uniquely."""
    from assay.storage.factory import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('http') / 'server.db'}"
    open_store(url).close()  # migrate
    server = live_server_class(url).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "postgresql", "http"])
def client(request, tmp_path):
    """``assay.Client`` in each mode; ``client.mode`` says which."""
    if request.param == "memory":
        c = assay.Client()
    elif request.param == "sqlite":
        c = assay.Client(f"sqlite:///{tmp_path / 'client.db'}")
    elif request.param == "postgresql":
        c = assay.Client(request.getfixturevalue("postgres_url"))
    else:
        c = assay.Client(request.getfixturevalue("http_server").url)
    c.mode = request.param
    yield c
    c.close()
