"""Model diagnostics: closed-form LOO equals refitting-free brute force, slices and contours
pass through the model's predictions, Sobol' indices find the parameter that matters."""

from __future__ import annotations

import math
import random

import pytest
import torch

from assay.platform.diagnostics import (
    InsufficientDataError,
    contour,
    feasibility,
    fit_analysis_model,
    loo_cross_validation,
    model_trace,
    slices,
    sobol_importance,
)
from assay.platform.errors import ValidationError
from assay.platform.generators.noisy_ei import probability_feasible

SPEC = {
    "name": "diag",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "z", "type": "float", "bounds": [0, 1]},
        {"name": "opt", "type": "choice", "values": ["a", "b"]},
    ],
    "objective": "y",
    "outcome_constraints": ["c <= 0.5"],
}


def _data(n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``y`` depends strongly on ``x``, not on ``z``; ``c`` is ``x`` (feasible when x <= .5)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = {"x": rng.random(), "z": rng.random(), "opt": rng.choice(["a", "b"])}
        y = math.sin(6 * p["x"]) + 0.05 * (p["opt"] == "b")
        out.append((p, {"y": (y + rng.gauss(0, 0.02), 0.02), "c": (p["x"], 0.01)}))
    return out


def _fit(build_experiment, n=24, **kw):
    exp = build_experiment(SPEC, _data(n))
    return fit_analysis_model(exp, **kw)


def test_too_few_observations_is_an_insufficient_data_error(build_experiment) -> None:
    exp = build_experiment(SPEC, _data(2))
    with pytest.raises(InsufficientDataError, match="at least 3"):
        fit_analysis_model(exp)


def test_closed_form_loo_matches_conditioning_on_the_other_points(build_experiment) -> None:
    am = _fit(build_experiment, n=15)
    cv = loo_cross_validation(am)["y"]
    gp = am.fitted.model.models[am.fitted.output_index("y")]
    d = am.data["y"]
    X, y = gp.train_inputs[0], gp.train_targets  # standardized targets
    tf = gp.outcome_transform
    with torch.no_grad():
        K = gp.covar_module(X).to_dense()
        m = gp.mean_module(X)
        noise = gp.likelihood.noise
    for i in (0, 7, 14):
        # Condition a Gaussian on the other n - 1 points by solving the linear system directly.
        keep = [k for k in range(d.n) if k != i]
        Kk = K[keep][:, keep] + torch.diag(noise[keep])
        k = K[keep, i]
        mu = m[i] + k @ torch.linalg.solve(Kk, y[keep] - m[keep])
        var = K[i, i] - k @ torch.linalg.solve(Kk, k) + noise[i]
        std, mean = float(tf.stdvs.detach()), float(tf.means.detach())
        mu = float(mu.detach()) * std + mean
        sd = math.sqrt(float(var.detach())) * std
        assert cv.predicted[i] == pytest.approx(mu, rel=1e-5, abs=1e-7)
        assert cv.predicted_sd[i] == pytest.approx(sd, rel=1e-4)
    assert cv.n == 15 and cv.observed == d.Y.reshape(-1).tolist()
    assert cv.r2 > 0.8  # a smooth function, well sampled
    assert 0.6 <= cv.coverage95 <= 1.0


def test_slices_pass_through_the_models_prediction_at_the_reference(build_experiment) -> None:
    am = _fit(build_experiment)
    ref = {"x": 0.25, "z": 0.5, "opt": "a"}
    curves = {c.parameter: c for c in slices(am, reference=ref, n_points=11)}
    assert set(curves) == {"x", "z", "opt"}
    x = curves["x"]
    assert len(x.values) == 11 and x.values[0] == 0.0 and x.values[-1] == 1.0
    mean, var = am.fitted.predict(am.experiment.search_space.encode_many([ref]))
    j = am.fitted.output_index("y")
    z = curves["z"]  # its grid holds z = 0.5, the reference point itself
    k = z.values.index(0.5)
    assert z.mean["y"][k] == pytest.approx(float(mean[0, j]), abs=1e-6)
    assert z.sd["y"][k] == pytest.approx(math.sqrt(float(var[0, j])), abs=1e-6)
    assert curves["opt"].categorical and curves["opt"].values == ["a", "b"]
    # the model learned sin(6x): the x-slice peaks near x = pi/12 ~ 0.26
    peak = x.values[max(range(11), key=lambda i: x.mean["y"][i])]
    assert 0.1 <= peak <= 0.4


def test_contour_grid_shapes_and_feasibility(build_experiment) -> None:
    am = _fit(build_experiment)
    g = contour(am, "x", "z", n_points=9)
    assert len(g.x_values) == 9 and len(g.mean) == 9 and len(g.mean[0]) == 9
    assert g.p_feasible is not None
    # c = x and c <= 0.5: feasible on the left half, infeasible on the right
    assert g.p_feasible[4][0] > 0.9 and g.p_feasible[4][-1] < 0.1
    assert len(g.observed_x) == 24
    with pytest.raises(ValidationError, match="unordered choice"):
        contour(am, "x", "opt")
    with pytest.raises(ValidationError, match="unknown parameter"):
        contour(am, "x", "nope")


def test_feasibility_matches_probability_feasible(build_experiment) -> None:
    am = _fit(build_experiment)
    f = feasibility(am)
    X = am.experiment.search_space.encode_many(
        [a.parameters for _, a, _ in am.experiment.observed()]
    )
    expected = probability_feasible(am.experiment.config, am.fitted, X).tolist()
    assert f.constraints == ["c <= 0.5"]
    assert f.joint == pytest.approx(expected, abs=1e-5)
    xs = [a.parameters["x"] for _, a, _ in am.experiment.observed()]
    for x, p in zip(xs, f.joint, strict=True):
        if x < 0.4:
            assert p > 0.9
        if x > 0.6:
            assert p < 0.1


def test_sobol_importance_finds_the_parameter_that_matters(build_experiment) -> None:
    am = _fit(build_experiment, n=30)
    imp = sobol_importance(am, n_samples=256)
    by = dict(zip(imp.parameters, imp.total_order, strict=True))
    assert by["x"] > 0.8
    assert by["z"] < 0.1
    first = dict(zip(imp.parameters, imp.first_order, strict=True))
    assert first["x"] > 0.7


def test_model_trace_running_best_is_monotone_and_feasible(build_experiment) -> None:
    am = _fit(build_experiment)
    tr = model_trace(am)
    assert tr.trial_indices == sorted(tr.trial_indices) and len(tr.mean) == 24
    vals = [v for v in tr.best_so_far if v is not None]
    assert vals == sorted(vals)  # maximisation: never decreases
    assert tr.recommended is not None and tr.recommended["feasible"]
    assert tr.recommended["parameters"]["x"] <= 0.5


def test_subset_fit_still_conditions_on_every_observation(build_experiment) -> None:
    am = _fit(build_experiment, n=40, max_fit_points=12)
    gp = am.fitted.model.models[0]
    assert gp.train_inputs[0].shape[0] == 40
    assert any("random 12 of 40" in n for n in am.notes)
    cv = loo_cross_validation(am, ["y"])["y"]
    assert cv.n == 40 and cv.r2 > 0.8


def test_stored_hyperparameters_are_reused_without_a_fit(build_experiment) -> None:
    exp = build_experiment(SPEC, _data(20))
    fresh = fit_analysis_model(exp, reuse_state=False)
    exp.model_state = fresh.fitted.state  # what the generator stores after an ask
    reused = fit_analysis_model(exp)
    assert reused.fitted.fit_seconds == 0.0 and "generator's last fit" in reused.notes[0]
    X = exp.search_space.encode_many([{"x": 0.3, "z": 0.7, "opt": "b"}])
    for a, b in zip(fresh.fitted.predict(X), reused.fitted.predict(X), strict=True):
        assert torch.allclose(a, b, atol=1e-8)
    exp.model_state = {"y": {"d": 99, "params": {}}}  # stale shapes: fit again
    assert fit_analysis_model(exp).fitted.fit_seconds > 0
