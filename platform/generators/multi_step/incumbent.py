"""The incumbent of every lookahead stage: the best posterior mean (a BoTorch 0.18 workaround).

Multi-step lookahead EI (Jiang et al., NeurIPS 2020) uses analytic ``ExpectedImprovement`` as
the value function of every stage, each against the incumbent of that stage's (fantasy)
model. BoTorch's ``qMultiStepLookahead`` asks an *argument factory* for each stage's
``best_f``; its own, ``make_best_f``, cannot serve, for two reasons (both pinned by tests in
``tests/platform/generators/test_multi_step_generator.py``, which fail when BoTorch changes):

* it returns ``best_f`` without the trailing output dimension that analytic EI's posterior
  mean keeps (``batch_shape x 1``), which fails with a tensor size mismatch as soon as there
  are fantasies;
* it reads ``model.train_targets``, which are *standardized* when the model has an outcome
  transform (Assay's GPs have ``Standardize``), while EI compares against untransformed
  posterior means.

:class:`IncumbentPosteriorMean` returns, for the model of a stage, the largest *posterior
mean* at the model's training inputs with ``keepdim=True``. With noisy observations the best
raw value is biased upwards; the posterior mean of the incumbent is not (the argument of
Letham et al. 2019 for noisy EI), and it treats fantasized observations, which carry
observation noise, the same way. With noise-free data it equals the best observed value up
to the GP's jitter.

Owns: :class:`IncumbentPosteriorMean` and :func:`incumbent_mean`.

May import: torch and botorch; nothing of ``assay``.
"""

from __future__ import annotations

from typing import Any

from botorch.models.model import Model
from torch import Tensor


class IncumbentPosteriorMean:
    """Argument factory for EI value functions: ``best_f`` = best posterior mean at the data.

    For the (possibly fantasized, batched) model of a stage with training inputs ``X_train``
    (``batch_shape x n x d``, fantasized points included), returns
    ``best_f = max_i mu(X_train_i)`` with shape ``batch_shape x 1`` (``keepdim``), which is the
    shape analytic EI's posterior mean has (``batch_shape x m``, ``m = 1``). ``maximize=False``
    takes the minimum instead and tells EI to minimize.

    Args:
        maximize: Whether the objective is maximized.

    Example:
        >>> factory = IncumbentPosteriorMean(maximize=True)
        >>> factory(model=gp, X=X)["best_f"].shape  # doctest: +SKIP
        torch.Size([1])
    """

    def __init__(self, maximize: bool = True) -> None:
        self.maximize = maximize

    def __call__(self, model: Model, X: Tensor) -> dict[str, Any]:
        return {"best_f": incumbent_mean(model, self.maximize), "maximize": self.maximize}


def incumbent_mean(model: Model, maximize: bool = True) -> Tensor:
    """Best posterior mean over a single-output GP's training inputs, ``batch_shape x 1``.

    Args:
        model: A single-output GP (possibly a batched fantasy model).
        maximize: ``max`` if ``True``, else ``min``.
    """
    X_train = model.train_inputs[0]
    mean = model.posterior(X_train).mean  # batch_shape x n x 1
    return mean.amax(dim=-2) if maximize else mean.amin(dim=-2)
