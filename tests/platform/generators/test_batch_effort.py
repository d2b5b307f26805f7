"""The effort of ``noisy_ei`` batch asks (issue 19, target 4): a batch of ``q > 1`` points is
built greedily with capped restarts, raw samples, QMC samples and iterations (the A/B
simulation's effort), single-point asks keep theirs, and EHVI keeps one effort for every q."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators.ehvi import NoisyEHVISettings
from assay.platform.generators.noisy_ei import NoisyEIGenerator, NoisyEISettings
from assay.platform.optimize import OptimizerOptions

SQ = {"x": 0.5, "y": 0.5}
SPEC = {
    "name": "ab",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "y", "type": "float", "bounds": [0, 1]},
    ],
    "objective": "conv",
    "outcome_constraints": ["latency <= +2%"],
    "status_quo": SQ,
    "seed": 0,
}


def ab_experiment(rounds: int = 3, arms: int = 5) -> Experiment:
    """Batch trials of the control and random arms with noisy relative effects."""
    rng = np.random.default_rng(0)
    exp = Experiment(id=1, config=ExperimentConfig.from_dict(SPEC))
    for r in range(rounds):
        batch = [Arm("status_quo", dict(SQ))] + [
            Arm(f"{r}_{k}", {"x": float(rng.uniform()), "y": float(rng.uniform())})
            for k in range(1, arms)
        ]
        obs = {}
        for a in batch:
            x, y = a.parameters["x"], a.parameters["y"]
            levels = {
                "conv": 0.1 * (1 + 0.08 * math.exp(-8 * (x - 0.8) ** 2)),
                "latency": 100.0 * (1 + 0.06 * (y - 0.5)),
            }
            obs[a.name] = {
                m: Observation(m, v + float(rng.normal(0, 0.005 * v)), 0.005 * v, 10_000)
                for m, v in levels.items()
            }
        exp.trials.append(Trial(r + 1, 1, r, batch, TrialState.COMPLETED, "sobol", obs))
    return exp


def test_single_point_asks_keep_their_effort() -> None:
    s = NoisyEISettings()
    assert s.effort(1) == (OptimizerOptions(10, 512, 60), 256)


def test_batches_use_the_capped_effort() -> None:
    s = NoisyEISettings()
    assert s.effort(7) == (OptimizerOptions(4, 256, 60), 128)
    fast = NoisyEISettings(batch_maxiter=30)
    assert fast.effort(7)[0].maxiter == 30
    assert fast.effort(1)[0].maxiter == 60


@pytest.mark.parametrize("q", [2, 7])
def test_caps_never_raise_a_lower_effort(q: int) -> None:
    """The simulation's explicit effort (4 / 256 / 128) is what a batch gets, and a cheaper
    setting stays cheaper."""
    sim = NoisyEISettings(num_restarts=4, raw_samples=256, mc_samples=128)
    assert sim.effort(q) == sim.effort(1)
    low = NoisyEISettings(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=20)
    assert low.effort(q) == (OptimizerOptions(2, 64, 20), 32)


def test_ehvi_keeps_one_effort_for_every_q() -> None:
    s = NoisyEHVISettings()
    assert s.effort(1) == s.effort(8) == (OptimizerOptions(10, 256, 60), 128)


def test_a_batch_acquisition_samples_with_the_batch_count() -> None:
    """A real batch ask: the qLogNEI of a 3-point batch draws ``batch_mc_samples`` QMC
    samples, and the batch has 3 distinct new arms."""
    gen = NoisyEIGenerator({"batch_mc_samples": 32, "batch_num_restarts": 2,
                            "batch_raw_samples": 64, "batch_maxiter": 20})  # fmt: skip
    exp = ab_experiment()
    info: dict = {}
    result = gen.generate(exp, 3, seed=0)
    assert len(result.candidates) == 3
    assert len({(c.parameters["x"], c.parameters["y"]) for c in result.candidates}) == 3
    assert all(c.generator == "noisy_ei" for c in result.candidates)
    # the acquisition a batch builds
    from assay.platform.models import fit_outcome_models
    from assay.platform.relative import modelled_outcomes

    out = modelled_outcomes(exp)
    fitted = fit_outcome_models(out.data, exp.config.modelled_metrics, seed=0)
    import torch

    X = torch.unique(torch.cat([d.X for d in out.data.values()]), dim=0)
    acqf = gen.build_acquisition(exp, fitted, X, None, 0, info, out.constraints, q=3)
    assert acqf.sampler.sample_shape == torch.Size([32])
    one = gen.build_acquisition(exp, fitted, X, X[:1], 0, info, out.constraints, q=1)
    assert one.sampler.sample_shape == torch.Size([256])
