"""The wall-time caps that keep ``benchmarks/generative_gpu.py`` inside ``--budget-seconds``:
the digits classifier, D-Flow's L-BFGS and GSBM's path fitting stop at ``max_seconds`` instead
of running all their (here absurdly many) iterations, and without a cap they behave as
before."""

from __future__ import annotations

import time

import torch

from assay.generative import dflow, gsbm
from assay.generative.rewards import train_digits_classifier

GENEROUS = 30.0  # seconds: shared CPUs; uncapped, each call below would take hours


def test_classifier_training_stops_at_max_seconds() -> None:
    t0 = time.perf_counter()
    _, acc = train_digits_classifier(iterations=10**7, batch_size=16, max_seconds=0.3)
    assert time.perf_counter() - t0 < GENEROUS
    assert 0.0 <= acc <= 1.0


def test_lbfgs_stops_at_max_seconds_and_keeps_its_result_without_a_cap() -> None:
    target = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))

    def slow(x: torch.Tensor) -> torch.Tensor:  # never converges to the tolerances: noisy
        return ((x - target) ** 2).sum() + 1e-3 * torch.sin(1e4 * x).sum()

    t0 = time.perf_counter()
    x, evals = dflow._lbfgs(torch.zeros(64, 8), slow, 10**6, 0.1, 10, max_seconds=0.3)
    assert time.perf_counter() - t0 < GENEROUS and evals > 1
    assert float(((x - target) ** 2).mean()) < float((target**2).mean())

    def quad(x: torch.Tensor) -> torch.Tensor:
        return ((x - target) ** 2).sum()

    capped, _ = dflow._lbfgs(torch.zeros(64, 8), quad, 50, 1.0, 10, max_seconds=60.0)
    free, _ = dflow._lbfgs(torch.zeros(64, 8), quad, 50, 1.0, 10)
    torch.testing.assert_close(capped, target, atol=1e-4, rtol=0)
    torch.testing.assert_close(free, target, atol=1e-4, rtol=0)


def test_gsbm_path_fitting_stops_at_max_seconds() -> None:
    task = gsbm.TASKS["stunnel"]
    g = torch.Generator().manual_seed(0)
    x0, x1 = task.sample0(16, g), task.sample1(16, g)
    paths = gsbm.SplineGaussianPaths(gsbm.brownian_bridge_knots(x0, x1, 8), 8, task.sigma)
    t0 = time.perf_counter()
    losses = gsbm.fit_gaussian_paths(paths, task, iterations=10**7, time_points=8,
                                     generator=g, max_seconds=0.3)  # fmt: skip
    assert time.perf_counter() - t0 < GENEROUS
    assert 1 <= len(losses) < 10**7
