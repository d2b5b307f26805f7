"""The orchestrator with the local executor: real subprocesses for jobs that succeed, raise,
hang past their timeout, get SIGKILLed or cancelled; retries; command jobs; bad specs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from assay.platform.errors import ValidationError
from assay.platform.experiment import ExperimentStatus, TrialState
from assay.platform.jobspec import JobState
from assay.service.engine import Engine
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.storage.factory import open_store


def make_run(tmp_path, fn: str | None, *, command=None, **job):
    store = open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    engine = Engine(store)
    spec = {"parallelism": 2, "max_trials": 2, "timeout_s": 60, **job}
    if command is not None:
        spec["command"] = command
    else:
        spec["entrypoint"] = fn
    exp = engine.create_experiment(
        {
            "name": "run",
            "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
            "objective": "y",
            "generator": "sobol",
            "seed": 0,
            "job": spec,
        }
    )
    events: list[str] = []
    orch = Orchestrator(
        engine, {"local": LocalExecutor(cpus=2)}, worker_id="w1", log_dir=tmp_path / "logs",
        database_url=store.url, on_event=events.append,
    )  # fmt: skip
    engine.set_run(exp.id, "start")
    return store, engine, exp.id, orch, events


def trials(store, exp_id):
    return store.list_trials(exp_id)


def test_successful_jobs_report_and_complete(tmp_path, jobs_module, drive) -> None:
    store, _, exp_id, orch, events = make_run(tmp_path, f"{jobs_module}:ok")
    drive(orch, lambda: store.get_experiment(exp_id).run_state == "done")
    ts = trials(store, exp_id)
    assert [t.state for t in ts] == [TrialState.COMPLETED] * 2
    for t in ts:
        assert t.values["y"].mean == pytest.approx(t.parameters["x"] ** 2)
        assert t.values["y"].sem == 0.01
        assert [r.step for r in store.list_reports(t.id)] == [0, 1, 2]
        job = store.job_for_trial(t.id)
        assert job.state is JobState.SUCCEEDED and job.exit_code == 0
        assert job.result["extra"] == 1.0  # kept on the job, not told (unknown metric)
        assert "training done" in Path(job.log_path).read_text()
    assert any("completed: y=" in e for e in events)


def test_raising_job_fails_with_its_error_and_is_retried_then_stops(
    tmp_path, jobs_module, drive
) -> None:
    store, _, exp_id, orch, _ = make_run(
        tmp_path, f"{jobs_module}:boom", max_retries=1, max_trials=1, parallelism=1
    )
    hook = store.webhooks().create("default", "http://127.0.0.1:9/hook", ["experiment.failing"],
                                   "secret")  # fmt: skip
    drive(orch, lambda: store.get_experiment(exp_id).status is ExperimentStatus.FAILING)
    # the orchestrator's own status change sends the webhook (outbox, delivered later)
    [sent] = store.webhooks().deliveries(hook.id)
    assert sent.event == "experiment.failing" and sent.payload["experiment_id"] == exp_id
    ts = trials(store, exp_id)
    assert [t.state for t in ts[:4]] == [TrialState.FAILED] * 4
    assert all(t.state is TrialState.ABANDONED for t in ts[4:])  # queued work is dropped
    assert "boom at x=" in ts[0].reason and "about to fail" in ts[0].reason
    assert ts[1].generator == "retry" and ts[1].parameters == ts[0].parameters
    assert ts[1].metadata == {"attempt": 2, "retry_of": ts[0].id}
    assert ts[2].generator == "sobol"  # the retry budget of trial 0 was spent
    assert store.get_experiment(exp_id).run_state == "stopped"


def test_retry_that_succeeds(tmp_path, jobs_module, drive) -> None:
    store, _, exp_id, orch, _ = make_run(
        tmp_path, f"{jobs_module}:flaky", max_retries=2, max_trials=1, parallelism=1
    )
    drive(orch, lambda: store.get_experiment(exp_id).run_state == "done")
    first, retry = trials(store, exp_id)
    assert first.state is TrialState.FAILED and "transient" in first.reason
    assert retry.state is TrialState.COMPLETED and retry.arm.name == first.arm.name


def test_timeout_kills_the_job(tmp_path, jobs_module, drive) -> None:
    store, _, exp_id, orch, _ = make_run(
        tmp_path, f"{jobs_module}:hang", timeout_s=1.5, max_trials=1, parallelism=1
    )
    drive(orch, lambda: any(t.state is TrialState.FAILED for t in trials(store, exp_id)))
    t = trials(store, exp_id)[0]
    job = store.job_for_trial(t.id)
    assert job.state is JobState.TIMEOUT and "timed out after 1.5 s" in t.reason
    assert "hanging" in t.reason  # the log's tail
    assert not Path(f"/proc/{job.handle['pid']}").exists() or _zombie(job.handle["pid"])


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigkilled_job_fails(tmp_path, jobs_module, drive) -> None:
    store, _, exp_id, orch, _ = make_run(
        tmp_path, f"{jobs_module}:die", max_trials=1, parallelism=1
    )
    drive(orch, lambda: any(t.state is TrialState.FAILED for t in trials(store, exp_id)))
    t = trials(store, exp_id)[0]
    assert "exit code -9" in t.reason
    assert store.job_for_trial(t.id).exit_code == -9


def test_cancel_kills_a_running_job(tmp_path, jobs_module, drive) -> None:
    store, engine, _, orch, _ = make_run(
        tmp_path, f"{jobs_module}:hang", max_trials=1, parallelism=1
    )
    drive(orch, lambda: bool(store.list_jobs(states=[JobState.RUNNING])))
    [job] = store.list_jobs(states=[JobState.RUNNING])
    engine.cancel_trial(job.trial_id)
    drive(orch, lambda: store.get_job(job.id).state is JobState.CANCELLED)
    assert store.get_trial(job.trial_id).state is TrialState.ABANDONED
    assert _zombie(job.handle["pid"]) or not Path(f"/proc/{job.handle['pid']}").exists()


def test_command_job_reads_its_result_file(tmp_path, drive) -> None:
    code = (
        "import json, os, sys; x = float(sys.argv[1]); "
        "json.dump({{'y': [x * 10, 0.5]}}, open(os.environ['ASSAY_RESULT_PATH'], 'w'))"
    )
    store, _, exp_id, orch, _ = make_run(
        tmp_path, None, command=[sys.executable, "-c", code, "{x}"], max_trials=2
    )
    drive(orch, lambda: store.get_experiment(exp_id).run_state == "done")
    for t in trials(store, exp_id):
        assert t.values["y"].mean == pytest.approx(t.parameters["x"] * 10)


def test_command_job_without_result_fails(tmp_path, drive) -> None:
    store, _, exp_id, orch, _ = make_run(
        tmp_path, None, command=[sys.executable, "-c", "print('no result here')"], max_trials=1,
        parallelism=1,
    )  # fmt: skip
    drive(orch, lambda: any(t.state is TrialState.FAILED for t in trials(store, exp_id)))
    reason = trials(store, exp_id)[0].reason
    assert "wrote no result" in reason and "no result here" in reason


@pytest.mark.parametrize(
    ("job", "fragment", "field"),
    [
        ({"entrypoint": "no_such_module_xyz:run"}, "cannot be imported", "job.entrypoint"),
        ({"entrypoint": "json:nope"}, "defines no 'nope'", "job.entrypoint"),
        ({"entrypoint": "not a path"}, "package.module:function", "job.entrypoint"),
        ({"command": ["python", "t.py", "--lr", "{lr}"]}, "placeholder(s) ['lr']", "job.command"),
        (
            {"entrypoint": "json:dumps", "resources": {"cpus": -1}},
            "cpus must be > 0",
            "job.resources.cpus",
        ),
        (
            {"entrypoint": "json:dumps", "resources": {"gpus": -2}},
            "gpus must be",
            "job.resources.gpus",
        ),
        ({"entrypoint": "json:dumps", "command": ["x"]}, "exactly one", "job.entrypoint"),
        ({"entrypoint": "json:dumps", "parallelism": 0}, "parallelism", "job.parallelism"),
        ({"entrypoint": "json:dumps", "timeout_s": -5}, "timeout_s", "job.timeout_s"),
        ({"entrypoint": "json:dumps", "gpu": 1}, "unknown field", "job.gpu"),
    ],
)
def test_bad_job_specs_are_rejected_at_creation(tmp_path, job, fragment, field) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'bad.db'}")
    engine = Engine(store)
    with pytest.raises(ValidationError) as e:
        engine.create_experiment(
            {"name": "bad", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
             "objective": "y", "job": job}
        )  # fmt: skip
    assert fragment in str(e.value) and e.value.field == field
    assert store.list_experiments() == []


def test_run_needs_a_job_spec(tmp_path) -> None:
    from assay.platform.errors import ConflictError

    store = open_store("memory://")
    engine = Engine(store)
    exp = engine.create_experiment(
        {"name": "nojob", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
         "objective": "y"}
    )  # fmt: skip
    with pytest.raises(ConflictError, match="no job spec"):
        engine.set_run(exp.id, "start")


def test_gpu_slots_map_to_cuda_visible_devices(tmp_path) -> None:
    """With (declared) GPUs, each job gets whole devices and waits for free ones."""
    from assay.platform.jobspec import JobSpec
    from assay.service.jobs.base import JobLaunch

    ex = LocalExecutor(cpus=4, gpus=[0, 1, 2])
    spec = JobSpec.from_dict(
        {"command": [sys.executable, "-c",
                     "import os,json; json.dump({{'y': 1}}, open(os.environ['ASSAY_RESULT_PATH'],'w')); "
                     "print(os.environ['CUDA_VISIBLE_DEVICES'])"],
         "resources": {"gpus": 2}}
    )  # fmt: skip
    assert ex.capacity(spec.resources) == 1
    h = ex.submit(JobLaunch(1, 1, 1, 1, {}, spec, tmp_path / "t1"))
    assert h["gpus"] == [0, 1] and ex.capacity(spec.resources) == 0
    import time

    while ex.poll(h).state == "running":
        time.sleep(0.05)
    assert (tmp_path / "t1" / "job.log").read_text().strip() == "0,1"
    assert ex.capacity(spec.resources) == 1


def test_default_style_relative_sqlite_url_reaches_jobs(
    tmp_path, jobs_module, drive, monkeypatch
) -> None:
    """``assay worker`` with the default ``sqlite:///./assay.db``: jobs run in their own work
    directory, so the URL they get must be absolute or ``assay.report`` opens an empty DB."""
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///./assay.db"
    store = open_store(url)
    engine = Engine(store)
    exp = engine.create_experiment(
        {"name": "rel", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
         "objective": "y", "generator": "sobol", "seed": 0,
         "job": {"entrypoint": f"{jobs_module}:ok", "parallelism": 1, "max_trials": 1,
                 "timeout_s": 60}}
    )  # fmt: skip
    orch = Orchestrator(
        engine, {"local": LocalExecutor(cpus=1)}, worker_id="w1", log_dir="logs", database_url=url
    )
    assert orch.database_url == f"sqlite:///{tmp_path.resolve() / 'assay.db'}"
    engine.set_run(exp.id, "start")
    drive(orch, lambda: store.get_experiment(exp.id).run_state == "done")
    [t] = trials(store, exp.id)
    assert t.state is TrialState.COMPLETED, t.reason
    assert [r.step for r in store.list_reports(t.id)] == [0, 1, 2]
    assert not list((tmp_path / "logs").rglob("assay.db"))  # no stray DB in the workdir


def test_absolute_database_url() -> None:
    from assay.storage.urls import absolute_database_url as absolute

    assert absolute("sqlite:///./a.db", base="/srv") == "sqlite:////srv/a.db"
    assert absolute("sqlite:///d/a.db?timeout=5", base="/srv") == "sqlite:////srv/d/a.db?timeout=5"
    for same in ("sqlite:////abs/a.db", "sqlite://", "sqlite:///:memory:", "memory://",
                 "postgresql+psycopg://u@h/db"):  # fmt: skip
        assert absolute(same, base="/srv") == same


def test_long_lease_still_heartbeats_within_stale_after(tmp_path, jobs_module) -> None:
    """A one-hour lease must not stretch the job heartbeat past ``stale_after_s``: another
    worker (same ``stale_after_s``) checking for stale jobs the whole time never adopts the
    live job of a worker that keeps polling it."""
    import time

    store, engine, exp_id, _, _ = make_run(
        tmp_path, f"{jobs_module}:hang", parallelism=1, max_trials=1, timeout_s=3
    )
    make = lambda wid: Orchestrator(  # noqa: E731
        engine, {"local": LocalExecutor(cpus=1)}, worker_id=wid, log_dir=tmp_path / "logs",
        database_url=store.url, lease_seconds=3600, stale_after_s=1.0, poll_interval=0.1,
    )  # fmt: skip
    owner, other = make("owner"), make("other")
    assert owner.heartbeat_every_s == 0.25
    owner.step()
    [job] = store.list_jobs(experiment_id=exp_id)
    deadline = time.monotonic() + 2.5  # > 2 x stale_after_s while the job runs
    while time.monotonic() < deadline:
        owner.step()
        other.adopt()
        assert store.get_job(job.id).worker == "owner", "a live job was adopted"
        time.sleep(0.1)
    assert store.get_job(job.id).state is JobState.RUNNING
    while store.get_job(job.id).state.is_active:  # the timeout kills the hanging job
        owner.step()
        time.sleep(0.1)


def test_timer_settings_are_validated(tmp_path) -> None:
    engine = Engine(open_store("memory://"))
    for kw, field in (({"lease_seconds": 0}, "lease_seconds"),
                      ({"stale_after_s": -1}, "stale_after_s"),
                      ({"poll_interval": 40, "stale_after_s": 60}, "poll_interval")):  # fmt: skip
        with pytest.raises(ValidationError) as e:
            Orchestrator(engine, {"local": LocalExecutor(cpus=1)}, log_dir=tmp_path, **kw)
        assert e.value.field == field
    o = Orchestrator(engine, {"local": LocalExecutor(cpus=1)}, log_dir=tmp_path,
                     lease_seconds=30, stale_after_s=60)  # fmt: skip
    assert o.heartbeat_every_s == 7.5  # the lease is the tighter timer here
