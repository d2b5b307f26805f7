"""``/api/v1/projects``: list/get/create, key scoping (404 for another project's name, 403 to
create with a key), and bad input answered 4xx naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.auth import create_api_key
from assay.service.settings import Settings

EXP = {
    "name": "e",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
}


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"code", "message", "details"} and body["code"] == code
    return body


def test_no_auth_mode_lists_gets_and_creates(store) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        r = api.post("/api/v1/projects", json={"name": "ads"})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "ads" and r.json()["experiment_count"] == 0
        error(api.post("/api/v1/projects", json={"name": "ads"}), 409, "conflict")
        assert api.post("/api/v1/experiments", json=EXP).status_code == 201  # "default"
        names = {p["name"]: p["experiment_count"] for p in api.get("/api/v1/projects").json()[
            "projects"]}  # fmt: skip
        assert names == {"ads": 0, "default": 1}
        assert api.get("/api/v1/projects/default").json()["experiment_count"] == 1
        error(api.get("/api/v1/projects/nope"), 404, "not_found")
        spec = api.get("/openapi.json").json()
        assert {"/api/v1/projects", "/api/v1/projects/{name}"} <= set(spec["paths"])


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "has space"}, "name"),
     ({"name": "x" * 201}, "name"), ({"name": 3}, "name"), ({"name": "ok", "extra": 1}, "extra")],
)  # fmt: skip
def test_bad_create_is_422_naming_the_field(store, body, field) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        e = error(api.post("/api/v1/projects", json=body), 422, "invalid_request")
        assert e["details"]["field"] == field, e
        assert api.get("/api/v1/projects").json()["projects"] == []  # nothing stored
        e = error(
            api.post(
                "/api/v1/projects", content=b"{", headers={"Content-Type": "application/json"}
            ),
            400,
            "malformed_json",
        )
        e = error(api.get("/api/v1/projects/bad%20name"), 422, "invalid_request")
        assert e["details"]["field"].endswith("name")


def test_a_key_sees_only_its_project_and_cannot_create(store) -> None:
    key_a = create_api_key(store, "team-a")
    create_api_key(store, "team-b")
    with TestClient(create_app(Settings(auth="keys"), store=store)) as api:
        h = {"Authorization": f"Bearer {key_a}"}
        assert [p["name"] for p in api.get("/api/v1/projects", headers=h).json()["projects"]] == [
            "team-a"
        ]
        assert api.get("/api/v1/projects/team-a", headers=h).status_code == 200
        error(api.get("/api/v1/projects/team-b", headers=h), 404, "not_found")
        error(api.post("/api/v1/projects", json={"name": "new"}, headers=h), 403, "forbidden")
        error(api.get("/api/v1/projects"), 401, "unauthenticated")
    assert "new" not in store.list_projects()
