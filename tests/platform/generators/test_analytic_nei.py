"""The closed-form-candidate NEI (:mod:`assay.platform.generators.analytic_nei`) against
BoTorch's qLogNEI (which samples the candidate too) on the same fitted models."""

from __future__ import annotations

import math

import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.sampling import SobolQMCNormalSampler

from assay.platform.generators.analytic_nei import (
    AnalyticLogPF,
    _kernel,
    _kernel_diag,
    _Output,
    build_analytic_nei,
    posterior_means,
)
from assay.platform.generators.noisy_ei import (
    NoisyEIGenerator,
    likely_incumbents,
    objective_and_constraints,
)
from assay.platform.models import fit_outcome_models, training_data

SPEC = {
    "name": "a",
    "parameters": [{"name": n, "type": "float", "bounds": [0, 1]} for n in ("x", "y")],
    "objective": {"name": "f", "minimize": True},
    "outcome_constraints": ["c <= 0.2"],
}


def f(x: float, y: float) -> float:
    return math.sin(3 * x) + (y - 0.4) ** 2


def c(x: float, y: float) -> float:
    return x + y - 1.0


def fitted_experiment(build_experiment, n: int = 14, sem: float | None = 0.05):
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(n, 2, generator=g, dtype=torch.double).tolist()
    obs = [
        (
            {"x": x, "y": y},
            {"f": (f(x, y), sem) if sem else f(x, y), "c": (c(x, y), sem) if sem else c(x, y)},
        )
        for x, y in pts
    ]
    exp = build_experiment(SPEC, obs)
    data = training_data(exp)
    return exp, data, fit_outcome_models(data, ["f", "c"], seed=0)


def test_kernel_matches_gpytorch(build_experiment) -> None:
    _, _, fitted = fitted_experiment(build_experiment)
    A, B = torch.rand(5, 2, dtype=torch.double), torch.rand(7, 2, dtype=torch.double)
    for gp in fitted.model.models:
        assert torch.allclose(_kernel(gp.covar_module, A, B), gp.covar_module(A, B).to_dense())
        diag = gp.covar_module(A, A, diag=True)
        assert torch.allclose(_kernel_diag(gp.covar_module, A), diag.to_dense().reshape(-1))


def _compare(exp, data, fitted, X_pending=None, tol: float = 0.15) -> None:
    X_b = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    analytic = build_analytic_nei(exp.config, fitted, X_b, X_pending, 512, seed=1)
    assert analytic is not None
    objective, constraints, _ = objective_and_constraints(exp.config, fitted)
    mc = qLogNoisyExpectedImprovement(
        fitted.model, X_baseline=X_b, sampler=SobolQMCNormalSampler(torch.Size([8192]), seed=2),
        objective=objective, constraints=constraints, X_pending=X_pending, prune_baseline=False,
        eta=1e-4,
    )  # fmt: skip
    X = torch.rand(200, 1, 2, generator=torch.Generator().manual_seed(5), dtype=torch.double)
    with torch.no_grad():
        a, b = analytic(X), mc(X)
    # Where EI is not negligible the two estimators of the same expectation agree (far out,
    # qLogNEI's sigmoid-smoothed constraints floor it near -40; the closed form goes on).
    keep = b > b.max() - 6.0
    assert keep.sum() >= 5
    assert (a[keep] - b[keep]).abs().max() < tol
    assert int(a.argmax()) == int(b.argmax())


def test_matches_qlognei_without_and_with_pending(build_experiment) -> None:
    exp, data, fitted = fitted_experiment(build_experiment)
    _compare(exp, data, fitted)
    pending = torch.tensor([[0.3, 0.3], [0.05, 0.6]], dtype=torch.double)
    _compare(exp, data, fitted, pending)


def test_inferred_noise_models(build_experiment) -> None:
    exp, data, fitted = fitted_experiment(build_experiment, sem=None)
    _compare(exp, data, fitted)


