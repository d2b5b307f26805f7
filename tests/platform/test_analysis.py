from __future__ import annotations

import pytest

from assay.platform.analysis import best_arm
from assay.platform.errors import NotFoundError

SPEC = {
    "name": "a",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "outcome_constraints": ["c <= 0.8"],
}


def truth(x: float) -> float:
    return -((x - 0.5) ** 2)


def test_best_arm_is_chosen_by_the_model_not_the_luckiest_observation(build_experiment) -> None:
    wiggle = [0.01, -0.02, 0.015, -0.01, 0.0, 0.02, -0.015, 0.01, -0.005, 0.0, 0.012]
    obs = []
    for i in range(11):
        x = i / 10
        obs.append(({"x": x}, {"y": (truth(x) + wiggle[i], 0.03), "c": (x, 0.01)}))
    # a lucky, very noisy measurement of a poor arm beats every raw value
    obs[1] = ({"x": 0.1}, {"y": (0.2, 0.3), "c": (0.1, 0.01)})
    exp = build_experiment(SPEC, obs)
    best = best_arm(exp)
    assert best.model_based and best.feasible
    assert best.arm_name != "1_0"
    assert abs(best.parameters["x"] - 0.5) <= 0.1
    est = best.estimates["y"]
    assert est.lower <= truth(best.parameters["x"]) <= est.upper
    assert best.probability_feasible > 0.99


def test_best_arm_respects_constraints(build_experiment) -> None:
    obs = [({"x": i / 10}, {"y": (truth(i / 10), 0.01), "c": (i / 10, 0.01)}) for i in range(11)]
    spec = {**SPEC, "outcome_constraints": ["c <= 0.3"]}
    best = best_arm(build_experiment(spec, obs))
    assert best.parameters["x"] == pytest.approx(0.3, abs=0.101)
    assert best.parameters["x"] <= 0.3
    assert best.feasible


def test_best_arm_without_enough_data_uses_observed_means(build_experiment) -> None:
    best = best_arm(build_experiment(SPEC, [({"x": 0.2}, {"y": 1.0, "c": 0.5})]))
    assert not best.model_based
    assert best.estimates["y"].mean == 1.0
    with pytest.raises(NotFoundError):
        best_arm(build_experiment(SPEC))
