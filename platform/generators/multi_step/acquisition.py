"""The ``k``-step lookahead acquisition function (Jiang et al., NeurIPS 2020).

A ``k``-step lookahead policy values a point ``x_1`` by the expected improvement it earns now
*plus* the expected improvement of the best decisions ``k - 1`` steps later, each made after
fantasizing the outcomes of the earlier ones (their eq. 2-4)::

    v_k(x_1 | D) = EI(x_1 | D)
                   + E_{y_1 ~ p(y | x_1, D)} [ max_{x_2} v_{k-1}(x_2 | D + (x_1, y_1)) ]

The nested expectations are replaced by ``m_j`` fantasized outcomes per level (scrambled Sobol
normal samples, as BoTorch does, or with ``fantasy_sampler="quantile"`` the ``m_j`` equally
weighted normal quantiles ``Phi^-1((i + 1/2) / m_j)``, a deterministic quadrature in the spirit
of the authors' Gauss-Hermite points), the nested maximizations by one decision variable per node
of the resulting scenario tree: BoTorch's ``qMultiStepLookahead`` evaluates the whole tree of
``q' = 1 + m_1 + m_1 m_2 + ...`` points at once. Every stage's value function is analytic
``ExpectedImprovement`` against the stage's incumbent (``incumbent``: see
:mod:`~assay.platform.generators.multi_step.incumbent`). For Assay's GPs the tree is evaluated
on dense tensors (:mod:`~assay.platform.generators.multi_step.dense_tree`: the same value,
without GPyTorch's fantasy models, with exact gradients).

Horizon ``k`` counts *decisions*, as in the paper ("2-step", "3-step"): ``k = 1`` is plain
(log) EI, ``k = 2`` adds one lookahead level with ``num_fantasies = [m_1]``, ``k = 3`` two
levels (``[m_1, m_2]``). BoTorch counts the lookahead levels only (``batch_sizes`` has
``k - 1`` entries and ``valfunc_cls`` has ``k`` entries).

Owns: :func:`build_multi_step_acquisition`, :class:`QuantileNormalSampler` and
:data:`FANTASY_SAMPLERS`.

May import: torch, botorch, :mod:`assay.platform.generators.multi_step.incumbent` and
:mod:`assay.platform.generators.multi_step.dense_tree`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import ExpectedImprovement, LogExpectedImprovement
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead
from botorch.models.model import Model
from botorch.posteriors import Posterior
from botorch.sampling import SobolQMCNormalSampler

from assay.platform.generators.multi_step.dense_tree import (
    DenseMultiStepLookahead,
    supports_dense_tree,
)
from assay.platform.generators.multi_step.incumbent import (
    IncumbentKind,
    incumbent_factory,
    incumbent_mean,
    incumbent_observed,
)

FantasySampler = Literal["sobol", "quantile"]
#: The ``fantasy_sampler`` choices of ``multi_step``.
FANTASY_SAMPLERS: tuple[FantasySampler, ...] = ("sobol", "quantile")


class QuantileNormalSampler(SobolQMCNormalSampler):
    """``m`` equally weighted standard-normal quantiles ``Phi^-1((i + 1/2) / m)`` as base
    samples (one output value per fantasy): a deterministic, symmetric quadrature of the
    outcome distribution (mean exactly 0), unlike a scrambled Sobol draw of size ``m``."""

    def _construct_base_samples(self, posterior: Posterior) -> None:
        super()._construct_base_samples(posterior)
        base = self.base_samples
        m = self.sample_shape.numel()
        if base is None or base[0].numel() != 1:  # several outputs per fantasy: keep Sobol
            return
        p = (torch.arange(m, dtype=base.dtype, device=base.device) + 0.5) / m
        q = torch.distributions.Normal(0.0, 1.0).icdf(p)
        self.register_buffer("base_samples", q.reshape(base.shape))


def build_multi_step_acquisition(
    model: Model,
    horizon: int,
    num_fantasies: Sequence[int],
    *,
    maximize: bool = True,
    seed: int = 0,
    incumbent: IncumbentKind = "posterior_mean",
    fantasy_sampler: FantasySampler = "sobol",
    dense: bool = True,
) -> AcquisitionFunction:
    """The acquisition function of a ``horizon``-step lookahead policy.

    ``horizon == 1`` gives analytic log-EI (same maximizer as EI, better numerics); otherwise a
    ``qMultiStepLookahead`` with EI at each of its ``horizon`` stages and ``best_f`` from
    :class:`IncumbentPosteriorMean`.

    Args:
        model: A fitted single-output GP on the unit cube.
        horizon: Decisions in the tree (``k``).
        num_fantasies: ``horizon - 1`` fantasy counts, one per lookahead level.
        maximize: Whether the objective is maximized.
        seed: Seeds the fantasy samplers (stage ``i`` uses ``seed + i``).
        incumbent: Each stage's ``best_f``: ``"posterior_mean"``, ``"observed"`` (fantasies
            included) or ``"root"`` (the root's best observed value at every stage).
        fantasy_sampler: ``"sobol"`` or ``"quantile"`` (see the module docstring).
        dense: Evaluate the tree on dense tensors
            (:class:`~assay.platform.generators.multi_step.dense_tree.DenseMultiStepLookahead`:
            the same value, exact gradients, a fraction of the cost) when the model is a GP it
            supports; ``False``: BoTorch's ``qMultiStepLookahead`` evaluation.

    Example:
        >>> acqf = build_multi_step_acquisition(gp, 2, [8])  # doctest: +SKIP
        >>> q_aug = acqf.get_augmented_q_batch_size(1)  # 1 + 8 = 9
    """
    if horizon < 1 or len(num_fantasies) != horizon - 1:
        raise ValueError(f"horizon {horizon} needs {horizon - 1} fantasy counts")
    root_best = (incumbent_mean if incumbent == "posterior_mean" else incumbent_observed)(
        model, maximize
    ).detach()
    if horizon == 1:
        return LogExpectedImprovement(model, best_f=root_best.squeeze(), maximize=maximize)
    sampler_cls = QuantileNormalSampler if fantasy_sampler == "quantile" else SobolQMCNormalSampler
    samplers = [sampler_cls(torch.Size([m]), seed=seed + i) for i, m in enumerate(num_fantasies)]
    if dense and supports_dense_tree(model):
        return DenseMultiStepLookahead(model, samplers, incumbent, root_best, maximize)
    factory = incumbent_factory(incumbent, root_best, maximize)
    return qMultiStepLookahead(
        model=model,
        batch_sizes=[1] * (horizon - 1),
        samplers=samplers,
        valfunc_cls=[ExpectedImprovement] * horizon,
        valfunc_argfacs=[factory] * horizon,
    )
