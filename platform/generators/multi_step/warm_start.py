"""Warm starts of the one-shot tree optimization from the previous ask's optimal tree.

The optimal tree of each ask is kept in the generator state (JSON lists, :func:`stored_tree`)
and, when the next ask optimizes a tree of the same shape (:func:`tree_matches`), seeds that
optimization. Three modes, the ``warm_start_mode`` setting of ``multi_step``
(``benchmarks/multistep.py --study warmstart`` compares them):

* ``"botorch"``: BoTorch's ``warmstart_multistep`` alone: perturbed copies of the previous
  tree, its (just evaluated) root included;
* ``"shifted"``: those plus :func:`shifted_trees`, the previous tree moved one level up (its
  first-level nodes were the planned next decisions);
* ``"pool"`` (default): those plus ``num_restarts`` fresh raw-sample trees, so a warm start
  can add good trees but never crowd out the cold ones. The restarts are drawn from the pool
  by BoTorch's Boltzmann rule (``initialize_q_batch``; the best is always kept).

Starting trees are clamped to the unit cube and must satisfy the linear parameter constraints
(:func:`feasible_or_none`); when none does, the optimizer draws its starts itself.

Owns: :data:`WARM_START_MODES`, :func:`warm_start_trees`, :func:`shifted_trees`,
:func:`stored_tree`, :func:`tree_matches` and :func:`feasible_or_none`.

May import: torch, botorch and :mod:`assay.platform.space`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead, warmstart_multistep
from botorch.optim.initializers import gen_batch_initial_conditions, initialize_q_batch
from torch import Tensor

from assay.platform.space import SearchSpace

WarmStartMode = Literal["pool", "shifted", "botorch"]
#: The warm-start modes, default first.
WARM_START_MODES: tuple[WarmStartMode, ...] = ("pool", "shifted", "botorch")


def warm_start_trees(
    acqf: qMultiStepLookahead,
    space: SearchSpace,
    X_prev: Tensor,
    fantasies: Sequence[int],
    *,
    mode: WarmStartMode,
    num_restarts: int,
    raw_samples: int,
    init_limit: int,
) -> Tensor | None:
    """``num_restarts`` starting trees seeded by the previous optimal tree ``X_prev``.

    Args:
        acqf: The lookahead acquisition function about to be optimized.
        space: The search space (bounds and linear constraints).
        X_prev: ``q' x d`` previous optimal tree, the shape of ``acqf``'s tree.
        fantasies: ``[f_1, ..., f_{k-1}]`` of the tree.
        mode: ``"botorch"``, ``"shifted"`` or ``"pool"`` (see the module docstring).
        num_restarts: Trees to return.
        raw_samples: Perturbed copies (and, for ``"pool"``, raw trees) scored.
        init_limit: Trees scored per acquisition call.

    Returns:
        ``num_restarts x q' x d`` starting trees, or ``None`` when none satisfies the linear
        parameter constraints.
    """
    bounds = space.model_bounds()
    with torch.no_grad():
        ics = warmstart_multistep(
            acq_function=acqf,
            bounds=bounds,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            full_optimizer=X_prev.unsqueeze(0),
        )
        if mode == "botorch":
            return feasible_or_none(ics, space)
        parts = [ics, shifted_trees(X_prev, fantasies)]
        if mode == "pool":
            parts.append(
                gen_batch_initial_conditions(
                    acqf,
                    bounds,
                    q=acqf.get_augmented_q_batch_size(1),
                    num_restarts=num_restarts,
                    raw_samples=raw_samples,
                    options={"init_batch_limit": init_limit},
                    inequality_constraints=space.inequality_constraints(),
                )
            )
        pool = feasible_or_none(torch.cat(parts), space)
        if pool is None:
            return None
        return initialize_q_batch(pool, acqf(pool), n=num_restarts)[0]


def stored_tree(X_full: Tensor, horizon: int, fantasies: Sequence[int]) -> dict[str, Any]:
    """The JSON form of an optimal tree kept in the generator state (``state["tree"]``).

    Args:
        X_full: ``q' x d`` optimal tree.
        horizon: Its horizon ``k``.
        fantasies: Its ``k - 1`` fantasy counts.
    """
    return {
        "horizon": horizon,
        "num_fantasies": list(fantasies),
        "dim": int(X_full.shape[-1]),
        "X": X_full.tolist(),
    }


def tree_matches(tree: Any, horizon: int, fantasies: Sequence[int], dim: int) -> bool:
    """Whether a stored tree has the shape of the tree about to be optimized."""
    if not isinstance(tree, dict):
        return False
    X = tree.get("X")
    expected = 1 + sum(math.prod(fantasies[: i + 1]) for i in range(len(fantasies)))
    return (
        tree.get("horizon") == horizon
        and list(tree.get("num_fantasies", [])) == list(fantasies)
        and tree.get("dim") == dim
        and isinstance(X, list)
        and len(X) == expected
        and all(isinstance(r, list) and len(r) == dim for r in X)
    )


def shifted_trees(X_prev: Tensor, fantasies: Sequence[int]) -> Tensor:
    """The previous optimal tree moved one level up, once per first-level fantasy.

    After the previous root was evaluated, each of its first-level nodes ``x_2^j`` was the
    planned next decision for one fantasized outcome, which makes it a natural root now
    (BoTorch's ``warmstart_multistep`` instead keeps the old, just-evaluated root). Tree ``j``
    takes ``x_2^j`` as root and fills each level ``i`` with the old level-``i + 1``
    descendants of ``x_2^j`` (cycled to the level's size); the deepest level keeps the old
    deepest level. In BoTorch's layout a level-``i`` node's index is
    ``j_i f_{i-1} ... f_1 + ... + j_2 f_1 + j_1``, so the descendants of first-level node
    ``j`` are the indices ``= j (mod f_1)``.

    Args:
        X_prev: ``q' x d`` previous tree (``q' = 1 + f_1 + f_1 f_2 + ...``).
        fantasies: ``[f_1, ..., f_{k-1}]``.

    Returns:
        ``f_1 x q' x d`` candidate trees.
    """
    sizes = [math.prod(fantasies[:i]) for i in range(len(fantasies) + 1)]
    levels = list(torch.split(X_prev, sizes, dim=0))
    f1 = fantasies[0]
    trees = []
    for j in range(f1):
        parts = [levels[1][j : j + 1]]
        for i in range(1, len(levels)):
            if i + 1 < len(levels):
                below = levels[i + 1]
                desc = below[torch.arange(below.shape[0]) % f1 == j]
                idx = torch.arange(sizes[i]) % desc.shape[0]
                parts.append(desc[idx])
            else:
                parts.append(levels[i])
        trees.append(torch.cat(parts))
    return torch.stack(trees)


def feasible_or_none(X: Tensor, space: SearchSpace) -> Tensor | None:
    """The trees of ``X`` (clamped to the unit cube) that satisfy the linear parameter
    constraints, or ``None`` when none does (the optimizer then draws starts itself).

    Args:
        X: ``b x q' x d`` trees.
        space: The search space whose constraints apply.
    """
    constraints = space.inequality_constraints()
    X = X.clamp(0.0, 1.0)
    if not constraints:
        return X
    ok = torch.ones(X.shape[0], dtype=torch.bool)
    for idx, coef, rhs in constraints:
        ok &= ((X[..., idx] * coef).sum(-1) >= rhs - 1e-9).all(dim=-1)
    return X[ok] if bool(ok.any()) else None
