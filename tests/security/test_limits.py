"""Attack 5: unbounded work for anyone who can send a request. Each test sends the attack and
fails if its defence (body cap, schema lengths, generator caps, constraint depth, lock wait,
model pool and cache, pagination) is removed."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.limits import ModelWork
from assay.service.settings import Settings
from assay.storage.factory import open_store

SPEC = {
    "name": "lim", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y", "generator": "sobol",
}  # fmt: skip


def field_of(r) -> str:  # type: ignore[no-untyped-def]
    return r.json()["error"]["details"]["field"]


@pytest.mark.slow
def test_body_bomb_against_a_real_server_is_413_before_auth(tmp_path, live_server_factory):
    url = f"sqlite:///{tmp_path / 'bomb.db'}"
    open_store(url).close()
    server = live_server_factory(url, auth="keys", env={"ASSAY_MAX_BODY_BYTES": "65536"})
    server.start(timeout=180)  # a busy shared machine starts servers slowly
    sent = 0

    def endless():  # chunked: no Content-Length to refuse up front
        nonlocal sent
        for _ in range(10_000):  # 640 MB if nobody stops reading
            sent += 65536
            yield b" " * 65536

    with httpx.Client(timeout=30) as http:
        try:
            r = http.post(server.url + "/api/v1/experiments", content=endless(),
                          headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 413, r.text  # not 401: refused before authentication
            assert r.json()["error"]["code"] == "payload_too_large"
        except httpx.HTTPError:
            pass  # the server closed the connection mid-upload: also refused
        assert (
            sent < 1000 * 65536
        )  # cut off early (loopback buffers, a busy server), not read to the end
        r = http.post(server.url + "/api/v1/experiments", content=b"{" * 100_000,
                      headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 413 and r.json()["error"]["details"]["max_body_bytes"] == 65536
        assert http.get(server.url + "/api/v1/health").status_code == 200  # still serving


@pytest.fixture
def api(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'lim.db'}")
    settings = Settings(auth="none", reaper_interval_s=0, orchestrator=False,
                        max_body_bytes=50_000, ask_lock_timeout_s=0.3)  # fmt: skip
    app = create_app(settings, store)
    with TestClient(app) as http:
        http.store = store
        yield http
    store.close()


def test_oversized_body_is_413_json_and_stores_nothing(api) -> None:
    big = {**SPEC, "description": "x" * 60_000}
    r = api.post("/api/v1/experiments", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert api.get("/api/v1/experiments").json()["experiments"] == []


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"parameter_constraints": ["x <= 1" + " " * 3000]}, "parameter_constraints.0"),
     ({"tracking_metrics": [f"m{i}" for i in range(600)]}, "tracking_metrics"),
     ({"status_quo": {"x": "v" * 20_000}}, "status_quo.x"),
     ({"generator_settings": {f"k{i}": 1 for i in range(60)}}, "generator_settings")],
)  # fmt: skip
def test_strings_and_lists_are_bounded(api, patch, field) -> None:
    r = api.post("/api/v1/experiments", json={**SPEC, **patch})
    assert r.status_code == 422 and field_of(r).startswith(field), r.text


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"raw_samples": 65_536}, "generator_settings.raw_samples"),
     ({"num_restarts": 256}, "generator_settings.num_restarts"),
     ({"max_seconds": 86_400}, "generator_settings.max_seconds")],
)  # fmt: skip
def test_generator_settings_over_the_server_caps_are_422(api, settings, field) -> None:
    r = api.post("/api/v1/experiments",
                 json={**SPEC, "generator": "noisy_ei", "generator_settings": settings})  # fmt: skip
    assert r.status_code == 422 and field_of(r) == field, r.text
    assert api.get("/api/v1/experiments").json()["experiments"] == []


@pytest.mark.parametrize(
    "expr",
    ["(" * 300 + "x" + ")" * 300 + " <= 1", "-" * 1500 + "x <= 1", "x" + " + x" * 450 + " <= 1"],
)
def test_deep_constraint_expressions_are_422_not_500(api, expr) -> None:
    r = api.post("/api/v1/experiments", json={**SPEC, "parameter_constraints": [expr[:1999]]})
    assert r.status_code == 422, r.text
    assert field_of(r).startswith("parameter_constraints")


def test_a_locked_ask_waits_boundedly_then_503_with_retry_after(sql_store) -> None:
    app = create_app(Settings(auth="none", reaper_interval_s=0, orchestrator=False,
                              ask_lock_timeout_s=0.3), sql_store)  # fmt: skip
    with TestClient(app) as http:
        exp = http.post("/api/v1/experiments", json=SPEC).json()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with sql_store.lock_experiment(exp["id"]):
                held.set()
                release.wait(20)

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(10)
        t0 = time.monotonic()
        r = http.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1})
        waited = time.monotonic() - t0
        release.set()
        t.join()
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        assert r.json()["error"]["code"] == "lock_timeout"
        assert waited < 5  # one bounded wait, not ASK_ATTEMPTS of them nor forever
        ok = http.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1})
        assert ok.status_code == 200


def test_model_work_is_bounded_and_best_is_cached_per_data_version(api, monkeypatch) -> None:
    import assay.service.api.experiments as routes

    exp = api.post("/api/v1/experiments", json=SPEC).json()
    for i in range(3):
        [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1}).json()[
            "trials"
        ]
        api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": i / 3}})
    fits = []
    real = routes.recommend
    monkeypatch.setattr(routes, "recommend", lambda e: fits.append(1) or real(e))
    first = api.get(f"/api/v1/experiments/{exp['id']}/best")
    assert first.status_code == 200, first.text
    assert api.get(f"/api/v1/experiments/{exp['id']}/best").json() == first.json()
    assert len(fits) == 1  # same data: no refit
    [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1}).json()["trials"]
    api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": 0.9}})
    assert api.get(f"/api/v1/experiments/{exp['id']}/best").status_code == 200
    assert len(fits) == 2  # new data: refit
    # Every slot taken: the next model call waits boundedly, then 503.
    api.app.state.model_work = work = ModelWork(slots=1, wait_s=0.2)
    assert work._sem.acquire()
    try:
        r = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1})
        assert (
            r.status_code == 503
            and r.headers["Retry-After"]
            and r.json()["error"]["code"] == "server_busy"
        )
    finally:
        work._sem.release()


def test_every_list_pages_with_a_maximum(api, monkeypatch) -> None:
    for i in range(3):
        assert api.post("/api/v1/experiments", json={**SPEC, "name": f"p{i}"}).status_code == 201
    page = api.get("/api/v1/experiments", params={"limit": 2, "offset": 1}).json()
    assert [e["name"] for e in page["experiments"]] == ["p1", "p2"] or len(page["experiments"]) == 2
    assert page["total"] == 3
    for path in ("/api/v1/experiments", "/api/v1/jobs", "/api/v1/projects",
                 "/api/v1/experiments/1/events", "/api/v1/experiments/1/observations",
                 "/api/v1/trials/1/events"):  # fmt: skip
        r = api.get(path, params={"limit": 100_000})
        assert r.status_code == 422 and field_of(r) == "query.limit", (path, r.text)
    # The client pages through (a page of 2 here): nothing is cut off at the maximum.
    import assay.service.remote as remote

    monkeypatch.setattr(remote, "PAGE", 2)
    client = remote.RemoteEngine("http://testserver")
    client._http = TestClient(api.app, base_url="http://testserver/api/v1")
    assert sorted(e.name for e in client.list_experiments()) == ["p0", "p1", "p2"]
    exp_id = client.list_experiments()[0].id
    for _ in range(3):
        client.ask(exp_id, 1)
    assert (
        len(client.events(experiment_id=exp_id))
        == len(api.get(f"/api/v1/experiments/{exp_id}/events").json()["events"])
        >= 3
    )


def test_dashboard_model_panels_share_the_bounded_pool(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'dash.db'}")
    app = create_app(Settings(auth="none", reaper_interval_s=0, orchestrator=False,
                              model_slots=1, model_wait_s=0.2), store)  # fmt: skip
    with TestClient(app) as http:
        exp = http.post("/api/v1/experiments", json=SPEC).json()
        for i in range(4):
            [t] = http.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1}).json()[
                "trials"
            ]
            http.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": i / 4}})
        work = app.state.model_work
        assert work._sem.acquire()  # another request is fitting
        try:
            busy = http.get(f"/experiments/{exp['id']}/model-trace")
        finally:
            work._sem.release()
        assert busy.status_code == 503, busy.text
        ok = http.get(f"/experiments/{exp['id']}/model-trace")  # not a cached failure
        assert ok.status_code == 200 and "trace" in ok.json(), ok.text
    store.close()
