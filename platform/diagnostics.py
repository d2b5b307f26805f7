"""Model diagnostics: what the surrogate believes, as plain data for the dashboard.

Every function here is pure (tensors in, dataclasses of Python lists out) and works on a
:class:`AnalysisModel` — the experiment's outcome GPs conditioned on *all* completed
observations. The dashboard turns the results into charts; a function that raises becomes an
error card there, never a failed page (the pattern of Ax's ``ax/analysis``).

* :func:`fit_analysis_model` — GP per modelled metric. Hyperparameters are fitted by maximum
  marginal likelihood on at most ``max_fit_points`` observations (a seeded random subset when
  there are more: *subset-of-data* hyperparameter estimation), then the GP is conditioned on
  every observation with those hyperparameters (exact Cholesky inference).
* :func:`loo_cross_validation` — leave-one-out predictions in closed form (Rasmussen &
  Williams 2006, *Gaussian Processes for Machine Learning*, §5.4.2, eq. 5.12): with
  ``K = K_f + Σ_noise`` and ``α = K⁻¹(y − m)``, the LOO predictive mean and variance of
  ``y_i`` are ``μ₋ᵢ = y_i − α_i / [K⁻¹]_ii`` and ``σ²₋ᵢ = 1 / [K⁻¹]_ii`` (hyperparameters
  held fixed, as Ax's cross-validation does).
* :func:`slices`, :func:`contour` — the posterior mean and standard deviation along one or two
  parameters, the others held at a reference point (the recommended arm).
* :func:`feasibility` — ``P(constraint holds)`` per observed arm under the posterior:
  ``Φ((b − μ)/σ)`` for ``metric <= b`` (Gardner et al. 2014; Letham et al. 2019).
* :func:`sobol_importance` — Sobol' sensitivity indices of the posterior mean (Sobol' 2001):
  first-order by Saltelli et al. (2010, eq. (b) of Table 2) and total-order by Jansen's
  (1999) estimator, on a scrambled Sobol' design over the search-space box.
* :func:`model_trace` — the posterior at every completed trial and the model's estimate of
  the best feasible value found so far (the running best of posterior means among arms that
  are feasible with probability at least ``min_p_feasible``; hindsight of the current model).

Example:
    >>> am = fit_analysis_model(experiment)                           # doctest: +SKIP
    >>> cv = loo_cross_validation(am)["accuracy"]                      # doctest: +SKIP
    >>> cv.coverage95                                                  # doctest: +SKIP
    0.94
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gpytorch
import torch
from botorch.models import ModelListGP, SingleTaskGP
from torch import Tensor

from assay.platform.analysis import Z95
from assay.platform.errors import ModelFitError, ValidationError
from assay.platform.experiment import Experiment, TrialState
from assay.platform.models import (
    FittedModel,
    MetricData,
    build_gp,
    fit_outcome_models,
    hyperparameters,
    load_hyperparameters,
    training_data,
)
from assay.platform.relative import model_constraints
from assay.platform.space import (
    DTYPE,
    ChoiceParameter,
    FloatParameter,
    IntParameter,
    Parameter,
)

#: Largest training set for which exact (Cholesky) inference is forced.
MAX_EXACT_POINTS = 6000
#: Fewest observations of the objective before a model is worth showing.
MIN_OBSERVATIONS = 3


class InsufficientDataError(ModelFitError):
    """Too few observations for a model: an empty state, not a failure."""

    code = "insufficient_data"


@contextmanager
def exact_inference():
    """Cholesky everywhere (gpytorch switches to conjugate gradients above 800 points)."""
    with (
        gpytorch.settings.max_cholesky_size(MAX_EXACT_POINTS),
        gpytorch.settings.fast_computations(False, False, False),
    ):
        yield


@dataclass
class AnalysisModel:
    """Outcome GPs conditioned on every completed observation, with their training data.

    Args:
        experiment: The snapshot the model was fitted on.
        fitted: One GP per modelled metric with data (``fitted.metrics``).
        data: The training data per metric, in the GPs' row order.
        fit_points: Observations used to fit hyperparameters (per metric, at most).
        notes: Facts worth telling the user (subsampling, fit retries).
    """

    experiment: Experiment
    fitted: FittedModel
    data: dict[str, MetricData]
    fit_points: int
    notes: list[str] = field(default_factory=list)
    _solves: dict[str, tuple[Tensor, Tensor, Tensor, Tensor]] = field(
        default_factory=dict, repr=False
    )

    @property
    def n_observations(self) -> int:
        return self.data[self.experiment.config.objective.name].n

    def gp(self, metric: str) -> SingleTaskGP:
        if metric not in self.fitted.metrics:
            raise ValidationError(f"metric {metric!r} is not modelled", field="metric")
        return self.fitted.model.models[self.fitted.output_index(metric)]

    def solve(self, metric: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(y, noise, α, diag K⁻¹)`` of one metric's GP in standardized units (cached):
        one Cholesky factorisation serves LOO and the posterior at the observations."""
        if metric not in self._solves:
            self._solves[metric] = _solve(self.gp(metric))
        return self._solves[metric]

    def observed_posterior(self, metric: str) -> tuple[list[tuple[int, str]], Tensor, Tensor]:
        """Posterior mean and variance of the latent ``metric`` at its own observations, in
        the metric's units, keyed by ``(trial index, arm name)``.

        At training inputs ``f̄ = y − Σα`` and ``Var f = σ² − σ⁴ [K⁻¹]_ii`` (Σ = diag σ²), so
        no cross-covariance with the ``n`` points is needed.
        """
        y, noise, alpha, kinv_diag = self.solve(metric)
        mean_s = y - noise * alpha
        var_s = (noise - noise**2 * kinv_diag).clamp_min(0.0)
        tf = self.gp(metric).outcome_transform
        mean, std = tf.means.reshape(-1)[0], tf.stdvs.reshape(-1)[0]
        keys = [(t.index, a.name) for t, a, o in self.experiment.observed() if metric in o]
        return keys, (mean_s * std + mean).detach(), (var_s * std**2).detach()


