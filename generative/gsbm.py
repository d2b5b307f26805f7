"""GSBM: Generalized Schrödinger Bridge Matching with spline Gaussian paths.

Implements Liu, Lipman, Nickel, Karrer, Theodorou, Chen, *Generalized Schrödinger Bridge
Matching* (ICLR 2024) on its 2-D crowd-navigation tasks. The generalized Schrödinger bridge is::

    min_u  E ∫_0^1 ( ‖u_t(X_t)‖² / (2σ²) + V(X_t) ) dt,   dX = u dt + σ dW,  X_0 ~ μ, X_1 ~ ν.

GSBM alternates two stages (Alg. 1 of the paper), each direction in turn (a forward drift
simulated from ``μ`` and a backward drift simulated from ``ν``, as in the official code):

1. **Conditional stochastic optimal control** (:func:`fit_gaussian_paths`): for endpoint
   pairs ``(x0, x1)`` drawn from the current coupling, fit Gaussian paths
   ``X_t = m_t + γ_t ε`` with a spline mean ``m`` (endpoints pinned to ``x0``, ``x1``,
   inner knots initialised from the simulated trajectory) and a spline standard deviation
   ``γ_t = σ sqrt(t(1 − t)) · softplus(s(t))`` (zero at both ends), minimising
   ``∫ E[ ‖u_t(X_t | x0, x1)‖²/(2σ²) + V(X_t) ] dt`` where the path's drift is
   ``u_t(x) = ṁ_t + (γ̇_t − σ²/(2γ_t)) (x − m_t)/γ_t`` (forward; backward:
   ``−ṁ_t + (−γ̇_t − σ²/(2γ_t)) (x − m_t)/γ_t``). The control part is taken in closed form,
   ``E‖u‖² = ‖ṁ‖² + d (γ̇ − σ²/(2γ))²``; the state cost by Monte Carlo.
2. **Bridge matching** (:func:`bridge_matching`): regress a drift network onto
   ``u_t(X_t | x0, x1)`` with ``X_t`` drawn from the fitted paths. The boundary marginals of
   the coupling are kept by construction.

With ``V ≡ 0`` and no path fitting the same loop is plain (iterated) bridge matching with
Brownian bridges — the baseline the state cost must beat.

Tasks (:data:`TASKS`) use the official obstacle costs (``gsbm/state_cost.py`` and
``configs/experiment/*.yaml`` of the paper's code): **Stunnel** — ``μ = N((−11, −1), 0.5 I)``,
``ν = N((11, 1), 0.5 I)``, σ = 1, obstacle weight 1500, two ellipses
``softplus(90 − (20 (x − cx)² + (y − cy)²))`` centred at ``(5, 6)`` and ``(−5, −6)``;
**Vneck** — ``μ = N((−7, 0), 0.2 I)``, ``ν = N((7, 0), 0.2 I)``, σ = 1, weight 3000,
``softplus(−0.36 − (5x² − y²))``. (The official configs add interaction costs — congestion 50
for Stunnel, entropy 8 for Vneck; :func:`gsbm` supports the congestion cost, not the entropy
one.) The job is the workload :mod:`assay.generative.workloads.gsbm` (``run`` here is its alias).

Example:
    >>> task = TASKS["stunnel"]
    >>> task.obstacle(torch.tensor([[5.0, 6.0], [0.0, 0.0]])) > 80
    tensor([ True, False])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import assay
from assay.generative.flow_matching import MLPVelocity
from assay.generative.legacy import entry_point, forward

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(x) = 1


# --------------------------------------------------------------------------------------------
# Tasks and their official obstacle costs
# --------------------------------------------------------------------------------------------


def stunnel_obstacle(x: Tensor) -> Tensor:
    """Stunnel's two elliptical obstacles: ``Σ_i softplus(90 − 20(x − cx_i)² − (y − cy_i)²)``."""
    total = torch.zeros(x.shape[:-1], device=x.device, dtype=x.dtype)
    for cx, cy in ((5.0, 6.0), (-5.0, -6.0)):
        d = 20.0 * (x[..., 0] - cx) ** 2 + (x[..., 1] - cy) ** 2
        total = total + F.softplus(90.0 - d, beta=1, threshold=20)
    return total


