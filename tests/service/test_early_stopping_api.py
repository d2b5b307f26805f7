"""Early stopping and experiment stopping through the client, on every backend (memory,
SQLite, PostgreSQL, HTTP): ``should_stop``, ``early_stop`` with the reason, ``stopping``,
the decision's numbers, and bad settings as typed errors naming the field (422 over HTTP)."""

from __future__ import annotations

import pytest

import assay
from assay.platform.errors import ValidationError

PARAMS = [{"name": "x", "type": "float", "bounds": [0.0, 1.0]}]
_counter = iter(range(10**6))


def make(client, **kw):
    spec = dict(name=f"es-{next(_counter)}", parameters=PARAMS, objective="acc", seed=3,
                tracking_metrics=["latency"])  # fmt: skip
    spec.update(kw)
    return client.create_experiment(**spec)


def run_curve(client, trial_id: int, values: list[float], **extra: list[float]) -> None:
    for i, v in enumerate(values):
        client.report(trial_id, i + 1, acc=v, **{k: vs[i] for k, vs in extra.items()})


def test_should_stop_percentile_then_early_stop(client) -> None:
    exp = make(client, early_stopping={"strategy": "percentile", "percentile": 50,
                                       "min_curves": 3, "min_progression": 2})  # fmt: skip
    assert exp.config.early_stopping.strategy == "percentile"
    trials = [client.attach_trial(exp.id, {"x": x}) for x in (0.1, 0.2, 0.3, 0.4, 0.5)]
    for t, level in zip(trials[:4], (0.6, 0.7, 0.8, 0.9), strict=True):
        run_curve(client, t.id, [level * s for s in (0.5, 0.8, 0.9, 1.0)])
        client.tell(t.id, {"acc": level})
    bad = trials[4]
    client.report(bad.id, 1, acc=0.05)
    d = client.should_stop(bad.id)
    assert not d.should_stop and "too early" in d.reason
    run_curve(client, bad.id, [0.05, 0.1, 0.12])
    d = client.should_stop(bad.id)
    assert d.should_stop and d.strategy == "percentile" and d.step == 3
    assert d.threshold == pytest.approx((0.7 * 0.9 + 0.8 * 0.9) / 2)
    assert d.details["curves"] == 4
    stopped = client.early_stop(bad.id, d.reason)
    assert stopped.state is assay.TrialState.EARLY_STOPPED
    assert client.get_trial(bad.id).reason == d.reason
    # A stopped trial is no longer judged; the best arm ignores it.
    assert not client.should_stop(bad.id).should_stop
    assert client.best(exp.id).parameters == {"x": 0.4}


def test_should_stop_percentile_ramp_before_min_curves(client) -> None:
    # Optuna's median rule (completed curves, best so far) with a ramped start: from 3
    # completed curves on, at the 16.7th percentile while fewer than min_curves = 5 exist.
    rule = {"strategy": "percentile", "percentile": 50, "min_curves": 5, "ramp_from": 3,
            "reference": "completed", "compare": "best", "top_k": 0}  # fmt: skip
    exp = make(client, early_stopping=rule)
    assert exp.config.early_stopping.ramp_from == 3
    assert client.get_experiment(exp.id).config.early_stopping.ramp_from == 3
    done = [client.attach_trial(exp.id, {"x": x}) for x in (0.1, 0.2)]
    for t, level in zip(done, (0.6, 0.7), strict=True):
        run_curve(client, t.id, [level - 0.1, level, level + 0.1])
        client.tell(t.id, {"acc": level + 0.1})
    low = client.attach_trial(exp.id, {"x": 0.5})
    run_curve(client, low.id, [0.3, 0.62])
    d = client.should_stop(low.id)
    assert not d.should_stop and "ramp_from is 3" in d.reason  # two completed curves
    third = client.attach_trial(exp.id, {"x": 0.3})
    run_curve(client, third.id, [0.7, 0.8, 0.9])
    client.tell(third.id, {"acc": 0.9})
    mid = client.attach_trial(exp.id, {"x": 0.6})
    run_curve(client, mid.id, [0.3, 0.65])
    assert not client.should_stop(mid.id).should_stop  # above 0.6333, below the median 0.7
    d = client.should_stop(low.id)
    assert d.should_stop and d.step == 2 and "ramped from 50" in d.reason
    assert d.threshold == pytest.approx(0.6 + 0.1 / 3)
    assert d.details["percentile"] == pytest.approx(50 / 3) and d.details["curves"] == 3
    assert client.early_stop(low.id, d.reason).state is assay.TrialState.EARLY_STOPPED


def test_should_stop_without_settings_and_bad_settings(client) -> None:
    before = {e.id for e in client.list_experiments()}
    exp = make(client)
    [t] = client.ask(exp.id)
    d = client.should_stop(t.id)
    assert not d.should_stop and d.strategy == "none"
    with pytest.raises(ValidationError) as e:
        make(client, early_stopping={"strategy": "percentile", "percentile": 0})
    assert e.value.field == "early_stopping.percentile"
    with pytest.raises(ValidationError) as e:
        make(client, early_stopping={"strategy": "threshold", "metric": "latency", "bound": 5})
    assert e.value.field == "early_stopping.stop_when"
    with pytest.raises(ValidationError) as e:
        make(client, stopping={"rule": "improvement", "window": -1})
    assert e.value.field == "stopping.window"
    # Nothing stored by the rejected definitions (other suites share the HTTP server).
    assert {e.id for e in client.list_experiments()} - before == {exp.id}


