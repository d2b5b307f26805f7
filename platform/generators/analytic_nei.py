"""Noisy EI with the candidate integrated in closed form: Letham et al. (2019) as written.

Letham, Karrer, Ottoni & Bakshy (2019, sec. 4) estimate noisy expected improvement by
quasi-Monte Carlo over the *observed* points only: draw ``S`` QMC samples ``F_s`` of the latent
objective and constraints at the baseline ``X_b`` (the observed points) from the joint GP
posterior, and for each sample compute the closed-form constrained EI of the GP conditioned on
``f(X_b) = F_s`` as if noiseless::

    NEI(x) ~= 1/S sum_s  EI(x | f*_s) * prod_j P(c_j(x) <= 0 | F_s)

with ``f*_s`` the best sampled objective among the baseline points feasible in sample ``s``.
Unlike BoTorch's ``qLogNoisyExpectedImprovement`` (which also samples the candidate's value
and smooths the constraints with sigmoids) the candidate's part is exact, and nothing in the
per-candidate work goes through GPyTorch's lazy tensors: per output and candidate batch it is
one kernel row, one triangular solve ``w = L^{-1} k(X, x)`` against the training Cholesky
factor ``L`` (variance ``k(x, x) - w^T w``), a product with the precomputed
``L^{-1} K(X, X_b)`` for the cross-covariance, a triangular solve against the baseline
posterior's Cholesky factor ``L_b``, and an ``n_b x S`` product. The conditional moments are the low-rank update of the joint
Cholesky factor (the same identity as BoTorch's ``sample_cached_cholesky``)::

    l = L_b^{-1} Sigma(X_b, x),   E[f(x) | F_s] = mu(x) + l^T z_s,   Var = Sigma(x, x) - l^T l

where ``z_s = L_b^{-1} (F_s - mu_b)`` are the QMC base samples. Outputs are independent GPs,
so given the baseline samples the candidate's objective and constraints are independent and
``P(feasible)`` is a product of normal CDFs.

Pending points (greedy batches, running trials) are sampled jointly with the baseline and
join the incumbent: in sample ``s`` the threshold is the best feasible sampled value among
baseline *and* pending points, so the candidate is valued by what it adds to the batch (the
batch's expected improvement ``E[max(a_s, (f - f*_s)^+ 1{feas})]`` equals
``E[a_s] + E[1{feas} (f - f*_s - a_s)^+]`` with ``a_s >= 0`` the pending points' own gain,
and the first term does not depend on the candidate). BoTorch's qLogNEI likewise adds
pending points to its baseline. Everything is returned in log space (``log EI`` by the stable expansion of Ament et
al. 2023, ``log Phi`` by ``log_ndtr``, averages by ``logsumexp``).

Supported models: each output a ``SingleTaskGP`` with a constant mean, no input transform, a
``Standardize`` outcome transform and Gaussian (learned or fixed) noise — what
:mod:`assay.platform.models` builds. :func:`build_analytic_nei` returns ``None`` otherwise
(or when its posterior disagrees with the model's), and the caller uses qLogNEI.

Owns: :class:`AnalyticNEI`, :class:`AnalyticLogPF`, :func:`build_analytic_nei`,
:func:`posterior_means`.

May import: torch, gpytorch, botorch and, of ``assay``, :mod:`assay.platform.models` and
:mod:`assay.platform.experiment`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import _log_ei_helper
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.utils.sampling import draw_sobol_normal_samples
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.means import ConstantMean
from torch import Tensor

from assay.platform.dense_mll import cholesky_factor, fingerprint, supports_dense_mll
from assay.platform.experiment import ExperimentConfig, OutcomeConstraint
from assay.platform.models import FittedModel

#: Jitter (standardized units) added to the baseline posterior covariance before its Cholesky
#: factorisation; raised tenfold until it succeeds.
BASELINE_JITTER = 1e-8
#: Up to this many training points :func:`build_analytic_nei` checks its posterior against
#: GPyTorch's at a few points; above, that check would cost GPyTorch its own ``O(n^3)``
#: factorisation, and GPs of the form :func:`~assay.platform.dense_mll.supports_dense_mll`
#: accepts (the form :func:`~assay.platform.models.build_gp` makes) are trusted by structure
#: (the equality is tested in ``tests/platform/generators/test_analytic_nei.py``).
CHECK_MAX_POINTS = 1500
#: Smallest conditional variance of the candidate (standardized units).
MIN_VARIANCE = 1e-12


def _kernel(module: Kernel, A: Tensor, B: Tensor) -> Tensor:
    """``k(A, B)`` as a dense tensor. RBF: ``exp(-r^2 / 2)``; Matern-5/2:
    ``(1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)``, with ``r`` the lengthscale-scaled distance
    (Rasmussen & Williams 2006, eqs. 4.9 and 4.17); the same values as GPyTorch's kernels
    without their lazy-tensor wrapping."""
    scale = None
    if isinstance(module, ScaleKernel):
        scale, module = module.outputscale.detach(), module.base_kernel
    if type(module) not in (RBFKernel, MaternKernel) or module.active_dims is not None:
        return module(A, B).to_dense() if scale is None else scale * module(A, B).to_dense()
    if isinstance(module, MaternKernel) and module.nu != 2.5:
        k = module(A, B).to_dense()
        return k if scale is None else scale * k
    # hyperparameters are constants of the acquisition: no autograd graph through them
    ls = module.lengthscale.detach().reshape(-1)
    a, b = A / ls, B / ls
    sq = (
        (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
    ).clamp_min(0.0)
    if isinstance(module, RBFKernel):
        k = torch.exp(-0.5 * sq)
    else:
        r = sq.clamp_min(1e-30).sqrt()
        k = (1 + math.sqrt(5) * r + (5.0 / 3.0) * sq) * torch.exp(-math.sqrt(5) * r)
    return k if scale is None else scale * k


def _kernel_diag(module: Kernel, x: Tensor) -> Tensor:
    """``k(x_i, x_i)`` for the ``B x d`` points ``x``: the signal variance for the stationary
    kernels :func:`_kernel` computes directly, else through GPyTorch."""
    base = module.base_kernel if isinstance(module, ScaleKernel) else module
    if type(base) in (RBFKernel, MaternKernel) and base.active_dims is None:
        ones = torch.ones(x.shape[0], dtype=x.dtype)
        return ones * module.outputscale.detach() if isinstance(module, ScaleKernel) else ones
    return module(x.unsqueeze(-2), x.unsqueeze(-2)).to_dense().reshape(-1)


def _cholesky(A: Tensor, jitter: float) -> Tensor:
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    for k in range(8):
        L, info = torch.linalg.cholesky_ex(A + (jitter * 10**k if k else 0.0) * eye)
        if int(info) == 0:
            return L
    raise torch.linalg.LinAlgError("covariance not positive definite after jitter")


@dataclass
class _Output:
    """The exact GP posterior pieces of one output (standardized units, then scaled).

    Only the Cholesky factor ``L`` of ``K + N`` is kept, never ``(K + N)^{-1}``: every
    quadratic form is ``||L^{-1} k||^2`` by a triangular solve (half the flops of a product
    with the explicit inverse, and no ``O(n^3)`` inversion at thousands of points).
    """

    gp: SingleTaskGP
    X: Tensor  # n x d training inputs
    alpha: Tensor  # (K + N)^{-1} (y - c)
    L: Tensor  # Cholesky factor of K + N
    const: Tensor  # constant mean
    mu: float  # Standardize means / stdvs (original = std * sd + mu)
    sd: float

    @classmethod
    def build(cls, gp: SingleTaskGP) -> _Output | None:
        """The pieces of ``gp``, or ``None`` if it is not of the supported form; memoized per
        GP (and its current parameter values), so one ask factorises each output once."""
        key = fingerprint(gp)
        hit = _OUTPUTS.get(gp)
        if hit is not None and hit[0] == key:
            return hit[1]
        out = cls._build(gp)
        _OUTPUTS[gp] = (key, out)
        return out

    @classmethod
    def _build(cls, gp: SingleTaskGP) -> _Output | None:
        if getattr(gp, "input_transform", None) is not None:
            return None
        if not isinstance(gp.mean_module, ConstantMean):
            return None
        ot = getattr(gp, "outcome_transform", None)
        if not isinstance(ot, Standardize) or ot._m != 1:
            return None
        X = gp.train_inputs[0]
        y = gp.train_targets
        if X.dim() != 2 or y.dim() != 1:
            return None
        with torch.no_grad():
            if supports_dense_mll(gp):
                L = cholesky_factor(gp)  # shared with the fit's usability check
            else:
                noise = gp.likelihood.noise.reshape(-1)
                K = _kernel(gp.covar_module, X, X)
                L = _cholesky(K + torch.diag_embed(noise.expand(X.shape[0])), 1e-8)
            const = gp.mean_module.constant.reshape(())
            alpha = torch.cholesky_solve((y - const).unsqueeze(-1), L).squeeze(-1)
        return cls(
            gp, X, alpha, L, const, float(ot.means.reshape(-1)[0]),
            float(ot.stdvs.reshape(-1)[0]),
        )  # fmt: skip

    def prior(self, A: Tensor, B: Tensor) -> Tensor:
        """The prior covariance ``k(A, B)`` (the model's kernel; RBF and Matern-5/2, with or
        without a ``ScaleKernel``, computed directly, others through GPyTorch)."""
        return _kernel(self.gp.covar_module, A, B)

    def whiten(self, K: Tensor) -> Tensor:
        """``L^{-1} K`` for an ``n x m`` cross-covariance ``K = k(X, Z)``."""
        return torch.linalg.solve_triangular(self.L, K, upper=False)

    def mean(self, Z: Tensor) -> Tensor:
        """Posterior mean at ``Z`` (standardized units), without any ``n x n`` work."""
        return self.const + self.prior(Z, self.X) @ self.alpha

    def moments(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean (``m``) and covariance (``m x m``) at ``Z``, standardized units."""
        kZ = self.prior(Z, self.X)
        mean = self.const + kZ @ self.alpha
        W = self.whiten(kZ.transpose(-1, -2))
        cov = self.prior(Z, Z) - W.transpose(-1, -2) @ W
        return mean, cov