def fit_analysis_model(
    experiment: Experiment,
    *,
    max_fit_points: int = 256,
    seed: int = 0,
    reuse_state: bool = True,
) -> AnalysisModel:
    """Fit the outcome GPs for analysis (see the module docstring).

    Args:
        experiment: The experiment snapshot.
        max_fit_points: Most observations per metric used to fit hyperparameters.
        seed: Seeds the subset and the fit restarts.
        reuse_state: When the experiment stores hyperparameters for every modelled metric
            (the generator's last fit), condition on all data with them and skip the fit.

    Raises:
        InsufficientDataError: fewer than ``MIN_OBSERVATIONS`` objective observations.
        ModelFitError: the fit failed even after the fallbacks.
    """
    config = experiment.config
    data = training_data(experiment)
    obj = config.objective.name
    have = data[obj].n if obj in data else 0
    if have < MIN_OBSERVATIONS:
        raise InsufficientDataError(
            f"the model needs at least {MIN_OBSERVATIONS} completed observations of "
            f"{obj!r}; there {'is' if have == 1 else 'are'} {have} so far",
            details={"metric": obj, "observations": have, "needed": MIN_OBSERVATIONS},
        )
    metrics = [m for m in config.modelled_metrics if m in data and data[m].n >= 2]
    notes: list[str] = []
    fit_data = dict(data)
    subsampled = [m for m in metrics if data[m].n > max_fit_points]
    for m in subsampled:
        rows = sorted(random.Random(seed).sample(range(data[m].n), max_fit_points))
        d = data[m]
        fit_data[m] = MetricData(
            d.X[rows], d.Y[rows], None if d.Yvar is None else d.Yvar[rows],
            [d.arm_names[i] for i in rows],
        )  # fmt: skip
    state = experiment.model_state or {}
    if reuse_state and all(
        isinstance(state.get(m), dict) and state[m].get("d") == data[m].X.shape[-1] for m in metrics
    ):
        # The generator fitted these hyperparameters at its last ask: condition on all the
        # data with them instead of fitting again (the fit is the slow part).
        with exact_inference():
            models = []
            for m in metrics:
                gp = build_gp(data[m])
                if not load_hyperparameters(gp, state[m].get("params", {})):
                    break
                gp.eval()
                models.append(gp)
        if len(models) == len(metrics):
            fitted = FittedModel(ModelListGP(*models), metrics, dict(state), 0.0, [])
            return AnalysisModel(
                experiment, fitted, {m: data[m] for m in metrics}, 0,
                ["hyperparameters from the generator's last fit, conditioned on every observation"],
            )  # fmt: skip
    if subsampled:
        notes.append(
            f"hyperparameters fitted on a random {max_fit_points} of "
            f"{max(data[m].n for m in subsampled)} observations; predictions use all of them"
        )
    with exact_inference():
        fitted = fit_outcome_models(
            fit_data, metrics, warm_start=experiment.model_state or None, seed=seed
        )
        if subsampled:
            fitted = _condition_on_all(fitted, data)
    notes += fitted.warnings
    return AnalysisModel(
        experiment, fitted, {m: data[m] for m in metrics}, min(have, max_fit_points), notes
    )