def test_generator_uses_it_and_batches(build_experiment) -> None:
    exp, _, _ = fitted_experiment(build_experiment)
    res = NoisyEIGenerator().generate(exp, 1, seed=0)
    assert res.info["acquisition"] == "LogNoisyExpectedImprovement"
    res = NoisyEIGenerator().generate(exp, 3, seed=0)  # batches keep qLogNEI (for now)
    assert res.info["acquisition"] == "qLogNoisyExpectedImprovement"
    assert [c.generator for c in res.candidates] == ["noisy_ei"] * 3
    res = NoisyEIGenerator({"analytic": False}).generate(exp, 1, seed=0)
    assert res.info["acquisition"] == "qLogNoisyExpectedImprovement"


def test_posterior_means_match_the_model_and_follow_parameter_changes(build_experiment) -> None:
    _, _, fitted = fitted_experiment(build_experiment)
    X = torch.rand(9, 2, generator=torch.Generator().manual_seed(4), dtype=torch.double)
    mean, _ = fitted.predict(X)
    assert torch.allclose(posterior_means(fitted, X), mean, rtol=1e-6, atol=1e-9)
    gp = fitted.model.models[0]
    first = _Output.build(gp)
    assert _Output.build(gp) is first  # one factorisation per fitted GP
    with torch.no_grad():
        gp.covar_module.lengthscale = gp.covar_module.lengthscale * 2
    assert _Output.build(gp) is not first  # a changed hyperparameter is a new model
    gp.prediction_strategy = None  # GPyTorch's own cache predates the change
    with torch.no_grad():
        mean = fitted.model.posterior(X).mean
    assert torch.allclose(posterior_means(fitted, X), mean, rtol=1e-6, atol=1e-9)


def test_likely_incumbents_rank_by_the_models_means(build_experiment) -> None:
    exp, data, fitted = fitted_experiment(build_experiment, n=14)
    X = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    top = likely_incumbents(exp.config, fitted, X, k=5)
    with torch.no_grad():
        mean = fitted.model.posterior(X).mean
    # minimised objective "f", constraint "c <= 0.2": feasible-in-mean points by lowest f
    feasible = mean[:, 1] <= 0.2
    order = torch.where(feasible, -mean[:, 0], -math.inf).argsort(descending=True)
    expected = X[order[: min(5, int(feasible.sum()))]]
    assert torch.equal(top[: expected.shape[0]], expected)


def test_analytic_asks_use_analytic_restarts(build_experiment, monkeypatch) -> None:
    import assay.platform.generators.noisy_ei as noisy_ei

    exp, _, _ = fitted_experiment(build_experiment)
    seen = []
    real = noisy_ei.optimize_acquisition

    def spy(acqf, space, q, options):  # type: ignore[no-untyped-def]
        seen.append(options.num_restarts)
        return real(acqf, space, q, options)

    monkeypatch.setattr(noisy_ei, "optimize_acquisition", spy)
    gen = NoisyEIGenerator({"n_initial": 4, "num_restarts": 9, "analytic_restarts": 3})
    res = gen.generate(exp, 1, seed=0)
    assert res.info["acquisition"] == "LogNoisyExpectedImprovement"
    assert seen == [3]
    seen.clear()
    res = NoisyEIGenerator({"n_initial": 4, "num_restarts": 9, "analytic": False}).generate(
        exp, 1, seed=0
    )
    assert res.info["acquisition"] == "qLogNoisyExpectedImprovement"
    assert seen == [9]


def test_analytic_log_pf_is_the_closed_form_probability(build_experiment) -> None:
    exp, data, fitted = fitted_experiment(build_experiment)
    X_b = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    nei = build_analytic_nei(exp.config, fitted, X_b, None, 64, seed=1)
    pf = AnalyticLogPF(nei)
    X = torch.rand(50, 2, generator=torch.Generator().manual_seed(6), dtype=torch.double)
    mean, var = fitted.predict(X)
    j = fitted.output_index("c")
    expected = torch.special.log_ndtr((0.2 - mean[:, j]) / var[:, j].sqrt())
    with torch.no_grad():
        got = pf(X.unsqueeze(1))
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-8)
    assert torch.allclose(got.exp(), nei.probability_feasible(X), rtol=1e-6, atol=1e-10)
    Xg = X[:3].unsqueeze(1).clone().requires_grad_(True)
    pf(Xg).sum().backward()  # differentiable for L-BFGS
    assert torch.isfinite(Xg.grad).all() and Xg.grad.abs().sum() > 0
