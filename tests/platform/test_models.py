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


def test_fit_failure_is_typed(build_experiment, monkeypatch) -> None:
    """When every attempt fails the caller gets ModelFitError (generators then fall back)."""
    import assay.platform.models as models

    def broken(mll, **kwargs):
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(models, "fit_gpytorch_mll", broken)
    exp = build_experiment(SPEC, _points(4, None))
    with pytest.raises(ModelFitError) as e:
        fit_metric_model(training_data(exp)["y"], {"d": 1, "params": {}}, seed=0)
    assert isinstance(e.value, RuntimeError)
