from __future__ import annotations

import math

import pytest

from assay.platform.errors import (
    ConstraintParseError,
    InvalidTransitionError,
    ObservationError,
    ValidationError,
)
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Objective,
    Observation,
    OutcomeConstraint,
    Trial,
    TrialState,
    check_transition,
)

SPEC = {
    "name": "e",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "acc",
    "outcome_constraints": ["latency_ms <= 20", "ctr >= 0.01"],
}


def test_objective_forms() -> None:
    assert Objective.parse("acc") == Objective("acc", False)
    assert Objective.parse({"name": "loss", "minimize": True}) == Objective("loss", True)
    with pytest.raises(ValidationError, match="minimize"):
        Objective.parse({"name": "loss", "minimize": "yes"})
    with pytest.raises(ValidationError, match="unknown field"):
        Objective.parse({"name": "loss", "direction": "min"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency_ms <= 20", OutcomeConstraint("latency_ms", "<=", 20.0)),
        ("ctr>=0.01", OutcomeConstraint("ctr", ">=", 0.01)),
        ("revenue >= -1%", OutcomeConstraint("revenue", ">=", -1.0, relative=True)),
        ("latency_ms <= +2%", OutcomeConstraint("latency_ms", "<=", 2.0, relative=True)),
        ("m <= 1e-3", OutcomeConstraint("m", "<=", 1e-3)),
    ],
)
def test_outcome_constraint_parse(text, expected) -> None:
    assert OutcomeConstraint.parse(text) == expected


@pytest.mark.parametrize("text", ["latency < 20", "latency <= x", "<= 3", "a <= 1 + 2", 5])
def test_outcome_constraint_errors(text) -> None:
    with pytest.raises(ConstraintParseError):
        OutcomeConstraint.parse(text)


def test_config_from_dict_and_back() -> None:
    c = ExperimentConfig.from_dict(SPEC)
    assert c.objective.name == "acc"
    assert c.modelled_metrics == ["acc", "latency_ms", "ctr"]
    again = ExperimentConfig.from_dict(c.to_dict())
    assert again.to_dict() == c.to_dict()


@pytest.mark.parametrize(
    ("patch", "exc", "field"),
    [
        ({"objective": None}, ValidationError, "objective"),
        ({"outcome_constraints": ["acc <= 1"]}, ConstraintParseError, "outcome_constraints[0]"),
        ({"outcome_constraints": ["x >= -1%"]}, ConstraintParseError, "outcome_constraints[0]"),
        ({"frobnicate": 1}, ValidationError, "frobnicate"),
        ({"name": ""}, ValidationError, "name"),
        ({"max_trials": 0}, ValidationError, "max_trials"),
        ({"seed": "x"}, ValidationError, "seed"),
        ({"generator_settings": [1]}, ValidationError, "generator_settings"),
        ({"objectives": ["a"]}, ValidationError, "objectives"),
    ],
)
def test_config_errors(patch, exc, field) -> None:
    spec = {**SPEC, **patch}
    if patch.get("objective", 1) is None:
        spec.pop("objective")
    with pytest.raises(exc) as e:
        ExperimentConfig.from_dict(spec)
    assert e.value.field == field, e.value


MO = {k: v for k, v in SPEC.items() if k != "objective"}


def test_several_objectives_default_to_noisy_ehvi_and_keep_thresholds() -> None:
    cfg = ExperimentConfig.from_dict(
        {
            **MO,
            "objectives": [
                "a",
                {"name": "b", "threshold": 0.7},
                {"name": "c", "minimize": True, "threshold": "<= 50"},
            ],
        }
    )
    assert cfg.generator == "noisy_ehvi" and cfg.is_multi_objective
    assert [o.threshold for o in cfg.objectives] == [None, 0.7, 50.0]
    assert cfg.objectives[2].threshold_expression == "c <= 50"
    again = ExperimentConfig.from_dict({**cfg.to_dict()})
    assert again.objectives == cfg.objectives and again.generator == "noisy_ehvi"
    # one objective: unchanged default, objective="x" still works
    assert ExperimentConfig.from_dict(SPEC).generator == "noisy_ei"


