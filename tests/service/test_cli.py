"""The `assay` command line, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from assay.storage.factory import open_store


def assay(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay.service.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.slow
def test_serve_refuses_an_unmigrated_database_and_names_the_command(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    r = assay("serve", "--database-url", url, "--port", "1")
    assert r.returncode != 0
    assert "assay db upgrade" in r.stderr
    r = assay("db", "upgrade", "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert "-> 0001" in r.stdout or "->" in r.stdout
    again = assay("db", "upgrade", "--database-url", url)  # idempotent
    assert again.returncode == 0


def test_database_url_from_environment(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    r = assay("db", "upgrade", env={"ASSAY_DATABASE_URL": url})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "env.db").exists()


@pytest.mark.slow
def test_keys_create_prints_a_working_key_once(tmp_path, live_server_factory) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert assay("db", "upgrade", "--database-url", url).returncode == 0
    r = assay("keys", "create", "--project", "ads", "--database-url", url)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("assay_") and "shown only once" in r.stderr
    store = open_store(url, migrate=False)
    assert "ads" in store.list_projects()
    store.close()
    server = live_server_factory(url, auth="keys").start()
    assert httpx.get(server.url + "/api/v1/experiments").status_code == 401
    ok = httpx.get(server.url + "/api/v1/experiments", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_serve_prints_where_to_go(tmp_path, live_server_factory) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    server = live_server_factory(url).start()
    log = server.log()
    assert server.url in log and "NO AUTHENTICATION" in log and "127.0.0.1" in log
