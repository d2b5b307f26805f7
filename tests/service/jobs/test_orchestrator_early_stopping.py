"""The orchestrator applies early stopping to real running jobs (subprocesses reporting their
curves through ``assay.report``) and ends a run whose automatic stopping rule says done."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from assay.platform.experiment import ExperimentStatus, TrialState
from assay.platform.jobspec import JobState
from assay.service.engine import Engine
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.storage.factory import open_store

JOBS = """
import os
import time
import assay


def bad_curve(params):
    # A hopeless learning curve: accuracy stuck near 0.1 for 60 steps (6 s if not stopped).
    for i in range(60):
        assay.report(step=i, acc=0.1 + 0.001 * i, latency=5.0)
        time.sleep(0.1)
    return {"acc": 0.2}


def ramp_curves(params):
    # The first three trials finish good curves at once; the fourth reports a hopeless one
    # slowly (6 s if not stopped). Which trial this is: a counter file (parallelism 1).
    path = os.environ["ASSAY_ES_COUNTER"]
    n = int(open(path).read() or 0) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(n))
    if n <= 3:
        for i in range(10):
            assay.report(step=i, acc=0.5 + 0.1 * n + 0.01 * i)
        return {"acc": 0.6 + 0.1 * n}
    for i in range(60):
        assay.report(step=i, acc=0.1 + 0.001 * i)
        time.sleep(0.1)
    return {"acc": 0.2}


def flat(params):
    assay.report(step=0, acc=0.5)
    return {"acc": (0.5, 0.01)}
"""


@pytest.fixture
def es_jobs(tmp_path, monkeypatch):
    d = tmp_path / "esjobs"
    d.mkdir()
    name = f"assay_esjobs_{tmp_path.name.replace('-', '_')}"
    (d / f"{name}.py").write_text(textwrap.dedent(JOBS))
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", str(d))
    yield name
    sys.modules.pop(name, None)


def make_run(tmp_path, fn: str, **extra):
    store = open_store(f"sqlite:///{tmp_path / 'es.db'}")
    engine = Engine(store)
    job = {"entrypoint": fn, "parallelism": 1, "max_trials": 1, "timeout_s": 60}
    job |= extra.pop("job", {})
    exp = engine.create_experiment(
        {
            "name": "es-run",
            "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
            "objective": "acc",
            "tracking_metrics": ["latency"],
            "generator": "sobol",
            "seed": 0,
            "job": job,
            **extra,
        }
    )
    events: list[str] = []
    orch = Orchestrator(
        engine, {"local": LocalExecutor(cpus=2)}, worker_id="w1", log_dir=tmp_path / "logs",
        database_url=store.url, on_event=events.append,
    )  # fmt: skip
    engine.set_run(exp.id, "start")
    return store, exp.id, orch, events


def test_orchestrator_stops_a_running_job_with_a_bad_curve(tmp_path, es_jobs, drive) -> None:
    rule = {"strategy": "threshold", "bound": 0.3, "min_progression": 3, "patience": 2}
    store, exp_id, orch, events = make_run(tmp_path, f"{es_jobs}:bad_curve", early_stopping=rule)
    drive(orch, lambda: store.get_experiment(exp_id).run_state == "done", timeout=60)
    [trial] = store.list_trials(exp_id)
    assert trial.state is TrialState.EARLY_STOPPED
    assert trial.reason.startswith("early stopped (threshold): acc = 0.1")
    steps = [r.step for r in store.list_reports(trial.id)]
    assert 4 <= max(steps) < 59  # stopped at step >= 4 (patience 2 from step 3), not run out
    job = store.job_for_trial(trial.id)
    assert job.state is JobState.CANCELLED and job.error.startswith("early stopped:")
    assert not Path(f"/proc/{job.handle['pid']}").exists() or _zombie(job.handle["pid"])
    [ev] = [e for e in store.list_events(trial_id=trial.id) if e.to_state is trial.state]
    decision = ev.details["early_stopping"]
    assert decision["should_stop"] and decision["strategy"] == "threshold"
    assert decision["threshold"] == 0.3 and decision["value"] < 0.3
    assert decision["step"] >= 4 and len(decision["details"]["checks"]) == 2
    assert any("early stopped (threshold)" in e for e in events)


@pytest.mark.slow
def test_orchestrator_stops_with_the_ramped_percentile_rule(
    tmp_path, es_jobs, drive, monkeypatch
) -> None:
    # Optuna's median rule waits for 5 completed trials; with ramp_from = 3 the fourth trial
    # is judged against the three completed ones at the ramped (16.7th) percentile.
    monkeypatch.setenv("ASSAY_ES_COUNTER", str(tmp_path / "counter"))
    rule = {"strategy": "percentile", "percentile": 50, "min_curves": 5, "ramp_from": 3,
            "reference": "completed", "compare": "best", "min_progression": 1}  # fmt: skip
    store, exp_id, orch, events = make_run(
        tmp_path, f"{es_jobs}:ramp_curves", job={"max_trials": 4, "parallelism": 1},
        early_stopping=rule,
    )  # fmt: skip
    drive(orch, lambda: store.get_experiment(exp_id).run_state == "done", timeout=90)
    trials = sorted(store.list_trials(exp_id), key=lambda t: t.id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 3 + [TrialState.EARLY_STOPPED]
    last = trials[-1]
    assert last.reason.startswith("early stopped (percentile): acc (best so far) = 0.1")
    assert "ramped from 50" in last.reason
    assert max(r.step for r in store.list_reports(last.id)) < 59
    [ev] = [e for e in store.list_events(trial_id=last.id) if e.to_state is last.state]
    decision = ev.details["early_stopping"]
    assert decision["should_stop"] and decision["details"]["curves"] == 3
    assert decision["details"]["percentile"] == pytest.approx(50 / 3)
    assert decision["details"]["ramp_from"] == 3
    assert any("early stopped (percentile)" in e for e in events)


@pytest.mark.slow
def test_auto_stopping_rule_completes_the_run(tmp_path, es_jobs, drive) -> None:
    store, exp_id, orch, events = make_run(
        tmp_path, f"{es_jobs}:flat", job={"max_trials": 20, "parallelism": 1},
        stopping={"rule": "improvement", "window": 2, "min_trials": 3, "auto": True},
    )  # fmt: skip
    hook = store.webhooks().create(
        "default", "http://127.0.0.1:9/hook", ["experiment.completed"], "secret"
    )
    drive(orch, lambda: store.get_experiment(exp_id).status is ExperimentStatus.COMPLETED,
          timeout=90)  # fmt: skip
    [sent] = store.webhooks().deliveries(hook.id)  # the automatic end sends the webhook
    assert sent.event == "experiment.completed" and sent.payload["experiment_id"] == exp_id
    exp = store.get_experiment(exp_id)
    assert exp.run_state == "done"
    completed = [t for t in exp.trials if t.state is TrialState.COMPLETED]
    assert 3 <= len(completed) < 20
    assert any("completed: experiment done (improvement rule)" in e for e in events)
    why = exp.status_reason  # kept on the experiment, not only in the log and the webhook
    assert why.status is ExperimentStatus.COMPLETED and why.rule == "improvement"
    assert why.reason.startswith("experiment done (improvement rule): ") and why.actor == "w1"
    assert why.figures["window"] == 2 and why.figures["trials"] >= 3
    assert why.figures["improvement"] <= why.figures["noise"]
    assert sent.payload["rule"] == "improvement" and sent.payload["reason"] == why.reason


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
