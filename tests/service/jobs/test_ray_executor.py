"""The Ray executor against a real (local) Ray cluster started by the test: jobs run as
detached actors; a worker killed mid-job and restarted re-attaches instead of losing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from assay.platform.experiment import TrialState
from assay.platform.jobspec import JobState
from assay.service.engine import Engine
from assay.storage.factory import open_store

pytest.importorskip("ray")

JOB = """
import time
import assay

def quick(params):
    assay.report(step=0, loss=0.5)
    return {"y": params["x"] + 1}

def fails(params):
    raise ValueError("bad hyperparameters")

def slow(params):
    for i in range(40):
        assay.report(step=i, progress=i / 40)
        time.sleep(0.2)
    return {"y": params["x"]}
"""


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head node (2 CPUs) in its own process group; jobs can import ``rayjobs``."""
    d = tmp_path_factory.mktemp("rayjobs")
    (d / "rayjobs.py").write_text(textwrap.dedent(JOB))
    port = 6300 + os.getpid() % 500
    # Token auth off explicitly: a ~/.ray/auth_token left by another Ray run must not matter.
    env = {
        **os.environ,
        "PYTHONPATH": str(d),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         "--num-cpus", "2", "--include-dashboard", "false", "--port", str(port),
         "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    sys.path.insert(0, str(d))
    yield address, env
    sys.path.remove(str(d))
    os.killpg(head.pid, signal.SIGKILL)  # the whole Ray node (its processes share the group)
    head.wait(20)


def worker(url: str, address: str, env: dict, tmp_path) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "assay.service.cli", "worker", "--executor", "ray",
         "--ray-address", address, "--database-url", url, "--worker-id", "ray-w",
         "--poll-interval", "0.2"],
        env={**env, "ASSAY_LOG_DIR": str(tmp_path / "logs"),
             "ASSAY_JOB_ENTRYPOINTS": "rayjobs:*"},  # the worker's allowlist
        stdout=open(tmp_path / "worker.log", "ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait(pred, timeout: float = 120.0, log: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError("timed out\n" + (log.read_text()[-4000:] if log and log.exists() else ""))


@pytest.mark.slow
def test_ray_jobs_succeed_fail_and_survive_a_worker_restart(ray_cluster, tmp_path) -> None:
    address, env = ray_cluster
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    store = open_store(url)
    engine = Engine(store)

    def make(name: str, fn: str, **job):  # type: ignore[no-untyped-def]
        exp = engine.create_experiment(
            {"name": name, "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
             "objective": "y", "generator": "sobol", "seed": 1,
             "job": {"entrypoint": f"rayjobs:{fn}", "executor": "ray", **job}}
        )  # fmt: skip
        engine.set_run(exp.id, "start")
        return exp.id

    ok = make("ok", "quick", parallelism=2, max_trials=2)
    bad = make("bad", "fails", parallelism=1, max_trials=1)
    w = worker(url, address, env, tmp_path)
    try:
        wait(lambda: store.get_experiment(ok).run_state == "done", log=tmp_path / "worker.log")
        for t in store.list_trials(ok):
            assert t.state is TrialState.COMPLETED and t.values["y"].mean == pytest.approx(
                t.parameters["x"] + 1
            )
            assert store.list_reports(t.id)[0].metrics == {"loss": 0.5}
        wait(lambda: store.list_trials(bad)[0].state is TrialState.FAILED)
        assert "bad hyperparameters" in store.list_trials(bad)[0].reason
        engine.set_run(bad, "pause")

        slow = make("slow", "slow", parallelism=1, max_trials=1)
        wait(lambda: any(store.list_reports(t.id) for t in store.list_trials(slow)))
        w.send_signal(signal.SIGKILL)  # the worker dies; the detached actor keeps running
        w.wait(10)
        w = worker(url, address, env, tmp_path)
        wait(lambda: store.get_experiment(slow).run_state == "done")
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(30)
    [t] = store.list_trials(slow)
    assert t.state is TrialState.COMPLETED  # re-attached: not lost, not retried
    [job] = store.list_jobs(experiment_id=slow)
    assert job.state is JobState.SUCCEEDED and job.attempt == 1
    assert "re-attaching" in (tmp_path / "worker.log").read_text()