#: ``gp -> (parameter fingerprint, _Output)``: the factorisation of each fitted GP, shared by
#: :func:`posterior_means`, :func:`build_analytic_nei` and the acquisition's evaluations.
_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def posterior_means(fitted: FittedModel, X: Tensor) -> Tensor | None:
    """``n x m`` posterior means (original units) of ``fitted``'s outputs at ``X`` from the
    memoized factorisations (no new Cholesky), or ``None`` if a GP is not supported."""
    outputs = _outputs(fitted)
    if outputs is None:
        return None
    with torch.no_grad():
        cols = [out.mean(X.to(out.X)) * out.sd + out.mu for out in outputs]
    return torch.stack(cols, dim=-1)


def _outputs(fitted: FittedModel) -> list[_Output] | None:
    """The memoized factorisation of each of ``fitted``'s per-metric GPs, or ``None`` if one
    is not a single-output ``SingleTaskGP`` of the supported form."""
    outputs = []
    for gp in fitted.model.models:
        if not isinstance(gp, SingleTaskGP) or gp.num_outputs != 1:
            return None
        out = _Output.build(gp)
        if out is None:
            return None
        outputs.append(out)
    return outputs


class AnalyticNEI(AcquisitionFunction):
    """log NEI of one candidate per batch element (``b x 1 x d`` in, ``b`` out); see the
    module docstring. Pending points: :meth:`set_X_pending`.

    Args:
        fitted: The outcome models (one ``SingleTaskGP`` per metric).
        config: The experiment config (objective, direction).
        X_baseline: ``n_b x d`` observed points whose samples define the incumbent.
        constraints: Outcome constraints in model units (only modelled metrics are used).
        mc_samples: QMC samples of the baseline (and pending) values.
        seed: Seeds the QMC base samples.
        X_pending: Points fantasized as already in the batch.
    """

    #: One candidate per evaluation: optimizers build batches greedily (see
    #: :func:`assay.platform.optimize.optimize_acquisition`).
    single_point = True

    def __init__(
        self,
        outputs: list[_Output],
        i_obj: int,
        sign: float,
        constraints: list[tuple[int, str, float]],
        X_baseline: Tensor,
        mc_samples: int,
        seed: int,
        X_pending: Tensor | None = None,
    ) -> None:
        super().__init__(model=outputs[0].gp)
        self.outputs = outputs
        self.i_obj, self.sign, self.cons = i_obj, sign, constraints
        self.X_baseline = X_baseline
        self.mc_samples, self.seed = mc_samples, seed
        self.n_baseline = X_baseline.shape[0]
        self.set_X_pending(X_pending)

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        """Sample baseline and pending points jointly; cache what every evaluation needs."""
        self.X_pending = X_pending
        Xj = self.X_baseline if X_pending is None else torch.cat([self.X_baseline, X_pending])
        Xj = Xj.detach()
        nj, S = Xj.shape[0], self.mc_samples
        base = draw_sobol_normal_samples(d=nj * len(self.outputs), n=S, seed=self.seed)
        base = base.to(Xj).reshape(S, len(self.outputs), nj)
        self._Xj, self._W, self._Lj, self._Z, samples = Xj, [], [], [], []
        self._XXj = [torch.cat([out.X, Xj]) for out in self.outputs]  # rows of k(x, .)
        with torch.no_grad():
            for j, out in enumerate(self.outputs):
                mean, cov = out.moments(Xj)
                L = _cholesky(cov, BASELINE_JITTER)
                z = base[:, j, :]  # S x nj
                samples.append((mean + z @ L.T) * out.sd + out.mu)  # original units
                self._W.append(out.whiten(out.prior(out.X, Xj)))  # L^{-1} K(X, Xj)
                self._Lj.append(L)
                self._Z.append(z.T.contiguous())  # nj x S
            obj = self.sign * samples[self.i_obj]  # S x nj (maximised)
            feas = torch.ones_like(obj, dtype=torch.bool)
            for j, op, bound in self.cons:
                feas &= samples[j] <= bound if op == "<=" else samples[j] >= bound
            # Lower bound for samples without a feasible baseline point (BoTorch's convention:
            # the incumbent is then a value below anything plausible).
            lower = obj.min() - 6 * obj.std().clamp_min(1e-9) - 1.0
            # the incumbent of each sample: best feasible value among baseline and pending
            best = torch.where(feas, obj, torch.full_like(obj, -math.inf)).max(dim=-1).values
            best = torch.where(torch.isfinite(best), best, lower)
        self._best = best  # S

    def probability_feasible(self, X: Tensor) -> Tensor:
        """``P(all constraints hold)`` at ``n x d`` points under the posterior (no baseline
        conditioning): ``prod_j Phi(+-(b_j - mu_j) / sigma_j)``."""
        p = torch.ones(X.shape[0], dtype=X.dtype)
        with torch.no_grad():
            for j, op, bound in self.cons:
                out = self.outputs[j]
                mean, cov = out.moments(X)
                mean = mean * out.sd + out.mu
                sd = (cov.diagonal().clamp_min(MIN_VARIANCE)).sqrt() * out.sd
                z = (bound - mean) / sd
                p = p * torch.special.ndtr(z if op == "<=" else -z)
        return p

    def forward(self, X: Tensor) -> Tensor:
        if X.dim() < 2 or X.shape[-2] != 1:
            raise ValueError("AnalyticNEI evaluates one candidate per batch element (q = 1)")
        batch = X.shape[:-2]
        x = X.reshape(-1, X.shape[-1])
        cond_mean, cond_sd = [], []
        for j, out in enumerate(self.outputs):
            k = out.prior(x, self._XXj[j])  # B x (n + nj)
            kX, kJ = k[:, : out.X.shape[0]], k[:, out.X.shape[0] :]
            mean = out.const + kX @ out.alpha  # B
            w = out.whiten(kX.T)  # n x B
            var = _kernel_diag(out.gp.covar_module, x) - (w * w).sum(0)
            cross = kJ - w.T @ self._W[j]  # B x nj: posterior Cov(f(x), f(Xj))
            lvec = torch.linalg.solve_triangular(self._Lj[j], cross.T, upper=False)  # nj x B
            m = mean.unsqueeze(-1) + lvec.T @ self._Z[j]  # B x S
            v = (var - (lvec * lvec).sum(0)).clamp_min(MIN_VARIANCE)
            cond_mean.append(m * out.sd + out.mu)
            cond_sd.append((v.sqrt() * out.sd).unsqueeze(-1))
        f_mean = self.sign * cond_mean[self.i_obj]
        f_sd = cond_sd[self.i_obj]
        log_ei = f_sd.log() + _log_ei_helper((f_mean - self._best) / f_sd)  # B x S
        log_pf = torch.zeros_like(log_ei)
        for j, op, bound in self.cons:
            z = (bound - cond_mean[j]) / cond_sd[j]
            log_pf = log_pf + torch.special.log_ndtr(z if op == "<=" else -z)
        per_sample = log_ei + log_pf
        value = torch.logsumexp(per_sample, dim=-1) - math.log(self.mc_samples)
        return value.reshape(batch)


