"""Jobs through a live `assay serve` with API keys: run control, jobs and log endpoints,
reports sent over HTTP with the job's scoped token, which opens nothing else."""

from __future__ import annotations

import time

import httpx
import pytest

from assay.service.auth import create_api_key
from assay.storage.factory import open_store

PROBE = """
import os, httpx, assay

def probe(params):
    assay.report(step=1, loss=0.25)
    token = os.environ["ASSAY_JOB_TOKEN"]
    base = os.environ["ASSAY_SERVICE_URL"] + "/api/v1"
    h = {"Authorization": f"Bearer {token}"}
    listing = httpx.get(base + "/experiments", headers=h).status_code
    other = httpx.post(base + "/trials/999999/reports", json={"metrics": {"a": 1}}, headers=h).status_code
    print("probing done", flush=True)
    return {"y": params["x"], "listing_status": float(listing), "other_trial_status": float(other)}
"""


@pytest.mark.slow
def test_jobs_over_http_with_scoped_tokens(tmp_path, monkeypatch, live_server_factory) -> None:
    mod = tmp_path / "probemod"
    mod.mkdir()
    (mod / "assay_probe_jobs.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(mod))
    url = f"sqlite:///{tmp_path / 'api.db'}"
    store = open_store(url)
    key = create_api_key(store, "team")
    server = live_server_factory(
        url,
        auth="keys",
        env={
            "PYTHONPATH": str(mod),
            "ASSAY_LOG_DIR": str(tmp_path / "logs"),
            "ASSAY_JOB_ENTRYPOINTS": "assay_probe_jobs:*",  # the server's allowlist
        },
    ).start()
    api = httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    spec = {
        "name": "probe", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "y", "tracking_metrics": ["listing_status", "other_trial_status"],
        "generator": "sobol",
        "job": {"entrypoint": "assay_probe_jobs:probe", "parallelism": 1, "max_trials": 1},
    }  # fmt: skip
    r = api.post("/experiments", json=spec)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    assert api.get(f"/experiments/{exp_id}/run").json()["run_state"] is None
    assert api.post(f"/experiments/{exp_id}/run:start").json()["run_state"] == "running"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if api.get(f"/experiments/{exp_id}/run").json()["run_state"] == "done":
            break
        time.sleep(0.5)
    run = api.get(f"/experiments/{exp_id}/run").json()
    assert run["run_state"] == "done", server.log()[-3000:]
    [trial] = api.get(f"/experiments/{exp_id}/trials").json()["trials"]
    obs = trial["observations"][trial["arms"][0]["name"]]
    assert obs["listing_status"]["mean"] == 403.0  # a job token cannot read experiments
    assert obs["other_trial_status"]["mean"] == 404.0  # nor report for another trial
    reports = api.get(f"/trials/{trial['id']}/reports").json()["reports"]
    assert [(r["step"], r["metrics"]) for r in reports] == [(1, {"loss": 0.25})]
    job = api.get(f"/trials/{trial['id']}/job").json()
    assert job["state"] == "succeeded" and job["last_step"] == 1 and job["executor"] == "local"
    assert [j["trial_id"] for j in api.get(f"/experiments/{exp_id}/jobs").json()["jobs"]] == [
        trial["id"]
    ]
    assert api.get("/jobs", params={"state": "succeeded"}).json()["jobs"][0]["id"] == job["id"]
    log = api.get(f"/trials/{trial['id']}/log", params={"tail_bytes": 100})
    assert log.status_code == 200 and "probing done" in log.text
    full = api.get(f"/trials/{trial['id']}/log:download")
    assert full.status_code == 200 and "probing done" in full.text
    assert api.post(f"/experiments/{exp_id}/run:pause").json()["run_state"] == "paused"
    assert api.post(f"/trials/{trial['id']}:cancel").status_code == 409  # already completed
    no_auth = httpx.get(f"{server.url}/api/v1/experiments/{exp_id}/jobs")
    assert no_auth.status_code == 401