def test_stopping_flat_vs_improving(client) -> None:
    flat = make(client, stopping={"rule": "improvement", "window": 3, "min_trials": 5})
    rising = make(client, stopping={"rule": "improvement", "window": 3, "min_trials": 5})
    for i in range(7):
        t = client.attach_trial(flat.id, {"x": i / 10})
        client.tell(t.id, {"acc": (0.8 + 0.001 * (i % 2), 0.01)})
        t = client.attach_trial(rising.id, {"x": i / 10})
        client.tell(t.id, {"acc": (0.1 * i, 0.01)})
    d = client.stopping(flat.id)
    assert d.done and d.rule == "improvement" and d.details["noise"] == pytest.approx(0.01)
    d = client.stopping(rising.id)
    assert not d.done and d.details["improvement"] == pytest.approx(0.3)


# -- raw REST (every store backend through the ``store`` fixture) -----------------------------
EXP = {
    "name": "rest-es",
    "parameters": PARAMS,
    "objective": "acc",
    "tracking_metrics": ["latency"],
    "early_stopping": {"strategy": "threshold", "bound": 0.5, "min_progression": 2},
    "stopping": {"rule": "improvement", "window": 2, "min_trials": 3},
}


@pytest.fixture
def api(store):
    from fastapi.testclient import TestClient

    from assay.service.app import create_app
    from assay.service.settings import Settings

    with TestClient(create_app(Settings(auth="none"), store=store)) as c:
        yield c


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"early_stopping": {"strategy": "percentile", "top_k": -1}}, "early_stopping.top_k"),
        ({"early_stopping": {"strategy": "bogus"}}, "early_stopping.strategy"),
        ({"early_stopping": ["percentile"]}, "early_stopping"),
        ({"stopping": {"rule": "model", "margin": -1}}, "stopping.margin"),
        (
            {"early_stopping": {"strategy": "percentile", "min_curves": 2, "ramp_from": 3}},
            "early_stopping.ramp_from",
        ),
        (
            {"early_stopping": {"strategy": "threshold", "bound": 0.5, "ramp_from": 1}},
            "early_stopping.ramp_from",
        ),
        (
            {"early_stopping": {"strategy": "percentile", "ramp_from": True}},
            "early_stopping.ramp_from",
        ),
        (
            {"generator": "noisy_ei", "generator_settings": {"early_stopped": "impute"}},
            "generator_settings.early_stopped",
        ),
    ],
)
def test_rest_bad_settings_are_422_naming_the_field(api, patch, field) -> None:
    r = api.post("/api/v1/experiments", json=EXP | patch)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"]["field"] == field
    assert api.get("/api/v1/experiments").json()["experiments"] == []  # nothing stored


def test_rest_should_stop_stopping_and_curves(api) -> None:
    exp = api.post("/api/v1/experiments", json=EXP).json()
    assert exp["config"]["early_stopping"]["bound"] == 0.5
    t = api.post(f"/api/v1/experiments/{exp['id']}/trials:ask", json={}).json()["trials"][0]
    for step, acc in ((1, 0.2), (2, 0.3)):
        r = api.post(
            f"/api/v1/trials/{t['id']}/reports", json={"step": step, "metrics": {"acc": acc}}
        )
        assert r.status_code == 201, r.text
    d = api.get(f"/api/v1/trials/{t['id']}/should_stop").json()
    assert d["should_stop"] and d["strategy"] == "threshold" and d["step"] == 2
    assert d["value"] == 0.3 and d["threshold"] == 0.5
    r = api.post(f"/api/v1/trials/{t['id']}:early_stop", json={"reason": d["reason"]})
    assert r.json()["state"] == "early_stopped"
    s = api.get(f"/api/v1/experiments/{exp['id']}/stopping").json()
    assert not s["done"] and s["rule"] == "improvement" and "needs 3" in s["reason"]
    c = api.get(f"/api/v1/experiments/{exp['id']}/curves").json()
    assert c["metric"] == "acc" and c["rule_line"] == [[2, 0.5]]
    assert c["curves"][0]["state"] == "early_stopped"
    assert c["curves"][0]["points"]["acc"] == [[1, 0.2], [2, 0.3]]
    assert api.get("/api/v1/trials/987654/should_stop").status_code == 404


@pytest.mark.parametrize("mode", ["exclude", "last_value", "predicted"])
def test_model_sees_early_stopped_trials_per_setting(client, mode) -> None:
    # 2 completed + 2 early-stopped trials, n_initial 4: only when the stopped trials are
    # data (their reports, read by the service at the ask) does the model take over.
    exp = make(client, generator="noisy_ei",
               generator_settings={"n_initial": 4, "early_stopped": mode},
               early_stopping={"strategy": "percentile", "min_curves": 2})  # fmt: skip
    for x, level in ((0.2, 0.8), (0.8, 0.9)):
        t = client.attach_trial(exp.id, {"x": x})
        run_curve(client, t.id, [level * s for s in (0.5, 0.8, 1.0)])
        client.tell(t.id, {"acc": level})
    for x in (0.4, 0.6):
        t = client.attach_trial(exp.id, {"x": x})
        run_curve(client, t.id, [0.1, 0.15])
        client.early_stop(t.id, "poor")
    [t] = client.ask(exp.id)
    assert t.generator == ("sobol" if mode == "exclude" else "noisy_ei")
    # Nothing was written to the stopped trials: the values live in the ask's view only.
    stopped = [s for s in client.trials(exp.id) if s.state is assay.TrialState.EARLY_STOPPED]
    assert len(stopped) == 2 and all(not s.observations for s in stopped)
    assert client.get_experiment(exp.id).config.generator_settings["early_stopped"] == mode
