"""GSBM on Stunnel keeps both boundary marginals and pays far less obstacle cost than plain
bridge matching without a state cost; the spline paths obey their defining formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import assay
from assay.generative.gsbm import (
    TASKS,
    SplineGaussianPaths,
    brownian_bridge_knots,
    evaluate,
    gsbm,
    stunnel_obstacle,
    vneck_obstacle,
)
from assay.generative.workloads.gsbm import SEARCH_SPACE, GSBMConfig, run
from assay.platform.errors import ValidationError


def test_official_obstacles() -> None:
    # Inside the ellipse 20(x−5)² + (y−6)² < 90: softplus(90 − d) ≈ 90 − d; far away ≈ 0.
    assert float(stunnel_obstacle(torch.tensor([5.0, 6.0]))) == pytest.approx(90.0, abs=1e-3)
    assert float(stunnel_obstacle(torch.tensor([-5.0, -6.0]))) == pytest.approx(90.0, abs=1e-3)
    assert float(stunnel_obstacle(torch.tensor([0.0, 0.0]))) < 1e-6
    # Vneck: free along y = 0, blocked where y² > 5x² + 0.36.
    assert float(vneck_obstacle(torch.tensor([0.0, 0.0]))) < 1.0
    assert float(vneck_obstacle(torch.tensor([0.0, 3.0]))) > 8.0
    t = TASKS["stunnel"]
    assert (t.mu0, t.var0, t.mu1, t.var1, t.sigma) == ((-11.0, -1.0), 0.5, (11.0, 1.0), 0.5, 1.0)


@pytest.mark.parametrize("spline", ["linear", "cubic"])
def test_spline_paths_are_pinned_and_differentiate_correctly(spline: str) -> None:
    g = torch.Generator().manual_seed(0)
    knots = torch.randn(3, 7, 2, generator=g)
    p = SplineGaussianPaths(knots, 9, sigma=0.7, spline=spline)
    p.s.data += 0.3 * torch.randn(p.s.shape, generator=g)
    m, _ = p.mean(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(m[:, 0], knots[:, 0])
    torch.testing.assert_close(m[:, 1], knots[:, -1])
    t = torch.tensor([0.13, 0.41, 0.77])
    h = 1e-4
    _, dm = p.mean(t)
    _, dg = p.gamma(t)
    torch.testing.assert_close(dm, (p.mean(t + h)[0] - p.mean(t - h)[0]) / (2 * h), atol=2e-2,
                               rtol=1e-2)  # fmt: skip
    torch.testing.assert_close(dg, (p.gamma(t + h)[0] - p.gamma(t - h)[0]) / (2 * h), atol=2e-2,
                               rtol=1e-2)  # fmt: skip


def test_brownian_bridge_drift() -> None:
    """Linear mean + softplus(s) ≡ 1 is the Brownian bridge: u = (x1 − x)/(1 − t) forwards and
    (x0 − x)/t backwards."""
    x0, x1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, -1.0]])
    p = SplineGaussianPaths(brownian_bridge_knots(x0, x1, 5), 6, sigma=1.3)
    t = torch.tensor([0.2, 0.6])
    x = torch.randn(1, 4, 2, 2)
    u = p.drift(t, x)
    torch.testing.assert_close(u, (x1.reshape(1, 1, 1, 2) - x) / (1 - t).reshape(1, 1, 2, 1))
    ub = p.drift(t, x, "bwd")
    torch.testing.assert_close(ub, (x0.reshape(1, 1, 1, 2) - x) / t.reshape(1, 1, 2, 1))
    g, _ = p.gamma(t)
    torch.testing.assert_close(g[0, :, 0], 1.3 * torch.sqrt(t * (1 - t)))


def test_stunnel_gsbm_keeps_marginals_and_avoids_obstacles() -> None:
    """Thresholds: both boundary sliced-W2 distances < 0.5 (μ and ν are 22 apart; the sampling
    floor is ≈ 0.04; measured ≈ 0.11–0.15), and the obstacle cost at most 5% of plain bridge
    matching's (measured ≈ 0.1 vs ≈ 12)."""
    task = TASKS["stunnel"]
    out = {}
    for state_cost, epochs in ((True, 3), (False, 1)):
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        res = gsbm(
            task,
            state_cost=state_cost,
            epochs=epochs,
            pairs=256,
            csoc_iterations=200,
            csoc_time_points=32,
            csoc_samples=2,
            matching_iterations=800,
            generator=g,
        )
        out[state_cost] = evaluate(res, n=2000, generator=g)
        print(state_cost, {k: round(v, 3) for k, v in out[state_cost].items()})
    gs, bm = out[True], out[False]
    assert gs["w_t1"] < 0.5 and gs["w_t0"] < 0.5
    assert gs["obstacle_cost"] < 0.05 * bm["obstacle_cost"]
    assert gs["collision_rate"] < bm["collision_rate"]
    assert bm["w_t1"] < 0.5  # the baseline keeps marginals too: the difference is the cost


def test_run_job_reports_progress_and_validates() -> None:
    from assay.service.reporting import CollectingReporter, use_reporter

    rep = CollectingReporter()
    with use_reporter(rep):
        m = run({"task": "vneck", "epochs": 1, "pairs": 32, "csoc_iterations": 5,
                 "matching_iterations": 20, "sim_steps": 10, "eval_samples": 64,
                 "device": "cpu"})  # fmt: skip
    assert {"w_t1", "obstacle_cost", "control_cost", "wall_time_s"} <= set(m)
    assert all(math.isfinite(v) for v in m.values())
    assert rep.reports and rep.reports[0].step == 1
    with pytest.raises(ValidationError) as e:
        run({"task": "maze"})
    assert e.value.field == "task"
    fields = {f.name for f in dataclasses.fields(GSBMConfig)}
    assert {p["name"] for p in SEARCH_SPACE} <= fields
    assay.Client().create_experiment(
        name="gsbm", parameters=SEARCH_SPACE, objective="obstacle_cost"
    )
