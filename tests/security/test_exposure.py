"""Attack 2: auth follows the exposure, not the configured host. No-auth only for a request
that is local in every respect; every app factory defaults to keys; a rebinding ``Host`` or a
proxy's forwarding header needs a key; an allowlist of hosts answers others 400."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app, create_app_from_env
from assay.service.auth import is_local_request
from assay.service.settings import Settings
from assay.storage.factory import open_store


@pytest.fixture
def auto_app(store):
    return create_app(Settings(reaper_interval_s=0), store=store)  # auth=auto, 127.0.0.1


def test_local_request_needs_no_key_but_anything_else_does(auto_app, sec) -> None:
    with sec.local(auto_app) as c:
        assert c.get("/api/v1/experiments").status_code == 200
        assert c.get("/api/v1/health").json()["auth"] == "none"
        # DNS rebinding: the page's requests carry the attacker's host name
        r = c.get("/api/v1/experiments", headers={"Host": "rebind.attacker.example:8000"})
        assert r.status_code == 401
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host"):
            r = c.get("/api/v1/experiments", headers={header: "for=198.51.100.2"})
            assert r.status_code == 401, header  # came through a proxy
        r = c.post("/api/v1/experiments", json=sec.EXP, headers={"X-Forwarded-For": "1.2.3.4"})
        assert r.status_code == 401
    with sec.remote(auto_app) as c:  # peer and Host from outside
        assert c.get("/api/v1/experiments").status_code == 401
        assert c.get("/api/v1/health").json()["auth"] == "keys"
    peer_only = TestClient(auto_app, base_url="http://127.0.0.1", client=("10.0.0.5", 1))
    assert peer_only.get("/api/v1/experiments").status_code == 401


def test_a_non_loopback_socket_never_allows_no_auth(store, sec) -> None:
    app = create_app(Settings(host="0.0.0.0", reaper_interval_s=0), store=store)
    with sec.local(app) as c:
        assert c.get("/api/v1/experiments").status_code == 401


def test_is_local_request_checks_all_four() -> None:
    ok = {"client": ("127.0.0.1", 1), "headers": [(b"host", b"localhost:8000")]}
    assert is_local_request(ok, True)
    assert not is_local_request(ok, False)
    assert not is_local_request({**ok, "client": ("192.168.1.2", 1)}, True)
    assert not is_local_request({**ok, "headers": [(b"host", b"evil.example")]}, True)
    assert not is_local_request({**ok, "headers": [*ok["headers"], (b"forwarded", b"x")]}, True)
    assert is_local_request({"client": ("::1", 1), "headers": [(b"host", b"[::1]:80")]}, True)
    assert not is_local_request({"client": None, "headers": ok["headers"]}, True)


def test_factory_defaults_to_keys_unless_serve_vouches_for_a_loopback_bind(
    monkeypatch, tmp_path
) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    open_store(url).close()
    monkeypatch.setenv("ASSAY_DATABASE_URL", url)
    monkeypatch.delenv("ASSAY_BOUND_HOST", raising=False)
    monkeypatch.setenv("ASSAY_HOST", "127.0.0.1")  # says nothing about uvicorn's --host
    assert create_app_from_env().state.settings.auth == "keys"
    monkeypatch.setenv("ASSAY_AUTH", "none")
    with pytest.raises(RuntimeError, match="ASSAY_AUTH=none"):
        create_app_from_env()
    monkeypatch.setenv("ASSAY_BOUND_HOST", "127.0.0.1")
    assert create_app_from_env().state.settings.auth == "none"
    monkeypatch.setenv("ASSAY_AUTH", "auto")
    monkeypatch.setenv("ASSAY_BOUND_HOST", "0.0.0.0")
    assert create_app_from_env().state.settings.auth == "keys"


def test_allowed_hosts_refuse_other_hosts(store) -> None:
    app = create_app(
        Settings(auth="keys", allowed_hosts="assay.example.com,*.internal", reaper_interval_s=0),
        store=store,
    )
    c = TestClient(app, base_url="http://assay.example.com")
    assert c.get("/api/v1/health").status_code == 200
    assert c.get("/api/v1/health", headers={"Host": "x.internal:8000"}).status_code == 200
    r = c.get("/api/v1/health", headers={"Host": "rebind.attacker.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            httpx.get(url + "/api/v1/health", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not start")


@pytest.mark.slow
def test_real_servers_factory_and_rebinding(tmp_path, live_server_factory) -> None:
    """Over real sockets: ``uvicorn --factory`` (the container set-up) requires keys; a local
    ``assay serve`` answers a local request without one, but not a rebinding Host or a
    proxied request."""
    import socket

    url = f"sqlite:///{tmp_path / 'srv.db'}"
    open_store(url).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    env.update(ASSAY_DATABASE_URL=url, ASSAY_AUTH="auto", ASSAY_REAPER_INTERVAL_S="0")
    factory = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "assay.service.app:create_app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, factory)
        assert httpx.get(base + "/api/v1/experiments").status_code == 401
        assert httpx.get(base + "/api/v1/health").json()["auth"] == "keys"
    finally:
        factory.terminate()
        factory.wait(timeout=30)
    served = live_server_factory(url, auth="auto").start()
    assert httpx.get(served.url + "/api/v1/experiments").status_code == 200
    rebind = httpx.get(
        served.url + "/api/v1/experiments", headers={"Host": f"evil.example:{served.port}"}
    )
    assert rebind.status_code == 401
    proxied = httpx.get(served.url + "/api/v1/experiments", headers={"X-Forwarded-For": "8.8.8.8"})
    assert proxied.status_code == 401
    r = httpx.post(served.url + "/api/v1/experiments", json={"name": "x"},
                   headers={"Host": f"evil.example:{served.port}"})  # fmt: skip
    assert r.status_code == 401
