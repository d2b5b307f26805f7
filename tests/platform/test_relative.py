"""Relative effects against a control: the delta-method interval, relativization of batch data
(a batch effect cancels), relative constraints in model units, P(best) and arm effects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.platform.analysis import arm_effects, best_arm, posterior_best_and_feasible
from assay.platform.errors import UnsupportedError
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators.noisy_ei import NoisyEIGenerator
from assay.platform.models import fit_outcome_models
from assay.platform.relative import (
    model_constraints,
    modelled_outcomes,
    relative_effect,
)

SQ = {"x": 0.5, "y": 0.5}
SPEC = {
    "name": "ab",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "y", "type": "float", "bounds": [0, 1]},
    ],
    "objective": "conv",
    "outcome_constraints": ["latency <= +2%", "revenue >= 0.99"],
    "status_quo": SQ,
    "seed": 0,
}


def truth(p: dict) -> dict[str, float]:
    """Smooth true levels: conversion peaks at x = 0.8; latency grows with y."""
    return {
        "conv": 0.10 * (1 + 0.08 * math.exp(-8 * (p["x"] - 0.8) ** 2) - 0.02 * p["y"]),
        "latency": 100.0 * (1 + 0.06 * (p["y"] - 0.5)),
        "revenue": 1.0 * (1 - 0.01 * (p["x"] - 0.5)),
    }


def batch_experiment(
    rounds: int = 3, arms_per_round: int = 5, shifts=None, noise: float = 0.0, seed: int = 0
) -> Experiment:
    """An A/B experiment snapshot: ``rounds`` batch trials of the control plus random arms;
    observed means are the truth times the round's batch factor, plus noise of SEM
    ``noise`` x level."""
    rng = np.random.default_rng(seed)
    config = ExperimentConfig.from_dict(SPEC)
    exp = Experiment(id=1, config=config)
    shifts = shifts or [1.0] * rounds
    for r in range(rounds):
        arms = [Arm("status_quo", dict(SQ))]
        for k in range(1, arms_per_round):
            arms.append(Arm(f"{r}_{k}", {"x": float(rng.uniform()), "y": float(rng.uniform())}))
        obs = {}
        for a in arms:
            obs[a.name] = {}
            for m, v in truth(a.parameters).items():
                sem = noise * abs(v) if noise else 1e-4 * abs(v)
                mean = shifts[r] * v + (rng.normal(0, sem) if noise else 0.0)
                obs[a.name][m] = Observation(m, mean, sem * shifts[r], 10_000)
        exp.trials.append(Trial(r + 1, 1, r, arms, TrialState.COMPLETED, "sobol", obs))
    return exp


# -- the delta method ------------------------------------------------------------------------
def test_delta_method_matches_the_closed_form() -> None:
    eff = relative_effect(105.0, 2.0, 100.0, 1.5, bias_correction=False)
    assert eff.effect == pytest.approx(5.0)
    var = 2.0**2 / 100.0**2 + 105.0**2 * 1.5**2 / 100.0**4
    assert eff.sem == pytest.approx(100 * math.sqrt(var))
    assert eff.lower == pytest.approx(5.0 - 1.959963984540054 * eff.sem)
    # Bias correction removes the second-order term y_t sem_c^2 / y_c^3.
    bc = relative_effect(105.0, 2.0, 100.0, 1.5)
    assert bc.effect == pytest.approx(5.0 - 100 * 105.0 * 1.5**2 / 100.0**3)
    # A negative control level keeps the direction: more is still +.
    assert relative_effect(-90.0, None, -100.0, None).effect == pytest.approx(10.0)
    with pytest.raises(ZeroDivisionError):
        relative_effect(1.0, 0.1, 0.0, 0.1)


def test_delta_method_interval_covers_by_simulation() -> None:
    """Simulate the two sample means; the delta-method SEM matches the spread of the ratio and
    the 95% interval covers the true effect about 95% of the time."""
    rng = np.random.default_rng(1)
    mu_t, mu_c, s_t, s_c = 0.104, 0.100, 0.0015, 0.0012
    yt = rng.normal(mu_t, s_t, 20_000)
    yc = rng.normal(mu_c, s_c, 20_000)
    effects = [relative_effect(a, s_t, b, s_c) for a, b in zip(yt, yc, strict=True)]
    est = np.array([e.effect for e in effects])
    true = 100 * (mu_t / mu_c - 1)
    assert np.std(100 * (yt / yc - 1)) == pytest.approx(effects[0].sem, rel=0.05)
    assert abs(est.mean() - true) < 0.02  # bias-corrected: centred on the true effect
    cover = np.mean([e.lower <= true <= e.upper for e in effects])
    assert 0.935 <= cover <= 0.965
    assert effects[0].p_value is not None


# -- relativization ---------------------------------------------------------------------------
def test_relativization_removes_an_injected_batch_effect() -> None:
    """Same arms' truth, levels shifted by +-20% per batch: raw means differ by batch, %
    effects do not (noise-free data, so up to the bias-correction term)."""
    exp = batch_experiment(rounds=3, shifts=[1.0, 1.2, 0.8])
    # Put the same treatment arm into every batch.
    same = {"x": 0.8, "y": 0.2}
    for t in exp.trials:
        t.arms[1] = Arm("shared", dict(same))
        t.observations["shared"] = {
            m: Observation(m, v * [1.0, 1.2, 0.8][t.index], 1e-6, 10)
            for m, v in truth(same).items()
        }
        t.observations.pop(f"{t.index}_1")
    out = modelled_outcomes(exp)
    assert out.relative
    d = out.data["conv"]
    shared = [float(d.Y[i]) for i, n in enumerate(d.arm_names) if n == "shared"]
    raw = [o["shared"]["conv"].mean for o in (t.observations for t in exp.trials)]
    assert max(raw) - min(raw) > 0.03 * 0.10  # the raw levels move with the batch
    expected = 100 * (truth(same)["conv"] / truth(SQ)["conv"] - 1)
    assert shared == pytest.approx([expected] * 3, abs=1e-5)  # up to the bias correction
    assert max(shared) - min(shared) < 1e-9  # and identical across batches
    controls = [float(d.Y[i]) for i, n in enumerate(d.arm_names) if n == "status_quo"]
    assert controls == [0.0] * 3
    # Turned off, the raw levels are modelled.
    assert not modelled_outcomes(exp, relativize=False).relative


def test_rows_without_control_data_are_left_out_with_a_note() -> None:
    exp = batch_experiment(rounds=2)
    for m in ("conv", "latency", "revenue"):
        exp.trials[1].observations["status_quo"].pop(m)
    exp.trials[1].observations.pop("status_quo")
    out = modelled_outcomes(exp)
    assert out.data["conv"].n == 5  # the first batch only
    assert any("without the control's data" in n for n in out.notes)


def test_constraints_are_converted_to_the_model_units() -> None:
    exp = batch_experiment(rounds=2)
    rel, sources = model_constraints(exp, relative=True)
    assert [c.expression for c in sources] == ["latency <= +2%", "revenue >= 0.99"]
    assert rel[0].bound == 2.0
    assert rel[1].bound == pytest.approx(100 * (0.99 - 1.0) / 1.0, abs=1e-3)  # -1 %
    absolute, _ = model_constraints(exp, relative=False)
    assert absolute[0].bound == pytest.approx(100.0 * 1.02, rel=1e-4)
    assert absolute[1].bound == 0.99
    # Before the control is observed, a relative bound cannot be made absolute: left out.
    fresh = Experiment(id=2, config=exp.config)
    notes: list[str] = []
    cons, _ = model_constraints(fresh, relative=False, notes=notes)
    assert [c.metric for c in cons] == ["revenue"] and "not enforced yet" in notes[0]


# -- relative constraints that bind -----------------------------------------------------------
def binding_truth(p: dict) -> dict[str, float]:
    """Conversion grows with ``y`` and so does latency (``+6 (y - 0.5) %``), so the best arms
    by conversion (``y > 5/6``) break ``latency <= +2%``; revenue (``-2 (x - 0.5) %``) stays
    above ``-1%`` on the whole square."""
    return {
        "conv": 0.10 * (1 + 0.05 * p["y"] + 0.01 * math.exp(-8 * (p["x"] - 0.5) ** 2)),
        "latency": 100.0 * (1 + 0.06 * (p["y"] - 0.5)),
        "revenue": 1.0 * (1 - 0.02 * (p["x"] - 0.5)),
    }


#: Treatment arms per round (the control added in front): the two highest-``y`` arms are the
#: conversion winners and break the latency bound (+2.7 %, +2.4 %); the feasible arms top out
#: at y = 0.75 (+1.5 %), clear of the bound by a few SEMs.
BINDING_ARMS = [
    [(0.5, 0.95), (0.3, 0.75), (0.7, 0.2), (0.5, 0.45)],
    [(0.45, 0.9), (0.55, 0.7), (0.2, 0.6), (0.8, 0.35)],
    [(0.6, 0.95), (0.4, 0.75), (0.1, 0.1), (0.9, 0.55)],
]


def binding_experiment(
    constraints: list[str], relativize: bool = True, shifts=(1.0, 1.15, 0.9), rounds: int = 3
) -> Experiment:
    """Batches of the control plus :data:`BINDING_ARMS` under :func:`binding_truth`, each
    batch scaled by its shift, with noise of SEM 0.2 % of the level (fixed seed)."""
    rng = np.random.default_rng(7)
    spec = {**SPEC, "outcome_constraints": constraints}
    if not relativize:
        spec["generator_settings"] = {"relativize": False}
    exp = Experiment(id=1, config=ExperimentConfig.from_dict(spec))
    for r in range(rounds):
        arms = [Arm("status_quo", dict(SQ))] + [
            Arm(f"{r}_{k}", {"x": x, "y": y}) for k, (x, y) in enumerate(BINDING_ARMS[r], 1)
        ]
        obs = {}
        for a in arms:
            obs[a.name] = {}
            for m, v in binding_truth(a.parameters).items():
                sem = 0.002 * v
                obs[a.name][m] = Observation(
                    m, shifts[r] * (v + float(rng.normal(0, sem))), shifts[r] * sem, 10_000
                )
        exp.trials.append(Trial(r + 1, 1, r, arms, TrialState.COMPLETED, "sobol", obs))
    return exp


def true_relative(p: dict, metric: str) -> float:
    return 100 * (binding_truth(p)[metric] / binding_truth(SQ)[metric] - 1)


@pytest.mark.parametrize("relativize", [True, False], ids=["relative-model", "absolute-model"])
def test_relative_constraints_are_enforced_by_the_recommendation(relativize: bool) -> None:
    """The conversion-best arms break ``latency <= +2%``. Without the constraint they are
    recommended; with it, the recommendation is a feasible arm, and the model says so — in
    the relative model and (bound converted with the control's level) the absolute one, here
    without batch shifts (raw levels shifted by +-15% would swamp effects of a few %)."""
    shifts = (1.0, 1.15, 0.9) if relativize else (1.0, 1.0, 1.0)
    free = best_arm(binding_experiment(["revenue >= -1%"], relativize, shifts))
    assert free.model_based and free.relative is relativize
    assert true_relative(free.parameters, "latency") > 2.0  # the bound binds

    best = best_arm(binding_experiment(["latency <= +2%", "revenue >= -1%"], relativize, shifts))
    assert best.model_based and best.relative is relativize and best.feasible
    assert best.arm_name != free.arm_name
    assert true_relative(best.parameters, "latency") <= 2.0
    assert best.parameters["y"] == 0.75  # the best feasible arm (up to noise: 0.7 is close)
    assert set(best.probability_constraints) == {"latency <= +2%", "revenue >= -1%"}
    assert best.probability_constraints["latency <= +2%"] >= 0.9
    # The unconstrained winner is, by the model, almost surely infeasible, and P(best) agrees.
    assert best.probability_best.get(free.arm_name, 0.0) < 0.05
    assert sum(best.probability_best.values()) <= 1.0 + 1e-3  # each rounded to 4 places
    assert max(best.probability_best, key=best.probability_best.get) == best.arm_name


def test_generation_respects_a_binding_relative_constraint() -> None:
    """After two batches, a batch of model-based arms stays at or inside ``latency <= +2%``
    (the constrained optimum is on the bound, so proposals hug it, within about one SEM of
    an effect), where the same generator without the constraint goes well past it."""
    gen = NoisyEIGenerator({"num_restarts": 2, "raw_samples": 64, "mc_samples": 32})

    def proposed(constraints: list[str]) -> list[float]:
        result = gen.generate(binding_experiment(constraints, rounds=2), 3, seed=0)
        assert result.info["relative"] is True
        assert all(c.generator == "noisy_ei" for c in result.candidates)
        return [true_relative(c.parameters, "latency") for c in result.candidates]

    free = proposed(["revenue >= -1%"])
    held = proposed(["latency <= +2%", "revenue >= -1%"])
    assert sum(v > 2.5 for v in free) >= 2, free  # unconstrained, EI chases high latency
    assert max(held) <= 2.5, held  # constrained: at most ~1 effect SEM past the bound
    assert sum(held) / len(held) < sum(free) / len(free) - 0.5, (held, free)


def test_p_best_concentrates_on_a_clear_winner() -> None:
    exp = batch_experiment(rounds=3, arms_per_round=6, noise=0.001, seed=5)
    out = modelled_outcomes(exp)
    fitted = fit_outcome_models(out.data, exp.config.modelled_metrics)
    names = sorted({a.name for t in exp.trials for a in t.arms})
    arms = exp.arms_by_name()
    X = exp.search_space.encode_many([arms[n].parameters for n in names])
    p_best, p_cons = posterior_best_and_feasible(
        fitted, X, "conv", False, out.constraints, samples=4096
    )
    assert float(p_best.sum()) == pytest.approx(1.0, abs=1e-6)  # some arm is always feasible
    assert len(p_cons) == 2

    # The best feasible arm by the truth has the largest P(best).
    def score(n: str) -> float:
        t, c = truth(arms[n].parameters), truth(SQ)
        ok = t["latency"] <= 1.02 * c["latency"] and t["revenue"] >= 0.99
        return t["conv"] if ok else -1.0

    assert names[int(p_best.argmax())] == max(names, key=score)


def test_arm_effects_report_pools_batches_and_has_probabilities() -> None:
    exp = batch_experiment(rounds=3, arms_per_round=4, noise=0.003, seed=2)
    # One arm appears in two batches.
    carried = exp.trials[0].arms[1]
    t = exp.trials[1]
    t.arms.append(Arm(carried.name, dict(carried.parameters)))
    t.observations[carried.name] = {
        m: Observation(m, v, 0.003 * abs(v), 10_000) for m, v in truth(carried.parameters).items()
    }
    report = arm_effects(exp)
    assert report.control_arm == "status_quo" and report.relative_model
    control = report.arms[0]
    assert control.is_control and all(e.observed is None for e in control.metrics.values())
    assert abs(control.metrics["conv"].model.mean) < 0.05  # the model is pinned at 0 %
    arm = next(a for a in report.arms if a.arm_name == carried.name)
    conv = arm.metrics["conv"]
    assert [tid for tid, _ in conv.batches] == [1, 2]
    sems = [e.sem for _, e in conv.batches]
    assert conv.observed.sem == pytest.approx(1 / math.sqrt(sum(1 / s**2 for s in sems)))
    assert conv.model is not None and conv.model.lower < conv.model.upper
    assert 0.0 <= arm.probability_feasible <= 1.0
    assert set(arm.probability_constraints) == {"latency <= +2%", "revenue >= 0.99"}
    assert sum(a.probability_best or 0 for a in report.arms) <= 1.0 + 1e-9
    d = report.to_dict()
    assert d["arms"][1]["metrics"]["conv"]["observed"]["p_value"] is not None


def test_effects_need_a_control() -> None:
    config = ExperimentConfig.from_dict({**SPEC, "status_quo": None, "outcome_constraints": []})
    with pytest.raises(UnsupportedError) as e:
        arm_effects(Experiment(id=3, config=config))
    assert e.value.field == "status_quo"


def test_first_batch_is_the_initial_design_and_the_control_is_never_proposed() -> None:
    exp = batch_experiment(rounds=1, arms_per_round=6, noise=0.002)
    gen = NoisyEIGenerator({"num_restarts": 2, "raw_samples": 64, "mc_samples": 32})
    assert gen.n_initial(exp.search_space, exp) == 5  # the first batch's new arms
    result = gen.generate(exp, 3, seed=0)
    assert all(c.generator == "noisy_ei" for c in result.candidates)
    assert result.info["relative"] is True
    assert all(c.parameters != SQ for c in result.candidates)
