"""A/B-test tuning through the client (four modes) and the REST API: batch trials with the
control exactly once, tell_batch validation that stores nothing on error, effects and best."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

import assay
from assay.platform.errors import NotFoundError, ObservationError, UnsupportedError, ValidationError
from assay.service.app import create_app
from assay.service.settings import Settings
from assay.storage.factory import open_store

SQ = {"price": 10.0, "layout": "grid"}
SPEC = dict(
    parameters=[
        {"name": "price", "type": "float", "bounds": [5.0, 15.0]},
        {"name": "layout", "type": "choice", "values": ["grid", "list"]},
    ],
    objective="revenue",
    outcome_constraints=["bounce <= +2%", "orders >= -1%"],
    status_quo=SQ,
    seed=3,
    # Small optimizer effort: these tests check the workflow, not the optimum.
    generator_settings={"num_restarts": 2, "raw_samples": 64, "mc_samples": 32},
)


def truth(p: dict) -> dict[str, float]:
    """Revenue peaks at price ~13.7 (x ~ 0.87), where bounce is +3.7 %: ``bounce <= +2%``
    binds (feasible up to price 12), and ``orders >= -1%`` binds for the grid layout."""
    x = (p["price"] - 5.0) / 10.0
    lift = 0.02 if p["layout"] == "list" else 0.0
    return {
        "revenue": 100.0 * (1 + 0.06 * math.sin(1.8 * x) + lift),
        "bounce": 0.30 * (1 + 0.10 * (x - 0.5)),
        "orders": 50.0 * (1 - 0.03 * (x - 0.5) + lift),
    }


def true_effect(p: dict, metric: str) -> float:
    return 100 * (truth(p)[metric] / truth(SQ)[metric] - 1)


def measure(trial, rng, shift: float = 1.0) -> dict:
    """Each arm's (mean, sem, n), the whole batch scaled by ``shift`` (a batch effect)."""
    out = {}
    for arm in trial.arms:
        out[arm.name] = {}
        for m, v in truth(arm.parameters).items():
            sem = 0.005 * v
            out[arm.name][m] = (shift * v + float(rng.normal(0, sem)), shift * sem, 20_000)
    return out


# -- the client in four modes -------------------------------------------------------------------
def test_batch_rounds_effects_and_best(client) -> None:
    rng = np.random.default_rng(0)
    exp = client.create_experiment(name=f"ab-{id(client)}", **SPEC)
    first = client.ask_batch(exp.id, n_arms=5)
    names = [a.name for a in first.arms]
    assert names[0] == "status_quo" and names.count("status_quo") == 1 and len(names) == 5
    assert first.arms[0].parameters == SQ and first.generator == "sobol"
    assert len({tuple(sorted(a.parameters.items())) for a in first.arms}) == 5
    client.tell_batch(first.id, measure(first, rng, shift=1.15))

    # Second round: model-based, an earlier arm carried over by name, control again once.
    second = client.ask_batch(exp.id, n_arms=5, include=[names[1]])
    names2 = [a.name for a in second.arms]
    assert names2[:2] == ["status_quo", names[1]] and names2.count("status_quo") == 1
    assert second.generator == "noisy_ei"
    assert second.metadata["generation"]["relative"] is True
    assert second.metadata["arm_generators"]["status_quo"] == "status_quo"
    client.tell_batch(second.id, measure(second, rng, shift=0.85))

    report = client.effects(exp.id)
    assert report.control_arm == "status_quo" and report.relative_model
    carried = next(a for a in report.arms if a.arm_name == names[1])
    rev = carried.metrics["revenue"]
    assert [tid for tid, _ in rev.batches] == [first.id, second.id]
    # The +-15% batch shift cancels: both batches estimate the same effect within noise.
    (_, e1), (_, e2) = rev.batches
    assert abs(e1.effect - e2.effect) < 4 * math.hypot(e1.sem, e2.sem)
    true = true_effect(carried.parameters, "revenue")
    assert rev.observed.lower - 0.5 <= true <= rev.observed.upper + 0.5
    assert set(carried.probability_constraints) == {"bounce <= +2%", "orders >= -1%"}

    best = client.best(exp.id)
    assert best.relative and best.model_based
    assert best.arm_name in {a.arm_name for a in report.arms}
    # The guardrails bind: the recommendation respects them (within ~1 SEM of an effect).
    assert true_effect(best.parameters, "bounce") <= 2.0 + 0.7, best.parameters
    assert true_effect(best.parameters, "orders") >= -1.0 - 0.7, best.parameters
    assert set(best.probability_best) == {a.arm_name for a in report.arms}
    assert 0.0 <= sum(best.probability_best.values()) <= 1.0 + 1e-9


