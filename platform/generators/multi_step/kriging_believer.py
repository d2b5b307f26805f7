"""Pending points for analytic lookahead: the kriging believer.

The lookahead tree's value functions are analytic EI, which cannot take ``X_pending``. Pending
trials (running or queued, and the Sobol points of the same ask) are handled instead by the
*kriging believer* heuristic (Ginsbourger, Le Riche & Carraro 2010): the GP is conditioned on
them with their posterior mean as observation. That removes their uncertainty without moving
the mean, so the tree does not re-propose them and knows their neighbourhood will be explored.

Owns: :func:`condition_on_pending`.

May import: torch, gpytorch and botorch; nothing of ``assay``.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.models.model import Model
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from torch import Tensor


def condition_on_pending(model: Model, X_pending: Tensor) -> Model:
    """Kriging believer: condition ``model`` on ``(X_pending, posterior mean)``.

    The mean is unchanged, the variance at and near pending points shrinks as if they had
    been observed with the model's noise level.

    Args:
        model: A single-output ``SingleTaskGP`` in eval mode.
        X_pending: ``p x d`` model-space points.

    Example:
        >>> believed = condition_on_pending(gp, X_pending)  # doctest: +SKIP
        >>> after = believed.posterior(X_pending).variance  # doctest: +SKIP
        >>> bool((after < gp.posterior(X_pending).variance).all())  # doctest: +SKIP
        True
    """
    with torch.no_grad():
        Y = model.posterior(X_pending).mean.detach()  # p x 1, original scale
    kwargs: dict[str, Any] = {}
    if isinstance(model.likelihood, FixedNoiseGaussianLikelihood):
        # noise is expected in the outcome-transformed space: the mean training noise
        kwargs["noise"] = model.likelihood.noise.mean().expand(Y.shape).clone()
    return model.condition_on_observations(X_pending, Y, **kwargs)