def _condition_on_all(fitted: FittedModel, data: Mapping[str, MetricData]) -> FittedModel:
    """Rebuild each GP on the full data with the hyperparameters fitted on a subset."""
    models = []
    for m, gp in zip(fitted.metrics, fitted.model.models, strict=True):
        full = build_gp(data[m])
        load_hyperparameters(full, hyperparameters(gp))
        full.eval()
        models.append(full)
    return FittedModel(
        ModelListGP(*models), fitted.metrics, fitted.state, fitted.fit_seconds, fitted.warnings
    )


# -- leave-one-out cross-validation ------------------------------------------------------------
@dataclass
class CrossValidation:
    """Leave-one-out predictions of one metric at its observed arms.

    Args:
        metric: The metric.
        arm_names: ``n`` arms (one per observation).
        observed: ``n`` observed means; ``observed_sem`` their standard errors (or ``None``).
        predicted: ``n`` LOO predictive means of the observation.
        predicted_sd: ``n`` LOO predictive standard deviations (observation noise included).
        coverage95: Fraction of observations inside their 95% LOO predictive interval (about
            0.95 for a calibrated model).
        r2: ``1 − Σ(y − μ₋ᵢ)² / Σ(y − ȳ)²`` (1 is perfect, ≤ 0 is no better than the mean).
    """

    metric: str
    arm_names: list[str]
    observed: list[float]
    observed_sem: list[float | None]
    predicted: list[float]
    predicted_sd: list[float]
    coverage95: float
    r2: float

    @property
    def n(self) -> int:
        return len(self.observed)


