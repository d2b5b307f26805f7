"""Evolving a running experiment (PATCH /experiments/{id}, ``client.update_experiment``):
each change is a new definition version with who and why; past trials keep their version;
trials outside a narrowed space inform the model but are never proposed or recommended; a
bad change stores nothing. Every client mode (memory, SQLite, PostgreSQL, HTTP)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assay.platform.errors import ValidationError
from assay.service.app import create_app
from assay.service.settings import Settings
from assay.storage.base import version_of_trial


@pytest.mark.slow
def test_widen_narrow_add_values_constraints_and_generator(client) -> None:
    exp = client.create_experiment(
        name=f"evolve-{client.mode}",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
        ],
        objective={"name": "y", "minimize": True},
        outcome_constraints=["c <= 1"],
        generator_settings={"n_initial": 3},
        seed=1,
    )
    for x in (0.9, 0.8, 0.2, 0.3):
        t = client.attach_trial(exp.id, {"x": x, "opt": "adam"})
        client.tell(t.id, {"y": (x - 0.25) ** 2, "c": 0.5})
    assert [v.version for v in client.experiment_versions(exp.id)] == [1]

    # narrow x: the trials at 0.8/0.9 now lie outside; add a choice value; adjust constraint
    client.update_experiment(
        exp.id, bounds={"x": [0.0, 0.5]}, add_values={"opt": ["rmsprop"]},
        outcome_constraints=["c <= 2"], reason="focus on small x",
    )  # fmt: skip
    versions = client.experiment_versions(exp.id)
    assert [v.version for v in versions] == [1, 2]
    v2 = versions[1]
    assert v2.reason == "focus on small x" and v2.actor and v2.trial_count == 4
    assert any(c.startswith("x: bounds [0") and c.endswith("-> [0.0, 0.5]") for c in v2.changes)
    assert any("rmsprop" in c for c in v2.changes)
    assert "outcome constraint added: c <= 2" in v2.changes
    assert versions[0].config["parameters"][0]["bounds"] == [0, 1]  # the old definition kept

    cfg = client.get_experiment(exp.id).config
    assert cfg.search_space["opt"].to_dict()["values"] == ["adam", "sgd", "rmsprop"]
    assert [c.expression for c in cfg.outcome_constraints] == ["c <= 2"]
    assert "c" not in cfg.tracking_metrics

    # the next asks use the new space (model-based on all 4 observations, outside ones too)
    trials = client.ask(exp.id, 2)
    for t in trials:
        assert 0.0 <= t.parameters["x"] <= 0.5
    assert trials[0].generator == "noisy_ei"
    all_trials = client.trials(exp.id)
    assert [version_of_trial(versions, t.index) for t in all_trials] == [1, 1, 1, 1, 2, 2]
    # never recommended: the best observed arm must lie in the narrowed space
    for t in trials:
        client.tell(t.id, {"y": (t.parameters["x"] - 0.25) ** 2, "c": 0.5})
    best = client.best(exp.id)
    assert best.parameters["x"] <= 0.5

    # remove the constraint: its metric stays reportable as a tracking metric
    client.update_experiment(
        exp.id, outcome_constraints=[], generator="sobol", generator_settings={}, reason="r"
    )
    cfg = client.get_experiment(exp.id).config
    assert cfg.outcome_constraints == [] and "c" in cfg.tracking_metrics
    assert cfg.generator == "sobol"
    [t] = client.ask(exp.id)
    assert t.generator == "sobol"
    assert len(client.experiment_versions(exp.id)) == 3


def test_a_bad_change_stores_nothing(client) -> None:
    exp = client.create_experiment(
        name=f"evolve-bad-{client.mode}",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "k", "type": "choice", "values": ["a", "b"]},
        ],
        objective="y",
    )
    bad = [
        ({"bounds": {"x": [1, 0]}}, None),
        ({"bounds": {"k": [0, 1]}}, "bounds.k"),
        ({"add_values": {"x": [3]}}, "add_values.x"),
        ({"outcome_constraints": ["nonsense"]}, None),
        ({"generator": "no-such-generator"}, None),
        ({"bounds": {"x": [0, 1]}}, "changes"),  # changes nothing
    ]
    for kwargs, field in bad:
        with pytest.raises(ValidationError) as e:
            client.update_experiment(exp.id, **kwargs)
        if field:
            assert e.value.field == field, (kwargs, e.value.field)
    assert [v.version for v in client.experiment_versions(exp.id)] == [1]
    assert client.get_experiment(exp.id).config.search_space["x"].to_dict()["bounds"] == [0, 1]


def test_patch_over_rest_records_the_actor(store) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        exp = api.post(
            "/api/v1/experiments",
            json={"name": "p", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                  "objective": "y"},
        ).json()  # fmt: skip
        r = api.patch(
            f"/api/v1/experiments/{exp['id']}",
            json={"bounds": {"x": [0, 2]}, "reason": "widen", "status": "paused"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "paused"
        versions = api.get(f"/api/v1/experiments/{exp['id']}/versions").json()["versions"]
        assert [v["version"] for v in versions] == [2 - 1, 2]
        assert versions[1]["actor"] == "local" and versions[1]["reason"] == "widen"
        r = api.patch(f"/api/v1/experiments/{exp['id']}", json={"bounds": {"nope": [0, 1]}})
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "bounds.nope"


def test_add_a_parameter_with_a_default_for_past_trials(client) -> None:
    exp = client.create_experiment(
        name=f"evolve-add-{client.mode}",
        parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
        objective={"name": "y", "minimize": True},
        generator_settings={"n_initial": 3},
        seed=2,
    )
    for x in (0.1, 0.4, 0.7, 0.9):
        t = client.attach_trial(exp.id, {"x": x})
        client.tell(t.id, {"y": (x - 0.4) ** 2})
    client.update_experiment(
        exp.id,
        add_parameters=[{"name": "opt", "type": "choice", "values": ["adam", "sgd"],
                         "default": "adam"},
                        {"name": "depth", "type": "int", "bounds": [1, 8], "default": 3}],
        reason="new knobs",
    )  # fmt: skip
    [v1, v2] = client.experiment_versions(exp.id)
    assert "parameter added: opt (past trials: 'adam')" in v2.changes
    assert "parameter added: depth (past trials: 3)" in v2.changes
    assert v2.config["parameter_defaults"] == {"opt": "adam", "depth": 3}
    assert "parameter_defaults" not in v1.config
    cfg = client.get_experiment(exp.id).config
    assert cfg.search_space.names == ["x", "opt", "depth"]
    assert cfg.parameter_defaults == {"opt": "adam", "depth": 3}
    # past trials keep their stored arms ...
    assert client.trials(exp.id)[0].parameters == {"x": 0.1}
    # ... and the model reads them at the defaults: the ask is model-based (4 observations
    # past n_initial=3), not a fallback, and proposes the full new space
    [t] = client.ask(exp.id)
    assert t.generator == "noisy_ei"
    assert set(t.parameters) == {"x", "opt", "depth"}
    assert t.parameters["opt"] in ("adam", "sgd") and 1 <= t.parameters["depth"] <= 8
    # the best arm is a past one, read with the defaults
    best = client.best(exp.id)
    assert best.parameters == {"x": 0.4, "opt": "adam", "depth": 3}


def test_a_bad_added_parameter_stores_nothing(client) -> None:
    exp = client.create_experiment(
        name=f"evolve-add-bad-{client.mode}",
        parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
        objective="y",
    )
    bad = [
        ([{"name": "z", "type": "float", "bounds": [0, 1], "default": 2.0}],
         "add_parameters[0].default"),
        ([{"name": "k", "type": "choice", "values": ["a"], "default": "a"},
          {"name": "k2", "type": "choice", "values": ["a", "b"], "default": "c"}],
         "add_parameters[1].default"),
        ([{"name": "x", "type": "float", "bounds": [0, 1], "default": 0.5}],
         "add_parameters[0].name"),
        ([{"name": "z", "type": "float", "bounds": [0, 1]}], "add_parameters[0].default"),
        ([{"name": "z", "type": "float", "bounds": [1, 0], "default": 0.5}],
         "add_parameters[0].bounds"),
    ]  # fmt: skip
    for specs, field in bad:
        with pytest.raises(ValidationError) as e:
            client.update_experiment(exp.id, add_parameters=specs)
        assert e.value.field == field, (specs, e.value.field)
    assert [v.version for v in client.experiment_versions(exp.id)] == [1]
    assert client.get_experiment(exp.id).config.search_space.names == ["x"]


def test_remove_a_choice_value(client) -> None:
    exp = client.create_experiment(
        name=f"evolve-rm-{client.mode}",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "opt", "type": "choice", "values": ["adam", "sgd", "lion"]},
        ],
        objective="y",
        generator_settings={"n_initial": 3},
        seed=3,
    )
    for x, opt in ((0.1, "adam"), (0.5, "sgd"), (0.9, "lion"), (0.3, "sgd"), (0.7, "adam")):
        t = client.attach_trial(exp.id, {"x": x, "opt": opt})
        client.tell(t.id, {"y": 10.0 if opt == "lion" else x})
    for values, field in (({"opt": ["rmsprop"]}, "remove_values.opt"),
                          ({"x": [0.5]}, "remove_values.x"),
                          ({"opt": ["adam", "sgd", "lion"]}, "remove_values.opt")):  # fmt: skip
        with pytest.raises(ValidationError) as e:
            client.update_experiment(exp.id, remove_values=values)
        assert e.value.field == field
    client.update_experiment(exp.id, remove_values={"opt": ["lion"]}, reason="lion diverges")
    assert "opt: values - ['lion']" in client.experiment_versions(exp.id)[-1].changes
    cfg = client.get_experiment(exp.id).config
    assert cfg.search_space["opt"].to_dict()["values"] == ["adam", "sgd"]
    # the lion trial (the best y) stays in the list but leaves the model and is never best
    assert len(client.trials(exp.id)) == 5
    assert client.best(exp.id).parameters["opt"] != "lion"
    trials = client.ask(exp.id, 2)
    assert trials[0].generator == "noisy_ei"
    assert all(t.parameters["opt"] in ("adam", "sgd") for t in trials)
