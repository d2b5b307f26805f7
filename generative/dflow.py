"""D-Flow: controlled generation by optimising the source point through the flow.

Implements Ben-Hamu, Puny, Gat, Karrer, Singer, Lipman, *D-Flow: Differentiating through Flows
for Controlled Generation* (ICML 2024). With ``Φ_1`` the (differentiable, fixed-step) ODE solve
of a frozen flow-matching model from noise ``x0`` at ``t = 0`` to data at ``t = 1``::

    x0* = argmin_{x0}  L(Φ_1(x0)) + w · R(x0),     output Φ_1(x0*)

The paper's observation is that the gradient through ``Φ_1`` is (approximately) projected onto
the data manifold, so the optimum stays on the data support — unlike minimising ``L`` over the
sample ``x1`` directly, which just projects onto the constraint set.

* **Regulariser** ``R`` (:func:`chi_nll`): the *negative* log-likelihood of ``‖x0‖`` under the
  χ distribution with ``d`` degrees of freedom (``p(r) ∝ r^{d−1} e^{−r²/2}``), i.e.
  ``R(x0) = −(d − 1) log‖x0‖ + ‖x0‖²/2``. Added with a positive weight it keeps ``‖x0‖`` near
  the Gaussian typical radius ``sqrt(d − 1)``; with the opposite sign the objective is
  unbounded below (``−‖x0‖²/2``) and ``x0`` leaves the typical set — so the sign is fixed by
  the math (and checked in the tests by the optimised norms).
* **Initialisation** (:func:`blended_init`): ``x0 = sqrt(α)·Φ_1^{-1}(y) + sqrt(1 − α)·z``, a blend
  of the backward ODE solve of a crude guess ``y`` and fresh noise ``z ~ N(0, I)``.
* **Optimiser**: L-BFGS (strong-Wolfe line search), few iterations, few midpoint steps.

Tasks (:func:`constraint2d`, :func:`inpainting`): 2-D constraint satisfaction on a toy density
(score: constraint error and the true log-density of the outputs, against optimising ``x1``
directly) and digits inpainting with the bottom half masked (score: PSNR against the
masked-noise and mean-fill baselines). The job running them is the workload
:mod:`assay.generative.workloads.dflow` (``run`` here is its alias).

Example:
    >>> from assay.generative.flow_matching import MLPVelocity
    >>> v = MLPVelocity(2)
    >>> x0, x1, info = dflow(v, lambda x: (x[:, 0] - 1.0) ** 2, torch.randn(4, 2), steps=2,
    ...                      max_iter=3)
    >>> x1.shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import assay
from assay.generative.flow_matching import Velocity, ode_sample
from assay.generative.legacy import entry_point, forward

Cost = Callable[[Tensor], Tensor]


def chi_nll(x0: Tensor) -> Tensor:
    """``−log χ_d(‖x0‖)`` up to a constant, per sample: ``−(d − 1) log r + r²/2``.

    Args:
        x0: ``n x ...`` source points (``d`` = elements per sample).

    Returns:
        ``n`` values, minimal at ``r = sqrt(d − 1)``.
    """
    d = x0[0].numel()
    r = x0.reshape(len(x0), -1).norm(dim=1).clamp_min(1e-12)
    return -(d - 1) * torch.log(r) + 0.5 * r**2


def blended_init(
    velocity: Velocity,
    guess: Tensor,
    alpha: float,
    *,
    steps: int = 10,
    method: str = "midpoint",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``sqrt(α)·Φ_1^{-1}(guess) + sqrt(1 − α)·z``: blend the backward solve of a crude guess
    with fresh noise (``α = 0``: pure noise; ``α = 1``: the inverted guess)."""
    z = torch.randn(guess.shape, generator=generator).to(guess)
    if alpha <= 0:
        return z
    with torch.no_grad():
        back = ode_sample(velocity, guess, steps=steps, method=method, t0=1.0, t1=0.0)
    return math.sqrt(alpha) * back + math.sqrt(1 - alpha) * z