def _solve(gp: SingleTaskGP) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(y, noise, α = K⁻¹(y − m), diag K⁻¹)`` of one GP, standardized units."""
    X = gp.train_inputs[0]
    y = gp.train_targets
    with torch.no_grad(), exact_inference():
        prior_mean = gp.mean_module(X)
        K = gp.covar_module(X).to_dense()
        noise = gp.likelihood.noise.reshape(-1).expand(y.shape[0])
        K = K + torch.diag(noise)
        jitter = 1e-8 * K.diagonal().mean()
        for _ in range(5):
            L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(K.shape[0], dtype=K.dtype))
            if int(info) == 0:
                break
            jitter *= 10
        else:
            raise ModelFitError("the covariance matrix is not positive definite")
        # diag K⁻¹ = column sums of (L⁻¹)²: one triangular solve, no full inverse.
        Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=L.dtype), upper=False)
        alpha = torch.cholesky_solve((y - prior_mean).unsqueeze(-1), L).squeeze(-1)
        return y.detach(), noise.detach(), alpha, (Linv**2).sum(dim=0)


def loo_cross_validation(
    am: AnalysisModel, metrics: Sequence[str] | None = None
) -> dict[str, CrossValidation]:
    """Leave-one-out cross-validation of each modelled metric (closed form, see the module
    docstring).

    Args:
        am: The analysis model.
        metrics: Which metrics (default: all modelled ones).

    Example:
        >>> cv = loo_cross_validation(am)["accuracy"]                  # doctest: +SKIP
        >>> len(cv.predicted) == cv.n                                  # doctest: +SKIP
        True
    """
    out = {}
    for m in metrics or am.fitted.metrics:
        gp = am.gp(m)
        y_s, _, alpha, kinv_diag = am.solve(m)
        mu_s, var_s = y_s - alpha / kinv_diag, 1.0 / kinv_diag
        tf = gp.outcome_transform
        mean, std = float(tf.means.reshape(-1)[0]), float(tf.stdvs.reshape(-1)[0])
        mu = mu_s * std + mean
        sd = var_s.clamp_min(0).sqrt() * std
        d = am.data[m]
        y = d.Y.reshape(-1)
        inside = ((y - mu).abs() <= Z95 * sd).double().mean().item()
        sst = float(((y - y.mean()) ** 2).sum())
        sse = float(((y - mu) ** 2).sum())
        sems = (
            [math.sqrt(v) for v in d.Yvar.reshape(-1).tolist()]
            if d.Yvar is not None
            else [None] * d.n
        )
        out[m] = CrossValidation(
            m, list(d.arm_names), y.tolist(), sems, mu.tolist(), sd.tolist(), inside,
            1.0 - sse / sst if sst > 0 else float("nan"),
        )  # fmt: skip
    return out


# -- the reference point and encodings ---------------------------------------------------------
def reference_parameters(am: AnalysisModel) -> dict[str, Any]:
    """The recommended arm's parameters (the point slices and contours pass through)."""
    rec = recommended_arm(am)
    if rec is not None:
        return dict(rec["parameters"])
    space = am.experiment.search_space  # pragma: no cover - a fitted model implies data
    return space.from_unit_row([0.5] * space.compact_dim)


def _block(am: AnalysisModel, name: str) -> tuple[Parameter, int, int]:
    space = am.experiment.search_space
    if name not in space:
        raise ValidationError(
            f"unknown parameter {name!r}; the search space has {space.names}", field="parameter"
        )
    for b in space._blocks:
        if b.parameter.name == name:
            return b.parameter, b.model_start, b.model_stop
    raise ValidationError(f"parameter {name!r} is fixed; it has no effect", field="parameter")


def _axis(p: Parameter, n_points: int) -> tuple[list[Any], Tensor]:
    """Raw values along one parameter and their model-space columns (``k x width``)."""
    if isinstance(p, ChoiceParameter):
        k = len(p.values)
        if p.is_one_hot:
            return list(p.values), torch.eye(k, dtype=DTYPE)
        return list(p.values), torch.tensor([[i / (k - 1)] for i in range(k)], dtype=DTYPE)
    if isinstance(p, IntParameter) and p.upper - p.lower + 1 <= n_points:
        values: list[Any] = list(range(int(p.lower), int(p.upper) + 1))
        return values, torch.tensor([[p.encode(v)] for v in values], dtype=DTYPE)
    u = torch.linspace(0, 1, n_points, dtype=DTYPE)
    if isinstance(p, IntParameter):
        values = sorted({p.decode(float(x)) for x in u})
        return values, torch.tensor([[p.encode(v)] for v in values], dtype=DTYPE)
    assert isinstance(p, FloatParameter)
    return [p.decode(float(x)) for x in u], u.unsqueeze(-1)