class AnalyticLogPF(AcquisitionFunction):
    """``log P(all constraints hold)`` at one candidate per batch element (``b x 1 x d`` in,
    ``b`` out), in closed form: the outputs are independent GPs, so the probability is
    ``prod_j Phi(+-(b_j - mu_j(x)) / sigma_j(x))`` under each constraint's posterior marginal
    (Gardner et al. 2014; the quantity BoTorch's ``qLogProbabilityOfFeasibility`` estimates
    by Monte Carlo with sigmoid-smoothed constraints), summed as ``log_ndtr`` terms. Uses the
    factorisations of an :class:`AnalyticNEI` (no lazy-tensor posterior per evaluation).
    """

    single_point = True

    def __init__(self, nei: AnalyticNEI) -> None:
        super().__init__(model=nei.model)
        self.nei = nei

    def forward(self, X: Tensor) -> Tensor:
        if X.dim() < 2 or X.shape[-2] != 1:
            raise ValueError("AnalyticLogPF evaluates one candidate per batch element (q = 1)")
        batch = X.shape[:-2]
        x = X.reshape(-1, X.shape[-1])
        value = torch.zeros(x.shape[0], dtype=x.dtype)
        for j, op, bound in self.nei.cons:
            out = self.nei.outputs[j]
            kX = out.prior(x, out.X)
            mean = (out.const + kX @ out.alpha) * out.sd + out.mu
            w = out.whiten(kX.T)
            var = (_kernel_diag(out.gp.covar_module, x) - (w * w).sum(0)).clamp_min(MIN_VARIANCE)
            z = (bound - mean) / (var.sqrt() * out.sd)
            value = value + torch.special.log_ndtr(z if op == "<=" else -z)
        return value.reshape(batch)


