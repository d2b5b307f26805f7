"""Non-myopic Bayesian optimization: multi-step lookahead EI optimized as one-shot trees.

Implements Jiang, Jiang, Balandat, Karrer, Gardner & Garnett, "Efficient Nonmyopic Bayesian
Optimization via One-Shot Multi-Step Trees" (NeurIPS 2020) on BoTorch's
``qMultiStepLookahead``: a ``k``-step lookahead policy values a point by the expected
improvement it earns now plus that of the best decisions ``k - 1`` steps later, each made after
fantasizing the outcomes of the earlier ones, and all decisions of the fantasy tree are
optimized jointly ("one-shot"). Registered as the generator ``"multi_step"``.

Where each piece lives:

* :mod:`~assay.platform.generators.multi_step.generator` — :class:`MultiStepGenerator` and
  its settings: the ask (budget-shortened horizon, tree optimization, batches, time budget);
* :mod:`~assay.platform.generators.multi_step.acquisition` — the lookahead acquisition
  function (:func:`build_multi_step_acquisition`);
* :mod:`~assay.platform.generators.multi_step.dense_tree` — the tree's value on dense tensors
  (:class:`DenseMultiStepLookahead`: rank-one fantasy updates of one Cholesky factor);
* :mod:`~assay.platform.generators.multi_step.incumbent` — each stage's ``best_f`` from the
  posterior mean (:class:`IncumbentPosteriorMean`), the workaround for two traps of BoTorch
  0.18's ``make_best_f``;
* :mod:`~assay.platform.generators.multi_step.kriging_believer` — pending points for analytic
  EI (:func:`condition_on_pending`);
* :mod:`~assay.platform.generators.multi_step.initial_trees` — starting trees whose later
  decisions begin at good next decisions (:func:`seeded_trees`);
* :mod:`~assay.platform.generators.multi_step.warm_start` — seeding each tree optimization
  from the previous optimal tree (:func:`warm_start_trees`, :func:`shifted_trees`).

This package re-exports their public names, so ``from assay.platform.generators.multi_step
import X`` works for each.

May import: what its modules may (torch, gpytorch, botorch, pydantic, and the
:mod:`assay.platform` modules below the generators, ``generators.base`` and
``generators.noisy_ei``); nothing of ``assay`` above :mod:`assay.platform`.

Example:
    >>> import assay
    >>> client = assay.Client()
    >>> exp = client.create_experiment(
    ...     name="lookahead",
    ...     parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
    ...     objective="y",
    ...     generator="multi_step",
    ...     generator_settings={"horizon": 2, "num_fantasies": [4]},
    ... )
    >>> [trial] = client.ask(exp.id)  # doctest: +SKIP
"""

from assay.platform.generators.multi_step.acquisition import (
    FANTASY_SAMPLERS,
    QuantileNormalSampler,
    build_multi_step_acquisition,
)
from assay.platform.generators.multi_step.dense_tree import (
    DenseMultiStepLookahead,
    supports_dense_tree,
)
from assay.platform.generators.multi_step.generator import (
    DEFAULT_FANTASIES,
    MAX_INIT_BATCH_LEAVES,
    MAX_TREE_LEAVES,
    MultiStepGenerator,
    MultiStepSettings,
    boltzmann_choice,
    effective_horizon,
)
from assay.platform.generators.multi_step.incumbent import (
    INCUMBENTS,
    IncumbentFixed,
    IncumbentObserved,
    IncumbentPosteriorMean,
    incumbent_mean,
    incumbent_observed,
)
from assay.platform.generators.multi_step.initial_trees import seeded_trees
from assay.platform.generators.multi_step.kriging_believer import condition_on_pending
from assay.platform.generators.multi_step.warm_start import (
    WARM_START_MODES,
    WarmStartMode,
    feasible_or_none,
    shifted_trees,
    stored_tree,
    tree_matches,
    warm_start_trees,
)

__all__ = [
    "DEFAULT_FANTASIES",
    "FANTASY_SAMPLERS",
    "INCUMBENTS",
    "MAX_INIT_BATCH_LEAVES",
    "MAX_TREE_LEAVES",
    "WARM_START_MODES",
    "DenseMultiStepLookahead",
    "IncumbentFixed",
    "IncumbentObserved",
    "IncumbentPosteriorMean",
    "MultiStepGenerator",
    "MultiStepSettings",
    "QuantileNormalSampler",
    "WarmStartMode",
    "boltzmann_choice",
    "build_multi_step_acquisition",
    "condition_on_pending",
    "effective_horizon",
    "feasible_or_none",
    "incumbent_mean",
    "incumbent_observed",
    "seeded_trees",
    "shifted_trees",
    "stored_tree",
    "supports_dense_tree",
    "tree_matches",
    "warm_start_trees",
]