def vneck_obstacle(x: Tensor) -> Tensor:
    """Vneck's funnel walls: ``softplus(−0.36 − (5x² − y²))`` (high where ``y² > 5x² + 0.36``)."""
    d = 5.0 * x[..., 0] ** 2 - x[..., 1] ** 2
    return F.softplus(-0.36 - d, beta=1, threshold=20)


@dataclass(frozen=True)
class GSBMTask:
    """A GSB problem: Gaussian boundary marginals, diffusion σ and an obstacle cost."""

    name: str
    mu0: tuple[float, float]
    var0: float
    mu1: tuple[float, float]
    var1: float
    sigma: float
    obstacle: Callable[[Tensor], Tensor]
    obstacle_weight: float
    #: Obstacle values above this count as "inside" (softplus(0) = log 2).
    inside_threshold: float = math.log(2.0)

    def sample0(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.tensor(self.mu0) + math.sqrt(self.var0) * torch.randn(
            n, 2, generator=generator
        )

    def sample1(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.tensor(self.mu1) + math.sqrt(self.var1) * torch.randn(
            n, 2, generator=generator
        )


TASKS: dict[str, GSBMTask] = {
    "stunnel": GSBMTask("stunnel", (-11.0, -1.0), 0.5, (11.0, 1.0), 0.5, 1.0, stunnel_obstacle,
                        1500.0),
    "vneck": GSBMTask("vneck", (-7.0, 0.0), 0.2, (7.0, 0.0), 0.2, 1.0, vneck_obstacle, 3000.0),
}  # fmt: skip


def congestion_cost(x: Tensor) -> Tensor:
    """The official congestion interaction cost ``2 / (‖x − x'‖² + 1)`` against a random
    permutation ``x'`` of the batch (``x``: ``B x ... x 2``, permuted along dim 0)."""
    perm = torch.randperm(x.shape[0], device=x.device)
    return 2.0 / (((x - x[perm]) ** 2).sum(-1) + 1.0)


# --------------------------------------------------------------------------------------------
# Spline Gaussian paths
# --------------------------------------------------------------------------------------------


def _spline(y: Tensor, t: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Evaluate splines through uniform knots and their time derivative.

    Args:
        y: ``B x T x D`` knot values at ``t_k = k/(T − 1)``.
        t: ``B x S`` (or ``S``) query times in ``[0, 1]``.
        kind: ``"linear"`` or ``"cubic"`` (uniform Catmull–Rom, linear extrapolation at ends).

    Returns:
        Values and derivatives, ``B x S x D`` each.
    """
    B, T, D = y.shape
    if t.dim() == 1:
        t = t.expand(B, -1)
    h = 1.0 / (T - 1)
    u = t / h
    idx = u.floor().long().clamp(0, T - 2)
    w = (u - idx).unsqueeze(-1)

    def at(i: Tensor) -> Tensor:
        return torch.gather(y, 1, i.clamp(0, T - 1).unsqueeze(-1).expand(-1, -1, D))

    p1, p2 = at(idx), at(idx + 1)
    if kind == "linear":
        return p1 + w * (p2 - p1), (p2 - p1) / h
    p0 = torch.where((idx == 0).unsqueeze(-1), 2 * p1 - p2, at(idx - 1))
    p3 = torch.where((idx == T - 2).unsqueeze(-1), 2 * p2 - p1, at(idx + 2))
    m1, m2 = (p2 - p0) / 2, (p3 - p1) / 2
    w2, w3 = w * w, w * w * w
    val = (2 * w3 - 3 * w2 + 1) * p1 + (w3 - 2 * w2 + w) * m1 + (-2 * w3 + 3 * w2) * p2
    val = val + (w3 - w2) * m2
    der = (6 * w2 - 6 * w) * p1 + (3 * w2 - 4 * w + 1) * m1 + (-6 * w2 + 6 * w) * p2
    der = der + (3 * w2 - 2 * w) * m2
    return val, der / h


class SplineGaussianPaths(nn.Module):
    """``B`` Gaussian paths ``N(m_t, γ_t² I)`` pinned at ``(x0, x1)`` (one per coupled pair).

    Args:
        knots: ``B x T x D`` initial mean knots (first/last are the fixed endpoints).
        gamma_knots: Number ``S`` of knots of the std spline ``s(t)``.
        sigma: Diffusion coefficient ``σ``.
        spline: ``"linear"`` (the official default) or ``"cubic"``.
    """

    def __init__(self, knots: Tensor, gamma_knots: int, sigma: float, spline: str = "linear"):
        super().__init__()
        self.sigma, self.spline = sigma, spline
        self.register_buffer("x0", knots[:, :1].detach().clone())
        self.register_buffer("x1", knots[:, -1:].detach().clone())
        self.inner = nn.Parameter(knots[:, 1:-1].detach().clone())
        self.s = nn.Parameter(torch.full((knots.shape[0], gamma_knots, 1), _SOFTPLUS_INV_1,
                                         device=knots.device, dtype=knots.dtype))  # fmt: skip

    @property
    def knots(self) -> Tensor:
        return torch.cat([self.x0, self.inner, self.x1], dim=1)

    def subset(self, idx: Tensor) -> SplineGaussianPaths:
        """The paths ``idx`` (detached copy)."""
        p = SplineGaussianPaths(self.knots[idx].detach(), self.s.shape[1], self.sigma, self.spline)
        p.s.data.copy_(self.s.data[idx])
        return p

    def mean(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``m_t`` and ``ṁ_t``: ``B x S x D`` for ``t`` of shape ``S`` or ``B x S``."""
        return _spline(self.knots, t, self.spline)

    def gamma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``γ_t`` and ``γ̇_t``: ``B x S x 1``."""
        s, ds = _spline(self.s, t, self.spline)
        if t.dim() == 1:
            t = t.expand(s.shape[0], -1)
        t = t.unsqueeze(-1)
        b = self.sigma * torch.sqrt(t * (1 - t))
        db = self.sigma * (1 - 2 * t) / (2 * torch.sqrt(t * (1 - t)))
        sp = F.softplus(s)
        return b * sp, db * sp + b * torch.sigmoid(s) * ds

    def sample(self, t: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``B x n x S x D`` draws of ``X_t``."""
        m, _ = self.mean(t)
        g, _ = self.gamma(t)
        eps = torch.randn(m.shape[0], n, *m.shape[1:], generator=generator).to(m)
        return m.unsqueeze(1) + g.unsqueeze(1) * eps

    def drift(self, t: Tensor, x: Tensor, direction: str = "fwd") -> Tensor:
        """The path's SDE drift at ``x`` (``B x n x S x D``) and times ``t``."""
        m, dm = self.mean(t)
        g, dg = self.gamma(t)
        s2 = self.sigma**2
        if direction == "fwd":
            a = (dg - s2 / (2 * g)) / g
            return dm.unsqueeze(1) + a.unsqueeze(1) * (x - m.unsqueeze(1))
        a = (-dg - s2 / (2 * g)) / g
        return -dm.unsqueeze(1) + a.unsqueeze(1) * (x - m.unsqueeze(1))


def brownian_bridge_knots(x0: Tensor, x1: Tensor, knots: int) -> Tensor:
    """Linear mean knots ``B x T x D`` between the pairs (with softplus(s) = 1 the path is the
    Brownian bridge)."""
    t = torch.linspace(0, 1, knots, device=x0.device, dtype=x0.dtype).reshape(1, -1, 1)
    return (1 - t) * x0.unsqueeze(1) + t * x1.unsqueeze(1)


def fit_gaussian_paths(
    paths: SplineGaussianPaths,
    task: GSBMTask,
    *,
    iterations: int = 300,
    lr_mean: float = 0.05,
    lr_gamma: float = 0.02,
    time_points: int = 64,
    samples: int = 4,
    obstacle_weight: float | None = None,
    congestion_weight: float = 0.0,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    max_seconds: float = 0.0,
) -> list[float]:
    """Conditional SOC: fit the paths (in place) to minimise control + state cost.

    Per pair, ``J = mean_t [ ‖ṁ‖²/(2σ²) + d (γ̇ − σ²/(2γ))²/(2σ²) + E_ε V(m + γε) ]`` on
    ``time_points`` times in ``[eps, 1 − eps]``; ``V = w_obs · obstacle (+ w_cgst ·
    congestion)``. Adam on the knots (objectives summed over pairs, so pairs do not interact
    except through the congestion cost). Stops early after ``max_seconds`` of wall time when
    that is positive.

    Returns:
        The loss curve (mean per pair).
    """
    w_obs = task.obstacle_weight if obstacle_weight is None else obstacle_weight
    opt = torch.optim.Adam([
        {"params": [paths.inner], "lr": lr_mean},
        {"params": [paths.s], "lr": lr_gamma},
    ])  # fmt: skip
    t = torch.linspace(eps, 1 - eps, time_points, device=paths.x0.device, dtype=paths.x0.dtype)
    s2, d = task.sigma**2, paths.x0.shape[-1]
    losses = []
    t_end = time.perf_counter() + max_seconds
    for _ in range(iterations):
        if max_seconds > 0 and time.perf_counter() > t_end:
            break
        m, dm = paths.mean(t)
        g, dg = paths.gamma(t)
        control = (dm**2).sum(-1) / (2 * s2) + d * (dg - s2 / (2 * g)).squeeze(-1) ** 2 / (2 * s2)
        eps_n = torch.randn(m.shape[0], samples, *m.shape[1:], generator=generator).to(m)
        x = m.unsqueeze(1) + g.unsqueeze(1) * eps_n
        state = w_obs * task.obstacle(x)
        if congestion_weight:
            state = state + congestion_weight * congestion_cost(x)
        per_pair = (control + state.mean(1)).mean(1)
        loss = per_pair.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(per_pair.detach().mean()))
    return losses


def bridge_matching(
    net: nn.Module,
    paths: SplineGaussianPaths,
    *,
    direction: str = "fwd",
    iterations: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    max_seconds: float = 0.0,
) -> list[float]:
    """Regress ``net(x, t)`` onto the paths' drift (bridge matching); returns the loss curve.

    Stops early after ``max_seconds`` of wall time when that is positive.
    """
    t_start = time.perf_counter()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=0.1 * lr)
    B = paths.x0.shape[0]
    dev = paths.x0.device
    losses = []
    net.train()
    for _ in range(iterations):
        idx = torch.randint(0, B, (batch_size,), generator=generator).to(dev)
        t = (eps + (1 - 2 * eps) * torch.rand(batch_size, 1, generator=generator)).to(dev)
        with torch.no_grad():
            knots = paths.knots[idx]
            m, dm = _spline(knots, t, paths.spline)
            s, ds = _spline(paths.s[idx], t, paths.spline)
            tt = t.unsqueeze(-1)
            b = paths.sigma * torch.sqrt(tt * (1 - tt))
            db = paths.sigma * (1 - 2 * tt) / (2 * torch.sqrt(tt * (1 - tt)))
            g = b * F.softplus(s)
            dg = db * F.softplus(s) + b * torch.sigmoid(s) * ds
            x = m + g * torch.randn(m.shape, generator=generator).to(m)
            s2 = paths.sigma**2
            if direction == "fwd":
                target = dm + (dg - s2 / (2 * g)) / g * (x - m)
            else:
                target = -dm + (-dg - s2 / (2 * g)) / g * (x - m)
        pred = net(x[:, 0], t[:, 0])
        loss = ((pred - target[:, 0]) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if max_seconds > 0 and time.perf_counter() - t_start > max_seconds:
            break
    net.eval()
    return losses


@torch.no_grad()
def simulate(
    net: nn.Module,
    x_start: Tensor,
    sigma: float,
    *,
    direction: str = "fwd",
    steps: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Euler–Maruyama of ``dX = net(X, t) dt + σ dW`` forwards from ``t = 0`` (``"fwd"``) or
    backwards from ``t = 1`` (``"bwd"``, drift in reverse time).

    Returns:
        Times ``steps + 1`` (increasing) and states ``n x (steps + 1) x D`` in time order.
    """
    h = 1.0 / steps
    ts = torch.linspace(0, 1, steps + 1)
    x = x_start
    xs = [x]
    order = range(steps) if direction == "fwd" else range(steps, 0, -1)
    for k in order:
        t = torch.full((len(x),), float(ts[k]), device=x.device, dtype=x.dtype)
        noise = torch.randn(x.shape, generator=generator).to(x)
        x = x + h * net(x, t) + sigma * math.sqrt(h) * noise
        xs.append(x)
    path = torch.stack(xs, dim=1)
    if direction == "bwd":
        path = path.flip(1)
    return ts, path


def _knots_from_path(path: Tensor, knots: int) -> Tensor:
    steps = path.shape[1] - 1
    idx = torch.linspace(0, steps, knots).round().long()
    return path[:, idx]


def gsbm(
    task: GSBMTask,
    *,
    state_cost: bool = True,
    epochs: int = 3,
    pairs: int = 512,
    mean_knots: int = 15,
    gamma_knots: int = 30,
    spline: str = "linear",
    sigma: float | None = None,
    obstacle_weight: float | None = None,
    congestion_weight: float = 0.0,
    csoc_iterations: int = 300,
    lr_mean: float = 0.05,
    lr_gamma: float = 0.02,
    csoc_time_points: int = 64,
    csoc_samples: int = 4,
    matching_iterations: int = 1500,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 128,
    sim_steps: int = 100,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    max_seconds: float = 0.0,
    csoc_max_seconds: float = 0.0,
) -> dict[str, Any]:
    """Run GSBM (``state_cost=True``) or plain bridge matching (``False``: Brownian bridges,
    no path optimisation) for ``epochs`` alternating forward/backward stages.

    ``max_seconds`` (0: none) splits a wall-time budget evenly over the epochs' matching, and
    ``csoc_max_seconds`` (0: none) one over the epochs' path fitting; ``report_every`` (0:
    never) sends ``assay.report(step=epoch, match_loss=..., csoc_loss=...)`` every that many
    epochs.

    Returns:
        ``{"fwd": net, "bwd": net or None, "csoc_losses": [...], "match_losses": [...]}``.
    """
    if sigma is not None:
        task = GSBMTask(task.name, task.mu0, task.var0, task.mu1, task.var1, sigma,
                        task.obstacle, task.obstacle_weight)  # fmt: skip
    nets: dict[str, nn.Module | None] = {"fwd": None, "bwd": None}
    x0 = task.sample0(pairs, generator).to(device)
    x1 = task.sample1(pairs, generator).to(device)
    knots = brownian_bridge_knots(x0, x1, mean_knots)
    csoc_losses: list[list[float]] = []
    match_losses: list[list[float]] = []
    for epoch in range(epochs):
        if not state_cost:
            knots = brownian_bridge_knots(knots[:, 0], knots[:, -1], mean_knots)
        paths = SplineGaussianPaths(knots, gamma_knots, task.sigma, spline).to(device)
        if state_cost:
            csoc_losses.append(fit_gaussian_paths(
                paths, task, iterations=csoc_iterations, lr_mean=lr_mean, lr_gamma=lr_gamma,
                time_points=csoc_time_points, samples=csoc_samples,
                obstacle_weight=obstacle_weight, congestion_weight=congestion_weight,
                generator=generator,
                max_seconds=csoc_max_seconds / epochs if csoc_max_seconds > 0 else 0.0,
            ))  # fmt: skip
        direction = "fwd" if epoch % 2 == 0 else "bwd"
        net = MLPVelocity(2, hidden=hidden, layers=3, input_scale=10.0, output_scale=10.0)
        if nets[direction] is not None:
            net.load_state_dict(nets[direction].state_dict())  # type: ignore[union-attr]
        net.to(device)
        match_losses.append(bridge_matching(
            net, paths, direction=direction, iterations=matching_iterations,
            batch_size=batch_size, lr=lr, generator=generator,
            max_seconds=max_seconds / epochs if max_seconds > 0 else 0.0,
        ))  # fmt: skip
        nets[direction] = net
        if report_every and (epoch + 1) % report_every == 0:
            info = {"match_loss": sum(match_losses[-1][-50:]) / len(match_losses[-1][-50:])}
            if csoc_losses and state_cost:
                info["csoc_loss"] = csoc_losses[-1][-1]
            assay.report(step=epoch + 1, **info)
        if epoch < epochs - 1:
            start = (task.sample0 if direction == "fwd" else task.sample1)(pairs, generator)
            _, path = simulate(net, start.to(device), task.sigma, direction=direction,
                               steps=sim_steps, generator=generator)  # fmt: skip
            knots = _knots_from_path(path, mean_knots)
    return {"fwd": nets["fwd"], "bwd": nets["bwd"], "csoc_losses": csoc_losses,
            "match_losses": match_losses, "task": task}  # fmt: skip


@torch.no_grad()
def evaluate(
    result: dict[str, Any],
    *,
    n: int = 2000,
    sim_steps: int = 100,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Boundary-marginal distances and costs of a :func:`gsbm` result.

    * ``w_t1``: sliced W2 between the forward model's ``X_1`` (from ``X_0 ~ μ``) and ``ν``;
      ``w_t0``: the backward model's ``X_0`` (from ``X_1 ~ ν``) vs ``μ`` (when trained);
      ``w_floor``: sliced W2 between two ``n``-samples of ``ν`` (the sampling-noise floor).
    * ``obstacle_cost``: ``∫ E[obstacle(X_t)] dt`` (unweighted) along forward trajectories;
      ``collision_rate``: fraction of trajectories that ever enter an obstacle;
      ``control_cost``: ``∫ E‖u_θ‖²/(2σ²) dt``.
    """
    from assay.generative.metrics import sliced_wasserstein

    task: GSBMTask = result["task"]
    fwd = result["fwd"]
    x0 = task.sample0(n, generator).to(device)
    ts, path = simulate(fwd, x0, task.sigma, steps=sim_steps, generator=generator)
    nu = task.sample1(n, generator)
    out = {
        "w_t1": float(sliced_wasserstein(path[:, -1].cpu(), nu)),
        "w_floor": float(sliced_wasserstein(task.sample1(n, generator), nu)),
    }
    obs = task.obstacle(path)  # n x (K+1)
    out["obstacle_cost"] = float(obs[:, :-1].mean())
    out["collision_rate"] = float((obs > task.inside_threshold).any(dim=1).float().mean())
    ctrl = []
    for k in range(sim_steps):
        t = torch.full((n,), float(ts[k]), device=path.device)
        ctrl.append((fwd(path[:, k], t) ** 2).sum(-1).mean() / (2 * task.sigma**2))
    out["control_cost"] = float(torch.stack(ctrl).mean())
    if result["bwd"] is not None:
        x1 = task.sample1(n, generator).to(device)
        _, bpath = simulate(result["bwd"], x1, task.sigma, direction="bwd", steps=sim_steps,
                            generator=generator)  # fmt: skip
        out["w_t0"] = float(sliced_wasserstein(bpath[:, 0].cpu(), task.sample0(n, generator)))
    return out


# --------------------------------------------------------------------------------------------
# Old home of the job workload, now assay.generative.workloads.gsbm
# --------------------------------------------------------------------------------------------

#: The old job entry point ``assay.generative.gsbm:run``, an alias of the workload's.
run = entry_point(__name__, "gsbm")
__getattr__ = forward(__name__, gsbm=("GSBMConfig", "SEARCH_SPACE"))
