"""REST privacy budgets and DP synthetic releases: a release runs in the background (202 +
status URL), charges the SQL ledger once, and serves its report and table; an over-budget or
malformed request is refused with a typed error and stores nothing; projects are isolated."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from assay.generative.tabular.data import AB_LOGS_SCHEMA, ab_logs
from assay.generative.tabular.schema import RowCodec, TableSchema
from assay.service.app import create_app
from assay.service.auth import create_api_key
from assay.service.settings import Settings

TINY_LM = {"epochs": 1, "d_model": 8, "n_layers": 1, "n_heads": 2, "batch_size": 60}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def ab_csv() -> str:
    _, table = ab_logs(300, seed=3)
    return pd.DataFrame(table).to_csv(index=False)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(auth="none", release_dir=str(tmp_path / "rel"), data_dir=str(tmp_path / "data"))


@pytest.fixture
def api(store, settings):
    with TestClient(create_app(settings, store=store)) as c:
        yield c


def _body(csv: str, **kw) -> dict:
    return {"schema": AB_LOGS_SCHEMA, "csv": csv, **kw}


def _wait(client, url: str, headers=None, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "running":
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"{url} still running after {timeout}s")


def _error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    return err


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_budget_put_get_and_errors(api) -> None:
    assert api.get("/api/v1/datasets/ab/privacy-budget").status_code == 404
    r = api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 2, "delta": 1e-5})
    assert r.status_code == 200, r.text
    assert r.json()["epsilon_remaining"] == 2 and r.json()["charges"] == []
    assert api.get("/api/v1/datasets/ab/privacy-budget").json()["epsilon_budget"] == 2
    _error(api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": -1, "delta": 0}),
           422, "invalid_request")  # fmt: skip
    _error(api.put("/api/v1/datasets/..hidden/privacy-budget", json={"epsilon": 1, "delta": 0}),
           422, "invalid_request")  # fmt: skip
    api.app.state.store.privacy_ledger("default").charge("ab", 1.5, 1e-6, release_id="cli-1")
    err = _error(
        api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1, "delta": 1e-5}),
        409, "conflict",
    )  # fmt: skip
    assert "below what is already spent" in err["message"]
    charges = api.get("/api/v1/datasets/ab/privacy-budget").json()["charges"]
    assert [c["release_id"] for c in charges] == ["cli-1"]


@pytest.mark.slow
def test_lm_release_end_to_end(api, ab_csv, settings) -> None:
    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 4, "delta": 1e-5})
    body = _body(ab_csv, epsilon=3.0, hyperparameters=TINY_LM, rows=120, release_id="wk49")
    r = api.post("/api/v1/datasets/ab/synthetic-releases", json=body)
    assert r.status_code == 202, r.text
    url = "/api/v1/datasets/ab/synthetic-releases/wk49"
    assert r.headers["location"] == url == r.json()["status_url"]
    assert r.json()["status"] == "running" and r.json()["table_url"] is None
    done = _wait(api, url)
    assert done["status"] == "succeeded", done["error"]
    report = done["report"]
    assert report["mechanism"]["name"] == "dp_sgd_tabular_lm"
    assert report["epsilon_spent"] <= 3.0 + 1e-6 and report["rows_out"] == 120
    assert report["mechanism"]["hyperparameters"]["d_model"] == 8
    assert "threat_model" in report["reconstruction"]

    table = api.get(done["table_url"])
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    synth = pd.read_csv(pd.io.common.StringIO(table.text), dtype=str, keep_default_na=False)
    schema = TableSchema.from_dict(AB_LOGS_SCHEMA)
    assert list(synth.columns) == schema.names and len(synth) == 120
    RowCodec(schema).to_codes(synth)  # schema-valid

    budget = api.get("/api/v1/datasets/ab/privacy-budget").json()
    assert [c["release_id"] for c in budget["charges"]] == ["wk49"]
    assert budget["epsilon_spent"] == pytest.approx(3.0)

    # a repeated request returns the same release: no second sample, no second charge
    again = api.post("/api/v1/datasets/ab/synthetic-releases", json=body)
    assert again.status_code == 200 and again.json()["created_at"] == done["created_at"]
    assert api.get("/api/v1/datasets/ab/privacy-budget").json()["releases"] == 1
    # the same id with another request is a conflict
    other = {**body, "epsilon": 0.5}
    _error(api.post("/api/v1/datasets/ab/synthetic-releases", json=other), 409, "conflict")
    listed = api.get("/api/v1/datasets/ab/synthetic-releases").json()["releases"]
    assert [x["release_id"] for x in listed] == ["wk49"]
    # the private table never touched the disk
    names = {p.name for p in _files(Path(settings.release_dir))}
    assert names == {"release.json", "synthetic.csv", "report.json"}


def test_over_budget_is_409_and_stores_nothing(api, ab_csv, settings) -> None:
    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1, "delta": 1e-5})
    before = api.get("/api/v1/datasets/ab/privacy-budget").json()
    r = api.post("/api/v1/datasets/ab/synthetic-releases",
                 json=_body(ab_csv, epsilon=1.5, method="mst", release_id="big"))  # fmt: skip
    err = _error(r, 409, "privacy_budget_exceeded")
    assert err["details"]["epsilon_remaining"] == 1 and err["details"]["release_id"] == "big"
    assert api.get("/api/v1/datasets/ab/privacy-budget").json() == before
    assert _files(Path(settings.release_dir)) == []
    assert api.get("/api/v1/datasets/ab/synthetic-releases/big").status_code == 404
    # no budget at all: 404
    r = api.post("/api/v1/datasets/nobudget/synthetic-releases", json=_body(ab_csv, epsilon=1))
    _error(r, 404, "not_found")


def test_concurrent_releases_cannot_overspend(api, ab_csv, settings) -> None:
    """Each accepted release reserves its charge: while the first still waits for the training
    slot, the second no longer fits and is refused up front (409), storing nothing."""
    from assay.service import releases

    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 1, "delta": 1e-5})
    # Hold the server's training slot so the first release is queued, not finished.
    with releases.TRAINING_SLOT:
        r = api.post("/api/v1/datasets/ab/synthetic-releases",
                     json=_body(ab_csv, epsilon=0.8, method="mst", release_id="m1"))  # fmt: skip
        assert r.status_code == 202, r.text
        url = r.headers["location"]
        _error(api.post("/api/v1/datasets/ab/synthetic-releases",
                        json=_body(ab_csv, epsilon=0.8, method="mst", release_id="m2")),
               409, "privacy_budget_exceeded")  # fmt: skip
    assert _wait(api, url)["status"] == "succeeded"
    assert not (Path(settings.release_dir) / "default" / "ab" / "m2").exists()
    budget = api.get("/api/v1/datasets/ab/privacy-budget").json()
    assert budget["releases"] == 1 and budget["epsilon_spent"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"csv": None}, 422, ""),  # neither csv nor table
        ({"table": "ab.csv"}, 422, ""),  # both
        ({"epsilon": 0}, 422, "epsilon"),
        ({"release_id": "../x"}, 422, "release_id"),
        ({"hyperparameters": {"d_model": 10, "n_heads": 4}}, 422, "d_model"),
        ({"csv": "segment,clicks\nnew,many\n"}, 422, None),  # columns missing
        ({"schema": {"columns": [{"name": "x", "type": "date"}]}}, 422, "schema.columns[0]"),
    ],
)
def test_malformed_requests_are_422_and_store_nothing(
    api, ab_csv, settings, change, status, field
) -> None:
    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 5, "delta": 1e-5})
    body = {k: v for k, v in {**_body(ab_csv, epsilon=1.0), **change}.items() if v is not None}
    r = api.post("/api/v1/datasets/ab/synthetic-releases", json=body)
    assert r.status_code == status, r.text
    if field is not None:
        assert field in r.json()["error"]["details"].get("field", ""), r.json()
    assert _files(Path(settings.release_dir)) == []
    assert api.get("/api/v1/datasets/ab/privacy-budget").json()["releases"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"csv": None, "table": "\uda51x.csv"}, "table"),  # a lone surrogate
        ({"csv": None, "table": "ab\u0000.csv"}, "table"),  # NUL in a path
        ({"csv": "segment,clicks\n\ud800,1\n"}, "csv"),
    ],
)
def test_text_that_cannot_be_stored_is_422_and_stores_nothing(
    api, ab_csv, settings, change, field
) -> None:
    # found by the OpenAPI fuzzer: a NUL in `table` was a 500 ("embedded null byte")
    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 5, "delta": 1e-5})
    body = {k: v for k, v in {**_body(ab_csv, epsilon=1.0), **change}.items() if v is not None}
    r = api.post(
        "/api/v1/datasets/ab/synthetic-releases",
        content=json.dumps(body),  # ASCII escapes: the client cannot encode a lone surrogate
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["details"].get("field", ""), r.json()
    assert _files(Path(settings.release_dir)) == []
    assert api.get("/api/v1/datasets/ab/privacy-budget").json()["releases"] == 0


def test_bad_numeric_value_names_its_column(api, ab_csv) -> None:
    api.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 5, "delta": 1e-5})
    lines = ab_csv.splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("clicks")] = "lots"
    csv = "\n".join([lines[0], ",".join(row), *lines[2:]])
    r = api.post("/api/v1/datasets/ab/synthetic-releases", json=_body(csv, epsilon=1))
    assert _error(r, 422, "invalid_input")["details"]["field"] == "columns.clicks"


def test_projects_are_isolated_and_server_tables_are_per_project(store, tmp_path, ab_csv) -> None:
    settings = Settings(auth="keys", release_dir=str(tmp_path / "rel"),
                        data_dir=str(tmp_path / "data"))  # fmt: skip
    a = {"Authorization": f"Bearer {create_api_key(store, 'growth', role='admin')}"}
    b = {"Authorization": f"Bearer {create_api_key(store, 'search', role='admin')}"}
    (tmp_path / "data" / "growth").mkdir(parents=True)
    (tmp_path / "data" / "growth" / "ab.csv").write_text(ab_csv)
    (tmp_path / "secret.csv").write_text(ab_csv)
    with TestClient(create_app(settings, store=store)) as c:
        assert c.get("/api/v1/datasets/ab/privacy-budget").status_code == 401
        # budgets are admin-only: a member key cannot raise its own (tests/security)
        member = {"Authorization": f"Bearer {create_api_key(store, 'growth', role='member')}"}
        _error(c.put("/api/v1/datasets/ab/privacy-budget", json={"epsilon": 2, "delta": 1e-5},
                     headers=member), 403, "forbidden")  # fmt: skip
        store.privacy_ledger("growth").set_budget("ab", 2, 1e-5)
        assert c.get("/api/v1/datasets/ab/privacy-budget", headers=b).status_code == 404
        body = {"schema": AB_LOGS_SCHEMA, "table": "ab.csv", "epsilon": 0.5, "method": "mst",
                "release_id": "r1"}  # fmt: skip
        r = c.post("/api/v1/datasets/ab/synthetic-releases", json=body, headers=a)
        assert r.status_code == 202, r.text
        done = _wait(c, r.headers["location"], headers=a)
        assert done["status"] == "succeeded" and done["rows_in"] == 300
        # the other project sees neither the release nor the table nor the file
        assert c.get(r.headers["location"], headers=b).status_code == 404
        assert c.get(done["table_url"], headers=b).status_code == 404
        store.privacy_ledger("search").set_budget("ab", 2, 1e-5)
        _error(c.post("/api/v1/datasets/ab/synthetic-releases", json=body, headers=b),
               404, "not_found")  # fmt: skip
        for escape in ("../secret.csv", str(tmp_path / "secret.csv")):
            r = c.post("/api/v1/datasets/ab/synthetic-releases",
                       json={**body, "table": escape, "release_id": "x"}, headers=a)  # fmt: skip
            _error(r, 422, "invalid_input")
    assert store.privacy_ledger("search").status("ab").releases == 0
    assert store.privacy_ledger("growth").status("ab").releases == 1


def test_a_release_whose_server_died_reads_as_interrupted(api, settings) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = Path(settings.release_dir) / "default" / "ab" / "lost"
    folder.mkdir(parents=True)
    rec = {"release_id": "lost", "dataset": "ab", "project": "default", "status": "running",
           "method": "lm", "epsilon": 1.0, "delta": 1e-6, "rows_in": 10,
           "created_at": "2026-01-01T00:00:00+00:00", "fingerprint": "x", "pid": dead.pid,
           "host": os.uname().nodename}  # fmt: skip
    (folder / "release.json").write_text(json.dumps(rec))
    out = api.get("/api/v1/datasets/ab/synthetic-releases/lost").json()
    assert out["status"] == "failed" and out["error"]["code"] == "interrupted"
