"""Job lists (``GET /experiments/{id}/jobs``, ``GET /jobs``) carry each job's progress
(``last_step``, read for the whole list in one query) and, on request, a short log tail."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import event

from assay.platform.experiment import ExperimentConfig
from assay.platform.jobspec import Job, JobState
from assay.service.app import create_app
from assay.service.settings import Settings
from assay.storage.base import NewTrial

SPEC = {
    "name": "jobs",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "job": {"entrypoint": "mypkg.train:run", "parallelism": 2},
}


def add_jobs(store, exp_id, n, tmp_path) -> list:
    with store.lock_experiment(exp_id) as lock:
        k = len(lock.experiment.trials)
        trials = lock.add_trials(
            [NewTrial(arms=[(f"{k + i}_0", {"x": (k + i) / 100})], generator="sobol")
             for i in range(n)]
        )  # fmt: skip
    jobs = []
    for t in trials:
        log = tmp_path / f"trial-{t.id}.log"
        log.write_text(f"starting trial {t.id}\n" + "x" * 100 + f"\nepoch done {t.id}\n")
        jobs.append(
            store.create_job(
                Job(0, t.id, exp_id, "local", "w1", JobState.RUNNING, log_path=str(log))
            )
        )
        store.add_report(t.id, 0, {"loss": 1.0})
        store.add_report(t.id, t.index + 1, {"loss": 0.5})
    return jobs


def test_lists_show_last_step_and_log_tail(store, tmp_path) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC))
    jobs = add_jobs(store, exp.id, 2, tmp_path)
    settings = Settings(auth="none", log_dir=str(tmp_path))  # logs are read only below it
    with TestClient(create_app(settings, store=store)) as api:
        for url in (f"/api/v1/experiments/{exp.id}/jobs", "/api/v1/jobs"):
            listed = api.get(url).json()["jobs"]
            assert {j["id"]: j["last_step"] for j in listed} == {
                jobs[0].id: 1, jobs[1].id: 2
            }  # fmt: skip
            assert all(j["log_tail"] is None for j in listed)  # default: no log
            listed = api.get(url, params={"log_tail_bytes": 20}).json()["jobs"]
            for j in listed:
                full = (tmp_path / f"trial-{j['trial_id']}.log").read_text()
                assert j["log_tail"] == full[-20:] and len(full) > 20
            r = api.get(url, params={"log_tail_bytes": -1})
            assert r.status_code == 422 and r.json()["error"]["details"]["field"].endswith(
                "log_tail_bytes"
            )
            assert api.get(url, params={"log_tail_bytes": 10**6}).status_code == 422
        assert api.get(f"/api/v1/trials/{jobs[1].trial_id}/job").json()["last_step"] == 2


def test_last_step_is_one_query_for_the_whole_list(sql_store, tmp_path) -> None:
    store = sql_store
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC))
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        counts = []
        for n in (1, 6):
            add_jobs(store, exp.id, n, tmp_path)
            statements.clear()
            assert len(api.get("/api/v1/jobs").json()["jobs"]) in (1, 7)
            counts.append(sum("trial_reports" in s for s in statements))
    assert counts == [1, 1], counts  # no query per job
