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

Two alternatives, the ``incumbent`` setting of ``multi_step`` (measured by
``benchmarks/multistep_diagnosis.py``):

* ``"observed"`` (:class:`IncumbentObserved`): each stage's best *observed* value, fantasized
  observations included — what the authors' utility ``max y in D`` implies (Jiang et al. 2020,
  eq. 1) and what BoTorch's ``make_best_f`` means to compute, in the data's own units;
* ``"root"`` (:class:`IncumbentFixed`): the root's best observed value at every stage.

Owns: :class:`IncumbentPosteriorMean`, :class:`IncumbentObserved`, :class:`IncumbentFixed`,
:func:`incumbent_mean`, :func:`incumbent_observed` and :data:`INCUMBENTS`.

May import: torch and botorch; nothing of ``assay``.
"""

from __future__ import annotations

from typing import Any, Literal

from botorch.models.model import Model
from torch import Tensor

IncumbentKind = Literal["posterior_mean", "observed", "root"]
#: The ``incumbent`` choices of ``multi_step``.
INCUMBENTS: tuple[IncumbentKind, ...] = ("posterior_mean", "observed", "root")


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


def incumbent_observed(model: Model, maximize: bool = True) -> Tensor:
    """Best *observed* value (untransformed training targets), ``batch_shape x 1``.

    For a fantasy model the fantasized observations count, as in the authors' utility
    ``u(D) = max_{y in D} y`` (Jiang et al. 2020, eq. 1).

    Args:
        model: A single-output GP (possibly a batched fantasy model).
        maximize: ``max`` if ``True``, else ``min``.
    """
    Y = model.train_targets.unsqueeze(-1)  # batch_shape x n x 1, outcome-transformed
    tf = getattr(model, "outcome_transform", None)
    if tf is not None:
        Y, _ = tf.untransform(Y)
    return Y.amax(dim=-2) if maximize else Y.amin(dim=-2)


class IncumbentObserved(IncumbentPosteriorMean):
    """Argument factory: ``best_f`` = best observed value of the stage's model (fantasies
    included), ``batch_shape x 1``."""

    def __call__(self, model: Model, X: Tensor) -> dict[str, Any]:
        return {"best_f": incumbent_observed(model, self.maximize), "maximize": self.maximize}


class IncumbentFixed(IncumbentPosteriorMean):
    """Argument factory: the same ``best_f`` (the root's) at every stage.

    Args:
        best_f: The incumbent, a scalar tensor.
        maximize: Whether the objective is maximized.
    """

    def __init__(self, best_f: Tensor, maximize: bool = True) -> None:
        super().__init__(maximize)
        self.best_f = best_f.detach().reshape(1)

    def __call__(self, model: Model, X: Tensor) -> dict[str, Any]:
        return {"best_f": self.best_f, "maximize": self.maximize}


def incumbent_factory(
    incumbent: IncumbentKind, root_best: Tensor, maximize: bool
) -> IncumbentPosteriorMean:
    """The stage-value argument factory for ``incumbent``: :class:`IncumbentPosteriorMean`,
    :class:`IncumbentObserved`, or :class:`IncumbentFixed` at ``root_best`` (``"root"``)."""
    if incumbent == "posterior_mean":
        return IncumbentPosteriorMean(maximize)
    if incumbent == "observed":
        return IncumbentObserved(maximize)
    return IncumbentFixed(root_best, maximize)
