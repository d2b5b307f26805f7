"""Large data sets (issue 19, target 2): hyperparameters fitted on a subset, the posterior
exact on every point, NEI's baseline capped at the likeliest incumbents."""

from __future__ import annotations

import math

import pytest
import torch

from assay.platform import models
from assay.platform.generators import get_generator, noisy_ei
from assay.platform.models import MetricData, fit_outcome_models

SPEC = {
    "name": "scale",
    "parameters": [{"name": n, "type": "float", "bounds": [0, 1]} for n in ("x", "y")],
    "objective": {"name": "f", "minimize": False},
    "outcome_constraints": ["c <= 0"],
}


def f(x: float, y: float) -> float:
    return math.sin(5 * x) * math.cos(3 * y)


def c(x: float, y: float) -> float:
    return x - 0.6  # feasible: x <= 0.6


def grid(n: int) -> list[tuple[float, float]]:
    return [((0.05 + i * 0.618034) % 1, (0.11 + i * 0.414214) % 1) for i in range(n)]


def _data(n: int) -> dict[str, MetricData]:
    X = torch.tensor(grid(n), dtype=torch.double)
    g = torch.Generator().manual_seed(0)
    Y = torch.tensor([[f(*p)] for p in grid(n)], dtype=torch.double)
    Y = Y + 0.05 * torch.randn(Y.shape, generator=g, dtype=torch.double)
    return {"f": MetricData(X, Y, torch.full_like(Y, 0.0025))}


@pytest.mark.slow
def test_subset_fit_conditions_on_all_points_and_predicts_as_well() -> None:
    data = _data(70)
    sub = fit_outcome_models(data, ["f"], max_fit_points=25)
    exact = fit_outcome_models(data, ["f"], subset_fit=False)
    gp = sub.model.models[0]
    assert gp.train_inputs[0].shape[0] == 70  # conditioned on everything
    ls_sub = gp.covar_module.lengthscale
    ls_exact = exact.model.models[0].covar_module.lengthscale
    assert not torch.allclose(ls_sub, ls_exact)  # fitted on other (fewer) points
    Xt = torch.rand(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    truth = torch.tensor([f(*p) for p in Xt.tolist()], dtype=torch.double)
    err = [float(((m.predict(Xt)[0][:, 0] - truth) ** 2).mean().sqrt()) for m in (sub, exact)]
    assert err[0] < 0.1 and err[0] < 1.5 * err[1]


@pytest.mark.slow
def test_likely_incumbents_keep_the_best_feasible_points(build_experiment) -> None:
    pts = grid(50)
    exp = build_experiment(
        SPEC, [({"x": x, "y": y}, {"f": (f(x, y), 0.05), "c": (c(x, y), 0.05)}) for x, y in pts]
    )
    fitted = fit_outcome_models(models.training_data(exp), ["f", "c"])
    X = fitted.data["f"].X
    top = noisy_ei.likely_incumbents(exp.config, fitted, X, k=8)
    assert top.shape == (8, 2)
    chosen = {tuple(r) for r in top.tolist()}
    assert chosen <= {tuple(r) for r in X.tolist()}
    feasible = [(f(*p), p) for p in pts if c(*p) <= -0.05]
    best = max(feasible)[1]
    assert any(abs(a - best[0]) < 1e-9 and abs(b - best[1]) < 1e-9 for a, b in chosen)
    assert all(x <= 0.65 for x, _ in chosen)  # infeasible-in-mean points ranked last
    assert noisy_ei.likely_incumbents(exp.config, fitted, X, k=500) is X


def test_ask_with_capped_baseline_is_model_based(build_experiment, monkeypatch) -> None:
    monkeypatch.setattr(noisy_ei, "MAX_BASELINE", 30)
    monkeypatch.setattr(models, "MAX_FIT_POINTS", 50)
    pts = grid(90)
    exp = build_experiment(
        SPEC, [({"x": x, "y": y}, {"f": (f(x, y), 0.05), "c": (c(x, y), 0.05)}) for x, y in pts]
    )
    gen = get_generator("noisy_ei", {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32})
    res = gen.generate(exp, 1, seed=0)
    [cand] = res.candidates
    assert cand.generator == "noisy_ei"
    assert res.info["baseline"] == "30 likeliest incumbents of 90"
    assert res.info["acquisition"] == "LogNoisyExpectedImprovement"


def test_asks_solve_exactly_beyond_gpytorch_default(build_experiment, monkeypatch) -> None:
    """Above GPyTorch's 800-point default its posteriors use conjugate gradients
    (approximate, and slower on CPU at these sizes); a model-based ask runs in
    ``exact_solves``, so fits and acquisition use Cholesky up to MAX_CHOLESKY_SIZE."""
    import gpytorch

    import assay.platform.generators.base as base

    seen: list[int] = []
    original = base.fit_outcome_models

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        seen.append(gpytorch.settings.max_cholesky_size.value())
        return original(*a, **k)

    monkeypatch.setattr(base, "fit_outcome_models", spy)
    pts = grid(12)
    exp = build_experiment(
        SPEC, [({"x": x, "y": y}, {"f": (f(x, y), 0.05), "c": (c(x, y), 0.05)}) for x, y in pts]
    )
    gen = get_generator("noisy_ei", {"num_restarts": 1, "raw_samples": 16, "mc_samples": 16})
    gen.generate(exp, 1, seed=0)
    assert seen == [models.MAX_CHOLESKY_SIZE] and models.MAX_CHOLESKY_SIZE >= 5000
    assert gpytorch.settings.max_cholesky_size.value() < models.MAX_CHOLESKY_SIZE  # restored


def test_noisy_ei_maxiter_reaches_the_optimizer(build_experiment, monkeypatch) -> None:
    """``maxiter`` (default 60, issue 19's lever) is what L-BFGS-B gets per restart."""
    from assay.platform import optimize

    seen: list[int] = []
    original = optimize._optimize

    def spy(acqf, space, q, options):  # type: ignore[no-untyped-def]
        seen.append(options.maxiter)
        return original(acqf, space, q, options)

    monkeypatch.setattr(optimize, "_optimize", spy)
    pts = grid(10)
    exp = build_experiment(
        SPEC, [({"x": x, "y": y}, {"f": (f(x, y), 0.05), "c": (c(x, y), 0.05)}) for x, y in pts]
    )
    fast = {"num_restarts": 1, "raw_samples": 16, "mc_samples": 16}
    get_generator("noisy_ei", fast).generate(exp, 1, seed=0)
    get_generator("noisy_ei", {**fast, "maxiter": 7}).generate(exp, 1, seed=0)
    assert seen == [60, 7]
