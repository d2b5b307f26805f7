"""The exact marginal log likelihood of Assay's GPs on dense tensors, for fast fits.

GPyTorch evaluates ``ExactMarginalLogLikelihood`` through lazy kernel tensors, linear-operator
wrappers and a ``MultivariateNormal``; at the sizes of an ask (tens to a few hundred points)
that machinery, not the arithmetic, is most of the fit's time (profiled on the ``mixed4`` and
``hartmann6_2c`` asks of ``benchmarks/bo_quality.py``, issue 19). For the GPs
:func:`assay.platform.models.build_gp` builds — ``SingleTaskGP`` with a constant mean, an RBF
or Matern-5/2 kernel (optionally scaled), Gaussian noise (learned or fixed), no input
transform — :func:`dense_mll` computes the *same* objective directly (Rasmussen & Williams
2006, eq. 2.30, plus the log priors, divided by ``n`` as GPyTorch does)::

    (1/n) [ -1/2 r^T (K + N)^{-1} r - sum_i log L_ii - n/2 log 2 pi + sum_p log p(theta_p) ]

with ``r = y - c``, ``L`` the Cholesky factor of ``K + N``. It is differentiable in the GP's
raw parameters (the constraint transforms are applied by the modules' properties), so it
drops into BoTorch's ``fit_gpytorch_mll`` as its ``closure`` (same optimizer, same retries,
same optimum). :func:`supports_dense_mll` says whether a model has the supported form.

:func:`cholesky_factor` factorises a fitted GP's ``K + N`` once (memoized per GP and its
current hyperparameters) for the posteriors computed outside GPyTorch (the fit's usability
check, :mod:`assay.platform.generators.analytic_nei`), so an ask at thousands of points does
one ``O(n^3)`` factorisation per output instead of GPyTorch's plus its own.

Owns: :func:`dense_mll`, :func:`dense_mll_closure`, :func:`supports_dense_mll`,
:func:`cholesky_factor`.

May import: torch, gpytorch, botorch.
"""

from __future__ import annotations

import math
import weakref

import gpytorch
import torch
from botorch.models import SingleTaskGP
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.utils import get_parameters
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

#: Cholesky attempts with growing jitter before the evaluation fails (as GPyTorch's
#: ``psd_safe_cholesky``: no jitter first, then ``jitter * 10^k``).
MAX_CHOLESKY_TRIES = 4


def base_kernel(module: Kernel) -> Kernel:
    """The kernel inside a ``ScaleKernel`` (``module`` itself otherwise)."""
    return module.base_kernel if isinstance(module, ScaleKernel) else module


def supports_dense_mll(gp: object) -> bool:
    """Whether :func:`dense_mll` reproduces ``gp``'s exact marginal likelihood: a single-output
    ``SingleTaskGP`` on ``n x d`` inputs with a ``ConstantMean``, an RBF or Matern-5/2 kernel
    over all dimensions (optionally in a ``ScaleKernel``), Gaussian or fixed Gaussian noise, and
    no input transform."""
    if not isinstance(gp, SingleTaskGP) or gp.num_outputs != 1:
        return False
    if getattr(gp, "input_transform", None) is not None:
        return False
    if not isinstance(gp.mean_module, ConstantMean):
        return False
    if type(gp.likelihood) not in (GaussianLikelihood, FixedNoiseGaussianLikelihood):
        return False
    if not supports_dense_kernel(gp.covar_module):
        return False
    X = gp.train_inputs[0]
    return X.dim() == 2 and gp.train_targets.dim() == 1


def supports_dense_kernel(module: Kernel) -> bool:
    """Whether ``module`` (possibly in a ``ScaleKernel``) is an RBF or Matern-5/2 kernel over
    all input dimensions: the kernels :func:`stationary_kernel` evaluates."""
    base = base_kernel(module)
    if type(base) not in (RBFKernel, MaternKernel) or base.active_dims is not None:
        return False
    return not (isinstance(base, MaternKernel) and base.nu != 2.5)


