"""REST API behaviour: error bodies and status codes, auth and project isolation, pagination,
and "a rejected request changes nothing"."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.auth import create_api_key
from assay.service.settings import Settings

EXP = {
    "name": "api",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "k", "type": "choice", "values": ["a", "b"]},
    ],
    "objective": "y",
    "outcome_constraints": ["c <= 1"],
    "generator": "sobol",
    "seed": 1,
}


@pytest.fixture
def api(store):
    with TestClient(create_app(Settings(auth="none"), store=store)) as c:
        yield c


@pytest.fixture
def keyed(store):
    with TestClient(create_app(Settings(auth="keys"), store=store)) as c:
        yield c


def assert_error(r, status: int, code: str | None = None, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"code", "message", "details"} and body["message"]
    if code:
        assert body["code"] == code
    if field:
        assert body["details"].get("field") == field, body
    return body


def test_openapi_and_docs_are_published(api) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/api/v1/experiments",
        "/api/v1/experiments/{experiment_id}/trials:ask",
        "/api/v1/trials/{trial_id}:complete",
        "/api/v1/experiments/{experiment_id}/best",
    ):
        assert p in paths
    assert api.get("/docs").status_code == 200
    create = spec["components"]["schemas"]["ExperimentCreate"]
    assert create.get("examples")


def test_create_get_list_patch(api) -> None:
    r = api.post("/api/v1/experiments", json=EXP)
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["config"]["outcome_constraints"] == ["c <= 1"]
    assert api.get(f"/api/v1/experiments/{exp['id']}").json()["name"] == "api"
    assert [e["id"] for e in api.get("/api/v1/experiments").json()["experiments"]] == [exp["id"]]
    r = api.patch(f"/api/v1/experiments/{exp['id']}", json={"status": "paused"})
    assert r.json()["status"] == "paused"
    assert api.get("/api/v1/experiments", params={"status": "active"}).json()["experiments"] == []
    assert_error(api.patch(f"/api/v1/experiments/{exp['id']}", json={"status": "gone"}), 422)


@pytest.mark.parametrize(
    ("patch", "status", "field"),
    [
        (
            {"parameters": [{"name": "x", "type": "float", "bounds": [1, 0]}]},
            422,
            "parameters[0].bounds",
        ),
        (
            {"parameters": [{"name": "x", "type": "float", "bounds": [0, 1], "log": True}]},
            422,
            "parameters[0].bounds",
        ),
        ({"parameters": [{"name": "x", "type": "wat"}]}, 422, None),
        ({"parameters": []}, 422, "parameters"),
        ({"outcome_constraints": ["c < 1"]}, 422, "outcome_constraints[0]"),
        ({"outcome_constraints": ["y <= 1"]}, 422, "outcome_constraints[0]"),
        ({"parameter_constraints": ["x * x <= 1"]}, 422, "parameter_constraints"),
        ({"generator": "tpe"}, 422, "generator"),
        ({"generator_settings": {"bogus": 1}}, 422, None),
        ({"objective": ""}, 422, None),
        ({"surprise": 1}, 422, "surprise"),
        ({"seed": -1}, 422, "seed"),
    ],
)
def test_bad_experiment_is_rejected_and_nothing_stored(api, patch, status, field) -> None:
    r = api.post("/api/v1/experiments", json={**EXP, **patch})
    assert_error(r, status, field=field)
    assert api.get("/api/v1/experiments").json()["experiments"] == []


def test_malformed_json_is_400(api) -> None:
    r = api.post(
        "/api/v1/experiments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "malformed_json")


def test_ask_complete_and_lifecycle_errors(api) -> None:
    exp = api.post("/api/v1/experiments", json=EXP).json()
    r = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 3})
    assert r.status_code == 200, r.text
    trials = r.json()["trials"]
    assert [t["index"] for t in trials] == [0, 1, 2]
    t0 = trials[0]
    ok = api.post(
        f"/api/v1/trials/{t0['id']}:complete",
        json={"observations": {"y": {"mean": 1.5, "sem": 0.2}, "c": [0.3, 0.1, 50]}},
    )
    assert ok.status_code == 200, ok.text
    arm = t0["arms"][0]["name"]
    assert ok.json()["observations"][arm]["c"] == {"mean": 0.3, "sem": 0.1, "n": 50}
    assert_error(
        api.post(f"/api/v1/trials/{t0['id']}:complete", json={"observations": {"y": 2.0}}),
        409, "invalid_transition",
    )  # fmt: skip
    assert api.get(f"/api/v1/trials/{t0['id']}").json()["observations"][arm]["y"]["mean"] == 1.5
    t1 = trials[1]
    for bad, field in [
        ({"observations": {"nope": 1.0}}, "observations.nope"),
        ({"observations": {"y": {"mean": 1.0, "sem": -1}}}, None),
        ({"observations": {"y": "NaN"}}, "observations.y"),
        ({"observations": {}}, "observations"),
        ({}, "observations"),
        ({"observations": {"y": 1.0}, "arms": {}}, "observations"),
        ({"arms": {"zz": {"y": 1.0}}}, "observations.zz"),
    ]:
        assert_error(api.post(f"/api/v1/trials/{t1['id']}:complete", json=bad), 422, field=field)
    assert api.get(f"/api/v1/trials/{t1['id']}").json()["state"] == "running"
    events = api.get(f"/api/v1/experiments/{exp['id']}/events").json()["events"]
    assert len(events) == 4  # 3 creations + 1 completion; no event from rejected requests
    assert (
        api.post(f"/api/v1/trials/{t1['id']}:fail", json={"reason": "OOM"}).json()["state"]
        == "failed"
    )
    assert_error(api.post(f"/api/v1/trials/{t1['id']}:abandon", json={}), 409)
    hb = api.post(f"/api/v1/trials/{trials[2]['id']}:heartbeat", json={"lease_seconds": 5})
    assert hb.json()["lease_expires_at"] is not None
    after = events[-1]["id"]
    newer = api.get(f"/api/v1/experiments/{exp['id']}/events", params={"after": after}).json()
    assert [e["to_state"] for e in newer["events"]] == ["failed"]


def test_not_found_and_bad_ids(api) -> None:
    assert_error(api.get("/api/v1/experiments/999"), 404, "not_found")
    assert_error(api.get("/api/v1/trials/999"), 404, "not_found")
    assert_error(api.post("/api/v1/experiments/999/trials:ask", json={}), 404)
    assert_error(api.get("/api/v1/experiments/abc"), 422)
    assert_error(api.get("/api/v1/nothing-here"), 404)


def test_trials_pagination_and_filters(api) -> None:
    exp = api.post("/api/v1/experiments", json=EXP).json()
    trials = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={"n": 7}).json()["trials"]
    api.post(f"/api/v1/trials/{trials[3]['id']}:fail", json={})
    page = api.get(
        f"/api/v1/experiments/{exp['id']}/trials", params={"offset": 2, "limit": 3}
    ).json()
    assert page["total"] == 7 and [t["index"] for t in page["trials"]] == [2, 3, 4]
    failed = api.get(f"/api/v1/experiments/{exp['id']}/trials", params={"state": "failed"}).json()
    assert failed["total"] == 1 and failed["trials"][0]["index"] == 3
    both = api.get(
        f"/api/v1/experiments/{exp['id']}/trials",
        params=[("state", "failed"), ("state", "running")],
    ).json()
    assert both["total"] == 7
    assert_error(api.get(f"/api/v1/experiments/{exp['id']}/trials", params={"limit": 0}), 422)
    assert_error(api.get(f"/api/v1/experiments/{exp['id']}/trials", params={"state": "x"}), 422)


def test_idempotent_ask_over_http(api) -> None:
    exp = api.post("/api/v1/experiments", json=EXP).json()
    body = {"n": 2, "idempotency_key": "retry-me"}
    a = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json=body).json()
    b = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json=body).json()
    assert [t["id"] for t in a["trials"]] == [t["id"] for t in b["trials"]]


def test_best_without_data_is_404_then_works(api) -> None:
    exp = api.post("/api/v1/experiments", json=EXP).json()
    assert_error(api.get(f"/api/v1/experiments/{exp['id']}/best"), 404)
    [t] = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}).json()["trials"]
    api.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": 2.0, "c": 0.0}})
    best = api.get(f"/api/v1/experiments/{exp['id']}/best").json()
    assert best["parameters"] == t["parameters"]


def test_auth_required_and_projects_isolated(keyed, store) -> None:
    key_a = create_api_key(store, "team-a")
    key_b = create_api_key(store, "team-b")
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}
    assert keyed.get("/api/v1/health").status_code == 200
    assert_error(keyed.get("/api/v1/experiments"), 401, "unauthenticated")
    assert_error(keyed.get("/api/v1/experiments", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(keyed.post("/api/v1/experiments", json=EXP), 401)
    assert store.list_experiments() == []
    exp = keyed.post("/api/v1/experiments", json=EXP, headers=a).json()
    assert exp["project"] == "team-a"
    [t] = keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}, headers=a).json()[
        "trials"
    ]
    # another project's ids answer 404 (not 403), so ids do not leak
    assert_error(keyed.get(f"/api/v1/experiments/{exp['id']}", headers=b), 404)
    assert_error(keyed.get(f"/api/v1/trials/{t['id']}", headers=b), 404)
    assert_error(
        keyed.post(f"/api/v1/trials/{t['id']}:complete", json={"observations": {"y": 1.0}}, headers=b),
        404,
    )  # fmt: skip
    assert_error(keyed.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}, headers=b), 404)
    assert keyed.get("/api/v1/experiments", headers=b).json()["experiments"] == []
    assert keyed.get(f"/api/v1/trials/{t['id']}", headers=a).json()["state"] == "running"
    events = keyed.get(f"/api/v1/experiments/{exp['id']}/events", headers=a).json()["events"]
    assert events[0]["actor"].startswith("key:assay_")
