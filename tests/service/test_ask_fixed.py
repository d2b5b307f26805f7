"""``client.ask(exp_id, n, fixed={...})``: some parameters held for one ask, the rest
optimized (model-based once there is data), in every client mode; bad names or values are
rejected naming ``fixed.<name>`` and create nothing."""

from __future__ import annotations

import pytest

from assay.platform.errors import ValidationError


def test_ask_with_fixed_parameters(client) -> None:
    exp = client.create_experiment(
        name=f"fixed-{client.mode}",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "layers", "type": "int", "bounds": [1, 8]},
            {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
        ],
        objective="y",
        generator_settings={"n_initial": 3},
        seed=0,
    )
    for _ in range(3):
        [t] = client.ask(exp.id)
        client.tell(t.id, {"y": t.parameters["x"] - 0.1 * t.parameters["layers"]})
    trials = client.ask(exp.id, 2, fixed={"layers": 4, "opt": "sgd"})
    assert len(trials) == 2
    for t in trials:
        assert t.parameters["layers"] == 4 and t.parameters["opt"] == "sgd"
        assert 0 <= t.parameters["x"] <= 1
    assert trials[0].generator == "noisy_ei"  # model-based, on the 3 observations
    assert trials[0].metadata["generation"]["fixed"] == {"layers": 4, "opt": "sgd"}
    # the experiment itself is unchanged: the next plain ask may vary every parameter
    assert client.get_experiment(exp.id).config.search_space["layers"].to_dict()["type"] == "int"

    n_before = len(client.trials(exp.id))
    for bad, field in (({"depth": 3}, "fixed.depth"), ({"layers": 99}, "fixed.layers")):
        with pytest.raises(ValidationError) as e:
            client.ask(exp.id, fixed=bad)
        assert e.value.field == field or field in str(e.value)
    assert len(client.trials(exp.id)) == n_before
