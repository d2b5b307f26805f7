"""Fixtures for job tests: an importable module of job functions (also visible to the job
subprocesses through PYTHONPATH), and a helper that drives an orchestrator until a condition."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

JOBS_MODULE = """
import os, signal, time
import assay


def ok(params):
    for i in range(3):
        assay.report(step=i, loss=1.0 / (i + 1))
    assay.heartbeat()
    print("training done", flush=True)
    return {"y": (params["x"] ** 2, 0.01), "extra": 1.0}


def boom(params):
    print("about to fail", flush=True)
    raise RuntimeError(f"boom at x={params['x']:.3f}")


def hang(params):
    print("hanging", flush=True)
    time.sleep(600)


def die(params):
    os.kill(os.getpid(), signal.SIGKILL)


def flaky(params):
    if os.environ["ASSAY_ATTEMPT"] == "1":
        raise RuntimeError("transient failure on the first attempt")
    return {"y": 1.0}


def record(params):
    with open(os.environ["RECORD_PATH"], "a") as f:
        f.write(os.environ["ASSAY_TRIAL_ID"] + "\\n")
    time.sleep(float(os.environ.get("SLEEP", "0.2")))
    return {"y": params["x"]}


def slow(params):
    for i in range(100):
        assay.report(step=i, progress=i / 100)
        time.sleep(0.1)
    return {"y": params["x"]}
"""


@pytest.fixture
def jobs_module(tmp_path, monkeypatch):
    """Name of an importable module with job functions (``ok``, ``boom``, ``hang``, ...)."""
    d = tmp_path / "jobpkg"
    d.mkdir()
    name = f"assay_testjobs_{tmp_path.name.replace('-', '_')}"
    (d / f"{name}.py").write_text(textwrap.dedent(JOBS_MODULE))
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", str(d))
    yield name
    sys.modules.pop(name, None)


def run_until(orchestrator, predicate, timeout: float = 60.0, interval: float = 0.1):
    """Step the orchestrator until ``predicate()`` is true (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        orchestrator.step()
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout}s")


@pytest.fixture
def drive():
    return run_until
