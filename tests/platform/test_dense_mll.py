"""The dense marginal likelihood equals GPyTorch's, value and gradient, and fits reach the
same optimum."""

from __future__ import annotations

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

from assay.platform.dense_mll import dense_mll, robust_cholesky, supports_dense_mll
from assay.platform.models import MetricData, fit_metric_model


def _data(n: int = 25, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.double)
    Y = torch.sin(3 * X.sum(-1, keepdim=True)) + 0.1 * torch.randn(
        n, 1, generator=g, dtype=torch.double
    )
    return X, Y


def _gpytorch_mll(gp: SingleTaskGP) -> torch.Tensor:
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    mll.train()
    return mll(gp(*gp.train_inputs), gp.train_targets)


def _grads(value: torch.Tensor, gp: SingleTaskGP) -> dict[str, torch.Tensor]:
    params = dict(gp.named_parameters())
    gs = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return {n: g for n, g in zip(params, gs, strict=True) if g is not None}


@pytest.mark.parametrize("fixed_noise", [False, True])
@pytest.mark.parametrize("kernel", ["rbf", "scaled_matern"])
def test_value_and_gradient_match_gpytorch(fixed_noise: bool, kernel: str) -> None:
    X, Y = _data()
    Yvar = torch.full_like(Y, 0.01) if fixed_noise else None
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=3)) if kernel != "rbf" else None
    gp = SingleTaskGP(X, Y, Yvar, covar_module=covar, outcome_transform=Standardize(m=1))
    with torch.no_grad():  # away from the defaults, so every term matters
        base = gp.covar_module.base_kernel if covar is not None else gp.covar_module
        base.lengthscale = torch.tensor([[0.3, 0.7, 1.4]], dtype=torch.double)
        gp.mean_module.constant.fill_(0.2)
    gp.train()
    assert supports_dense_mll(gp)
    a, b = _gpytorch_mll(gp), dense_mll(gp)
    assert b.item() == pytest.approx(a.item(), rel=1e-10, abs=1e-10)
    ga, gb = _grads(a, gp), _grads(dense_mll(gp), gp)
    assert ga.keys() == gb.keys()
    for name in ga:
        assert torch.allclose(ga[name], gb[name], rtol=1e-7, atol=1e-10), name


def test_unsupported_forms_are_refused() -> None:
    X, Y = _data()
    gp = SingleTaskGP(X, Y, input_transform=Normalize(d=3))
    assert not supports_dense_mll(gp)
    gp = SingleTaskGP(X, Y, covar_module=MaternKernel(nu=1.5))
    assert not supports_dense_mll(gp)
    multi = SingleTaskGP(X, torch.cat([Y, Y], dim=-1))
    assert not supports_dense_mll(multi)


def test_robust_cholesky_jitters_a_singular_matrix_and_raises_on_a_negative_one() -> None:
    v = torch.tensor([[1.0], [1.0]], dtype=torch.double)
    L = robust_cholesky(v @ v.T)  # rank one: needs jitter
    assert torch.isfinite(L).all()
    with pytest.raises(torch.linalg.LinAlgError):
        robust_cholesky(-torch.eye(2, dtype=torch.double))


@pytest.mark.parametrize("fixed_noise", [False, True])
def test_fit_reaches_the_gpytorch_optimum(fixed_noise: bool) -> None:
    X, Y = _data(30, 3, seed=1)
    Yvar = torch.full_like(Y, 0.01) if fixed_noise else None
    gp, notes = fit_metric_model(MetricData(X, Y, Yvar), seed=0)
    assert notes == []
    ref = SingleTaskGP(X, Y, Yvar, outcome_transform=Standardize(m=1))
    torch.manual_seed(0)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(ref.likelihood, ref))
    gp.train()
    ref.train()
    with torch.no_grad():
        assert float(dense_mll(gp)) == pytest.approx(float(dense_mll(ref)), abs=1e-4)
