"""qLogNEHVI with the candidates' joint posterior computed on dense tensors.

BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` draws, at every evaluation, samples of
the objectives and constraints at the candidates ``X`` *jointly* with the baseline ``X_b``
(observed and cached pending points), whose samples were drawn once and define the box
decompositions. With ``cache_root`` it does so by the low-rank update of the baseline
posterior's Cholesky factor ``L_b`` (Daulton et al. 2021, sec. 4.2; BoTorch's
``sample_cached_cholesky``)::

    B   = L_b^{-1} Sigma(X_b, X)                  (new bottom-left block of the factor)
    L_q = chol(Sigma(X, X) - B^T B)               (new bottom-right block)
    f(X)_s = mu(X) + B^T z_{b,s} + L_q z_{q,s}    (z: the sampler's base samples)

but it first builds the GP posterior over all ``n_b + q`` points through GPyTorch (lazy
kernel tensors, the outcome transform's untransform, a ``MultitaskMultivariateNormal``) and
then indexes and densifies that lazy matrix. At the sizes of an ask (tens of observations,
two or three outputs, a handful of candidates per restart) that bookkeeping, not the
arithmetic, was most of an ask's CPU time (``benchmarks/mo_ask_profile.py``, issue 15).

:class:`DenseLogNEHVI` keeps everything of BoTorch's acquisition (pruning, reference point,
box decompositions, cached pending points, base samples, the log-hypervolume computation)
and replaces only the sampling of ``f(X)``: with the hyperparameters fixed after the fit,
:class:`JointPieces` factorises each output's ``K + N`` once and precomputes
``alpha = (K + N)^{-1} (y - c)`` (standardized units), and per evaluation computes, per
output (Rasmussen & Williams 2006, eqs. 2.25-2.26)::

    mu(X)           = c + k(X, X_t) alpha
    Sigma(X, X_b)   = k(X, X_b) - W^T W_b,   W = L^{-1} k(X_t, X),  W_b = L^{-1} k(X_t, X_b)
    Sigma(X, X)     = k(X, X)   - W^T W

(``L`` the Cholesky factor of ``K + N``; ``W_b`` cached per baseline), then scales them to the
original units (``Standardize``: ``mu * s + m``, ``Sigma * s^2``) and applies the update
above with BoTorch's own ``L_b`` and base samples. The ``n_b x n_b`` block, which BoTorch
recomputes at every call, is never formed. Values and gradients are BoTorch's to round-off
(``tests/platform/generators/test_dense_nehvi.py``).

Supported models (:func:`supports_dense_joint`): a batched multi-output ``SingleTaskGP``
(:attr:`~assay.platform.models.FittedModel.joint`) with a constant mean, an RBF or
Matern-5/2 kernel over all inputs (optionally scaled), Gaussian or fixed Gaussian noise, no
input transform and a ``Standardize`` outcome transform: what
:func:`~assay.platform.models.batched_model` builds. Other models keep BoTorch's class.

Owns: :class:`JointPieces`, :class:`DenseLogNEHVI`, :func:`supports_dense_joint`.

May import: torch, gpytorch, botorch, linear_operator and :mod:`assay.platform.dense_mll`.
"""

from __future__ import annotations

import math

import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.utils.transforms import match_batch_shape
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean
from linear_operator.utils.errors import NanError
from torch import Tensor

from assay.platform.dense_mll import (
    base_kernel,
    robust_cholesky,
    stationary_kernel,
    supports_dense_kernel,
)

#: Jittered Cholesky attempts (:func:`~assay.platform.dense_mll.robust_cholesky`), as
#: BoTorch's ``sample_cached_cholesky`` (``psd_safe_cholesky`` with ``max_tries=6``).
MAX_TRIES = 6


def supports_dense_joint(model: object) -> bool:
    """Whether :class:`JointPieces` reproduces ``model``'s posterior: a multi-output
    ``SingleTaskGP`` (batch of independent GPs, one per output, on shared inputs) with a
    ``ConstantMean``, an RBF or Matern-5/2 kernel on all inputs (optionally in a
    ``ScaleKernel``), Gaussian or fixed Gaussian noise, no input transform and a
    ``Standardize`` outcome transform."""
    if not isinstance(model, SingleTaskGP) or model.num_outputs < 2:
        return False
    if getattr(model, "input_transform", None) is not None:
        return False
    if not isinstance(getattr(model, "outcome_transform", None), Standardize):
        return False
    if not isinstance(model.mean_module, ConstantMean):
        return False
    if type(model.likelihood) not in (GaussianLikelihood, FixedNoiseGaussianLikelihood):
        return False
    if not supports_dense_kernel(model.covar_module):
        return False
    m = model.num_outputs
    X, y = model.train_inputs[0], model.train_targets
    return X.dim() == 3 and X.shape[0] == m and y.dim() == 2 and y.shape[0] == m


