from __future__ import annotations

import math

import pytest
import torch
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood

from assay.platform.errors import ModelFitError
from assay.platform.models import fit_metric_model, fit_outcome_models, training_data

SPEC = {
    "name": "m",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 2]}],
    "objective": "y",
    "outcome_constraints": ["c <= 0.5"],
}


def _points(n: int, sem: float | None) -> list:
    out = []
    for i in range(n):
        x = 2 * i / (n - 1)
        y = math.sin(3 * x)
        out.append(({"x": x}, {"y": (y, sem) if sem is not None else y, "c": x / 2}))
    return out


def test_training_data_encodes_and_keeps_sems(build_experiment) -> None:
    exp = build_experiment(SPEC, _points(5, 0.1))
    data = training_data(exp)
    assert set(data) == {"y", "c"}
    assert data["y"].X.shape == (5, 1)
    assert data["y"].X[-1, 0].item() == pytest.approx(1.0)
    assert data["y"].Yvar is not None and torch.allclose(
        data["y"].Yvar, torch.full((5, 1), 0.01, dtype=torch.double)
    )
    assert data["c"].Yvar is None  # bare values: unknown noise


def test_known_sems_give_fixed_noise_unknown_inferred(build_experiment) -> None:
    exp = build_experiment(SPEC, _points(8, 0.05))
    fitted = fit_outcome_models(training_data(exp), ["y", "c"], seed=0)
    gp_y, gp_c = fitted.model.models
    assert isinstance(gp_y.likelihood, FixedNoiseGaussianLikelihood)
    assert isinstance(gp_c.likelihood, GaussianLikelihood) and not isinstance(
        gp_c.likelihood, FixedNoiseGaussianLikelihood
    )
    mean, var = fitted.predict(torch.tensor([[0.25]], dtype=torch.double))
    assert mean.shape == (1, 2)
    assert mean[0, 0].item() == pytest.approx(math.sin(1.5), abs=0.15)
    assert (var >= 0).all()


def test_warm_start_restores_hyperparameters_and_is_json(build_experiment) -> None:
    import json

    exp = build_experiment(SPEC, _points(8, 0.05))
    data = training_data(exp)
    first = fit_outcome_models(data, ["y"], seed=0)
    state = json.loads(json.dumps(first.state))
    assert state["y"]["d"] == 1
    second = fit_outcome_models(data, ["y"], warm_start=state, seed=0)
    ls1 = first.model.models[0].covar_module.lengthscale
    ls2 = second.model.models[0].covar_module.lengthscale
    assert torch.allclose(ls1, ls2, rtol=1e-2)
    # a state for another dimensionality is ignored rather than crashing
    state["y"]["d"] = 3
    fit_outcome_models(data, ["y"], warm_start=state, seed=0)


def test_failed_fits_retry_with_a_noise_floor_and_jitter(build_experiment, monkeypatch) -> None:
    """Warm and cold fits fail (as a NotPSDError would): the stabilised retry is used, with
    its noise floor, and the notes say what happened."""
    from gpytorch.utils.errors import NotPSDError

    import assay.platform.models as models

    exp = build_experiment(SPEC, _points(6, None))
    data = training_data(exp)["y"]
    warm = fit_outcome_models({"y": data}, ["y"], seed=0).state["y"]
    calls = []
    real = models.fit_gpytorch_mll

    def flaky(mll, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise NotPSDError("matrix not positive definite after repeatedly adding jitter")
        return real(mll, **kwargs)

    monkeypatch.setattr(models, "fit_gpytorch_mll", flaky)
    gp, notes = fit_metric_model(data, warm, seed=0)
    assert len(calls) == 3
    assert "attempt 1 (warm start) failed: NotPSDError" in notes[0]
    assert "attempt 2 (cold start) failed" in notes[1]
    assert notes[-1] == "used attempt 3 (noise floor + jitter)"
    assert float(gp.likelihood.noise.detach().min()) >= models.RETRY_NOISE_FLOOR


def test_fit_that_never_converges_uses_the_prior_hyperparameters(
    build_experiment, monkeypatch
) -> None:
    import assay.platform.models as models

    def broken(mll, **kwargs):
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(models, "fit_gpytorch_mll", broken)
    exp = build_experiment(SPEC, _points(6, 0.05))
    gp, notes = fit_metric_model(training_data(exp)["y"], None, seed=0)
    assert notes[-1] == "used attempt 3 (prior hyperparameters, unfitted)"
    post = gp.posterior(torch.linspace(0, 1, 5, dtype=torch.float64).unsqueeze(-1))
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()


def test_fit_failure_is_typed(build_experiment, monkeypatch) -> None:
    """When every attempt fails the caller gets ModelFitError (generators then fall back)."""
    import assay.platform.models as models

    def broken(*args, **kwargs):
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(models, "fit_gpytorch_mll", broken)
    monkeypatch.setattr(models, "build_gp", broken)  # not even the prior model evaluates
    exp = build_experiment(SPEC, _points(4, None))
    with pytest.raises(ModelFitError) as e:
        fit_metric_model(training_data(exp)["y"], {"d": 1, "params": {}}, seed=0)
    assert isinstance(e.value, RuntimeError)


def _three_metric_data(n: int, sem: float | None, seed: int = 0) -> dict:
    from assay.platform.models import MetricData

    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=torch.double)
    out = {}
    for k, m in enumerate(("f", "c1", "c2")):
        Y = torch.sin((k + 2) * X.sum(-1, keepdim=True)) + 0.1 * torch.randn(
            n, 1, generator=g, dtype=torch.double
        )
        Yvar = None if sem is None else torch.full_like(Y, sem * sem)
        out[m] = MetricData(X, Y, Yvar)
    return out


@pytest.mark.parametrize("sem", [None, 0.1])
def test_joint_model_is_batched_and_matches_the_model_list(sem: float | None) -> None:
    """With every metric observed at the same points, acquisition uses one batched
    multi-output GP whose posterior (means, variances, per output) is the ModelListGP's."""
    from botorch.models import SingleTaskGP

    data = _three_metric_data(20, sem)
    fitted = fit_outcome_models(data, ["f", "c1", "c2"])
    assert isinstance(fitted.joint, SingleTaskGP) and fitted.joint.num_outputs == 3
    Xt = torch.rand(7, 3, dtype=torch.double)
    with torch.no_grad():
        a, b = fitted.joint.posterior(Xt), fitted.model.posterior(Xt)
    assert torch.allclose(a.mean, b.mean, atol=1e-7)
    assert torch.allclose(a.variance, b.variance, rtol=1e-5, atol=1e-9)
    # the hyperparameters differ per metric (a shared set would not match the list)
    ls = fitted.joint.covar_module.lengthscale
    assert ls.shape[0] == 3 and not torch.allclose(ls[0], ls[1])


def test_joint_model_falls_back_to_the_list_when_points_differ() -> None:
    from assay.platform.models import MetricData

    data = _three_metric_data(20, 0.1)
    c2 = data["c2"]
    data["c2"] = MetricData(c2.X[:15], c2.Y[:15], c2.Yvar[:15])  # observed on fewer arms
    fitted = fit_outcome_models(data, ["f", "c1", "c2"])
    assert fitted.joint is fitted.model
