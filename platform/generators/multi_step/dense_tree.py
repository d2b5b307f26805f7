"""The lookahead tree's value on dense tensors: rank-one fantasy updates of one factorisation.

BoTorch's ``qMultiStepLookahead`` values a tree by building, at every evaluation, a batched
GPyTorch *fantasy model* per level (``fantasize``: a deep copy of the GP, a new prediction
strategy with ``cat_rows`` updates of lazy linear operators) and an ``ExpectedImprovement``
object per stage whose incumbent is a posterior over the fantasy model's training inputs. At
the sizes of an ask (a GP on tens of points, trees of 9-21 nodes) that bookkeeping is nearly
all of a ``multi_step`` ask: profiled on a 2-D horizon-2 ask, ``fantasize`` took half of each
evaluation and the stage values' incumbents a third (issue 20, ``PROGRESS.md``).

The arithmetic underneath is small. Conditioning a GP on data ``D`` gives a GP with mean
``m(x) = c + k(x, X) K^{-1} (y - c)`` and covariance ``C(x, x') = k(x, x') - k(x, X) K^{-1}
k(X, x')`` (``K = k(X, X) + N``; Rasmussen & Williams 2006, eqs. 2.23-2.24). Fantasizing one
observation at ``a`` from that posterior, ``y_a = m(a) + lambda z`` with ``lambda^2 = C(a, a) +
N_a`` (observation noise included, as BoTorch's ``fantasize``), and conditioning on it is a
rank-one update (the block Cholesky factor of ``K`` bordered by ``a``)::

    g(x)    = C(x, a) / lambda
    m'(x)   = m(x) + g(x) z
    C'(x, x') = C(x, x') - g(x) g(x')

so every stage of the tree needs only the base posterior mean and covariance among the tree's
nodes and the training inputs (one triangular solve against the fitted GP's Cholesky factor,
computed once per ask) and ``k - 1`` rank-one updates along each root-to-leaf path. Each stage
value is analytic EI (in the data's units: ``Standardize`` is undone) against the stage's
incumbent, as :mod:`~assay.platform.generators.multi_step.acquisition` configures BoTorch:
the best posterior mean over the stage model's training inputs (fantasized points included),
the best observed value (fantasies included) or the root's fixed value; the value of the tree
is the root's EI plus the equally weighted average of the later stages' EI over the fantasy
paths (Jiang et al. 2020, eqs. 2-4), with the same fantasy base samples as BoTorch's samplers
(collapsed across subtrees).

The value equals BoTorch's to rounding; its gradient is the exact derivative of that value.
(BoTorch's autograd gradient is not the derivative of its own value at the fantasized nodes:
at the root, and at every fantasized node from horizon 3 on, it differs from central
differences of BoTorch's value by as much as the gradient itself, signs included (measured
with and without ``gpytorch.settings.detach_test_caches(False)``); this one equals those
differences to ~1e-9. ``tests/platform/generators/test_multi_step_dense.py`` checks the
latter and pins BoTorch's discrepancy at the root.)

Owns: :class:`DenseMultiStepLookahead` and :func:`supports_dense_tree`.

May import: torch, gpytorch, botorch, :mod:`assay.platform.dense_mll` and
:mod:`assay.platform.generators.multi_step.incumbent`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from botorch.acquisition.analytic import ExpectedImprovement
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.sampling import MCSampler
from botorch.utils.transforms import t_batch_mode_transform
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.settings import min_variance
from torch import Tensor

from assay.platform.dense_mll import (
    base_kernel,
    robust_cholesky,
    stationary_kernel,
    supports_dense_mll,
)
from assay.platform.generators.multi_step.incumbent import IncumbentKind, incumbent_factory

#: Smallest posterior variance (data units) EI divides by, as BoTorch's analytic EI.
EI_MIN_VAR = 1e-12
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def supports_dense_tree(model: object) -> bool:
    """Whether :class:`DenseMultiStepLookahead` reproduces BoTorch's tree value for ``model``:
    a GP that :func:`~assay.platform.dense_mll.supports_dense_mll` accepts (Assay's GPs,
    possibly conditioned on pending points), with no outcome transform or a one-output
    ``Standardize``, not itself a batch of fantasy models."""
    if not supports_dense_mll(model):
        return False
    assert isinstance(model, SingleTaskGP)
    tf = getattr(model, "outcome_transform", None)
    if tf is not None and not (isinstance(tf, Standardize) and tf._m == 1):
        return False
    return model.train_targets.dim() == 1


def _ei(mean: Tensor, var: Tensor, best: Tensor, maximize: bool) -> Tensor:
    """Analytic EI ``sigma (phi(u) + u Phi(u))``, ``u = (mean - best) / sigma`` (negated when
    minimizing); ``var`` clamped at :data:`EI_MIN_VAR` (Jones et al. 1998)."""
    sigma = var.clamp_min(EI_MIN_VAR).sqrt()
    u = (mean - best) / sigma
    if not maximize:
        u = -u
    return sigma * (torch.exp(-0.5 * u * u) * _INV_SQRT_2PI + u * torch.special.ndtr(u))


class DenseMultiStepLookahead(qMultiStepLookahead):
    """``qMultiStepLookahead`` with analytic EI stage values, evaluated on dense tensors.

    A drop-in for the BoTorch object :func:`~assay.platform.generators.multi_step.acquisition.
    build_multi_step_acquisition` would build (same tree layout, samplers, ``extract_candidates``
    and helpers, which it inherits); only :meth:`forward` differs (see the module docstring).
    :meth:`botorch_forward` is BoTorch's evaluation of the same tree, for checks.

    Args:
        model: A fitted GP that :func:`supports_dense_tree` accepts, in eval mode.
        samplers: One fantasy sampler per lookahead level (their base samples are used).
        incumbent: ``"posterior_mean"``, ``"observed"`` or ``"root"`` (see
            :mod:`~assay.platform.generators.multi_step.incumbent`).
        root_best: The root's incumbent (data units), used by ``"root"`` at every stage.
        maximize: Whether the objective is maximized.

    Example:
        >>> acqf = DenseMultiStepLookahead(gp, samplers, "posterior_mean", best, False)  # doctest: +SKIP
        >>> acqf(torch.rand(4, 9, 2)).shape  # doctest: +SKIP
        torch.Size([4])
    """

    def __init__(
        self,
        model: SingleTaskGP,
        samplers: Sequence[MCSampler],
        incumbent: IncumbentKind,
        root_best: Tensor,
        maximize: bool,
    ) -> None:
        if not supports_dense_tree(model):
            raise ValueError("the model is not a GP the dense lookahead supports")
        factory = incumbent_factory(incumbent, root_best, maximize)
        k = len(samplers) + 1
        super().__init__(
            model=model,
            batch_sizes=[1] * (k - 1),
            samplers=list(samplers),
            valfunc_cls=[ExpectedImprovement] * k,
            valfunc_argfacs=[factory] * k,
        )
        self.incumbent = incumbent
        self.maximize = maximize
        self.horizon = k
        with torch.no_grad():
            self._precompute(model, root_best)

    # -- set-up (once per ask) -------------------------------------------------------------
    def _precompute(self, gp: SingleTaskGP, root_best: Tensor) -> None:
        X = gp.train_inputs[0].detach()
        y = gp.train_targets.detach()  # outcome-transformed (standardized) units
        n = X.shape[0]
        dtype = X.dtype
        module = gp.covar_module
        base = base_kernel(module)
        self._rbf = isinstance(base, RBFKernel)
        self._ls = base.lengthscale.detach().reshape(-1).to(dtype)
        self._scale = float(module.outputscale.detach()) if isinstance(module, ScaleKernel) else 1.0
        lik = gp.likelihood
        noise = lik.noise.detach().reshape(-1).to(dtype)
        noise = noise.expand(n) if noise.numel() == 1 else noise
        # observation noise of a fantasy (standardized units): BoTorch's ``fantasize`` uses the
        # mean training noise of a fixed-noise GP, the inferred noise level otherwise
        self._fantasy_noise = float(noise.mean()) if isinstance(
            lik, FixedNoiseGaussianLikelihood
        ) else float(noise[0])  # fmt: skip
        c = float(gp.mean_module.constant.detach().reshape(()))
        Kxx = self._kernel(X, X)
        L = robust_cholesky(Kxx + torch.diag_embed(noise))
        w = torch.linalg.solve_triangular(L, (y - c).unsqueeze(-1), upper=False)  # L^-1 (y - c)
        alpha = torch.linalg.solve_triangular(L.T, w, upper=True).squeeze(-1)  # K^-1 (y - c)
        self._X, self._L, self._w, self._c, self._n = X, L, w.squeeze(-1), c, n
        self._noise = noise
        self._mean_X = c + Kxx @ alpha  # posterior mean at the training inputs
        tf = getattr(gp, "outcome_transform", None)
        if tf is not None:
            self._y_mean = float(tf.means.reshape(()))
            self._y_std = float(tf.stdvs.reshape(()))
        else:
            self._y_mean, self._y_std = 0.0, 1.0
        self._y_obs = self._y_mean + self._y_std * y  # observed values, data units
        self._root_best = root_best.detach().reshape(()).to(dtype)
        self._min_var = min_variance.value(dtype)
        # fantasy base samples z (one per fantasy of each level), as BoTorch's samplers draw
        # them for a one-point, one-output posterior (collapsed over the tree's batch dims)
        probe = gp.posterior(X[:1])
        self._z = []
        for sampler in self.samplers:
            sampler(probe)  # draws (and keeps) its base samples
            self._z.append(sampler.base_samples.detach().reshape(-1).to(dtype))

    def _kernel(self, A: Tensor, B: Tensor) -> Tensor:
        """``k(A, B)`` (RBF or Matern-5/2 with the fitted lengthscales and outputscale)."""
        return self._scale * stationary_kernel(A / self._ls, B / self._ls, self._rbf)

    # -- evaluation --------------------------------------------------------------------------
    def botorch_forward(self, X: Tensor) -> Tensor:
        """BoTorch's ``qMultiStepLookahead`` evaluation of the same trees (``b x q' x d``)."""
        return super().forward(X)

    @t_batch_mode_transform()
    def forward(self, X: Tensor) -> Tensor:
        """Tree values for ``b x q' x d`` trees (BoTorch's layout), shape ``b``."""
        if self.X_pending is not None:  # not used by Assay; keep BoTorch's semantics
            return super().forward(X)
        batch = X.shape[:-2]
        T = X.reshape(-1, *X.shape[-2:])  # b x q' x d
        b, q = T.shape[0], T.shape[1]
        n, f = self._n, self.num_fantasies
        # base posterior among training inputs and nodes: A = [X_train; tree nodes]
        kXT = self._kernel(self._X, T)  # b x n x q'
        U = torch.linalg.solve_triangular(self._L, kXT, upper=False)  # L^-1 k(X, T)
        mean_T = self._c + (U * self._w.unsqueeze(-1)).sum(-2)  # b x q'
        C_TT = self._kernel(T, T) - U.transpose(-1, -2) @ U  # b x q' x q'
        # C(X, T) = k(X, T) - k(X, X) K^-1 k(X, T) = N K^-1 k(X, T)  (K = k(X, X) + N)
        C_XT = self._noise.unsqueeze(-1) * torch.linalg.solve_triangular(
            self._L.T, U, upper=True
        )  # b x n x q'
        mean_A = torch.cat([self._mean_X.expand(b, n), mean_T], dim=-1)  # b x P
        C_AT = torch.cat([C_XT, C_TT], dim=-2).permute(2, 0, 1)  # q' x b x P
        diag_T = C_TT.diagonal(dim1=-2, dim2=-1).transpose(0, 1)  # q' x b
        # node indices per level, shaped f_s x ... x f_1 (BoTorch's layout of level s)
        idx, start = [], 0
        for s in range(self.horizon):
            size = math.prod(f[:s])
            shape = list(reversed(f[:s]))
            idx.append(torch.arange(start, start + size).reshape(shape) if shape else
                       torch.tensor(start))  # fmt: skip
            start += size
        if start != q:
            raise ValueError(f"trees of {q} nodes, expected {start}")
        sy, my = self._y_std, self._y_mean
        gs: list[Tensor] = []  # g_r over A, batch f_r x ... x f_1 x b x P
        zs: list[Tensor] = []  # z of level r + 1, shaped to broadcast against g_r's batch
        fantasy_obs: list[Tensor] = []  # fantasized observations (data units)
        total = torch.zeros(b, dtype=T.dtype)
        for s in range(self.horizon):
            node = idx[s]
            mean_all = mean_A
            for g, z in zip(gs, zs, strict=True):
                mean_all = mean_all + g * z
            batch_s = (*node.shape, b)
            gather_at = (n + node).unsqueeze(-1).expand(batch_s).unsqueeze(-1)
            m_node = mean_all.expand(*batch_s, -1).gather(-1, gather_at).squeeze(-1)
            g_node = [g.expand(*batch_s, -1).gather(-1, gather_at).squeeze(-1) for g in gs]
            v_node = diag_T[node]
            for gn in g_node:
                v_node = v_node - gn * gn
            mean_o = my + sy * m_node
            var_o = sy * sy * v_node.clamp_min(self._min_var)
            best = self._incumbent(s, mean_all, idx, n, batch_s, fantasy_obs)
            ei = _ei(mean_o, var_o, best, self.maximize)
            total = total + ei.reshape(-1, b).mean(0)
            if s + 1 < self.horizon:
                lam = (v_node + self._fantasy_noise).clamp_min(self._min_var).sqrt()
                cov = C_AT[node]  # batch_s x P
                for g, gn in zip(gs, g_node, strict=True):
                    cov = cov - g * gn.unsqueeze(-1)
                gs.append(cov / lam.unsqueeze(-1))
                z = self._z[s].reshape(-1, *([1] * (len(batch_s) + 1)))
                zs.append(z)
                fantasy_obs.append(my + sy * (m_node + lam * z.squeeze(-1)))
        return total.reshape(batch)

    def _incumbent(
        self,
        s: int,
        mean_all: Tensor,
        idx: list[Tensor],
        n: int,
        batch_s: tuple[int, ...],
        fantasy_obs: list[Tensor],
    ) -> Tensor:
        """Stage ``s``'s ``best_f`` (data units), broadcastable to ``batch_s``."""
        pick = torch.amax if self.maximize else torch.amin
        if self.incumbent == "root":
            return self._root_best
        if self.incumbent == "observed":
            best = pick(self._y_obs)
            for obs in fantasy_obs:  # the path's fantasized observations
                best = torch.maximum(best, obs) if self.maximize else torch.minimum(best, obs)
            return best
        # posterior mean at the stage model's training inputs: the data and the path's nodes
        best = pick(mean_all[..., :n], dim=-1)
        for r in range(s):
            at = (n + idx[r]).unsqueeze(-1).expand(batch_s).unsqueeze(-1)  # the level-r ancestor
            m_r = mean_all.expand(*batch_s, -1).gather(-1, at).squeeze(-1)
            best = torch.maximum(best, m_r) if self.maximize else torch.minimum(best, m_r)
        return self._y_mean + self._y_std * best