def stationary_kernel(a: Tensor, b: Tensor, rbf: bool) -> Tensor:
    """The unit-scale kernel between lengthscale-scaled inputs ``a`` (``... x n x d``) and
    ``b`` (``... x m x d``): RBF ``exp(-r^2/2)`` or Matern-5/2 ``(1 + sqrt5 r + 5 r^2/3)
    exp(-sqrt5 r)`` (Rasmussen & Williams 2006, eqs. 4.9, 4.17), ``r = |a - b|``, with
    ``r^2`` expanded as ``|a|^2 + |b|^2 - 2 a.b`` (clamped at 0) so it is one matrix product."""
    sq = (
        (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
    ).clamp_min(0.0)
    if rbf:
        return torch.exp(-0.5 * sq)
    r = sq.clamp_min(1e-30).sqrt()
    return (1 + math.sqrt(5) * r + (5.0 / 3.0) * sq) * torch.exp(-math.sqrt(5) * r)


def kernel_matrix(module: Kernel, A: Tensor, B: Tensor) -> Tensor:
    """``k(A, B)`` for the kernels :func:`supports_dense_mll` accepts, differentiable in the
    hyperparameters (:func:`stationary_kernel` of the lengthscale-scaled inputs, times the
    output scale)."""
    base = base_kernel(module)
    ls = base.lengthscale.reshape(-1)
    k = stationary_kernel(A / ls, B / ls, isinstance(base, RBFKernel))
    if isinstance(module, ScaleKernel):
        k = module.outputscale * k
    return k


def _noise(gp: SingleTaskGP, n: int, like: Tensor) -> Tensor:
    lik = gp.likelihood
    if isinstance(lik, FixedNoiseGaussianLikelihood):
        return lik.noise.reshape(-1).to(like).expand(n)
    return lik.noise.reshape(-1).expand(n)


def robust_cholesky(A: Tensor, jitter_tries: int = MAX_CHOLESKY_TRIES - 1) -> Tensor:
    """Cholesky factor of ``A`` (or of a batch of matrices); on failure retried up to
    ``jitter_tries`` times with jitter ``j * 10^k`` on the diagonal, ``j`` GPyTorch's
    ``cholesky_jitter`` setting for the dtype (as ``psd_safe_cholesky``).

    Raises:
        torch.linalg.LinAlgError: still not positive definite (a ``RuntimeError``, which the
            fit's retry logic catches).
    """
    L, info = torch.linalg.cholesky_ex(A)
    if not bool((info != 0).any()):
        return L
    jitter = gpytorch.settings.cholesky_jitter.value(A.dtype)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    for k in range(jitter_tries):
        L, info = torch.linalg.cholesky_ex(A + jitter * 10**k * eye)
        if not bool((info != 0).any()):
            return L
    raise torch.linalg.LinAlgError("covariance not positive definite after jitter")


def dense_mll(gp: SingleTaskGP) -> Tensor:
    """``ExactMarginalLogLikelihood(gp.likelihood, gp)(gp(X), y)`` for a model that
    :func:`supports_dense_mll` (see the module docstring), as a differentiable scalar."""
    X, y = gp.train_inputs[0], gp.train_targets
    n = y.shape[-1]
    K = kernel_matrix(gp.covar_module, X, X)
    K = K + torch.diag_embed(_noise(gp, n, K))
    L = robust_cholesky(K)
    r = (y - gp.mean_module.constant.reshape(())).unsqueeze(-1)
    w = torch.linalg.solve_triangular(L, r, upper=False)
    value = -0.5 * (w * w).sum() - L.diagonal().log().sum() - 0.5 * n * math.log(2 * math.pi)
    for _, module, prior, closure, _ in gp.named_priors():
        value = value + prior.log_prob(closure(module)).sum()
    return value / n


def dense_mll_closure(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure:
    """A ``fit_gpytorch_mll`` closure: the negative :func:`dense_mll` of ``mll.model`` and its
    gradients in the parameters ``fit_gpytorch_mll_scipy`` optimizes (same names and order)."""
    gp = mll.model
    return ForwardBackwardClosure(
        forward=lambda: -dense_mll(gp), parameters=get_parameters(mll, requires_grad=True)
    )


#: ``gp -> (fingerprint, L)``: see :func:`cholesky_factor`.
_FACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fingerprint(gp: SingleTaskGP) -> tuple:
    """The GP's hyperparameter values (a handful of numbers; GPyTorch's setters write through
    ``.data``, which no version counter sees) and the identity, shape and in-place version of
    its buffers and training data: a refit, new hyperparameters or ``set_train_data`` change
    it."""
    values = tuple(v for p in gp.parameters() for v in p.detach().reshape(-1).tolist())
    tensors = [*gp.buffers(), *gp.train_inputs, gp.train_targets]
    return values, tuple((id(t), t._version, tuple(t.shape)) for t in tensors)


def cholesky_factor(gp: SingleTaskGP) -> Tensor:
    """The lower Cholesky factor of ``K + N`` (standardized units, no autograd) of a GP that
    :func:`supports_dense_mll`, computed once per GP and hyperparameter values.

    Raises:
        torch.linalg.LinAlgError: not positive definite even with jitter.
    """
    key = fingerprint(gp)
    hit = _FACTORS.get(gp)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        X = gp.train_inputs[0]
        K = kernel_matrix(gp.covar_module, X, X)
        L = robust_cholesky(K + torch.diag_embed(_noise(gp, X.shape[0], K)))
    _FACTORS[gp] = (key, L)
    return L