def _predict(
    am: AnalysisModel, X: Tensor, metrics: Sequence[str]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Latent posterior mean and variance of each metric at ``n x d`` points (only the GPs
    asked for are evaluated: each costs ``O(n_train² n)``)."""
    out = {}
    with torch.no_grad(), exact_inference(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in dict.fromkeys(metrics):
            post = am.gp(m).posterior(X.to(DTYPE))
            out[m] = (post.mean.reshape(-1), post.variance.reshape(-1).clamp_min(0.0))
    return out


def _constraint_metrics(am: AnalysisModel) -> list[str]:
    return [
        oc.metric
        for oc in am.experiment.config.outcome_constraints
        if oc.metric in am.fitted.metrics
    ]


def _p_constraints(
    am: AnalysisModel, post: Mapping[str, tuple[Tensor, Tensor]], n: int
) -> tuple[dict[str, Tensor], Tensor]:
    """``P(constraint holds)`` per constraint and jointly (independent outputs), from
    posterior means/variances: ``Φ((b − μ)/σ)`` for ``<=``, ``Φ((μ − b)/σ)`` for ``>=``."""
    normal = torch.distributions.Normal(0.0, 1.0)
    probs: dict[str, Tensor] = {}
    joint = torch.ones(n, dtype=DTYPE)
    # The analysis model sees raw levels: relative (%) bounds become absolute ones through the
    # control's pooled level (and wait until the control has been observed).
    constraints, sources = model_constraints(am.experiment, relative=False)
    for oc, src in zip(constraints, sources, strict=True):
        if oc.metric not in post:
            continue
        mu, var = post[oc.metric]
        sd = var.clamp_min(1e-18).sqrt()
        z = (oc.bound - mu) / sd if oc.op == "<=" else (mu - oc.bound) / sd
        probs[src.expression] = normal.cdf(z)
        joint = joint * probs[src.expression]
    return probs, joint


def _posterior_at_rows(
    am: AnalysisModel, keys: list[tuple[int, str]], metrics: Sequence[str]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Posterior of ``metrics`` at observed arms ``keys``: read off the cached solves when the
    metric was observed at exactly these rows, predicted otherwise."""
    out: dict[str, tuple[Tensor, Tensor]] = {}
    missing = []
    for m in dict.fromkeys(metrics):
        k, mean, var = am.observed_posterior(m)
        if k == keys:
            out[m] = (mean, var)
        else:
            missing.append(m)
    if missing:
        arms = am.experiment.arms_by_name()
        X = am.experiment.search_space.encode_many([arms[a].parameters for _, a in keys])
        out.update(_predict(am, X, missing))
    return out


def recommended_arm(am: AnalysisModel, *, min_p_feasible: float = 0.9) -> dict[str, Any] | None:
    """The arm :func:`~assay.platform.analysis.best_arm` recommends, from the cached posterior:
    the best posterior mean of the objective among observed arms feasible with probability
    ``>= min_p_feasible`` (else the arm most likely to be feasible)."""
    obj = am.experiment.config.objective
    keys, mean, var = am.observed_posterior(obj.name)
    if not keys:
        return None  # pragma: no cover
    post = _posterior_at_rows(am, keys, _constraint_metrics(am))
    _, pf = _p_constraints(am, post, len(keys))
    sign = -1.0 if obj.minimize else 1.0
    ok = pf >= min_p_feasible
    if bool(ok.any()):
        score = torch.where(ok, sign * mean, torch.full_like(mean, -math.inf))
        i = int(score.argmax())
    else:
        i = int(pf.argmax())
    arm_name = keys[i][1]
    arm = am.experiment.arms_by_name()[arm_name]
    mu, sd = float(mean[i]), math.sqrt(float(var[i]))
    trial_ids = [t.id for t, a, o in am.experiment.observed() if a.name == arm_name]
    return {
        "arm_name": arm_name, "trial_ids": trial_ids, "trial_index": keys[i][0],
        "parameters": dict(arm.parameters), "mean": mu, "sd": sd, "lower": mu - Z95 * sd,
        "upper": mu + Z95 * sd, "feasible": bool(ok[i]), "probability_feasible": float(pf[i]),
    }  # fmt: skip


# -- slices ------------------------------------------------------------------------------------
@dataclass
class SliceCurve:
    """The posterior along one parameter, the others held at ``reference``.

    Args:
        parameter: The parameter varied.
        values: ``k`` raw values (categories for a choice parameter).
        categorical: Whether ``values`` are categories (plot as points, not a line).
        log_scale: Whether the parameter is log-scaled (plot on a log axis).
        mean, sd: ``{metric: k values}`` posterior mean and standard deviation (latent).
        reference: The fixed values of the other parameters.
    """

    parameter: str
    values: list[Any]
    categorical: bool
    log_scale: bool
    mean: dict[str, list[float]]
    sd: dict[str, list[float]]
    reference: dict[str, Any]


def slices(
    am: AnalysisModel,
    parameters: Sequence[str] | None = None,
    *,
    reference: Mapping[str, Any] | None = None,
    n_points: int = 60,
) -> list[SliceCurve]:
    """One-dimensional slices of every modelled metric's posterior.

    Args:
        am: The analysis model.
        parameters: Which parameters (default: every tunable one).
        reference: The point the slices pass through (default: the recommended arm).
        n_points: Grid size for continuous parameters.
    """
    space = am.experiment.search_space
    ref = space.validate(dict(reference), check_constraints=False) if reference else None
    ref = ref or reference_parameters(am)
    x0 = space.encode(ref)
    out = []
    for name in parameters or [p.name for p in space.tunable]:
        p, start, stop = _block(am, name)
        values, cols = _axis(p, n_points)
        X = x0.repeat(len(values), 1)
        X[:, start:stop] = cols
        post = _predict(am, X, am.fitted.metrics)
        out.append(
            SliceCurve(
                name, values, isinstance(p, ChoiceParameter),
                bool(getattr(p, "log", False)),
                {m: mv[0].tolist() for m, mv in post.items()},
                {m: mv[1].sqrt().tolist() for m, mv in post.items()},
                {k: v for k, v in ref.items() if k != name},
            )
        )  # fmt: skip
    return out


# -- contour -----------------------------------------------------------------------------------
@dataclass
class ContourGrid:
    """The posterior of one metric over two parameters, the others held at ``reference``.

    Args:
        x_parameter, y_parameter: The two parameters.
        x_values, y_values: Grid coordinates (raw units); ``x_log``/``y_log`` give the scale.
        metric: The metric.
        mean, sd: ``len(y_values) x len(x_values)`` posterior mean / standard deviation.
        p_feasible: Same shape: probability that every outcome constraint holds (``None``
            without constraints).
        observed_x, observed_y: Where the metric was observed (for an overlay).
        reference: The fixed values of the other parameters.
    """

    x_parameter: str
    y_parameter: str
    x_values: list[Any]
    y_values: list[Any]
    x_log: bool
    y_log: bool
    metric: str
    mean: list[list[float]]
    sd: list[list[float]]
    p_feasible: list[list[float]] | None
    observed_x: list[Any]
    observed_y: list[Any]
    reference: dict[str, Any]


def contour(
    am: AnalysisModel,
    x_parameter: str,
    y_parameter: str,
    *,
    metric: str | None = None,
    reference: Mapping[str, Any] | None = None,
    n_points: int = 30,
) -> ContourGrid:
    """Posterior mean/SD (and feasibility) of ``metric`` on a grid over two parameters.

    Both parameters must be ordered (float, int or ordered choice) and different.
    """
    if x_parameter == y_parameter:
        raise ValidationError("choose two different parameters", field="y_parameter")
    space, config = am.experiment.search_space, am.experiment.config
    metric = metric or config.objective.name
    if metric not in am.fitted.metrics:
        raise ValidationError(f"metric {metric!r} is not modelled", field="metric")
    px, sx, ex = _block(am, x_parameter)
    py, sy, ey = _block(am, y_parameter)
    for p, where in ((px, "x_parameter"), (py, "y_parameter")):
        if isinstance(p, ChoiceParameter) and p.is_one_hot:
            raise ValidationError(
                f"parameter {p.name!r} is an unordered choice; a contour needs ordered "
                "parameters (use its slice instead)",
                field=where,
            )
    xv, xc = _axis(px, n_points)
    yv, yc = _axis(py, n_points)
    ref = space.validate(dict(reference), check_constraints=False) if reference else None
    ref = ref or reference_parameters(am)
    x0 = space.encode(ref)
    nx, ny = len(xv), len(yv)
    X = x0.repeat(ny * nx, 1)
    X[:, sx:ex] = xc.repeat(ny, 1)
    X[:, sy:ey] = yc.repeat_interleave(nx, dim=0)
    post = _predict(am, X, [metric, *_constraint_metrics(am)])
    mean, var = post[metric]
    pf = None
    if _constraint_metrics(am):
        pf = _p_constraints(am, post, X.shape[0])[1].reshape(ny, nx).tolist()
    obs = [a.parameters for _, a, o in am.experiment.observed() if metric in o]
    return ContourGrid(
        x_parameter, y_parameter, xv, yv, bool(getattr(px, "log", False)),
        bool(getattr(py, "log", False)), metric,
        mean.reshape(ny, nx).tolist(), var.sqrt().reshape(ny, nx).tolist(), pf,
        [o[x_parameter] for o in obs], [o[y_parameter] for o in obs],
        {k: v for k, v in ref.items() if k not in (x_parameter, y_parameter)},
    )  # fmt: skip


# -- feasibility -------------------------------------------------------------------------------
@dataclass
class Feasibility:
    """Posterior probability that each outcome constraint holds, per observed arm.

    Args:
        trial_indices, arm_names: One entry per observed arm (by trial index).
        constraints: The constraint expressions.
        probability: ``{expression: probabilities}``; ``joint`` is the product (independent
            outputs), i.e. ``P(all hold)``.
    """

    trial_indices: list[int]
    arm_names: list[str]
    constraints: list[str]
    probability: dict[str, list[float]]
    joint: list[float]


def feasibility(am: AnalysisModel) -> Feasibility:
    """``P(constraint holds)`` at every arm with an objective observation (empty without
    constraints)."""
    keys, _, _ = am.observed_posterior(am.experiment.config.objective.name)
    post = _posterior_at_rows(am, keys, _constraint_metrics(am))
    probs, joint = _p_constraints(am, post, len(keys))
    return Feasibility(
        [i for i, _ in keys], [a for _, a in keys], list(probs),
        {k: v.tolist() for k, v in probs.items()}, joint.tolist(),
    )  # fmt: skip


# -- parameter importance ----------------------------------------------------------------------
@dataclass
class Importance:
    """Sobol' indices of the posterior mean of ``metric`` over the search-space box.

    Args:
        metric: The metric.
        parameters: Tunable parameters.
        first_order: ``S_i``: share of variance explained by parameter ``i`` alone.
        total_order: ``S_Ti``: share involving parameter ``i`` (with interactions).
        n_samples: Base sample size ``N`` (``N (k + 2)`` model evaluations).
    """

    metric: str
    parameters: list[str]
    first_order: list[float]
    total_order: list[float]
    n_samples: int


def sobol_importance(
    am: AnalysisModel, metric: str | None = None, *, n_samples: int = 512, seed: int = 0
) -> Importance:
    """Sobol' sensitivity of the posterior mean (see the module docstring).

    Samples ``A`` and ``B`` uniformly over the box (parameter constraints are ignored); for
    each parameter ``i``, ``A_B^(i)`` is ``A`` with parameter ``i``'s columns from ``B``:

    ``S_i = mean(f(B) (f(A_B^(i)) − f(A))) / V`` and
    ``S_Ti = mean((f(A) − f(A_B^(i)))²) / (2V)``, ``V = Var(f(A) ∪ f(B))``.
    """
    config, space = am.experiment.config, am.experiment.search_space
    metric = metric or config.objective.name
    if metric not in am.fitted.metrics:
        raise ValidationError(f"metric {metric!r} is not modelled", field="metric")
    k = space.compact_dim
    U = torch.quasirandom.SobolEngine(2 * k, scramble=True, seed=seed).draw(n_samples).tolist()
    A = space.encode_many([space.from_unit_row(u[:k]) for u in U])
    B = space.encode_many([space.from_unit_row(u[k:]) for u in U])
    blocks = space._blocks
    mixed = []
    for b in blocks:
        AB = A.clone()
        AB[:, b.model_start : b.model_stop] = B[:, b.model_start : b.model_stop]
        mixed.append(AB)
    gp = am.fitted.model.models[am.fitted.output_index(metric)]
    X = torch.cat([A, B, *mixed])
    with (
        torch.no_grad(),
        exact_inference(),
        gpytorch.settings.skip_posterior_variances(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        f = gp.posterior(X).mean.reshape(-1)
    fA, fB = f[:n_samples], f[n_samples : 2 * n_samples]
    V = float(torch.cat([fA, fB]).var())
    first, total = [], []
    for i in range(len(blocks)):
        fAB = f[(2 + i) * n_samples : (3 + i) * n_samples]
        if V <= 0:
            first.append(0.0)
            total.append(0.0)
            continue
        first.append(float((fB * (fAB - fA)).mean()) / V)
        total.append(float(((fA - fAB) ** 2).mean()) / (2 * V))
    return Importance(metric, [b.parameter.name for b in blocks], first, total, n_samples)


# -- the optimization trace as the model sees it -----------------------------------------------
@dataclass
class ModelTrace:
    """The posterior of the objective at every completed arm, in trial order.

    Args:
        trial_indices, arm_names: One entry per completed arm.
        mean, sd: Posterior mean / SD of the objective (latent, noise excluded).
        p_feasible: ``P(all outcome constraints hold)``.
        best_so_far: Running best posterior mean among arms with ``p_feasible >=
            min_p_feasible`` (``None`` until one is), with ``best_so_far_sd``.
        recommended: The recommended arm now (``best_arm``): name, trial ids, mean, bounds.
    """

    metric: str
    minimize: bool
    trial_indices: list[int]
    arm_names: list[str]
    mean: list[float]
    sd: list[float]
    p_feasible: list[float]
    best_so_far: list[float | None]
    best_so_far_sd: list[float | None]
    recommended: dict[str, Any] | None


def model_trace(am: AnalysisModel, *, min_p_feasible: float = 0.9) -> ModelTrace:
    """The model's view of the optimization trace (see the module docstring)."""
    obj = am.experiment.config.objective
    keys, mean, var = am.observed_posterior(obj.name)
    order = sorted(range(len(keys)), key=lambda i: keys[i][0])
    post = _posterior_at_rows(am, keys, _constraint_metrics(am))
    _, pf_t = _p_constraints(am, post, len(keys))
    mu = [float(mean[i]) for i in order]
    sd = [math.sqrt(float(var[i])) for i in order]
    pf = [float(pf_t[i]) for i in order]
    sign = -1.0 if obj.minimize else 1.0
    best: list[float | None] = []
    best_sd: list[float | None] = []
    cur: tuple[float, float] | None = None
    for m, s, p in zip(mu, sd, pf, strict=True):
        if p >= min_p_feasible and (cur is None or sign * m > sign * cur[0]):
            cur = (m, s)
        best.append(None if cur is None else cur[0])
        best_sd.append(None if cur is None else cur[1])
    return ModelTrace(
        obj.name, obj.minimize, [keys[i][0] for i in order], [keys[i][1] for i in order],
        mu, sd, pf, best, best_sd, recommended_arm(am, min_p_feasible=min_p_feasible),
    )  # fmt: skip


def completed_count(experiment: Experiment) -> int:
    """Number of completed trials: the model cache key together with the experiment id."""
    return sum(1 for t in experiment.trials if t.state is TrialState.COMPLETED)
