"""Several objectives through every client mode (memory, SQLite, PostgreSQL, HTTP): creation
with thresholds, 422s naming the field, GET /experiments/{id}/pareto, best returning the
front; and a single-objective experiment stored without the new fields loads unchanged."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import create_engine, text

import assay
from assay.platform.errors import NotFoundError, ValidationError

PARAMS = [
    {"name": "x0", "type": "float", "bounds": [0.0, 1.0]},
    {"name": "x1", "type": "float", "bounds": [0.0, 1.0]},
]
FAST = {"num_restarts": 1, "raw_samples": 16, "mc_samples": 16, "n_initial": 4}
OBJECTIVES = [
    {"name": "reward"},
    {"name": "latency_ms", "minimize": True, "threshold": 50},
]


def _truth(p: dict) -> dict:
    return {
        "reward": (p["x0"], 0.01),
        "latency_ms": (20 + 40 * p["x0"] ** 2 + 10 * p["x1"], 0.5),
        "cost": p["x1"],
    }


@pytest.mark.slow
def test_multi_objective_workflow(client) -> None:
    exp = client.create_experiment(
        "mo", PARAMS, objectives=OBJECTIVES, outcome_constraints=["cost <= 0.9"],
        seed=3, generator_settings=FAST,
    )  # fmt: skip
    assert exp.config.generator == "noisy_ehvi"
    assert [o.threshold for o in exp.config.objectives] == [None, 50.0]
    with pytest.raises(NotFoundError):
        client.pareto(exp.id)
    trials = client.ask(exp.id, n=4)
    # the initial design: the centre of the space first (noisy_ehvi's centre_first), then Sobol
    assert [t.generator for t in trials] == ["centre", "sobol", "sobol", "sobol"]
    for t in trials:
        client.tell(t.id, _truth(t.parameters))
    rep = client.pareto(exp.id)
    assert rep.model_based and rep.front and rep.observed_front
    assert rep.reference_point["latency_ms"] == {"value": 50.0, "inferred": False}
    assert rep.reference_point["reward"]["inferred"] is True
    assert len(rep.trace) == 4 and rep.trace[-1].observed == pytest.approx(rep.observed_hypervolume)
    on = {a.arm_name for a in rep.arms if a.on_front}
    assert on == set(rep.front)
    for a in rep.arms:
        est = a.estimates["reward"]
        assert est.lower <= est.mean <= est.upper
        assert 0.0 <= a.probability_front <= 1.0
    best = client.best(exp.id)
    assert best.front == rep.front and best.arm_name in rep.front
    if client.mode == "memory":  # the model-based ask itself (same code on every backend)
        (nxt,) = client.ask(exp.id)
        assert nxt.generator == "noisy_ehvi"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"objectives": ["a", "a"]}, "objectives[1].name"),
        ({"objectives": ["a", "b"], "generator": "multi_step"}, "generator"),
        ({"objectives": ["a", "b"], "outcome_constraints": ["b <= 1"]}, "outcome_constraints[0]"),
        (
            {"objectives": ["a", {"name": "b", "minimize": True, "threshold": ">= 1"}]},
            "objectives[1].threshold",
        ),
    ],
)
def test_bad_multi_objective_definitions_are_422s_naming_the_field(client, kw, field) -> None:
    before = len(client.list_experiments())
    with pytest.raises(ValidationError) as e:
        client.create_experiment("bad", PARAMS, **kw)
    assert e.value.field == field, e.value
    assert len(client.list_experiments()) == before


def test_pareto_of_a_single_objective_experiment_is_a_422(client) -> None:
    exp = client.create_experiment("one", PARAMS, "reward", seed=1)
    assert exp.config.generator == "noisy_ei"
    with pytest.raises(ValidationError) as e:
        client.pareto(exp.id)
    assert e.value.field == "objectives"


def test_rest_body_and_openapi(http_server) -> None:
    url = http_server.url
    schema = httpx.get(f"{url}/openapi.json").json()
    create = schema["components"]["schemas"]["ExperimentCreate"]["properties"]
    assert "objectives" in create
    assert "/api/v1/experiments/{experiment_id}/pareto" in schema["paths"]
    body = {"name": "rest-mo", "parameters": PARAMS, "objectives": ["a", {"name": "a"}]}
    r = httpx.post(f"{url}/api/v1/experiments", json=body)
    assert r.status_code == 422 and "objectives[1].name" in r.text


def test_single_objective_experiment_stored_before_loads_unchanged(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    c = assay.Client(url)
    exp = c.create_experiment("old", PARAMS, {"name": "loss", "minimize": True}, seed=2)
    (t,) = c.ask(exp.id)
    c.tell(t.id, {"loss": 0.5})
    c.close()
    # the configuration as the previous release wrote it: no thresholds, generator noisy_ei
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE experiments SET config = :c"),
            {
                "c": '{"name": "old", "parameters": [{"name": "x0", "type": "float", '
                '"bounds": [0.0, 1.0], "log": false}, {"name": "x1", "type": "float", '
                '"bounds": [0.0, 1.0], "log": false}], "parameter_constraints": [], '
                '"objectives": [{"name": "loss", "minimize": true}], "outcome_constraints": '
                '[], "tracking_metrics": [], "generator": "noisy_ei", "generator_settings": '
                '{}, "seed": 2, "max_trials": null, "status_quo": null, "description": ""}'
            },
        )
    engine.dispose()
    c = assay.Client(url)
    old = c.get_experiment(exp.id)
    assert old.config.generator == "noisy_ei" and not old.config.is_multi_objective
    assert old.config.objective.minimize and old.config.objective.threshold is None
    assert c.best(exp.id).front == []
    (t2,) = c.ask(exp.id)
    assert t2.index == 1
    c.close()
