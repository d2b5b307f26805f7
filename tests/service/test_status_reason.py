"""Why an experiment has its status (issue 16, experiment-level stopping): the automatic stop
keeps its rule and figures, the orchestrator's ``failing`` verdict its counts, a manual change
its reason, on every backend; over REST, in the Python client and through export/import."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assay.platform.experiment import (
    STATUS_FIGURES_MAX_CHARS,
    STATUS_REASON_MAX_CHARS,
    ExperimentStatus,
    StatusReason,
    TrialState,
)
from assay.service.app import create_app
from assay.service.engine import Engine
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.service.settings import Settings


def job_experiment(engine: Engine, name: str, **extra):
    """An experiment run as jobs (the entry point is never launched by these tests: the trials
    are attached and finished by hand, and the orchestrator only supervises)."""
    return engine.create_experiment(
        {
            "name": name,
            "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
            "objective": "acc",
            "generator": "sobol",
            "seed": 0,
            "job": {"entrypoint": "json:dumps", "parallelism": 1, "max_trials": 20},
            **extra,
        }
    )


def orchestrator(engine: Engine, tmp_path) -> Orchestrator:
    return Orchestrator(
        engine, {"local": LocalExecutor(cpus=1)}, worker_id="w1", log_dir=tmp_path / "logs"
    )


def test_auto_stop_stores_the_rule_and_its_figures(store, tmp_path) -> None:
    engine = Engine(store)
    exp = job_experiment(
        engine, "auto", stopping={"rule": "improvement", "window": 2, "min_trials": 3, "auto": True}
    )
    for i in range(4):  # a flat series: no improvement over the last 2 trials
        t = engine.attach_trial(exp.id, {"x": i / 10})
        engine.tell(t.id, {"acc": (0.5, 0.01)})
    queued = engine.attach_trial(exp.id, {"x": 0.9}, start=False)
    engine.set_run(exp.id, "start")
    expected = engine.stopping(exp.id)
    assert expected.done and expected.details

    orchestrator(engine, tmp_path).step()

    got = engine.get_experiment(exp.id)
    assert got.status is ExperimentStatus.COMPLETED and got.run_state == "done"
    why = got.status_reason
    assert why is not None and why.status is ExperimentStatus.COMPLETED
    assert why.rule == "improvement" and why.actor == "w1"
    assert why.reason.startswith("experiment done (improvement rule): ")
    assert expected.reason in why.reason
    assert why.figures == pytest.approx(expected.details)
    assert why.figures["trials"] == 4 and why.figures["window"] == 2
    assert why.figures["best_now"] == 0.5 and why.figures["noise_source"] == "median SEM"
    # the same reason on the abandoned candidate and in the webhook payload's shape
    assert store.get_trial(queued.id).state is TrialState.ABANDONED
    assert store.get_trial(queued.id).reason == why.reason


def test_failing_transition_records_its_counts_and_resume_clears_it(store, tmp_path) -> None:
    engine = Engine(store)
    exp = job_experiment(engine, "failing")
    for i in range(4):
        t = engine.attach_trial(exp.id, {"x": i / 10})
        if i == 0:
            engine.tell(t.id, {"acc": 0.5})
        else:
            engine.fail(t.id, reason="boom")
    engine.set_run(exp.id, "start")

    orchestrator(engine, tmp_path).step()

    got = engine.get_experiment(exp.id)
    assert got.status is ExperimentStatus.FAILING and got.run_state == "stopped"
    why = got.status_reason
    assert why.rule == "failing_trials" and why.actor == "w1"
    assert why.reason == "run stopped: 3 of its last 4 finished trials failed"
    assert why.figures["failed"] == 3 and why.figures["finished"] == 4
    assert why.figures["last_failed_trial"] == 3

    engine.set_run(exp.id, "resume")  # after fixing the job
    why = engine.get_experiment(exp.id).status_reason
    assert why.status is ExperimentStatus.ACTIVE and why.reason == "resume after failing"
    assert why.rule is None and why.figures == {}


def test_manual_status_with_reason_over_rest_and_export(store) -> None:
    spec = {"name": "rest", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
            "objective": "y", "generator": "sobol", "seed": 1}  # fmt: skip
    with TestClient(create_app(Settings(auth="none"), store=store)) as c:
        exp = c.post("/api/v1/experiments", json=spec).json()
        url = f"/api/v1/experiments/{exp['id']}"
        assert exp["status_reason"] is None  # never changed
        assert c.get(url).json()["status_reason"] is None
        r = c.patch(url, json={"status": "paused", "reason": "waiting for the new GPU quota"})
        assert r.status_code == 200, r.text
        why = r.json()["status_reason"]
        assert why["status"] == "paused" and why["reason"] == "waiting for the new GPU quota"
        assert why["rule"] is None and why["figures"] == {} and why["at"]
        assert c.get(url).json()["status_reason"] == why
        # a long reason is cut, not refused
        r = c.patch(url, json={"status": "completed", "reason": "z" * 5000})
        long = r.json()["status_reason"]["reason"]
        assert r.status_code == 200 and len(long) == STATUS_REASON_MAX_CHARS
        assert long.endswith("…")
        # without a reason: the change is still recorded, with its time
        r = c.patch(url, json={"status": "archived"})
        why = r.json()["status_reason"]
        assert why["status"] == "archived" and why["reason"] is None and why["at"]
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert "status_reason" in schema["ExperimentPublic"]["properties"]
        assert set(schema["StatusReasonPublic"]["properties"]) == {
            "status", "reason", "rule", "figures", "actor", "at"
        }  # fmt: skip

    # export keeps it verbatim; import restores it
    engine = Engine(store)
    t = engine.attach_trial(exp["id"], {"x": 0.5})
    engine.tell(t.id, {"y": 1.0})
    engine.set_status(exp["id"], "completed", reason="done by hand", rule="improvement",
                      figures={"best_now": 0.91, "noise": float("nan")})  # fmt: skip
    doc = engine.export_experiment(exp["id"])
    assert doc["experiment"]["status_reason"]["figures"] == {"best_now": 0.91, "noise": None}
    imported = engine.import_experiment(doc, name="rest-copy").experiment
    assert imported.status is ExperimentStatus.COMPLETED
    assert imported.status_reason == engine.get_experiment(exp["id"]).status_reason
    again = engine.export_experiment(imported.id)
    assert again["experiment"]["status_reason"] == doc["experiment"]["status_reason"]
    bad = {**doc, "experiment": {**doc["experiment"], "status": "paused"}}
    from assay.platform.errors import ValidationError

    with pytest.raises(ValidationError, match="status_reason"):
        engine.import_experiment(bad, name="mismatch")


def test_python_client_sets_and_reads_the_reason(client) -> None:
    """Every client mode, the remote (HTTP) one included."""
    exp = client.create_experiment(
        "cli", [{"name": "x", "type": "float", "bounds": [0, 1]}], "y", generator="sobol"
    )
    got = client.set_status(exp.id, "paused", reason="holiday freeze")
    assert got.status_reason.reason == "holiday freeze"
    again = client.get_experiment(exp.id).status_reason
    assert again.reason == "holiday freeze" and again.status is ExperimentStatus.PAUSED
    assert again.at == got.status_reason.at


def test_figures_are_capped_and_json_safe() -> None:
    why = StatusReason(
        ExperimentStatus.COMPLETED,
        figures={f"k{i}": "v" * 150 for i in range(100)} | {"inf": float("inf")},
    )
    import json

    assert len(json.dumps(why.figures)) <= STATUS_FIGURES_MAX_CHARS
    assert why.figures["truncated"] is True and why.figures["k0"] == "v" * 150
    assert StatusReason.from_dict(why.to_dict()) == why
