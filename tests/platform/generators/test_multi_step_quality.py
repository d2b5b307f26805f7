"""Quality checks of the multi-step lookahead generator (issue 20): the one-shot tree optimum
is a true optimum of the lookahead value (Jiang et al. 2020: the one-shot maximum equals the
nested one), and lookahead explores an unexplored region earlier than myopic EI."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.optim import optimize_acqf
from torch import Tensor

from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Objective,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.generators.multi_step import build_multi_step_acquisition
from assay.platform.models import fit_outcome_models, training_data
from assay.platform.space import DTYPE, Float, SearchSpace

#: Relative shortfall allowed: with the default effort (4 restarts, 64 raw trees, 10 iterations)
#: the one-shot tree stops ~10% short of the nested value at the best root on the issue's
#: 2-D function (benchmarks/multistep_diagnosis.py --exp oneshot); random starting trees at
#: the same effort stop ~30% short, and so fail this test.
TOLERANCE = 0.15


def hidden_spike(x: float) -> float:
    """Maximise on [0, 1]: a broad hill at 0.3 (height 1) and a narrow higher peak at 0.85."""
    return math.exp(-((x - 0.3) ** 2) / (2 * 0.15**2)) + 1.6 * math.exp(
        -((x - 0.85) ** 2) / (2 * 0.04**2)
    )


def _experiment(xs: list[float], settings: dict[str, Any]) -> Experiment:
    config = ExperimentConfig(
        name="quality",
        search_space=SearchSpace([Float("x", 0.0, 1.0)]),
        objectives=[Objective("y", minimize=False)],
        generator="multi_step",
        generator_settings=settings,
        seed=0,
    )
    exp = Experiment(id=1, config=config)
    for x in xs:
        _add(exp, x)
    return exp


def _add(exp: Experiment, x: float) -> None:
    i = len(exp.trials)
    arm = Arm(f"{i}_0", {"x": x})
    exp.trials.append(
        Trial(
            id=i + 1,
            experiment_id=1,
            index=i,
            arms=[arm],
            state=TrialState.COMPLETED,
            generator="test",
            observations={arm.name: {"y": Observation("y", hidden_spike(x))}},
        )
    )


class _RootFixed(AcquisitionFunction):
    """The tree value with the root held at ``x0``: the nested problem at a fixed root."""

    def __init__(self, acqf: AcquisitionFunction, x0: Tensor) -> None:
        super().__init__(model=acqf.model)
        self.acqf, self.x0 = acqf, x0.reshape(1, 1, -1)

    def forward(self, X: Tensor) -> Tensor:
        return self.acqf(torch.cat([self.x0.expand(X.shape[0], 1, -1), X], dim=-2))


@pytest.mark.slow
def test_one_shot_value_at_least_the_nested_value_at_any_fixed_root() -> None:
    """The generator's one-shot tree value (default effort) is >= the value of the rest of the
    tree re-optimized, with more effort, at each of 6 fixed roots and at its own root:
    fails when the tree optimizer stops short of the optimum (the paper's key identity
    max_tree = max_root max_rest)."""
    settings = {"horizon": 2, "n_initial": 4, "num_fantasies": [4]}
    exp = _experiment([0.05, 0.25, 0.4, 0.6], settings)
    gen = get_generator("multi_step", settings)
    seed = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gen.generate(exp, 1, seed=seed)
        one_shot = res.info["acquisition_value"]
        root = torch.tensor([res.candidates[0].parameters["x"]], dtype=DTYPE)
        # the same GP and fantasies the generator used
        gp = fit_outcome_models(training_data(exp, ["y"]), ["y"], seed=seed).model.models[0]
        acqf = build_multi_step_acquisition(
            gp, 2, res.info["num_fantasies"], seed=seed, **gen.acquisition_options()
        )
        q = acqf.get_augmented_q_batch_size(1) - 1
        bounds = torch.tensor([[0.0], [1.0]], dtype=DTYPE)
        nested = {}
        for x0 in [*torch.linspace(0, 1, 6, dtype=DTYPE).tolist(), float(root)]:
            _, v = optimize_acqf(
                _RootFixed(acqf, torch.tensor([x0], dtype=DTYPE)), bounds=bounds, q=q,
                num_restarts=4, raw_samples=64, options={"maxiter": 100},
            )  # fmt: skip
            nested[x0] = float(v)
    best_root = max(nested, key=nested.get)
    assert one_shot >= nested[best_root] * (1 - TOLERANCE) - 1e-6, (one_shot, best_root, nested)
    assert one_shot >= nested[float(root)] * (1 - TOLERANCE) - 1e-6


def _first_visit(horizon: int, asks: int) -> int | None:
    """Ask (0-based) at which the generator first samples x > 0.7, else ``None``."""
    settings = {"horizon": horizon, "n_initial": 4}
    exp = _experiment([0.1, 0.25, 0.35, 0.5], settings)
    gen = get_generator("multi_step", settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(asks):
            res = gen.generate(exp, 1, seed=100 + i)
            exp.generator_state = res.generator_state
            exp.model_state = res.model_state or exp.model_state
            x = res.candidates[0].parameters["x"]
            if x > 0.7:
                return i
            _add(exp, x)
    return None


@pytest.mark.slow
def test_horizon_two_samples_the_unexplored_region_earlier_than_ei() -> None:
    """A broad hill explored by the initial design and a hidden narrow higher peak in the
    unexplored right part: EI keeps refining the hill; two-step lookahead values the
    information a far point gives the next decision and goes there first."""
    asks = 6
    h1 = _first_visit(1, asks)
    h2 = _first_visit(2, asks)
    assert h2 is not None, "horizon 2 never left the explored hill"
    assert h1 is None or h2 < h1, (h1, h2)


def test_observed_incumbent_is_the_best_observation_in_the_data_units() -> None:
    """``incumbent="observed"`` untransforms the standardized training targets: it must equal
    the best raw observation (fails if the outcome transform is skipped)."""
    from assay.platform.generators.multi_step import incumbent_observed
    from assay.platform.models import MetricData

    X = torch.tensor([[0.1], [0.4], [0.7], [0.9]], dtype=DTYPE)
    Y = torch.tensor([[3.0], [11.0], [7.0], [5.0]], dtype=DTYPE)
    gp = fit_outcome_models({"y": MetricData(X, Y, None)}, ["y"]).model.models[0]
    assert float(incumbent_observed(gp, maximize=True)) == pytest.approx(11.0)
    assert float(incumbent_observed(gp, maximize=False)) == pytest.approx(3.0)


def test_quantile_fantasies_are_symmetric_normal_quantiles() -> None:
    from assay.platform.generators.multi_step import QuantileNormalSampler

    X = torch.tensor([[0.1], [0.4], [0.7]], dtype=DTYPE)
    gp = fit_outcome_models({"y": training_data_like(X, torch.sin(6 * X))}, ["y"]).model.models[0]
    sampler = QuantileNormalSampler(torch.Size([4]), seed=0)
    sampler(gp.posterior(torch.tensor([[0.5]], dtype=DTYPE)))
    z = sampler.base_samples.flatten()
    expected = torch.distributions.Normal(0.0, 1.0).icdf(
        torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=DTYPE)
    )
    assert torch.allclose(z, expected)


def training_data_like(X: Tensor, Y: Tensor) -> Any:
    from assay.platform.models import MetricData

    return MetricData(X, Y, None)
