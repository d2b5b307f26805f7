"""Experiment-level stopping: a flat series is done, an improving one is not."""

from __future__ import annotations

import math

import pytest

from assay.platform.early_stopping import StoppingRuleConfig
from assay.platform.experiment import TrialState
from assay.platform.stopping import experiment_stopping, experiment_stopping_by, improvement_rule

SPEC = {
    "name": "stop",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
}


def test_improvement_rule_flat_vs_improving() -> None:
    flat = [(1.0 + 0.01 * (-1) ** i, 0.05, True) for i in range(12)]
    rising = [(0.1 * i, 0.05, True) for i in range(12)]
    d = improvement_rule(flat, minimize=False, window=5, min_trials=8)
    assert d.done and d.details["noise_source"] == "median SEM"
    assert d.details["improvement"] <= d.details["noise"] == 0.05
    d = improvement_rule(rising, minimize=False, window=5, min_trials=8)
    assert not d.done and d.details["improvement"] > 0.05
    # Minimizing: a falling series improves.
    assert not improvement_rule(
        [(-v, s, ok) for v, s, ok in rising], minimize=True, window=5, min_trials=8
    ).done
    # Too few trials, or infeasible recent "improvements" do not count.
    assert not improvement_rule(flat[:5], minimize=False, window=5, min_trials=8).done
    infeasible_jump = flat + [(9.0, 0.05, False)] * 3
    assert improvement_rule(infeasible_jump, minimize=False, window=3, min_trials=8).done


def test_improvement_rule_noise_fallbacks() -> None:
    series = [(1.0, None, True)] * 6 + [(1.05, None, True)]
    # Range 0.05, rel_tol 0.01 -> noise 0.0005: 0.05 is an improvement.
    d = improvement_rule(series, minimize=False, window=3, min_trials=5)
    assert not d.done and d.details["noise"] == pytest.approx(0.0005)
    d = improvement_rule(series, minimize=False, window=3, min_trials=5, min_improvement=0.1)
    assert d.done


def test_experiment_rules_on_experiments(build_experiment) -> None:
    flat_obs = [({"x": i / 11}, {"y": (1.0 + 0.001 * math.sin(7 * i), 0.05)}) for i in range(12)]
    rising_obs = [({"x": i / 11}, {"y": (float(i), 0.05)}) for i in range(12)]
    flat = build_experiment(SPEC | {"stopping": {"rule": "improvement", "auto": True}}, flat_obs)
    rising = build_experiment(SPEC | {"stopping": {"rule": "improvement"}}, rising_obs)
    d = experiment_stopping(flat)
    assert d.done and d.auto and d.rule == "improvement"
    assert not experiment_stopping(rising).done
    # No rule: advice only, never done.
    d = experiment_stopping(build_experiment(SPEC, flat_obs))
    assert d.rule == "none" and not d.done and d.details["advice"]["done"]


@pytest.mark.slow
def test_model_rule_flat_vs_improving(build_experiment) -> None:
    """A flat function measured with small noise leaves nothing likely to improve by the
    margin; a steep one still open at its edge does."""
    rule = StoppingRuleConfig.parse({"rule": "model", "margin": 0.5, "threshold": 0.05})
    flat_obs = [({"x": i / 9}, {"y": (1.0 + 0.01 * math.sin(5 * i), 0.01)}) for i in range(10)]
    # Increasing towards x=1 but only sampled up to 0.6: the model must expect more beyond.
    steep_obs = [({"x": 0.6 * i / 9}, {"y": (10.0 * i / 9, 0.01)}) for i in range(10)]
    d = experiment_stopping_by(build_experiment(SPEC, flat_obs), rule)
    assert d.done and d.details["max_probability"] < 0.05
    d = experiment_stopping_by(build_experiment(SPEC, steep_obs), rule)
    assert not d.done and d.details["argmax_parameters"]["x"] > 0.6


def test_early_stopped_trials_are_not_observations(build_experiment) -> None:
    """The optimizer's data are the completed trials only: an early-stopped trial (its last
    values are a truncated, pessimistic view of its arm) is excluded, and is not pending."""
    exp = build_experiment(SPEC, [({"x": 0.1}, {"y": 1.0}), ({"x": 0.2}, {"y": 2.0})])
    exp.trials[1].state = TrialState.EARLY_STOPPED
    assert [t.id for t, _, _ in exp.observed()] == [1]
    assert exp.pending_arms() == []