def _lbfgs(
    var: Tensor,
    objective: Callable[[Tensor], Tensor],
    max_iter: int,
    lr: float,
    history: int,
    report_every: int = 0,
    max_seconds: float = 0.0,
) -> tuple[Tensor, int]:
    """L-BFGS on ``var``; with ``report_every > 0`` every that-many objective evaluations (and
    the last) go to ``assay.report(step=evaluations, dflow_objective=..., lbfgs_iteration=...)``
    — one ``opt.step`` runs all ``max_iter`` iterations, so progress is reported from the
    closure. With ``max_seconds > 0`` the iterations run in chunks of about a tenth (the
    curvature history carries over) and stop after the first chunk that ends past the limit."""
    import time

    var = var.detach().clone().requires_grad_(True)
    chunk = max(1, math.ceil(max_iter / 10)) if max_seconds > 0 else max_iter
    opt = torch.optim.LBFGS(
        [var], lr=lr, max_iter=chunk, history_size=history, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )  # fmt: skip
    evals = 0
    last: list[float] = []

    def progress() -> None:
        it = int(opt.state[var].get("n_iter", 0)) if var in opt.state else 0
        assay.report(step=evals, dflow_objective=last[0], lbfgs_iteration=it)

    def closure() -> Tensor:
        nonlocal evals
        evals += 1
        opt.zero_grad()
        val = objective(var)
        val.backward()
        if report_every:
            last[:] = [float(val.detach())]
            if evals % report_every == 0 and math.isfinite(last[0]):
                progress()
        return val

    t_end = time.perf_counter() + max_seconds
    done = 0
    with torch.enable_grad():
        while done < max_iter:
            opt.param_groups[0]["max_iter"] = min(chunk, max_iter - done)
            before = int(opt.state[var].get("n_iter", 0)) if var in opt.state else 0
            opt.step(closure)
            ran = int(opt.state[var].get("n_iter", 0)) - before
            done += ran
            converged = ran < opt.param_groups[0]["max_iter"]
            if converged or ran == 0 or (max_seconds > 0 and time.perf_counter() > t_end):
                break
    if report_every and evals % report_every and last and math.isfinite(last[0]):
        progress()
    return var.detach(), evals


