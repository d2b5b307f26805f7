"""Starting trees for the one-shot optimization whose later decisions start at sensible points.

BoTorch draws a raw starting tree uniformly: the root *and every later-stage decision*
(fantasy node) at random. A random later decision sits where the next EI is small, so the tree
is valued by little more than its root's EI, and a few L-BFGS-B iterations cannot carry
dozens of nodes to where they belong: the one-shot optimum then stops short of the nested
optimum (``benchmarks/multistep_diagnosis.py --exp oneshot``), which Jiang et al. (2020)
prove equal. Here the root is drawn uniformly (scrambled Sobol) and each later decision is
started at one of a few good *next* decisions: the best points of the current EI surface (the
next decision after a disappointing outcome) or a jittered copy of its own root (after a good
outcome the next decision is near the root). The raw trees are scored by the lookahead value
and the restarts drawn from them by BoTorch's Boltzmann rule (``initialize_q_batch``).

Owns: :func:`seeded_trees`.

May import: torch, botorch and :mod:`assay.platform.space`.
"""

from __future__ import annotations

import torch
from botorch.acquisition.analytic import ExpectedImprovement
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead
from torch import Tensor
from torch.quasirandom import SobolEngine

from assay.platform.space import SearchSpace

#: Good next decisions each later node may start at (the best points of the current EI).
TOP_POINTS = 8
#: Standard deviation (unit cube) of the jitter added to each started node.
JITTER = 0.02


def seeded_trees(
    acqf: qMultiStepLookahead,
    space: SearchSpace,
    raw_samples: int,
    *,
    seed: int,
) -> Tensor:
    """``raw_samples`` raw trees: uniform roots, later decisions at good next decisions.

    Args:
        acqf: The lookahead acquisition function (its model and first-stage incumbent).
        space: The search space (bounds: the unit cube in model space).
        raw_samples: Trees to draw.
        seed: Seeds the Sobol draws and the random assignment.

    Returns:
        ``raw_samples x q' x d`` trees in the unit cube (linear constraints not yet checked).
    """
    d = space.model_bounds().shape[-1]
    q_aug = acqf.get_augmented_q_batch_size(1)
    g = torch.Generator().manual_seed(seed)
    dtype = space.model_bounds().dtype
    sobol = SobolEngine(d, scramble=True, seed=seed)
    roots = sobol.draw(raw_samples, dtype=dtype)
    pool = sobol.draw(max(256, raw_samples), dtype=dtype)
    with torch.no_grad():
        kw = acqf._valfunc_argfacs[0](model=acqf.model, X=None)
        ei = ExpectedImprovement(acqf.model, **kw)(pool.unsqueeze(-2))
    top = pool[ei.topk(min(TOP_POINTS, pool.shape[0])).indices]  # k x d
    n_later = q_aug - 1
    # each later node: one of the top points, or (with the same chance as one of them) its root
    choice = torch.randint(0, top.shape[0] + 1, (raw_samples, n_later), generator=g)
    later = torch.where(
        (choice == top.shape[0]).unsqueeze(-1),
        roots.unsqueeze(1).expand(-1, n_later, -1),
        top[choice.clamp_max(top.shape[0] - 1)],
    )
    later = later + JITTER * torch.randn(later.shape, generator=g, dtype=dtype)
    return torch.cat([roots.unsqueeze(1), later], dim=1).clamp(0.0, 1.0)
