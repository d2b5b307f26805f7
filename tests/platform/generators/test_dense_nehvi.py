"""The dense-tensor qLogNEHVI (:mod:`assay.platform.generators.dense_nehvi`) against
BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` on the same fitted joint model: the
same values and gradients (two objectives, one constraint, pending points, ``q`` of 1 and
2), the same posterior moments for the kernels it supports, and ``noisy_ehvi`` takes it."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.kernels import MaternKernel, ScaleKernel

from assay.platform.generators.dense_nehvi import (
    DenseLogNEHVI,
    JointPieces,
    supports_dense_joint,
)
from assay.platform.generators.ehvi import NoisyEHVIGenerator, signed_objective
from assay.platform.generators.noisy_ei import objective_and_constraints
from assay.platform.models import fit_outcome_models, training_data

SPEC = {
    "name": "mo",
    "parameters": [{"name": n, "type": "float", "bounds": [0, 1]} for n in ("x", "y", "z")],
    "objectives": [{"name": "f1"}, {"name": "f2", "minimize": True}],
    "outcome_constraints": ["c <= 0.5"],
    "generator_settings": {"num_restarts": 2, "raw_samples": 16, "mc_samples": 32},
}


def observe(a: float, b: float, c: float) -> dict:
    return {
        "f1": (math.sin(3 * a) + b, 0.05),
        "f2": ((a - 0.3) ** 2 + c, 0.05),
        "c": (a + b - 0.5, 0.05),
    }


@pytest.fixture
def fitted_mo(build_experiment):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(12, 3, generator=g, dtype=torch.double).tolist()
    exp = build_experiment(SPEC, [({"x": a, "y": b, "z": c}, observe(a, b, c)) for a, b, c in pts])
    data = training_data(exp)
    fitted = fit_outcome_models(data, ["f1", "f2", "c"], seed=0)
    X_b = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    return exp, fitted, X_b


def _acqf(cls, exp, fitted, X_b, X_pending):  # type: ignore[no-untyped-def]
    _, constraints, _ = objective_and_constraints(exp.config, fitted)
    torch.manual_seed(0)  # baseline pruning draws its own samples
    return cls(
        fitted.joint,
        ref_point=torch.tensor([-0.5, -1.5], dtype=torch.double),
        X_baseline=X_b,
        sampler=SobolQMCNormalSampler(torch.Size([64]), seed=1),
        objective=signed_objective(exp.config, fitted),
        constraints=constraints,
        X_pending=X_pending,
        prune_baseline=True,
        cache_root=True,
    )


@pytest.mark.parametrize("pending", [False, True])
@pytest.mark.parametrize("q", [1, 2])
def test_values_and_gradients_match_botorch(fitted_mo, pending: bool, q: int) -> None:
    exp, fitted, X_b = fitted_mo
    assert supports_dense_joint(fitted.joint) and fitted.joint.num_outputs == 3
    g = torch.Generator().manual_seed(4)
    X_p = torch.rand(2, 3, generator=g, dtype=torch.double) if pending else None
    ref = _acqf(qLogNoisyExpectedHypervolumeImprovement, exp, fitted, X_b, X_p)
    dense = _acqf(DenseLogNEHVI, exp, fitted, X_b, X_p)
    assert torch.equal(ref.X_baseline, dense.X_baseline)  # same pruned baseline + pending
    for _ in range(2):  # the second call reuses the sampler and the whitened baseline
        X = torch.rand(6, q, 3, generator=g, dtype=torch.double).requires_grad_(True)
        a = ref(X)
        (ga,) = torch.autograd.grad(a.sum(), X)
        b = dense(X)
        (gb,) = torch.autograd.grad(b.sum(), X)
        assert torch.isfinite(b).all() and b.shape == (6,)
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (a, b)
        assert torch.allclose(ga, gb, rtol=1e-6, atol=1e-7), (ga, gb)
    assert dense.dense_evaluations == 2


def test_moments_match_gpytorch_for_scaled_matern_and_learned_noise() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.rand(15, 2, generator=g, dtype=torch.double)
    Y = torch.stack([torch.sin(4 * X[:, 0]), X.sum(-1) ** 2], -1)
    Y = Y + 0.05 * torch.randn(15, 2, generator=g, dtype=torch.double)
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=2, batch_shape=torch.Size([2])),
                        batch_shape=torch.Size([2]))  # fmt: skip
    model = SingleTaskGP(X, Y, covar_module=covar, outcome_transform=Standardize(m=2))
    with torch.no_grad():  # distinct hyperparameters per output
        covar.base_kernel.lengthscale = torch.tensor([[[0.3, 0.7]], [[0.5, 0.2]]])
        covar.outputscale = torch.tensor([0.8, 1.7])
        model.likelihood.noise = torch.tensor([[1e-2], [3e-3]])
    model.eval()
    assert supports_dense_joint(model)
    pieces = JointPieces(model)
    Xb = torch.rand(4, 2, generator=g, dtype=torch.double)
    Xq = torch.rand(3, 2, 2, generator=g, dtype=torch.double)  # batch 3, q 2
    mean, cross, cov = pieces.joint_rows(Xq, Xb)
    with torch.no_grad():
        post = model.posterior(torch.cat([Xb.expand(3, 4, 2), Xq], dim=-2))
    full = post.distribution.lazy_covariance_matrix.to_dense()  # 3 x (6*2) x (6*2)
    for j in range(2):  # non-interleaved: output j's block is rows j*6 .. j*6+5
        block = full[:, j * 6 : (j + 1) * 6, j * 6 : (j + 1) * 6]
        assert torch.allclose(mean[:, j], post.mean[:, 4:, j], atol=1e-8)
        assert torch.allclose(cross[:, j], block[:, 4:, :4], atol=1e-8)
        assert torch.allclose(cov[:, j], block[:, 4:, 4:], atol=1e-8)


def test_noisy_ehvi_takes_the_dense_path(build_experiment) -> None:
    """Fails if the generator's acquisition computes GPyTorch posteriors per evaluation:
    ``noisy_ehvi`` builds a :class:`DenseLogNEHVI` and its evaluations call the model's
    posterior once (the sampler's shapes), however many there are."""
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(10, 3, generator=g, dtype=torch.double).tolist()
    exp = build_experiment(SPEC, [({"x": a, "y": b, "z": c}, observe(a, b, c)) for a, b, c in pts])
    data = training_data(exp)
    fitted = fit_outcome_models(data, ["f1", "f2", "c"], seed=0)
    X_b = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    gen = NoisyEHVIGenerator(SPEC["generator_settings"])
    gen._thresholds = [None, None]
    info: dict = {}
    acqf = gen.build_acquisition(exp, fitted, X_b, X_b[:1], 0, info)
    assert isinstance(acqf, DenseLogNEHVI) and info["posterior"] == "dense"
    calls = []
    model_posterior = acqf.model.posterior
    acqf.model.posterior = lambda *a, **k: calls.append(1) or model_posterior(*a, **k)
    for _ in range(5):
        acqf(torch.rand(4, 1, 3, generator=g, dtype=torch.double))
    assert acqf.dense_evaluations == 5 and len(calls) == 1
    # the standard class on request, and the whole ask runs on the dense path
    plain = NoisyEHVIGenerator({**SPEC["generator_settings"], "dense_posterior": False})
    plain._thresholds = [None, None]
    acqf = plain.build_acquisition(exp, fitted, X_b, None, 0, {})
    assert type(acqf) is qLogNoisyExpectedHypervolumeImprovement
    res = NoisyEHVIGenerator(SPEC["generator_settings"]).generate(exp, 1, seed=0)
    assert res.info.get("posterior") == "dense", res.info


def test_unsupported_models_keep_botorch(fitted_mo) -> None:
    _, fitted, _ = fitted_mo
    assert not supports_dense_joint(fitted.model)  # the per-metric ModelListGP
    assert not supports_dense_joint(fitted.model.models[0])  # one output
    with pytest.raises(TypeError):
        DenseLogNEHVI(fitted.model, ref_point=[0.0, 0.0], X_baseline=torch.zeros(1, 3))