def dflow(
    velocity: Velocity,
    cost: Cost,
    x0_init: Tensor,
    *,
    steps: int = 10,
    method: str = "midpoint",
    reg_weight: float = 0.0,
    max_iter: int = 30,
    lr: float = 1.0,
    history: int = 20,
    report_every: int = 0,
    max_seconds: float = 0.0,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Optimise source points so the flow's outputs minimise ``cost`` (D-Flow).

    All samples are optimised jointly (their objectives are summed; they do not interact).

    Args:
        velocity: Frozen velocity field ``v(x, t)``.
        cost: ``x1 → n`` per-sample cost (e.g. a constraint violation or a masked MSE).
        x0_init: ``n x ...`` initial source points (see :func:`blended_init`).
        steps: Fixed steps of the ODE solve that is differentiated through.
        method: ``"midpoint"`` or ``"euler"``.
        reg_weight: Weight ``w`` of the χ regulariser :func:`chi_nll`.
        max_iter: L-BFGS iterations.
        lr: L-BFGS step length.
        history: L-BFGS history size.
        report_every: ``assay.report`` the objective every this many L-BFGS function
            evaluations, with ``step`` = evaluations so far (0: never).
        max_seconds: Stop the L-BFGS iterations after about this much wall time (0: none).

    Returns:
        ``(x0*, x1* = Φ_1(x0*), info)`` with ``info`` holding the function-evaluation count.
    """

    def objective(x0: Tensor) -> Tensor:
        x1 = ode_sample(velocity, x0, steps=steps, method=method)
        total = cost(x1).sum()
        if reg_weight:
            total = total + reg_weight * chi_nll(x0).sum()
        return total

    x0, evals = _lbfgs(x0_init, objective, max_iter, lr, history, report_every, max_seconds)
    with torch.no_grad():
        x1 = ode_sample(velocity, x0, steps=steps, method=method)
    return x0, x1, {"function_evals": float(evals)}


def optimize_x1_directly(
    cost: Cost,
    x1_init: Tensor,
    *,
    max_iter: int = 30,
    lr: float = 1.0,
    history: int = 20,
    max_seconds: float = 0.0,
) -> Tensor:
    """The baseline D-Flow is compared with: minimise ``cost`` over the sample itself."""
    x1, _ = _lbfgs(x1_init, lambda x: cost(x).sum(), max_iter, lr, history,
                   max_seconds=max_seconds)  # fmt: skip
    return x1


def bottom_half_mask(n: int = 1) -> Tensor:
    """``n x 1 x 8 x 8`` mask, 1 on the observed top half (rows 0–3), 0 on the bottom half."""
    m = torch.zeros(n, 1, 8, 8)
    m[:, :, :4] = 1.0
    return m


# --------------------------------------------------------------------------------------------
# The tasks of the workload: 2-D constraints and digits inpainting
# --------------------------------------------------------------------------------------------


def constraint2d(
    velocity: Velocity,
    toy: Any,
    *,
    target: float,
    n: int,
    reg_weight: float,
    alpha: float,
    max_iter: int,
    lr: float,
    steps: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    max_seconds: float = 0.0,
) -> dict[str, float]:
    """2-D constraint ``x[0] = target`` with D-Flow and with direct ``x1`` optimisation.

    Both start from the same base samples: D-Flow from their source points blended with the
    inverted projection (``alpha``), the baseline from the samples themselves.
    """

    def cost(x: Tensor) -> Tensor:
        return (x[:, 0] - target) ** 2

    z = torch.randn(n, 2, generator=generator).to(device)
    with torch.no_grad():
        start = ode_sample(velocity, z, steps=steps)
    guess = start.clone()
    guess[:, 0] = target
    with torch.no_grad():
        back = ode_sample(velocity, guess, steps=steps, t0=1.0, t1=0.0)
    x0_init = math.sqrt(alpha) * back + math.sqrt(1 - alpha) * z if alpha > 0 else z
    x0, x1, info = dflow(velocity, cost, x0_init, steps=steps, reg_weight=reg_weight,
                         max_iter=max_iter, lr=lr, report_every=report_every,
                         max_seconds=max_seconds)  # fmt: skip
    direct = optimize_x1_directly(cost, start, max_iter=max_iter, lr=lr, max_seconds=max_seconds)
    lp = toy.log_prob(x1.cpu()).clamp_min(-50)
    lp_direct = toy.log_prob(direct.cpu()).clamp_min(-50)
    return {
        "constraint_error": float((x1[:, 0] - target).abs().mean()),
        "mean_log_density": float(lp.mean()),
        "x1_direct_constraint_error": float((direct[:, 0] - target).abs().mean()),
        "x1_direct_log_density": float(lp_direct.mean()),
        "log_density_gain": float(lp.mean() - lp_direct.mean()),
        "x0_norm_ratio": float(x0.norm(dim=1).mean() / math.sqrt(2)),
        "function_evals": info["function_evals"],
    }


def inpainting(
    velocity: Velocity,
    images: Tensor,
    *,
    reg_weight: float,
    alpha: float,
    max_iter: int,
    lr: float,
    steps: int,
    fill: Tensor | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    max_seconds: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Inpaint the bottom half of ``images`` (``n x 1 x 8 x 8`` in ``[-1, 1]``) with D-Flow.

    The crude guess for the blended initialisation is the observed half with the missing half
    set to ``fill`` (default: the images' mean); the baselines fill the missing half with
    uniform noise (``baseline_noise_psnr``) or the mean image (``baseline_mean_psnr``).

    Returns:
        The inpainted images and metrics: ``psnr`` / ``psnr_full`` (dB on the masked half /
        the whole image, data range 2), the baselines, ``observed_mse`` (data fit on the
        observed half), ``x0_norm_ratio`` (``‖x0‖ / sqrt(d)``).
    """
    from assay.generative.metrics import psnr

    images = images.to(device)
    n = len(images)
    mask = bottom_half_mask(1).to(device)
    fill = images.mean(0, keepdim=True) if fill is None else fill.to(device)
    observed = images * mask

    def cost(x: Tensor) -> Tensor:
        return ((x - observed) ** 2 * mask).reshape(len(x), -1).sum(1)

    guess = observed + (1 - mask) * fill
    x0_init = blended_init(velocity, guess, alpha, steps=steps, generator=generator)
    x0, x1, info = dflow(velocity, cost, x0_init, steps=steps, reg_weight=reg_weight,
                         max_iter=max_iter, lr=lr, report_every=report_every,
                         max_seconds=max_seconds)  # fmt: skip
    out = x1.clamp(-1, 1)
    noise = torch.rand(images.shape, generator=generator).to(device) * 2 - 1
    noise_fill = observed + (1 - mask) * noise
    missing = 1 - mask
    metrics = {
        "psnr": float(psnr(out, images, missing).mean()),
        "psnr_full": float(psnr(out, images).mean()),
        "baseline_noise_psnr": float(psnr(noise_fill, images, missing).mean()),
        "baseline_mean_psnr": float(psnr(guess, images, missing).mean()),
        "observed_mse": float(cost(out).mean() / 32),
        "x0_norm_ratio": float(x0.reshape(n, -1).norm(dim=1).mean() / 8.0),
        "function_evals": info["function_evals"],
    }
    return out.cpu(), metrics


# --------------------------------------------------------------------------------------------
# Old home of the job workload, now assay.generative.workloads.dflow
# --------------------------------------------------------------------------------------------

#: The old job entry point ``assay.generative.dflow:run``, an alias of the workload's.
run = entry_point(__name__, "dflow")
__getattr__ = forward(__name__, dflow=("DFlowConfig", "SEARCH_SPACE"))
