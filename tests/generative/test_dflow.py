"""D-Flow: outputs satisfy the constraint *and* stay on the data support (unlike optimising x1
directly), digits inpainting beats the masked-noise baseline, and the χ regulariser has the
sign that keeps the source point in the Gaussian typical set."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from assay.generative.data import EightGaussians, load_digits_tensor
from assay.generative.dflow import (
    chi_nll,
    constraint2d,
    dflow,
    inpainting,
)
from assay.generative.workloads.dflow import SEARCH_SPACE, DFlowConfig, run
from assay.platform.errors import ValidationError


def test_chi_nll_is_minimal_at_the_typical_radius() -> None:
    d = 64
    radii = torch.linspace(1.0, 15.0, 281)
    x = torch.zeros(len(radii), d)
    x[:, 0] = radii
    best = radii[chi_nll(x).argmin()]
    assert float(best) == pytest.approx(math.sqrt(d - 1), abs=0.05)
    # With the opposite sign ((d − 1) log r − r²/2) the penalty is unbounded below as r → 0
    # and r → ∞: its minimum over any interval sits on an end, never at the typical radius.
    assert int((-chi_nll(x)).argmin()) in (0, len(radii) - 1)


def test_constraint_outputs_stay_on_the_support(toy_base) -> None:
    """Constraint x[0] = 0 on 8 Gaussians (std 0.2): both methods meet it to < 0.05 (a quarter
    of a component's std); D-Flow's outputs must be > 5 nats more likely under the true density
    (measured: ≈ −1.5 vs ≈ −11; the data's own mean log-density is ≈ −1.7)."""
    g = torch.Generator().manual_seed(0)
    m = constraint2d(toy_base, EightGaussians(), target=0.0, n=256, reg_weight=1e-3, alpha=0.1,
                     max_iter=30, lr=1.0, steps=8, generator=g)  # fmt: skip
    print({k: round(v, 3) for k, v in m.items()})
    assert m["constraint_error"] < 0.05 and m["x1_direct_constraint_error"] < 0.05
    assert m["mean_log_density"] > m["x1_direct_log_density"] + 5.0
    assert m["mean_log_density"] > -3.0


def test_inpainting_beats_masked_noise_and_regulariser_keeps_typical_norm(digits_base) -> None:
    x_train, _ = load_digits_tensor("train")
    x_test, _ = load_digits_tensor("test")
    fill = x_train.mean(0, keepdim=True)
    res = {}
    for reg in (0.0, 1.0):
        g = torch.Generator().manual_seed(0)
        _, m = inpainting(digits_base, x_test[:32], reg_weight=reg, alpha=0.1, max_iter=25,
                          lr=1.0, steps=6, fill=fill, generator=g)  # fmt: skip
        res[reg] = m
        print(reg, {k: round(v, 3) for k, v in m.items()})
    m = res[0.0]
    assert m["observed_mse"] < 0.01  # the observed half is reproduced
    assert m["psnr"] > m["baseline_noise_psnr"] + 2.0
    # With the regulariser the source norm is pulled to the χ_64 mode sqrt(63)/8 ≈ 0.99.
    target = math.sqrt(63) / 8
    assert abs(res[1.0]["x0_norm_ratio"] - target) <= abs(m["x0_norm_ratio"] - target) + 1e-3
    assert abs(res[1.0]["x0_norm_ratio"] - target) < 0.05


def test_dflow_reaches_a_reachable_target_exactly() -> None:
    """Identity flow (v ≡ 0): D-Flow must solve x1 = x0 = target."""

    def zero(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    target = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
    _, x1, info = dflow(zero, lambda x: ((x - target) ** 2).sum(1), torch.zeros(2, 2), steps=2,
                        max_iter=10)  # fmt: skip
    torch.testing.assert_close(x1, target, atol=1e-5, rtol=0)
    assert info["function_evals"] >= 1


def test_run_job_and_validation() -> None:
    m = run(
        {
            "task": "constraint2d",
            "n": 16,
            "max_iter": 5,
            "steps": 4,
            "device": "cpu",
            "base_iterations": 1000,
        }
    )  # the session's cached toy model
    assert {"constraint_error", "mean_log_density", "x1_direct_log_density"} <= set(m)
    with pytest.raises(ValidationError) as e:
        run({"alpha": 2.0})
    assert e.value.field == "alpha"
    fields = {f.name for f in dataclasses.fields(DFlowConfig)}
    assert {p["name"] for p in SEARCH_SPACE} <= fields


def test_run_reports_progress_during_lbfgs() -> None:
    """Progress goes out from inside L-BFGS (every ``report_every`` function evaluations, with
    step = evaluations so far), not only once at the end."""
    from assay.service.reporting import CollectingReporter, use_reporter

    with use_reporter(CollectingReporter()) as rep:
        m = run({"task": "constraint2d", "n": 16, "max_iter": 6, "steps": 4, "device": "cpu",
                 "base_iterations": 1000, "report_every": 2})  # fmt: skip
    progress = [r for r in rep.reports if "dflow_objective" in r.metrics]
    evals = int(m["function_evals"])
    assert len(progress) >= max(2, evals // 2), [r.step for r in rep.reports]
    steps = [r.step for r in progress]
    assert steps == sorted(steps) and steps[-1] == evals
    iters = [r.metrics["lbfgs_iteration"] for r in progress]
    assert iters == sorted(iters) and 1 <= iters[-1] <= 6
    final = rep.reports[-1]
    assert final.step == evals and "constraint_error" in final.metrics