@pytest.mark.parametrize(
    ("objectives", "extra", "field", "says"),
    [
        (["a", "a"], {}, "objectives[1].name", "duplicate"),
        (["a", "b"], {"outcome_constraints": ["b <= 1"]}, "outcome_constraints[0]", "objective"),
        (["a", "b"], {"generator": "multi_step"}, "generator", "lookahead"),
        (["a", "b"], {"generator": "noisy_ei"}, "generator", "one objective"),
        (["a", {"name": "b", "threshold": "<= 3"}], {}, "objectives[1].threshold", "wrong sign"),
        (
            ["a", {"name": "b", "minimize": True, "threshold": ">= 3"}],
            {},
            "objectives[1].threshold",
            "wrong sign",
        ),
        (["a", {"name": "b", "threshold": "-1%"}], {}, "objectives[1].threshold", "status_quo"),
        (["a", {"name": "b", "threshold": "x"}], {}, "objectives[1].threshold", "parse"),
        (["a", {"name": "b", "relative": True}], {}, "objectives[1].relative", "threshold"),
        (["a", {"name": "b", "cap": 1}], {}, "objectives[1].cap", "unknown"),
    ],
)
def test_multi_objective_definition_errors(objectives, extra, field, says) -> None:
    with pytest.raises(ValidationError) as e:
        ExperimentConfig.from_dict({**MO, "objectives": objectives, **extra})
    assert e.value.field == field, e.value
    assert says in e.value.message, e.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.9, Observation("m", 0.9, None, None)),
        ((0.9, 0.01), Observation("m", 0.9, 0.01)),
        ((0.9, None), Observation("m", 0.9, None)),
        ([0.9, 0.01, 100], Observation("m", 0.9, 0.01, 100)),
        ({"mean": 1, "sem": 0, "n": 5}, Observation("m", 1.0, 0.0, 5)),
    ],
)
def test_observation_forms(value, expected) -> None:
    assert Observation.parse("m", value) == expected


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, (1.0, -0.1), (1.0, math.nan), (1.0, 0.1, 0), (1.0, 0.1, 2.5), (1.0, 0.1, -3.0), "1.0",
     True, (1, 2, 3, 4), {"mean": 1, "std": 2}, {"sem": 1}],
)  # fmt: skip
def test_bad_observations(value) -> None:
    with pytest.raises(ObservationError) as e:
        Observation.parse("m", value)
    assert "observations.m" in str(e.value)


def test_parse_observations_rejects_unknown_metric() -> None:
    c = ExperimentConfig.from_dict({**SPEC, "tracking_metrics": ["loss"]})
    assert set(c.parse_observations({"acc": 1, "loss": (2, 0.1)})) == {"acc", "loss"}
    with pytest.raises(ObservationError, match="unknown metric 'accuracy'"):
        c.parse_observations({"accuracy": 1.0})
    with pytest.raises(ObservationError):
        c.parse_observations({})


def test_life_cycle() -> None:
    check_transition(1, TrialState.CANDIDATE, TrialState.RUNNING)
    check_transition(1, TrialState.RUNNING, TrialState.EARLY_STOPPED)
    with pytest.raises(InvalidTransitionError, match="already told"):
        check_transition(1, TrialState.COMPLETED, TrialState.COMPLETED)
    with pytest.raises(InvalidTransitionError):
        check_transition(1, TrialState.FAILED, TrialState.RUNNING)
    with pytest.raises(InvalidTransitionError):
        check_transition(1, TrialState.CANDIDATE, TrialState.EARLY_STOPPED)
    assert TrialState.RUNNING.is_pending and not TrialState.ABANDONED.is_pending


AB_SPEC = {
    "name": "ab",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "ctr",
    "outcome_constraints": ["latency_ms <= 20"],
    "tracking_metrics": ["sessions"],
    "status_quo": {"x": 0.5},
}


