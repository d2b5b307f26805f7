"""Operations: health and readiness, Prometheus ``/metrics`` (off, open, behind its token;
the counters move when asks/tells/fits happen), request ids and JSON access logs, and the
multiprocess view of several uvicorn workers."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from assay.service.app import create_app
from assay.service.observability import EXPORTED, JsonFormatter
from assay.service.settings import Settings

EXP = {
    "name": "ops",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "seed": 1,
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_and_ready_on_every_backend(store) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        assert api.get("/api/v1/health").json()["status"] == "ok"
        r = api.get("/api/v1/ready")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and body["checks"]["database"]["ok"]
        if hasattr(store, "schema_revision"):
            assert body["checks"]["schema"]["current"] == body["checks"]["schema"]["head"]


def test_ready_is_503_on_an_old_schema_or_a_dead_orchestrator(tmp_path) -> None:
    from assay.storage.factory import open_store

    store = open_store(f"sqlite:///{tmp_path / 'old.db'}")  # current while the app starts ...
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        assert api.get("/api/v1/ready").status_code == 200
        with store.engine.begin() as conn:  # ... then the schema moves away from the head
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        r = api.get("/api/v1/ready")
        assert r.status_code == 503 and r.json()["checks"]["schema"]["ok"] is False

    class Dead:
        alive = False

        def start(self) -> None: ...

        def stop(self) -> None: ...

    with TestClient(create_app(Settings(auth="none"), store=store, orchestrator=Dead())) as api:
        r = api.get("/api/v1/ready")
        assert r.status_code == 503 and r.json()["checks"]["orchestrator"] == {"ok": False}
    store.close()


def test_metrics_are_off_by_default_and_token_guarded(store) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        assert api.get("/metrics").status_code == 404
    settings = Settings(auth="none", metrics_token="s3cret")
    with TestClient(create_app(settings, store=store)) as api:
        assert api.get("/metrics").status_code == 401
        bad = api.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
        ok = api.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")


def test_metrics_count_requests_asks_tells_and_trials(store) -> None:
    with TestClient(create_app(Settings(auth="none", metrics=True), store=store)) as api:
        before = api.get("/metrics").text
        exp = api.post("/api/v1/experiments", json={**EXP, "generator": "noisy_ei"}).json()
        trials = []
        for y in (0.1, 0.5, 0.3):
            [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1}).json()[
                "trials"
            ]
            trials.append(t)
            r = api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": y}})
            assert r.status_code == 200, r.text
        # noisy_ei fits a GP once the initial design is done: seed more points quickly
        for x in (0.2, 0.8):
            t = api.post(
                f"/api/v1/experiments/{exp['id']}/trials", json={"parameters": {"x": x}}
            ).json()
            api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": x}})
        [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 1}).json()[
            "trials"
        ]
        api.post(f"/api/v1/trials/{t['id']}:fail", json={"reason": "boom"})
        after = api.get("/metrics").text
    assert value(after, "assay_asks_total", verb="ask") - value(
        before, "assay_asks_total", verb="ask"
    ) == pytest.approx(4)
    assert value(after, "assay_tells_total") - value(before, "assay_tells_total") == 5
    assert value(after, "assay_trial_ends_total", state="failed") > value(
        before, "assay_trial_ends_total", state="failed"
    )
    assert value(after, "assay_model_fits_total") > value(before, "assay_model_fits_total")
    assert value(after, "assay_acquisition_seconds_count") > value(
        before, "assay_acquisition_seconds_count"
    )
    route = "/api/v1/experiments/{experiment_id}/trials:ask"
    key = {"method": "POST", "route": route, "status": "200"}
    assert value(after, "assay_http_request_duration_seconds_count", **key) - value(
        before, "assay_http_request_duration_seconds_count", **key
    ) == pytest.approx(4)
    # gauges come from this store: 5 completed and 1 failed trial of this experiment
    assert value(after, "assay_trials", state="completed") == 5
    assert value(after, "assay_trials", state="failed") == 1
    assert value(after, "assay_lock_wait_seconds_count", verb="ask") >= 4
    names = {f.name for f in text_string_to_metric_families(after)}
    for name in EXPORTED:
        base = name.removesuffix("_total")
        assert base in names or name in names, name


def test_request_id_is_echoed_and_logged_as_json(store, caplog) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        exp = api.post("/api/v1/experiments", json=EXP).json()
        with caplog.at_level(logging.INFO, logger="assay.access"):
            r = api.post(
                f"/api/v1/experiments/{exp['id']}/trials:ask",
                json={"n": 1},
                headers={"X-Request-ID": "req-42"},
            )
            fresh = api.get("/api/v1/health")
    assert r.headers["x-request-id"] == "req-42"
    assert len(fresh.headers["x-request-id"]) == 32  # a new id when none was given
    [record] = [x for x in caplog.records if getattr(x, "request_id", None) == "req-42"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-42" and line["experiment_id"] == exp["id"]
    assert line["actor"] == "local" and line["status"] == 200 and line["duration_ms"] > 0
    assert line["route"] == "/api/v1/experiments/{experiment_id}/trials:ask"


@pytest.mark.slow
def test_json_logs_and_multiprocess_metrics_of_a_real_server(tmp_path, live_server_factory) -> None:
    """`assay serve --workers 2 --log-format json`: every line of the log that starts with
    ``{`` is one JSON object, and both workers' counters add up in one scrape."""
    from assay.storage.factory import open_store

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    server = live_server_factory(
        url,
        env={"ASSAY_METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")},
        extra_args=["--workers", "2", "--log-format", "json", "--log-level", "info"],
    ).start()
    n = 30
    with httpx.Client(base_url=server.url) as http:
        for _ in range(n):
            assert http.get("/api/v1/experiments").status_code == 200
        scrape = http.get("/metrics").text
    key = {"method": "GET", "route": "/api/v1/experiments", "status": "200"}
    assert value(scrape, "assay_http_request_duration_seconds_count", **key) == n
    server.stop()
    lines = [ln for ln in server.log().splitlines() if ln.startswith("{")]
    access = [json.loads(ln) for ln in lines if '"assay.access"' in ln]
    assert len(access) >= n and all("request_id" in a for a in access)


def test_privacy_spend_is_counted_once_per_release() -> None:
    from prometheus_client import REGISTRY

    from assay.service.observability import CountingLedger
    from assay.storage.ledger import InMemoryPrivacyLedger

    def spent() -> float:
        labels = {"project": "p-obs", "dataset": "d"}
        return REGISTRY.get_sample_value("assay_privacy_epsilon_spent_total", labels) or 0.0

    ledger = CountingLedger(InMemoryPrivacyLedger(), "p-obs")
    ledger.set_budget("d", 5.0, 1e-5)
    before = spent()
    ledger.charge("d", 1.5, 1e-6, release_id="r1")
    ledger.charge("d", 1.5, 1e-6, release_id="r1")  # a retry is not charged twice
    assert spent() - before == pytest.approx(1.5)
    assert ledger.status("d").epsilon_spent == pytest.approx(1.5)