class JointPieces:
    """The fixed parts of a batched multi-output GP's posterior (``m`` outputs, ``n``
    training points), as dense tensors without autograd history.

    Args:
        model: A model that :func:`supports_dense_joint`.
    """

    def __init__(self, model: SingleTaskGP) -> None:
        with torch.no_grad():
            self.X = model.train_inputs[0].detach()  # m x n x d
            m, n = self.X.shape[0], self.X.shape[1]
            covar = model.covar_module
            base = base_kernel(covar)
            self.lengthscale = base.lengthscale.detach().reshape(m, 1, -1)  # m x 1 x d
            self.rbf = isinstance(base, RBFKernel)
            self.scale = (
                covar.outputscale.detach().reshape(m, 1, 1)
                if isinstance(covar, ScaleKernel)
                else torch.ones(m, 1, 1, dtype=self.X.dtype)
            )
            noise = model.likelihood.noise.detach().reshape(m, -1).expand(m, n)
            self.const = model.mean_module.constant.detach().reshape(m, 1)
            K = self.kernel(self.X, self.X) + torch.diag_embed(noise)
            self.L = robust_cholesky(K, MAX_TRIES)  # m x n x n
            r = (model.train_targets.detach() - self.const).unsqueeze(-1)
            self.alpha = torch.cholesky_solve(r, self.L).squeeze(-1)  # m x n
            ot = model.outcome_transform
            self.mu = ot.means.detach().reshape(m)
            self.sd = ot.stdvs.detach().reshape(m)
        self._Xb: Tensor | None = None
        self._Wb: Tensor | None = None

    @property
    def m(self) -> int:
        return int(self.X.shape[0])

    def kernel(self, A: Tensor, B: Tensor) -> Tensor:
        """``k_j(A_j, B_j)`` for each output ``j``: ``m x P x d`` and ``m x Q x d`` (or
        broadcastable) in, ``m x P x Q`` out. RBF ``exp(-r^2/2)``, Matern-5/2
        ``(1 + sqrt5 r + 5 r^2/3) exp(-sqrt5 r)`` (Rasmussen & Williams 2006, eqs. 4.9, 4.17),
        ``r`` the lengthscale-scaled distance, times the output scale."""
        lead = (self.m,) + (1,) * (max(A.dim(), B.dim()) - 2)
        ls = self.lengthscale.reshape(*lead, -1)
        k = stationary_kernel(A / ls, B / ls, self.rbf)
        return self.scale.reshape(*lead, 1) * k

    def whitened_baseline(self, Xb: Tensor) -> Tensor:
        """``W_b = L^{-1} k(X_t, X_b)`` (``m x n x n_b``), cached for the last ``Xb``."""
        if self._Xb is not Xb:
            with torch.no_grad():
                Kb = self.kernel(self.X, Xb.detach().unsqueeze(0))
                self._Wb = torch.linalg.solve_triangular(self.L, Kb, upper=False)
            self._Xb = Xb
        assert self._Wb is not None
        return self._Wb

    def joint_rows(self, X: Tensor, Xb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior moments (original units) at the ``batch x q x d`` candidates ``X``
        given the baseline ``Xb`` (``n_b x d``): the mean (``batch x m x q``), the
        cross-covariance ``Sigma(X, X_b)`` (``batch x m x q x n_b``) and ``Sigma(X, X)``
        (``batch x m x q x q``); differentiable in ``X``."""
        batch, (q, d) = X.shape[:-2], X.shape[-2:]
        B = math.prod(batch)
        m, n = self.m, self.X.shape[1]
        x = X.reshape(B * q, d).unsqueeze(0)  # 1 x Bq x d
        kX = self.kernel(x, self.X)  # m x Bq x n
        mean = self.const.unsqueeze(-1) + kX @ self.alpha.unsqueeze(-1)  # m x Bq x 1
        W = torch.linalg.solve_triangular(self.L, kX.transpose(-1, -2), upper=False)  # m x n x Bq
        Wb = self.whitened_baseline(Xb)
        cross = self.kernel(x, Xb.unsqueeze(0)) - W.transpose(-1, -2) @ Wb  # m x Bq x n_b
        Wq = W.reshape(m, n, B, q).permute(0, 2, 1, 3)  # m x B x n x q
        xq = X.reshape(B, q, d)
        kqq = self.kernel(xq.unsqueeze(0), xq.unsqueeze(0))  # m x B x q x q
        # the diagonal is the signal variance exactly (no round-off distance to the point
        # itself, whose square root has no usable gradient for Matern)
        eye = torch.eye(q, dtype=torch.bool, device=X.device)
        kqq = torch.where(eye, self.scale.reshape(m, 1, 1, 1), kqq)
        cov = kqq - Wq.transpose(-1, -2) @ Wq
        s, s2 = self.sd.reshape(m, 1, 1), (self.sd**2).reshape(m, 1, 1, 1)
        mean = (mean.reshape(m, B, q) * s + self.mu.reshape(m, 1, 1)).transpose(0, 1)
        cross = (cross.reshape(m, B, q, -1) * s2).transpose(0, 1)
        cov = (cov * s2).transpose(0, 1)
        return (
            mean.reshape(*batch, m, q),
            cross.reshape(*batch, m, q, cross.shape[-1]),
            cov.reshape(*batch, m, q, q),
        )


class DenseLogNEHVI(qLogNoisyExpectedHypervolumeImprovement):
    """BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` (same arguments, ``cache_root``
    on) whose candidate samples come from :class:`JointPieces` and whose one-point value skips
    the inclusion-exclusion identities (see the module docstring).

    Raises:
        TypeError: ``model`` is not of the form :func:`supports_dense_joint` accepts.
        torch.linalg.LinAlgError: a training covariance cannot be factorised even with
            jitter.
    """

    def __init__(self, model: SingleTaskGP, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not supports_dense_joint(model):
            raise TypeError(f"DenseLogNEHVI does not support {type(model).__name__}")
        kwargs["cache_root"] = True
        super().__init__(model, *args, **kwargs)
        self.pieces = JointPieces(model)
        self._dense_count = [0]  # a list: no nn.Module attribute write per evaluation

    @property
    def dense_evaluations(self) -> int:
        """Evaluations that took the dense path (for tests and profiles)."""
        return self._dense_count[0]

    def _compute_posterior_samples_and_concat_pending(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Samples (``sample_shape x batch x q' x m``) of the outputs at ``X`` plus the
        pending points not in the cached baseline, jointly with the baseline samples, and
        that ``X`` (``q'`` points)."""
        X_in = X
        if self.X_pending is not None:
            num_pending = self.X_pending.shape[-2]
            uncached = (
                num_pending + self._X_baseline.shape[-2] - self.X_baseline.shape[-2]
                if self.cache_pending
                else num_pending
            )
            if uncached > 0:
                X = torch.cat([X, match_batch_shape(self.X_pending[..., -uncached:, :], X)], -2)
        if not hasattr(self, "_baseline_L"):
            return super()._compute_posterior_samples_and_concat_pending(X_in)
        q = X.shape[-2]
        Xb = self.X_baseline
        if self.q_in != q:  # the sampler's base samples for (X_b, X): BoTorch's own rule
            with torch.no_grad():
                first = X.reshape(-1, *X.shape[-2:])[:1]  # 1 x q x d
                shape_posterior = self.model.posterior(torch.cat([Xb.unsqueeze(0), first], -2))
            self._set_sampler(q_in=q, posterior=shape_posterior)
        mean, cross, cov = self.pieces.joint_rows(X, Xb)
        try:
            samples = self._sample(mean, cross, cov)
        except (NanError, torch.linalg.LinAlgError):  # BoTorch's fallback: the standard path
            return super()._compute_posterior_samples_and_concat_pending(X_in)
        self._dense_count[0] += 1
        return samples, X

    def _compute_log_qehvi(self, samples: Tensor, X: Tensor | None = None) -> Tensor:
        """BoTorch's log-NEHVI of the samples; for one point (``q' = 1``, the greedy case)
        without the inclusion-exclusion bookkeeping, which is then the identity: the
        hypervolume improvement of one point is the sum over the cells of its (smoothed)
        dominated area in each, times its (smoothed) feasibility, so the value is
        ``logmeanexp_s logsumexp_cells (log area + log feasibility)`` with BoTorch's own
        fused log-area kernel and :func:`_logsumexp` (the same value and gradient; the
        ``q``-subset loop's ``logsumexp`` over one subset, ``logplusexp`` with ``-inf`` and
        ``logdiffexp`` from ``-inf`` are exact identities)."""
        obj = self.objective(samples, X=X)  # S x batch x q x m
        if (
            obj.shape[-2] != 1
            or not self.fat
            or obj.device.type != "cpu"
            or self.cell_lower_bounds.dim() != 3
            or _fused_kernel() is None
        ):
            return super()._compute_log_qehvi(samples, X)
        from botorch.acquisition.multi_objective.logei import _FusedLogAreas
        from botorch.utils.objective import compute_smoothed_feasibility_indicator

        batch = obj.shape[:-2]  # S x t-batch
        lower, upper = self.cell_lower_bounds, self.cell_upper_bounds  # S x cells x m
        n_t = len(batch) - 1
        if n_t > 0:  # one cell set per (sample, t-batch) row, as BoTorch's fused path
            view = (lower.shape[0], *[1] * n_t, *lower.shape[1:])
            lower = lower.view(view).expand(*batch, *lower.shape[-2:])
            upper = upper.view(view).expand(*batch, *upper.shape[-2:])
        log_areas = _FusedLogAreas.apply(
            obj.unsqueeze(-2), lower, upper, self.tau_relu, self.tau_max
        )[..., 0]  # S x batch x cells
        if self.constraints is not None:
            log_feas = compute_smoothed_feasibility_indicator(
                constraints=self.constraints, samples=samples, eta=self.eta, log=True,
                fat=self.fat,
            )  # fmt: skip
            log_areas = log_areas + log_feas  # S x batch x 1 broadcast over the cells
        per_sample = _logsumexp(log_areas, dim=-1)
        return _logsumexp(per_sample, dim=0) - math.log(per_sample.shape[0])

    def _sample(self, mean: Tensor, cross: Tensor, cov: Tensor) -> Tensor:
        """The low-rank update of the module docstring with ``self._baseline_L``
        (``m x n_b x n_b``) and the sampler's base samples (the baseline's first, in the
        order BoTorch's non-interleaved multi-task posterior uses)."""
        Lb = self._baseline_L
        bl = torch.linalg.solve_triangular(Lb, cross.transpose(-1, -2), upper=False)
        bl = bl.transpose(-1, -2)  # batch x m x q x n_b
        br = robust_cholesky(cov - bl @ bl.transpose(-1, -2), MAX_TRIES)  # batch x m x q x q
        Lq = torch.cat([bl, br], dim=-1)  # batch x m x q x (n_b + q)
        S = self.sampler.sample_shape
        z = self.sampler.base_samples  # S x 1.. x (n_b + q) x m
        z = z.reshape(S.numel(), z.shape[-2], z.shape[-1]).permute(2, 1, 0)  # m x N x S
        if not (bool(torch.isfinite(Lq).all()) and bool(torch.isfinite(mean).all())):
            raise NanError("samples contain nans or infs")  # z is finite: res is iff these are
        res = Lq @ z + mean.unsqueeze(-1)  # batch x m x q x S
        res = res.permute(-1, *range(res.dim() - 3), -2, -3)  # S x batch x q x m
        return res.reshape(*S, *res.shape[1:])


def _logsumexp(x: Tensor, dim: int) -> Tensor:
    """``torch.logsumexp`` where it is finite (padded cells are ``-inf`` terms, which it
    handles), else BoTorch's infinity-safe version (a slice of ``-inf`` only, whose gradient
    torch's would make NaN): the same values, fewer autograd nodes per evaluation."""
    y = torch.logsumexp(x, dim=dim)
    if bool(torch.isfinite(y).all()):
        return y
    from botorch.utils.safe_math import logsumexp

    return logsumexp(x, dim=dim)


def _fused_kernel():  # type: ignore[no-untyped-def]
    """BoTorch's fused C++ log-area kernel (``None`` when it did not compile)."""
    from botorch.acquisition.multi_objective import logei

    return getattr(logei, "_C", None)
