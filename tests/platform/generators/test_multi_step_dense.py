"""The dense lookahead tree (``multi_step/dense_tree.py``) against BoTorch's
``qMultiStepLookahead``: same value, exact gradient (BoTorch's autograd where it is exact, its
value's finite differences everywhere)."""

from __future__ import annotations

import warnings

import pytest
import torch
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

from assay.platform.generators.multi_step import (
    DenseMultiStepLookahead,
    build_multi_step_acquisition,
    condition_on_pending,
    supports_dense_tree,
)
from assay.platform.models import MetricData, exact_solves, fit_outcome_models
from assay.platform.space import DTYPE

FANTASIES = {2: [4], 3: [3, 2], 4: [2, 2, 2]}


def _gp(n: int = 9, d: int = 2, *, fixed: bool, seed: int = 0) -> SingleTaskGP:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DTYPE)
    Y = torch.sin(6 * X).sum(-1, keepdim=True) * 3 + 5  # far from standardized units
    Yvar = torch.full_like(Y, 1e-3) if fixed else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_outcome_models({"y": MetricData(X, Y, Yvar)}, ["y"]).model.models[0]


@pytest.fixture(scope="module")
def gps() -> dict[bool, SingleTaskGP]:
    return {fixed: _gp(fixed=fixed) for fixed in (True, False)}


def _pair(
    gp: SingleTaskGP, horizon: int, **kw: object
) -> tuple[DenseMultiStepLookahead, qMultiStepLookahead]:
    fant = FANTASIES[horizon]
    dense = build_multi_step_acquisition(gp, horizon, fant, seed=5, **kw)
    ref = build_multi_step_acquisition(gp, horizon, fant, seed=5, dense=False, **kw)
    assert isinstance(dense, DenseMultiStepLookahead)
    assert type(ref) is qMultiStepLookahead
    return dense, ref


def _trees(acqf: qMultiStepLookahead, b: int, d: int = 2, seed: int = 1) -> Tensor:
    q = acqf.get_augmented_q_batch_size(1)
    return torch.rand(b, q, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def _grad(acqf: qMultiStepLookahead, T: Tensor) -> Tensor:
    T = T.clone().requires_grad_(True)
    return torch.autograd.grad(acqf(T).sum(), T)[0]


def _finite_diff(acqf: qMultiStepLookahead, T: Tensor, h: float = 1e-6) -> Tensor:
    """Central differences of the tree values (each tree's value depends on its own nodes)."""
    G = torch.zeros_like(T)
    with torch.no_grad():
        for i in range(T.shape[-2]):
            for j in range(T.shape[-1]):
                E = torch.zeros_like(T)
                E[:, i, j] = h
                G[:, i, j] = (acqf(T + E) - acqf(T - E)) / (2 * h)
    return G


@pytest.mark.parametrize("horizon", [2, 3, 4])
@pytest.mark.parametrize("incumbent", ["posterior_mean", "observed", "root"])
@pytest.mark.parametrize("fixed", [True, False])
def test_value_equals_botorch(
    gps: dict[bool, SingleTaskGP], horizon: int, incumbent: str, fixed: bool
) -> None:
    for maximize, sampler in ((False, "sobol"), (True, "quantile")):
        with exact_solves():
            dense, ref = _pair(
                gps[fixed], horizon, incumbent=incumbent, maximize=maximize,
                fantasy_sampler=sampler,
            )  # fmt: skip
            T = _trees(ref, 6)
            with torch.no_grad():
                v, v_ref = dense(T), ref(T)
        assert v.shape == (6,)
        torch.testing.assert_close(v, v_ref, rtol=1e-9, atol=1e-11)
        assert float(v.abs().max()) > 1e-3  # not a vacuous comparison of zeros


def test_value_with_batch_shape_and_botorch_forward(gps: dict[bool, SingleTaskGP]) -> None:
    with exact_solves():
        dense, ref = _pair(gps[True], 3)
        T = _trees(ref, 6).reshape(2, 3, -1, 2)
        with torch.no_grad():
            torch.testing.assert_close(dense(T), ref(T), rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(dense.botorch_forward(T), ref(T))


@pytest.mark.parametrize("fixed", [True, False])
def test_leaf_gradients_equal_botorch_autograd(gps: dict[bool, SingleTaskGP], fixed: bool) -> None:
    """At horizon 2, BoTorch's autograd is exact for the leaves (the later decisions)."""
    with exact_solves():
        dense, ref = _pair(gps[fixed], 2, maximize=False)
        T = _trees(ref, 5)
        g, g_ref = _grad(dense, T), _grad(ref, T)
    torch.testing.assert_close(g[:, 1:], g_ref[:, 1:], rtol=1e-7, atol=1e-10)
    assert float(g[:, 1:].abs().max()) > 1e-4


@pytest.mark.parametrize("horizon", [2, 3])
@pytest.mark.parametrize("fixed", [True, False])
def test_gradients_equal_finite_differences_of_botorch_value(
    gps: dict[bool, SingleTaskGP], horizon: int, fixed: bool
) -> None:
    """Every node's gradient, the root's included, is the derivative of BoTorch's value."""
    with exact_solves():
        dense, ref = _pair(gps[fixed], horizon, maximize=True)
        T = _trees(ref, 3, seed=horizon)
        g, fd = _grad(dense, T), _finite_diff(ref, T)
    torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-6)
    assert float(g[:, 0].abs().max()) > 1e-3


def test_botorch_root_gradient_is_not_the_derivative(gps: dict[bool, SingleTaskGP]) -> None:
    """Why the dense path's gradient is not compared with BoTorch's autograd at the root:
    BoTorch 0.18's gradient of the tree value in the root (the decision) is not the
    derivative of its value (GPyTorch's fantasy caches). If this fails, BoTorch became exact
    there and the leaf-only comparison above can cover every node."""
    with exact_solves():
        _, ref = _pair(gps[True], 2, maximize=False)
        T = _trees(ref, 5)
        g_ref, fd = _grad(ref, T)[:, 0], _finite_diff(ref, T)[:, 0]
    assert float((g_ref - fd).abs().max()) > 1e-2 * float(fd.abs().max())


def test_pending_points_believed_model(gps: dict[bool, SingleTaskGP]) -> None:
    """The kriging-believer model (pending points conditioned on) is evaluated densely too."""
    for fixed in (True, False):
        with exact_solves():
            gp = condition_on_pending(
                gps[fixed], torch.tensor([[0.5, 0.5], [0.2, 0.9]], dtype=DTYPE)
            )
            assert supports_dense_tree(gp)
            dense, ref = _pair(gp, 2)
            T = _trees(ref, 4)
            with torch.no_grad():
                torch.testing.assert_close(dense(T), ref(T), rtol=1e-9, atol=1e-11)


def test_unsupported_model_keeps_botorch() -> None:
    X = torch.rand(6, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    Y = X.sum(-1, keepdim=True)
    gp = SingleTaskGP(X, Y, input_transform=Normalize(2), outcome_transform=Standardize(1))
    gp.eval()
    assert not supports_dense_tree(gp)
    acqf = build_multi_step_acquisition(gp, 2, [2])
    assert type(acqf) is qMultiStepLookahead
    with pytest.raises(ValueError, match="dense lookahead"):
        DenseMultiStepLookahead(gp, acqf.samplers, "posterior_mean", Y.max(), True)