def test_tell_batch_errors_store_nothing(client) -> None:
    exp = client.create_experiment(name=f"ab-err-{id(client)}", **SPEC)
    trial = client.ask_batch(exp.id, n_arms=3)
    good = measure(trial, np.random.default_rng(1))
    arm = trial.arms[1].name

    def rejected(obs, field: str) -> None:
        with pytest.raises(ObservationError) as e:
            client.tell_batch(trial.id, obs)
        assert e.value.field == field, e.value
        assert client.get_trial(trial.id).state is assay.TrialState.RUNNING
        assert client.get_trial(trial.id).observations == {}

    rejected({**good, "nope": good[arm]}, "observations.nope")  # unknown arm
    rejected({**good, arm: {**good[arm], "clicks": (1.0, 0.1)}}, f"observations.{arm}.clicks")
    no_control = {k: v for k, v in good.items() if k != "status_quo"}
    rejected(no_control, "observations.status_quo")
    partial = {**good, "status_quo": {k: v for k, v in good["status_quo"].items() if k != "bounce"}}
    rejected(partial, "observations.status_quo.bounce")
    no_sem = {**good, arm: {**good[arm], "revenue": good[arm]["revenue"][0]}}
    rejected(no_sem, f"observations.{arm}.revenue.sem")
    done = client.tell_batch(trial.id, good)
    assert done.state is assay.TrialState.COMPLETED and set(done.observations) == set(good)


def test_ask_batch_validation(client) -> None:
    exp = client.create_experiment(name=f"ab-val-{id(client)}", **SPEC)
    with pytest.raises(ValidationError) as e:
        client.ask_batch(exp.id, n_arms=1)
    assert e.value.field == "n_arms"
    with pytest.raises(ValidationError) as e:
        client.ask_batch(exp.id, n_arms=3, include=[dict(SQ)])  # the control is already in
    assert e.value.field == "include[0]"
    with pytest.raises(NotFoundError):
        client.ask_batch(exp.id, n_arms=3, include=["no-such-arm"])
    with pytest.raises(ValidationError):
        client.ask_batch(exp.id, n_arms=2, include=[{"price": 6.0, "layout": "list"},
                                                     {"price": 7.0, "layout": "list"}])  # fmt: skip
    assert client.trials(exp.id) == []
    plain = client.create_experiment(
        name=f"plain-{id(client)}", **{**SPEC, "status_quo": None, "outcome_constraints": []}
    )
    t = client.ask_batch(plain.id, n_arms=3)
    assert len(t.arms) == 3 and "status_quo" not in [a.name for a in t.arms]
    with pytest.raises(UnsupportedError):
        client.effects(plain.id)


# -- REST ---------------------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    with TestClient(create_app(Settings(auth="none"), store=store)) as c:
        yield c
    store.close()