def build_analytic_nei(
    config: ExperimentConfig,
    fitted: FittedModel,
    X_baseline: Tensor,
    X_pending: Tensor | None,
    mc_samples: int,
    seed: int,
    constraints: Sequence[OutcomeConstraint] | None = None,
) -> AnalyticNEI | None:
    """:class:`AnalyticNEI` for ``fitted``'s per-metric GPs, or ``None`` when a model is not
    of the supported form (see the module docstring) or its posterior pieces do not
    reproduce the model's own posterior at a few points."""
    outputs = _outputs(fitted)
    if outputs is None:
        return None
    probe = torch.cat([X_baseline[:2], torch.full_like(X_baseline[:1], 0.5)])
    with torch.no_grad():
        for out in outputs:
            if out.X.shape[0] > CHECK_MAX_POINTS and supports_dense_mll(out.gp):
                continue  # the structural check only: GPyTorch's posterior costs a Cholesky
            post = out.gp.posterior(probe)
            mean, cov = out.moments(probe)
            mean, var = mean * out.sd + out.mu, cov.diagonal() * out.sd**2
            if not (
                torch.allclose(mean, post.mean.reshape(-1), rtol=1e-4, atol=1e-6 * out.sd)
                and torch.allclose(var, post.variance.reshape(-1), rtol=1e-3, atol=1e-8 * out.sd**2)
            ):
                return None
    obj = config.objective
    cons = []
    for oc in config.outcome_constraints if constraints is None else constraints:
        if oc.metric in fitted.metrics:
            cons.append((fitted.output_index(oc.metric), oc.op, float(oc.bound)))
    return AnalyticNEI(
        outputs, fitted.output_index(obj.name), -1.0 if obj.minimize else 1.0, cons,
        X_baseline, mc_samples, seed, X_pending,
    )  # fmt: skip
