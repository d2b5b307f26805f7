"""Pareto fronts and hypervolumes of several objectives (pure tensors, no I/O).

Every objective is turned into a *maximized* quantity by its sign (``-y`` for a minimized
objective), so "``a`` dominates ``b``" means ``a >= b`` in every objective and ``a > b`` in at
least one. The hypervolume of a set of points ``Y`` with respect to a reference point ``r``
is the Lebesgue measure of the region they dominate that dominates ``r``
(Zitzler & Thiele 1998); it grows with every point that enlarges the front, which is why the
expected hypervolume improvement (Daulton et al. 2020, 2021) is the acquisition of
``noisy_ehvi``.

**Reference point.** An objective's ``threshold`` (see
:class:`~assay.platform.experiment.Objective`) is its coordinate of the reference point. An
omitted threshold is inferred from the data by :func:`infer_reference_point`: the worst value
of that objective over the current (feasible) Pareto front, less 10% of the front's range in
that objective (when the range is zero: 10% of the value's magnitude, or 0.1 when the value is
zero). This is the rule of Ax and BoTorch's ``infer_reference_point``; it puts every point of
the front strictly inside the dominated region, so each contributes to the hypervolume.

Owns: :func:`is_non_dominated`, :func:`hypervolume`, :func:`infer_reference_point`.

May import: torch, botorch and, of ``assay``, nothing above :mod:`assay.platform.space`.
"""

from __future__ import annotations

import torch
from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning
from botorch.utils.multi_objective.pareto import is_non_dominated as _botorch_non_dominated
from torch import Tensor

from assay.platform.space import DTYPE

#: Fraction of the front's range by which an inferred reference point lies below its nadir.
REFERENCE_POINT_SCALE = 0.1


def is_non_dominated(Y: Tensor) -> Tensor:
    """``n`` booleans: whether each row of the ``n x m`` (maximized) ``Y`` is on the Pareto
    front of the rows. Duplicates of a front point are all on the front."""
    if Y.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    return _botorch_non_dominated(Y.to(DTYPE), deduplicate=False)


def hypervolume(Y: Tensor, ref_point: Tensor) -> float:
    """The hypervolume dominated by the rows of ``Y`` (maximized) above ``ref_point``.

    Points that do not dominate the reference point add nothing. Exact (box decomposition,
    Yang et al. 2019 / Lacour et al. 2017), fast for the 2-4 objectives of an experiment.
    """
    Y = Y.to(DTYPE)
    ref = ref_point.to(DTYPE)
    if Y.shape[0] == 0:
        return 0.0
    Y = Y[(ref < Y).all(dim=-1)]
    if Y.shape[0] == 0:
        return 0.0
    return float(DominatedPartitioning(ref_point=ref, Y=Y).compute_hypervolume())


def infer_reference_point(front: Tensor, scale: float = REFERENCE_POINT_SCALE) -> Tensor:
    """The inferred reference point of a (maximized) front: ``nadir - scale * range``.

    ``nadir`` is the per-objective minimum over ``front`` and ``range`` its max minus min;
    an objective with zero range uses ``scale * |nadir|`` (``scale`` when ``nadir`` is 0).
    """
    front = front.to(DTYPE)
    lo, hi = front.min(dim=0).values, front.max(dim=0).values
    span = hi - lo
    span = torch.where(span > 0, span, lo.abs())
    span = torch.where(span > 0, span, torch.ones_like(span))
    return lo - scale * span