def _create(api) -> int:
    body = {"name": "rest-ab", **SPEC}
    r = api.post("/api/v1/experiments", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_rest_ask_batch_complete_effects_best(api) -> None:
    eid = _create(api)
    r = api.post(f"/api/v1/experiments/{eid}/trials:ask_batch",
                 json={"n_arms": 4, "idempotency_key": "round-0"})  # fmt: skip
    assert r.status_code == 201, r.text
    trial = r.json()
    assert trial["arms"][0]["name"] == "status_quo"
    again = api.post(f"/api/v1/experiments/{eid}/trials:ask_batch",
                     json={"n_arms": 4, "idempotency_key": "round-0"})  # fmt: skip
    assert again.json()["id"] == trial["id"]  # a retried ask returns the same batch
    rng = np.random.default_rng(2)
    arms = {}
    for a in trial["arms"]:
        arms[a["name"]] = {
            m: {"mean": v * (1 + float(rng.normal(0, 0.005))), "sem": 0.005 * v, "n": 10_000}
            for m, v in truth(a["parameters"]).items()
        }
    # A batch missing the control's data: 422 naming the field, nothing stored.
    bad = {k: v for k, v in arms.items() if k != "status_quo"}
    r = api.post(f"/api/v1/trials/{trial['id']}:complete", json={"arms": bad})
    assert (
        r.status_code == 422 and r.json()["error"]["details"]["field"] == "observations.status_quo"
    )
    assert api.get(f"/api/v1/trials/{trial['id']}").json()["state"] == "running"
    r = api.post(f"/api/v1/trials/{trial['id']}:complete", json={"arms": arms})
    assert r.status_code == 200, r.text
    eff = api.get(f"/api/v1/experiments/{eid}/effects")
    assert eff.status_code == 200, eff.text
    body = eff.json()
    assert body["control_arm"] == "status_quo" and len(body["arms"]) == 4
    treated = [a for a in body["arms"] if not a["is_control"]]
    for a in treated:
        e = a["metrics"]["revenue"]["observed"]
        assert e["lower"] < e["effect"] < e["upper"] and 0 <= e["p_value"] <= 1
    best = api.get(f"/api/v1/experiments/{eid}/best").json()
    assert best["relative"] is True and set(best["probability_best"]) == {
        a["arm_name"] for a in body["arms"]
    }
    # Bad asks: field named, nothing stored.
    for payload, field in [
        ({"n_arms": 1}, "n_arms"),
        ({"n_arms": 3, "include": [SQ]}, "include[0]"),
    ]:
        r = api.post(f"/api/v1/experiments/{eid}/trials:ask_batch", json=payload)
        assert r.status_code == 422, r.text
        assert field in r.json()["error"]["details"]["field"]
    assert api.get(f"/api/v1/experiments/{eid}/trials").json()["total"] == 1


def test_rest_effects_without_a_control_is_400(api) -> None:
    r = api.post("/api/v1/experiments", json={"name": "p", **{**SPEC, "status_quo": None,
                                              "outcome_constraints": []}})  # fmt: skip
    eid = r.json()["id"]
    r = api.get(f"/api/v1/experiments/{eid}/effects")
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "status_quo"


def test_included_arms_are_fantasized_and_never_proposed_again() -> None:
    """Twin experiments, same data and seeds: the arm the generator proposes alone (q = 1) is
    carried into the twin's next batch with ``include=``; the twin's generator must then see
    it as pending — propose a different arm, moved away by the model (no duplicate topped up
    by quasi-random), and the batch holds no arm twice."""
    client = assay.Client()
    twins = []
    for k in range(2):
        exp = client.create_experiment(name=f"twin-{k}", **SPEC)
        first = client.ask_batch(exp.id, n_arms=5)
        client.tell_batch(first.id, measure(first, np.random.default_rng(4)))
        twins.append(exp)
    alone = client.ask_batch(twins[0].id, n_arms=2)
    [proposed] = [a.parameters for a in alone.arms if a.name != "status_quo"]
    with_it = client.ask_batch(twins[1].id, n_arms=3, include=[proposed])
    sigs = [tuple(sorted(a.parameters.items())) for a in with_it.arms]
    assert len(set(sigs)) == 3 and len({a.name for a in with_it.arms}) == 3
    [new] = with_it.arms[2:]
    assert with_it.arms[1].parameters == proposed
    assert with_it.metadata["arm_generators"][new.name] == "noisy_ei"
    assert "deduplicated" not in with_it.metadata["generation"]
    assert new.parameters != proposed
    client.close()
