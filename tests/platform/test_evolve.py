"""The definition-change rules (assay.platform.evolve): pure, no storage."""

from __future__ import annotations

import pytest
import torch

from assay.platform.errors import ValidationError
from assay.platform.evolve import apply_definition_changes
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Observation,
    Trial,
    TrialState,
)


def _config() -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {"name": "e", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
         "objective": "y", "seed": 5}
    )  # fmt: skip


def test_added_parameter_reads_past_arms_at_its_default() -> None:
    new, notes = apply_definition_changes(
        _config(),
        {"add_parameters": [{"name": "lr", "type": "float", "bounds": [1e-4, 1e-1],
                             "log": True, "default": 1e-3}]},
    )  # fmt: skip
    assert notes == ["parameter added: lr (past trials: 0.001)"]
    assert new.seed == 5 and new.parameter_defaults == {"lr": 1e-3}
    space = new.search_space
    assert torch.equal(space.encode({"x": 0.5}), space.encode({"x": 0.5, "lr": 1e-3}))
    assert not torch.equal(space.encode({"x": 0.5}), space.encode({"x": 0.5, "lr": 1e-2}))
    # the domain objects read the old arm with the default; the stored arm is unchanged
    arm = Arm("0_0", {"x": 0.5})
    trial = Trial(1, 1, 0, [arm], state=TrialState.COMPLETED)
    trial.observations = {"0_0": {}}
    exp = Experiment(1, new, trials=[trial])
    assert exp.arms_by_name()["0_0"].parameters == {"x": 0.5, "lr": 1e-3}
    assert arm.parameters == {"x": 0.5}
    # the defaults survive the JSON form (stored with the version)
    again = ExperimentConfig.from_dict(new.to_dict())
    assert again.parameter_defaults == {"lr": 1e-3}
    assert again.search_space.defaults == {"lr": 1e-3}
    assert "parameter_defaults" not in _config().to_dict()


def test_parameter_defaults_are_validated() -> None:
    d = _config().to_dict()
    with pytest.raises(ValidationError) as e:
        ExperimentConfig.from_dict({**d, "parameter_defaults": {"nope": 1}})
    assert e.value.field == "parameter_defaults.nope"
    with pytest.raises(ValidationError) as e:
        ExperimentConfig.from_dict({**d, "parameter_defaults": {"x": 3.0}})
    assert e.value.field == "parameter_defaults.x"


def test_removed_choice_value_leaves_the_model_data() -> None:
    cfg = ExperimentConfig.from_dict(
        {"name": "e", "objective": "y",
         "parameters": [{"name": "k", "type": "choice", "values": ["a", "b", "c"]},
                        {"name": "x", "type": "float", "bounds": [0, 1]}]}
    )  # fmt: skip
    new, notes = apply_definition_changes(cfg, {"remove_values": {"k": ["c"]}})
    assert notes == ["k: values - ['c']"]
    assert new.search_space.is_encodable({"k": "a", "x": 0.1})
    assert not new.search_space.is_encodable({"k": "c", "x": 0.1})
    trials = []
    for i, k in enumerate(["a", "c", "b"]):
        t = Trial(i + 1, 1, i, [Arm(f"{i}_0", {"k": k, "x": 0.5})], state=TrialState.COMPLETED)
        t.observations = {f"{i}_0": {"y": Observation("y", 0.1 * i)}}
        trials.append(t)
    exp = Experiment(1, new, trials=trials)
    assert [a.name for _, a, _ in exp.observed()] == ["0_0", "2_0"]
