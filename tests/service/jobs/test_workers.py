"""Several workers and restarts: two workers on one PostgreSQL database never run the same
trial; a worker killed mid-run has its trials reaped by lease expiry and retried by another
worker; nothing completed is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from assay.platform.experiment import TrialState
from assay.platform.jobspec import JobState
from assay.service.engine import Engine
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.storage.factory import open_store


def experiment(engine, fn: str, **job):  # type: ignore[no-untyped-def]
    exp = engine.create_experiment(
        {"name": f"w-{time.time_ns()}", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
         "objective": "y", "generator": "sobol", "seed": 3,
         "job": {"entrypoint": fn, "timeout_s": 120, **job}}
    )  # fmt: skip
    engine.set_run(exp.id, "start")
    return exp.id


@pytest.mark.slow
def test_two_workers_on_postgres_never_run_a_trial_twice(
    postgres_url, jobs_module, tmp_path, monkeypatch
) -> None:
    record = tmp_path / "ran.txt"
    monkeypatch.setenv("RECORD_PATH", str(record))
    monkeypatch.setenv("SLEEP", "0.3")
    store = open_store(postgres_url)
    engine = Engine(store)
    exp_id = experiment(engine, f"{jobs_module}:record", parallelism=4, max_trials=12)
    workers = [
        Orchestrator(Engine(open_store(postgres_url)), {"local": LocalExecutor(cpus=2)},
                     worker_id=f"w{i}", log_dir=tmp_path / "logs", database_url=postgres_url,
                     poll_interval=0.1, max_interval=0.2)
        for i in range(2)
    ]  # fmt: skip
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and store.get_experiment(exp_id).run_state != "done":
        time.sleep(0.3)
    for w in workers:
        w.stop()
    assert store.get_experiment(exp_id).run_state == "done"
    ran = Counter(record.read_text().split())
    trials = store.list_trials(exp_id)
    assert len(trials) == 12 and all(t.state is TrialState.COMPLETED for t in trials)
    assert all(n == 1 for n in ran.values()) and len(ran) == 12, ran
    jobs = store.list_jobs(experiment_id=exp_id)
    assert Counter(j.trial_id for j in jobs).most_common(1)[0][1] == 1
    assert {j.worker for j in jobs} <= {"w0", "w1"}


@pytest.mark.slow
def test_killed_worker_trials_expire_and_are_retried(tmp_path, jobs_module, drive) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    store = open_store(url)
    engine = Engine(store)
    exp_id = experiment(engine, f"{jobs_module}:slow", parallelism=1, max_trials=1, max_retries=1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "assay.service.cli", "worker", "--executor", "local",
         "--database-url", url, "--worker-id", "doomed", "--poll-interval", "0.1",
         "--lease-seconds", "2"],
        env={**os.environ, "ASSAY_LOG_DIR": str(tmp_path / "logs"),
             "ASSAY_JOB_ENTRYPOINTS": f"{jobs_module}:*"},  # the worker's allowlist
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = store.list_jobs(states=[JobState.RUNNING])
            if jobs and store.list_reports(jobs[0].trial_id):
                break
            time.sleep(0.2)
        [job] = store.list_jobs(states=[JobState.RUNNING])
        worker.send_signal(signal.SIGKILL)  # the worker dies; its job process dies with it
        worker.wait(10)
    finally:
        worker.kill()
    survivor = Orchestrator(
        engine, {"local": LocalExecutor(cpus=2)}, worker_id="survivor", log_dir=tmp_path / "logs",
        database_url=url, stale_after_s=1.0,
    )  # fmt: skip
    drive(survivor, lambda: store.get_experiment(exp_id).run_state == "done", timeout=90)
    first, retry = store.list_trials(exp_id)
    assert first.state is TrialState.FAILED and "lease expired" in first.reason
    assert store.get_job(job.id).state is JobState.LOST
    assert retry.state is TrialState.COMPLETED and retry.parameters == first.parameters
    assert store.job_for_trial(retry.id).worker == "survivor"
