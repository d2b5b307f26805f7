"""Acquisition optimization over continuous, integer and categorical parameters.

* All-continuous spaces: multi-start L-BFGS-B via BoTorch ``optimize_acqf`` on the unit cube,
  with the linear parameter constraints, greedy-sequential for ``q > 1``.
* Spaces with integer or choice parameters: BoTorch ``optimize_acqf_mixed_alternating``
  (alternating discrete local search and continuous L-BFGS steps) over the *compact* space,
  where each unordered choice is one categorical column. The acquisition function is wrapped so
  that every compact point is expanded to its one-hot model-space encoding before evaluation;
  pending points added during greedy batch construction are expanded the same way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.optim import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from torch import Tensor

from assay.platform.space import DTYPE, SearchSpace

log = logging.getLogger("assay.optimize")

_F = TypeVar("_F", bound=Callable[..., Any])
_threads_lock = threading.Lock()
_threads_depth = 0
_threads_saved = 0


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch``'s intra-op thread count set to ``n`` (``None``: as is).

    An ask works on tiny tensors (tens of points, a few outputs): OpenMP parallelism buys
    nothing there, and when the cores are shared (CI, a busy server, a laptop) the worker
    threads spin-wait for each other on every small op. Measured on a 2-core machine under
    load: one ask on ConstrainedGramacy at 28 observations took 38.7 s wall / 28.2 s CPU
    with torch's default 2 threads and 1.5 s / 1.4 s with one. The previous setting is
    restored afterwards (nested and concurrent uses restore it once, when the last exits).
    """
    global _threads_depth, _threads_saved
    if n is None:
        yield
        return
    with _threads_lock:
        if _threads_depth == 0:
            _threads_saved = torch.get_num_threads()
            if _threads_saved != n:
                torch.set_num_threads(n)
        _threads_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0 and torch.get_num_threads() != _threads_saved:
                torch.set_num_threads(_threads_saved)


def with_generator_threads(method: _F) -> _F:
    """Decorate ``Generator.generate``: run it under ``self.settings.torch_threads``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with intra_op_threads(getattr(self.settings, "torch_threads", None)):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class OptimizerOptions:
    """Effort of the acquisition optimizer.

    Args:
        num_restarts: Starting points refined by the local optimizer.
        raw_samples: Quasi-random points scored to choose the starting points.
        maxiter: Iterations of L-BFGS-B per restart (continuous case).
        init_batch_limit: Raw samples scored per acquisition call when choosing the
            restarts (continuous case). The values, hence the restarts and the proposal, do
            not depend on it; fewer, larger calls spend less time in per-call overhead (the
            posterior's linear-operator bookkeeping), more memory per call.
    """

    num_restarts: int = 10
    raw_samples: int = 512
    maxiter: int = 200
    init_batch_limit: int = 32


class CompactAcquisition(AcquisitionFunction):
    """Evaluate a model-space acquisition function at compact-space points.

    Args:
        inner: The acquisition function defined on model space (``... x q x d``).
        space: The search space that defines the compact -> model expansion.
    """

    def __init__(self, inner: AcquisitionFunction, space: SearchSpace) -> None:
        super().__init__(model=inner.model)
        self.inner = inner
        self.space = space
        self._base_pending = inner.X_pending
        self.X_pending = None
        baseline = getattr(inner, "X_baseline", None)
        if baseline is not None:
            self.X_baseline = space.model_to_compact(baseline)

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.X_pending = X_pending
        parts = [p for p in (self._base_pending,) if p is not None]
        if X_pending is not None:
            parts.append(self.space.compact_to_model(X_pending.detach()))
        self.inner.set_X_pending(torch.cat(parts, dim=-2) if parts else None)

    def forward(self, X: Tensor) -> Tensor:
        return self.inner(self.space.compact_to_model(X))


def optimize_acquisition(
    acqf: AcquisitionFunction,
    space: SearchSpace,
    q: int,
    options: OptimizerOptions | None = None,
) -> tuple[Tensor, Tensor]:
    """Maximise ``acqf`` over the search space.

    Args:
        acqf: An acquisition function on model space.
        space: The search space (bounds, discrete structure, linear constraints).
        q: Number of points, built greedily (each conditioned on the previous as pending).
        options: Optimizer effort.

    Returns:
        ``q x d`` model-space candidates and their ``q`` acquisition values.
    """
    options = options or OptimizerOptions()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, values = _optimize(acqf, space, q, options)
    # L-BFGS-B "ABNORMAL" line-search exits and jitter notices are routine on flat acquisition
    # surfaces; keep them out of users' consoles but visible to the caller.
    for w in caught:
        log.debug("acquisition optimization: %s", w.message)
    return X, values


def _optimize(
    acqf: AcquisitionFunction, space: SearchSpace, q: int, options: OptimizerOptions
) -> tuple[Tensor, Tensor]:
    if not space.has_discrete:
        X, values = optimize_acqf(
            acqf,
            bounds=space.model_bounds(),
            q=q,
            num_restarts=options.num_restarts,
            raw_samples=options.raw_samples,
            inequality_constraints=space.inequality_constraints(),
            sequential=True,
            options={
                "maxiter": options.maxiter,
                "batch_limit": 32,
                "init_batch_limit": options.init_batch_limit,
            },
        )
        return X.detach(), values.detach().reshape(-1)
    if q > 1 and getattr(acqf, "single_point", False):
        # An acquisition of one point at a time (e.g. the analytic NEI): greedy-sequential
        # here too, each chosen point added to the pending ones (as optimize_acqf does).
        base = acqf.X_pending
        Xs, vals = [], []
        try:
            for _ in range(q):
                x, v = _optimize(acqf, space, 1, options)
                Xs.append(x)
                vals.append(v)
                acqf.set_X_pending(torch.cat([p for p in (base, *Xs) if p is not None]))
        finally:
            acqf.set_X_pending(base)
        return torch.cat(Xs), torch.cat(vals)
    wrapped = CompactAcquisition(acqf, space) if space.has_one_hot else acqf
    Xc, values = optimize_acqf_mixed_alternating(
        wrapped,
        bounds=space.compact_bounds(),
        discrete_dims=space.compact_discrete_dims() or None,
        cat_dims=space.compact_cat_dims() or None,
        q=q,
        num_restarts=options.num_restarts,
        raw_samples=options.raw_samples,
        inequality_constraints=space.inequality_constraints(compact=True),
        options={"num_spray_points": 0},
    )
    if wrapped is not acqf:
        wrapped.set_X_pending(None)  # leave the inner function's pending points as given
    X = space.compact_to_model(Xc.detach().to(DTYPE))
    values = values.detach().reshape(-1) if values is not None else None
    if values is None or values.numel() != q:  # the joint value of the batch, not per point
        values = torch.full((q,), float("nan"), dtype=DTYPE)
    return X, values
