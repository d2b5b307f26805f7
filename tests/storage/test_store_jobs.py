"""Job orchestration storage, on every backend: run state, claiming candidates exactly once,
job rows, scoped job tokens and intermediate reports."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from assay.platform.errors import ConflictError, NotFoundError
from assay.platform.experiment import ExperimentConfig, ExperimentStatus, TrialState
from assay.platform.jobspec import Job, JobState
from assay.storage.base import NewTrial

SPEC = {
    "name": "jobs",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "job": {"entrypoint": "mypkg.train:run", "parallelism": 2},
}


def candidates(store, exp_id, n):
    with store.lock_experiment(exp_id) as lock:
        k = len(lock.experiment.trials)
        return lock.add_trials(
            [
                NewTrial(arms=[(f"{k + i}_0", {"x": (k + i) / 100})], generator="sobol")
                for i in range(n)
            ]
        )


def test_job_spec_round_trips(store) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC))
    job = store.get_experiment(exp.id).config.job
    assert job.entrypoint == "mypkg.train:run" and job.parallelism == 2


def test_run_state_and_runnable(store) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC))
    assert store.runnable_experiments() == []
    store.set_run_state(exp.id, "running")
    assert store.runnable_experiments() == [exp.id]
    assert store.get_experiment(exp.id).run_state == "running"
    store.set_experiment_status(exp.id, ExperimentStatus.PAUSED)
    assert store.runnable_experiments() == []
    with pytest.raises(NotFoundError):
        store.set_run_state(exp.id, "paused", project="other")


def test_claims_are_exclusive(store) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC))
    candidates(store, exp.id, 10)
    lease = datetime.now(UTC) + timedelta(minutes=1)
    claimed: list = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            got = store.claim_candidates(exp.id, 2, lease_expires_at=lease, actor=name)
            if not got:
                return
            with lock:
                claimed.extend(t.id for t in got)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 10
    trials = store.list_trials(exp.id)
    assert all(t.state is TrialState.RUNNING and t.lease_expires_at == lease for t in trials)
    claims = [e for e in store.list_events(experiment_id=exp.id) if e.reason == "claimed"]
    assert len(claims) == 10


def test_jobs_tokens_and_reports(store) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC), project="p")
    [t] = candidates(store, exp.id, 1)
    job = store.create_job(
        Job(0, t.id, exp.id, "local", "w1", JobState.QUEUED, resources={"cpus": 1}),
        token_hash="t" * 64,
    )
    assert job.id > 0 and job.state is JobState.QUEUED
    with pytest.raises(ConflictError):
        store.create_job(Job(0, t.id, exp.id, "local", "w1", JobState.QUEUED))
    assert store.job_token_scope("t" * 64) == ("p", t.id)
    now = datetime.now(UTC)
    job = store.update_job(
        job.id, state=JobState.RUNNING, started_at=now, handle={"pid": 42}, gpus=[0]
    )
    assert job.state is JobState.RUNNING and job.handle == {"pid": 42} and job.started_at == now
    assert store.job_for_trial(t.id).id == job.id
    assert [j.id for j in store.list_jobs(states=[JobState.RUNNING], executor="local")] == [job.id]
    assert store.list_jobs(project="other") == []
    r1 = store.add_report(t.id, 1, {"loss": 0.5})
    r2 = store.add_report(t.id, 2, {"loss": 0.25, "acc": 0.9})
    assert [r.step for r in store.list_reports(t.id)] == [1, 2]
    assert store.list_reports(t.id, after=r1.id)[0].metrics == {"loss": 0.25, "acc": 0.9}
    assert r2.at.tzinfo is not None
    store.update_job(job.id, state=JobState.SUCCEEDED, ended_at=now, exit_code=0)
    assert store.job_token_scope("t" * 64) is None  # tokens die with the job
    with pytest.raises(NotFoundError):
        store.list_reports(t.id, project="other")
    with pytest.raises(ValueError):
        store.update_job(job.id, trial_id=5)


def test_last_steps_in_one_read(store) -> None:
    exp = store.create_experiment(ExperimentConfig.from_dict(SPEC), project="p")
    a, b, c = candidates(store, exp.id, 3)
    store.add_report(a.id, 1, {"loss": 0.5})
    store.add_report(a.id, 7, {"loss": 0.4})
    store.add_report(a.id, None, {"note": 1.0})  # no step: does not count as progress
    store.add_report(b.id, None, {"loss": 0.3})
    store.add_report(c.id, 3, {"loss": 0.2})
    assert store.last_steps([a.id, b.id, c.id, 999_999]) == {a.id: 7, c.id: 3}
    assert store.last_steps([c.id, c.id]) == {c.id: 3}
    assert store.last_steps([]) == {}
