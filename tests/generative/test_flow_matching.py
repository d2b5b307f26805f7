"""Flow-matching core: the CondOT path, solvers that agree with a closed form, training that
learns a toy density, and the job entry point."""

from __future__ import annotations

import math

import pytest
import torch

from assay.generative.flow_matching import (
    MLPVelocity,
    UNetVelocity,
    condot_path,
    flow_matching_loss,
    ode_sample,
    sde_sample,
)
from assay.generative.workloads.flow_matching import run
from assay.platform.errors import ValidationError
from assay.service.reporting import CollectingReporter, use_reporter


def test_condot_path_endpoints_and_velocity() -> None:
    x0, x1 = torch.randn(4, 2), torch.randn(4, 2)
    xt, u = condot_path(x0, x1, torch.tensor([0.0, 1.0, 0.5, 0.25]))
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], x1[1])
    torch.testing.assert_close(xt[2], 0.5 * (x0[2] + x1[2]))
    torch.testing.assert_close(u, x1 - x0)


def test_loss_is_zero_for_the_exact_velocity_of_a_point_mass() -> None:
    """For data x1 ≡ c the CondOT marginal velocity is (c − x)/(1 − t): its loss is ~0."""
    c = torch.tensor([1.5, -0.5])

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (c - x) / (1 - t[:, None]).clamp_min(1e-6)

    assert float(flow_matching_loss(v, c.expand(64, 2))) < 1e-6


@pytest.mark.parametrize("method", ["euler", "midpoint", "dopri5", "rk4"])
def test_ode_solvers_match_the_closed_form(method: str) -> None:
    """dx/dt = −x·(1 + t) → x(1) = x(0)·exp(−1.5); backwards recovers x(0)."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x * (1 + t[:, None])

    x0 = torch.randn(8, 2, dtype=torch.float64)
    steps = 200 if method == "euler" else 40
    x1 = ode_sample(v, x0, steps=steps, method=method)
    tol = 1e-2 if method == "euler" else 1e-4
    torch.testing.assert_close(x1, x0 * math.exp(-1.5), atol=tol, rtol=tol)
    back = ode_sample(v, x1, steps=steps, method=method, t0=1.0, t1=0.0)
    torch.testing.assert_close(back, x0, atol=3 * tol, rtol=3 * tol)


def test_euler_maruyama_matches_ornstein_uhlenbeck_variance() -> None:
    """dX = −X dt + sqrt(2) dB from X_0 = 0: Var X_1 = 1 − e^{−2}."""
    g = torch.Generator().manual_seed(0)
    x = sde_sample(lambda x, t: -x, lambda t: math.sqrt(2.0), torch.zeros(20000, 1),
                   torch.linspace(0, 1, 201), generator=g)  # fmt: skip
    assert float(x.var()) == pytest.approx(1 - math.exp(-2), rel=0.05)


def test_networks_shapes_and_gradients() -> None:
    unet = UNetVelocity(8)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    out = unet(x, torch.rand(3))
    assert out.shape == x.shape
    assert float(out.detach().abs().max()) == 0.0  # zero-initialised output layer
    out.sum().backward()  # differentiable w.r.t. the input (D-Flow, lean adjoint)
    assert x.grad is not None
    mlp = MLPVelocity(2, hidden=16, layers=2)
    y = mlp(torch.randn(5, 2), 0.3)  # scalar time broadcasts
    assert y.shape == (5, 2)


def test_training_learns_the_toy_density(toy_base) -> None:
    from assay.generative.data import EightGaussians

    toy = EightGaussians()
    with torch.no_grad():
        x = ode_sample(toy_base, torch.randn(3000, 2, generator=torch.Generator().manual_seed(0)),
                       steps=30)  # fmt: skip
    # Data's own mean log-density is ≈ −1.7; noise N(0, I) would score ≈ −20.
    assert float(toy.log_prob(x).mean()) > -3.0
    hist = torch.bincount(toy.component(x), minlength=8).float() / len(x)
    assert float(hist.min()) > 0.08  # all 8 modes covered


def test_run_job() -> None:
    rep = CollectingReporter()
    with use_reporter(rep):
        m = run({"data": "moons", "iterations": 30, "batch_size": 64, "eval_samples": 200,
                 "sample_steps": 5, "report_every": 10, "device": "cpu"})  # fmt: skip
    assert {"sliced_w2", "mean_log_density", "wall_time_s", "samples_per_s"} <= set(m)
    assert [r.step for r in rep.reports] == [10, 20, 30, 30]
    with pytest.raises(ValidationError) as e:
        run({"data": "mnist"})
    assert e.value.field == "data"
