"""Surrogate models: one Gaussian process per outcome, fitted on noisy observations.

Each metric gets a BoTorch ``SingleTaskGP`` on model-space inputs (already in the unit cube, see
:mod:`assay.platform.space`) with a ``Standardize`` outcome transform. When every observation of
a metric carries a standard error the GP uses them as *fixed, heteroskedastic* noise
(``train_Yvar = sem**2``), as Letham et al. (2019) prescribe for A/B-test data; otherwise the
noise level is inferred. Outcomes are combined in a ``ModelListGP`` (independent outputs that
may be observed at different points).

Hyperparameters are fitted by maximising the exact marginal log likelihood with
``fit_gpytorch_mll`` and are returned as JSON so the next fit can start from them (a warm start:
the optimizer begins at the previous optimum, which usually needs far fewer iterations). A fit
that fails (a non-PSD covariance, NaNs, an optimizer error) is retried in order: cold from the
prior defaults; then *stabilised* — a noise floor of :data:`RETRY_NOISE_FLOOR` (standardized
units) and Cholesky jitter :data:`RETRY_JITTER`; then, without optimizing, at the
hyperparameters the priors start from (with the same floor), accepted once its posterior
evaluates. Each failed attempt is noted in :attr:`FittedModel.warnings`. Only when all fail is
:class:`ModelFitError` raised, which generators turn into a quasi-random fallback rather than
a failed ask.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gpytorch
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from assay.platform.dense_mll import cholesky_factor, dense_mll_closure, supports_dense_mll
from assay.platform.errors import ModelFitError
from assay.platform.experiment import Experiment
from assay.platform.space import DTYPE

#: Smallest noise variance given to a fixed-noise GP, relative to the metric's variance.
MIN_RELATIVE_YVAR = 1e-6
#: Noise floor (variance, in standardized outcome units) of the stabilised retry fits.
RETRY_NOISE_FLOOR = 1e-3
#: Cholesky jitter added to the covariance in the stabilised retry fits.
RETRY_JITTER = 1e-4
#: Hyperparameters are fitted on at most this many points per metric (:func:`fit_subset`).
MAX_FIT_POINTS = 400
#: Up to this many points the acquisition uses one batched multi-output GP
#: (:attr:`FittedModel.joint`); above, per-call overhead no longer dominates and the batched
#: copy would double the memory and the Cholesky work of the posterior.
JOINT_MAX_POINTS = 1500
#: GPyTorch solves with conjugate gradients above ``max_cholesky_size`` (default 800 points):
#: approximate and, on CPU, slower than one exact Cholesky at the sizes Assay fits.
MAX_CHOLESKY_SIZE = 20_000


#: L-BFGS-B stops when the (per-point) negative log marginal likelihood improves by less
#: than this relative amount per iteration (SciPy's default: 2.2e-9). Measured on the
#: ``hartmann6_2c`` and ``mixed4`` asks at 20 evaluations (warm-started): 25-30 % fewer
#: evaluations, the optimum's MLL the same to 2e-5 per point (issue 19, PROGRESS.md).
FIT_FTOL = 1e-6


def exact_solves() -> Any:
    """Context in which GPyTorch uses Cholesky (not conjugate gradients) up to
    :data:`MAX_CHOLESKY_SIZE` points: every model-based ask runs in it."""
    return gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE)


@dataclass
class MetricData:
    """Training data of one metric.

    Args:
        X: ``n x d`` model-space inputs.
        Y: ``n x 1`` observed means (in the metric's own units and sign).
        Yvar: ``n x 1`` squared standard errors, or ``None`` when any SEM is unknown.
        arm_names: The arm behind each row.
    """

    X: Tensor
    Y: Tensor
    Yvar: Tensor | None
    arm_names: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.Y.shape[0])


def training_data(
    experiment: Experiment,
    metrics: Sequence[str] | None = None,
    transform: Any | None = None,
) -> dict[str, MetricData]:
    """Collect completed observations per metric, encoded into model space.

    Args:
        experiment: The experiment snapshot.
        metrics: Which metrics (default: the modelled ones: objective and constraints).
        transform: Optional callable ``(experiment, rows) -> rows`` applied to the
            ``(arm, trial, metric, Observation)`` rows before encoding (e.g. relativization
            against a control arm).
    """
    metrics = list(metrics or experiment.config.modelled_metrics)
    space = experiment.search_space
    rows: dict[str, list[tuple[Any, float, float | None]]] = {m: [] for m in metrics}
    for trial, arm, obs in experiment.observed():
        for m in metrics:
            o = obs.get(m)
            if o is not None:
                rows[m].append((arm, o.mean, o.sem, trial))
    if transform is not None:
        rows = transform(experiment, rows)
    out: dict[str, MetricData] = {}
    for m, r in rows.items():
        if not r:
            continue
        X = space.encode_many([arm.parameters for arm, *_ in r])
        Y = torch.tensor([[mean] for _, mean, _, _ in r], dtype=DTYPE)
        sems = [sem for _, _, sem, _ in r]
        Yvar = (
            torch.tensor([[s * s] for s in sems], dtype=DTYPE)
            if all(s is not None for s in sems)
            else None
        )
        out[m] = MetricData(X, Y, Yvar, [arm.name for arm, *_ in r])
    return out


@dataclass
class FittedModel:
    """A fitted ``ModelListGP`` with one output per metric, in ``metrics`` order."""

    model: ModelListGP
    metrics: list[str]
    state: dict[str, Any]
    fit_seconds: float
    warnings: list[str] = field(default_factory=list)
    data: Mapping[str, MetricData] | None = None

    def output_index(self, metric: str) -> int:
        return self.metrics.index(metric)

    @functools.cached_property
    def joint(self) -> Model:
        """The same posterior as :attr:`model`, for acquisition functions: one batched
        multi-output ``SingleTaskGP`` (:func:`batched_model`) when every metric was observed at
        the same points, else :attr:`model` itself. Independent outputs either way; the
        batched form evaluates all outputs in one kernel/solve call instead of one per
        metric, which is most of the cost of an MC acquisition evaluation."""
        if self.data is None or len(self.metrics) < 2:
            return self.model
        if self.data[self.metrics[0]].n > JOINT_MAX_POINTS:
            return self.model
        joint = batched_model([self.data[m] for m in self.metrics], list(self.model.models))
        return self.model if joint is None else joint

    def predict(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of the latent functions at ``n x d`` points.

        Returns:
            Two ``n x m`` tensors (``m = len(metrics)``), no observation noise included.
        """
        with torch.no_grad(), exact_solves():
            post = self.joint.posterior(X.to(DTYPE))
            return post.mean, post.variance.clamp_min(0.0)


def batched_model(data: Sequence[MetricData], gps: Sequence[SingleTaskGP]) -> SingleTaskGP | None:
    """One multi-output ``SingleTaskGP`` equal to the independent per-metric ``gps``.

    A multi-output ``SingleTaskGP`` is a batch of independent GPs, one per output, sharing the
    training inputs; with each batch member's hyperparameters copied from the fitted
    per-metric GP (and the same per-column ``Standardize``, noise floor and priors) its
    posterior is the ``ModelListGP``'s. ``None`` when that does not hold: the metrics were
    observed at different points, some with SEMs and some without, or a fit used the
    stabilised retry (another noise constraint).
    """
    X = data[0].X
    if any(d.X.shape != X.shape or not torch.equal(d.X, X) for d in data[1:]):
        return None
    if len({d.Yvar is None for d in data}) > 1:
        return None
    Y = torch.cat([d.Y for d in data], dim=-1)
    Yvar = None if data[0].Yvar is None else torch.cat([clamped_yvar(d) for d in data], dim=-1)
    joint = SingleTaskGP(X, Y, Yvar, outcome_transform=Standardize(m=len(data)))
    singles = [dict(gp.named_parameters()) for gp in gps]
    with torch.no_grad():
        for name, p in joint.named_parameters():
            parts = [s.get(name) for s in singles]
            if any(q is None or q.numel() != p[0].numel() for q in parts):
                return None
            p.copy_(torch.stack([q.reshape(p.shape[1:]) for q in parts]))
    joint.eval()
    # The guard for everything not compared above (noise constraints of retried fits, fixed
    # noise clamped differently): both posteriors at a few training and off-training points.
    probe = torch.cat([X[:2], torch.full_like(X[:1], 0.5)])
    with torch.no_grad():
        a = joint.posterior(probe)
        b = [gp.posterior(probe) for gp in gps]
    mean_b = torch.cat([p.mean for p in b], dim=-1)
    var_b = torch.cat([p.variance for p in b], dim=-1)
    if not (torch.allclose(a.mean, mean_b, rtol=1e-5, atol=1e-7)
            and torch.allclose(a.variance, var_b, rtol=1e-4, atol=1e-9)):  # fmt: skip
        return None
    return joint


def hyperparameters(model: SingleTaskGP) -> dict[str, list]:
    """The GP's hyperparameters as JSON (``{parameter name: nested list}``), for warm starts."""
    return {n: p.detach().tolist() for n, p in model.named_parameters()}


def load_hyperparameters(model: SingleTaskGP, saved: Mapping[str, Any]) -> bool:
    """Copy saved hyperparameters (from :func:`hyperparameters`) into ``model`` where name,
    shape and finiteness allow; ``True`` if at least one was loaded."""
    params = dict(model.named_parameters())
    loaded = False
    with torch.no_grad():
        for name, value in saved.items():
            p = params.get(name)
            if p is None:
                continue
            t = torch.as_tensor(value, dtype=p.dtype)
            if t.shape == p.shape and torch.isfinite(t).all():
                p.copy_(t)
                loaded = True
    return loaded


def clamped_yvar(data: MetricData, noise_floor: float = MIN_RELATIVE_YVAR) -> Tensor | None:
    """The metric's squared SEMs bounded below by ``noise_floor`` times its variance."""
    if data.Yvar is None:
        return None
    scale = data.Y.var().item() if data.n > 1 else 1.0
    floor = noise_floor * (scale if math.isfinite(scale) and scale > 0 else 1.0)
    return data.Yvar.clamp_min(floor)


def build_gp(data: MetricData, noise_floor: float = MIN_RELATIVE_YVAR) -> SingleTaskGP:
    """The GP of one metric; ``noise_floor`` bounds its noise variance from below, relative to
    the metric's variance (i.e. in the standardized units the GP works in)."""
    Yvar = clamped_yvar(data, noise_floor)
    gp = SingleTaskGP(
        train_X=data.X,
        train_Y=data.Y,
        train_Yvar=Yvar,
        outcome_transform=Standardize(m=1),
    )
    if Yvar is None and noise_floor > MIN_RELATIVE_YVAR:
        noise = gp.likelihood.noise_covar
        with torch.no_grad():
            start = noise.noise.clamp_min(2 * noise_floor)
        noise.register_constraint("raw_noise", GreaterThan(noise_floor))
        noise.noise = start
    return gp


def fit_subset(data: MetricData, max_points: int | None, seed: int) -> MetricData:
    """``data`` itself, or a uniformly random subset of ``max_points`` rows (seeded) for the
    hyperparameter fit of a large data set.

    Hyperparameters (length scales, signal and noise variance) are global properties of the
    function that a random subset of a few hundred points already identifies well, while the
    marginal likelihood's cost grows as ``n^3`` per optimizer iteration. The posterior itself
    is then exact on *all* points (one Cholesky factorisation at the fitted hyperparameters),
    the "subset of data for hyperparameters, full data for prediction" scheme of
    Rasmussen & Williams (2006, sec. 8.3.3)."""
    if max_points is None or data.n <= max_points:
        return data
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(data.n, generator=g)[:max_points].sort().values
    Yvar = None if data.Yvar is None else data.Yvar[idx]
    names = [data.arm_names[i] for i in idx.tolist()] if data.arm_names else []
    return MetricData(data.X[idx], data.Y[idx], Yvar, names)


def fit_map(gp: SingleTaskGP) -> None:
    """Fit ``gp``'s hyperparameters by maximum a posteriori marginal likelihood with BoTorch's
    ``fit_gpytorch_mll`` (L-BFGS-B, its retries). For the GPs :func:`build_gp` makes, the
    objective is evaluated on dense tensors (:func:`assay.platform.dense_mll.dense_mll`: the
    same value and gradient, about 4-5x cheaper per evaluation than GPyTorch's lazy-tensor
    path at ask sizes); other models use GPyTorch's ``ExactMarginalLogLikelihood`` as is."""
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    kwargs = {"optimizer_kwargs": {"options": {"ftol": FIT_FTOL}}}
    if supports_dense_mll(gp):
        mll.train()
        fit_gpytorch_mll(mll, closure=dense_mll_closure(mll), **kwargs)
    else:
        fit_gpytorch_mll(mll, **kwargs)


def check_usable(gp: SingleTaskGP) -> None:
    """Raise ``ValueError`` (or ``LinAlgError``) unless ``gp``'s posterior can be evaluated.

    Up to :data:`JOINT_MAX_POINTS` points: GPyTorch's posterior at a training point (its
    prediction cache is then built for later use). Above, for the GPs
    :func:`~assay.platform.dense_mll.supports_dense_mll` accepts, the dense Cholesky factor of
    ``K + N`` (:func:`~assay.platform.dense_mll.cholesky_factor`, memoized, which the analytic
    NEI reuses) must exist and be finite: one ``O(n^3)`` factorisation per output and ask
    instead of GPyTorch's plus the acquisition's own."""
    with torch.no_grad():
        X = gp.train_inputs[0]
        if X.shape[-2] > JOINT_MAX_POINTS and supports_dense_mll(gp):
            if not torch.isfinite(cholesky_factor(gp)).all():
                raise ValueError("the fitted posterior is not finite")
            return
        post = gp.posterior(X[:1])
        if not torch.isfinite(post.variance).all():
            raise ValueError("the fitted posterior is not finite")


def fit_metric_model(
    data: MetricData,
    warm_start: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    max_fit_points: int | None = None,
) -> tuple[SingleTaskGP, list[str]]:
    """Fit one GP by maximum marginal likelihood (MAP under BoTorch's default priors).

    Attempts, until one succeeds: the warm start (if shapes match), a cold start, a
    stabilised cold start (noise floor :data:`RETRY_NOISE_FLOOR`, jitter :data:`RETRY_JITTER`),
    and finally the unfitted GP at its prior starting hyperparameters with the same floor
    (used only if its posterior evaluates). Failed attempts are returned as notes. Raises
    :class:`ModelFitError` only when all fail.

    With more than ``max_fit_points`` observations the hyperparameters are fitted on a random
    subset of that size (:func:`fit_subset`) and the returned GP conditions on all of them.
    """
    fit_data = fit_subset(data, max_fit_points, seed)
    notes: list[str] = []
    # (name, warm start, noise floor, fit?)
    attempts: list[tuple[str, Mapping[str, Any] | None, float, bool]] = []
    if warm_start:
        attempts.append(("warm start", warm_start, MIN_RELATIVE_YVAR, True))
    attempts += [
        ("cold start", None, MIN_RELATIVE_YVAR, True),
        ("noise floor + jitter", None, RETRY_NOISE_FLOOR, True),
        ("prior hyperparameters, unfitted", None, RETRY_NOISE_FLOOR, False),
    ]
    last_error: Exception | None = None
    for attempt, (name, start, floor, fit) in enumerate(attempts):
        jitter = RETRY_JITTER if floor > MIN_RELATIVE_YVAR else None
        try:
            gp = build_gp(fit_data, floor)
            if start is not None and not load_hyperparameters(gp, start.get("params", {})):
                continue
            with (
                torch.random.fork_rng(),
                warnings.catch_warnings(),
                gpytorch.settings.cholesky_jitter(jitter, jitter),
            ):
                torch.manual_seed(seed + attempt)
                warnings.simplefilter("ignore")
                if fit:
                    fit_map(gp)
                if fit_data is not data:  # condition on everything at the fitted values
                    full = build_gp(data, floor)
                    load_hyperparameters(full, hyperparameters(gp))
                    gp = full
                gp.eval()
                check_usable(gp)
            if notes:
                notes.append(f"used attempt {attempt + 1} ({name})")
            return gp, notes
        except (ModelFittingError, RuntimeError, ValueError) as e:  # NotPSD, NaN, ...
            last_error = e
            notes.append(f"fit attempt {attempt + 1} ({name}) failed: {type(e).__name__}: {e}")
    raise ModelFitError(
        f"could not fit a model: {last_error}", details={"attempts": notes}
    ) from last_error


def fit_outcome_models(
    data: Mapping[str, MetricData],
    metrics: Sequence[str],
    *,
    warm_start: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_fit_points: int | None = None,
    subset_fit: bool = True,
) -> FittedModel:
    """Fit one GP per metric and combine them in a ``ModelListGP``.

    Args:
        data: Training data per metric (see :func:`training_data`).
        metrics: The output order; each must have data.
        warm_start: A previous :attr:`FittedModel.state` (``{metric: {"d", "params"}}``).
        seed: Seeds the fit's random restarts so fits are reproducible.
        max_fit_points: Fit hyperparameters on a random subset of at most this many points
            per metric (:func:`fit_subset`); the posterior uses all of them. ``None``:
            :data:`MAX_FIT_POINTS`.
        subset_fit: ``False`` fits on every point, whatever ``max_fit_points`` says.
    """
    if not subset_fit:
        max_fit_points = None
    elif max_fit_points is None:
        max_fit_points = MAX_FIT_POINTS
    t0 = time.perf_counter()
    models, state, notes = [], {}, []
    for i, m in enumerate(metrics):
        d = data[m]
        start = (warm_start or {}).get(m)
        if start is not None and start.get("d") != d.X.shape[-1]:
            start = None
        gp, n = fit_metric_model(d, start, seed=seed + 7919 * i, max_fit_points=max_fit_points)
        notes += [f"{m}: {x}" for x in n]
        models.append(gp)
        state[m] = {"d": int(d.X.shape[-1]), "params": hyperparameters(gp)}
    return FittedModel(
        ModelListGP(*models), list(metrics), state, time.perf_counter() - t0, notes, data
    )