def _batch(*arms: tuple[str, float], trial_id: int = 7) -> Trial:
    return Trial(trial_id, 1, 0, [Arm(name, {"x": x}) for name, x in arms])


def test_control_arm_is_the_arm_equal_to_the_status_quo() -> None:
    t = _batch(("0_0", 0.2), ("status_quo", 0.5), ("0_2", 0.9))
    assert t.is_batch and t.control_arm({"x": 0.5}) is t.arms[1]
    assert t.control_arm({"x": 0.3}) is None
    assert t.control_arm(None) is None
    single = _batch(("status_quo", 0.5))
    assert not single.is_batch and single.control_arm({"x": 0.5}) is single.arms[0]


def test_name_arms_reuses_known_names_and_numbers_new_ones() -> None:
    config = ExperimentConfig.from_dict(AB_SPEC)
    exp = Experiment(1, config, trials=[_batch(("status_quo", 0.5), ("0_1", 0.2))])
    named = exp.name_arms(1, [{"x": 0.5}, {"x": 0.2}, {"x": 0.7}, {"x": 0.7}])
    assert [n for n, _ in named] == ["status_quo", "0_1", "1_2", "1_2"]
    fresh = Experiment(2, config)
    assert [n for n, _ in fresh.name_arms(0, [{"x": 0.5}, {"x": 0.1}])] == ["status_quo", "0_1"]


def test_parse_trial_observations_single_and_batch() -> None:
    config = ExperimentConfig.from_dict(AB_SPEC)
    single = _batch(("0_0", 0.2))
    assert set(config.parse_trial_observations(single, {"ctr": 0.1}, batch=False)) == {"0_0"}
    batch = _batch(("status_quo", 0.5), ("0_1", 0.2))
    with pytest.raises(ObservationError, match="use tell_batch") as e:
        config.parse_trial_observations(batch, {"ctr": 0.1}, batch=False)
    assert e.value.field == "observations"
    ok = {"status_quo": {"ctr": (0.1, 0.01)}, "0_1": {"ctr": (0.12, 0.01)}}
    out = config.parse_trial_observations(batch, ok, batch=True)
    assert out["0_1"]["ctr"].mean == 0.12
    with pytest.raises(ObservationError, match="has no arm 'nope'") as e:
        config.parse_trial_observations(batch, {"nope": {"ctr": 1.0}}, batch=True)
    assert e.value.field == "observations.nope"
    with pytest.raises(ObservationError) as e:
        config.parse_trial_observations(batch, {"0_1": {"bogus": 1.0}}, batch=True)
    assert e.value.field == "observations.0_1.bogus"


@pytest.mark.parametrize(
    ("observations", "field"),
    [
        ({"0_1": {"ctr": (0.1, 0.01)}}, "observations.status_quo"),
        (
            {"status_quo": {"ctr": (0.1, 0.01)}, "0_1": {"ctr": (0.1, 0.01), "sessions": 5}},
            "observations.status_quo.sessions",
        ),
        ({"status_quo": {"ctr": (0.1, 0.01)}, "0_1": {"ctr": 0.1}}, "observations.0_1.ctr.sem"),
    ],
    ids=["control-without-data", "control-lacks-a-metric", "modelled-metric-without-sem"],
)
def test_batch_observations_are_checked_against_the_control(observations, field) -> None:
    config = ExperimentConfig.from_dict(AB_SPEC)
    batch = _batch(("status_quo", 0.5), ("0_1", 0.2))
    with pytest.raises(ObservationError) as e:
        config.parse_trial_observations(batch, observations, batch=True)
    assert e.value.field == field
    # Without relativization the SEMs are optional; the control must still report.
    plain = ExperimentConfig.from_dict({**AB_SPEC, "generator_settings": {"relativize": False}})
    no_sem = {"status_quo": {"ctr": 0.1}, "0_1": {"ctr": 0.1}}
    assert set(plain.parse_trial_observations(batch, no_sem, batch=True)) == {"status_quo", "0_1"}
