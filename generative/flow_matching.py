"""Flow matching: the linear (CondOT) path, velocity networks, ODE and SDE samplers.

Flow matching (Lipman et al., ICLR 2023) with the conditional optimal-transport path
``x_t = (1 − t)·x0 + t·x1``, ``x0 ~ N(0, I)`` noise and ``x1`` data, regresses a velocity
field onto the conditional target ``x1 − x0``::

    L(θ) = E_{t~U[0,1], x0, x1} ‖v_θ(x_t, t) − (x1 − x0)‖²

and samples by integrating ``dx/dt = v_θ(x, t)`` from ``t = 0`` to ``1`` (:func:`ode_sample`;
fixed-step Euler/midpoint are differentiable end to end for D-Flow, adaptive solvers come from
``torchdiffeq``). :func:`sde_sample` is a generic Euler–Maruyama integrator for
``dX = b(X, t) dt + σ(t) dB`` (Adjoint Matching and GSBM use their own specialised steps).

This is our own implementation; the ``flow-matching`` package is CC BY-NC and not used.

The job that trains a base flow on a toy density or the digits and scores its samples is the
workload :mod:`assay.generative.workloads.flow_matching` (``run`` here is its alias).

Example:
    >>> model = MLPVelocity(dim=2)
    >>> x1 = torch.randn(8, 2)
    >>> flow_matching_loss(model, x1).shape
    torch.Size([])
    >>> ode_sample(model, torch.randn(8, 2), steps=4).shape
    torch.Size([8, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

import assay
from assay.generative.legacy import entry_point, forward

#: ``v(x, t)`` with ``x`` of shape ``n x ...`` and ``t`` of shape ``n``.
Velocity = Callable[[Tensor, Tensor], Tensor]


def batch_t(t: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a scalar (or 0-d) time to one time per sample, on ``x``'s device/dtype."""
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t))
    t = t.to(device=x.device, dtype=x.dtype)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``t ∈ [0, 1]`` followed by a 2-layer MLP.

    Args:
        dim: Output width.
        frequencies: Number of sine/cosine pairs (log-spaced from 1 to 1000).
    """

    def __init__(self, dim: int, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), frequencies)), persistent=False
        )
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """``t``: ``n`` → ``n x dim``."""
        arg = t[:, None] * self.freqs[None] * math.pi
        return self.mlp(torch.cat([arg.sin(), arg.cos()], dim=1))


class MLPVelocity(nn.Module):
    """MLP velocity field ``v(x, t)`` for low-dimensional data (2-D toys, tabular rows).

    The time embedding is added to every hidden layer (FiLM-style shift).

    Args:
        dim: Data dimension ``d``.
        hidden: Hidden width.
        layers: Number of hidden layers.
        input_scale: Inputs are divided by this (keeps e.g. GSBM's ±15 coordinates O(1)).
        output_scale: Outputs are multiplied by this.

    Example:
        >>> MLPVelocity(2)(torch.zeros(3, 2), torch.zeros(3)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        layers: int = 3,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.dim, self.input_scale, self.output_scale = dim, input_scale, output_scale
        self.time = TimeEmbedding(hidden)
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``x``: ``n x d``, ``t``: ``n`` (or scalar) → ``n x d``."""
        te = self.time(batch_t(t, x))
        h = self.act(self.inp(x / self.input_scale) + te)
        for layer in self.hidden:
            h = self.act(layer(h) + te)
        return self.out(h) * self.output_scale


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(min(8, c_in), c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t = nn.Linear(t_dim, c_out)
        self.n2 = nn.GroupNorm(min(8, c_out), c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, te: Tensor) -> Tensor:
        h = self.c1(self.act(self.n1(x))) + self.t(te)[:, :, None, None]
        h = self.c2(self.act(self.n2(h)))
        return h + self.skip(x)


class UNetVelocity(nn.Module):
    """A small U-Net velocity field for ``1 x 8 x 8`` images (scikit-learn digits).

    Resolutions 8 → 4 → 2 with widths ``(c, 2c, 2c)``, one residual block per level, skip
    connections by concatenation, time embedding added inside each block, zero-initialised
    output convolution (the untrained field is 0).

    Args:
        channels: Base width ``c``.
        in_channels: Image channels.

    Example:
        >>> UNetVelocity(16)(torch.zeros(2, 1, 8, 8), torch.zeros(2)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, channels: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        c, td = channels, 4 * channels
        self.time = TimeEmbedding(td)
        self.inp = nn.Conv2d(in_channels, c, 3, padding=1)
        self.d1 = _ResBlock(c, c, td)
        self.down1 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.d2 = _ResBlock(c, 2 * c, td)
        self.down2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * c, 2 * c, td)
        self.u2 = _ResBlock(4 * c, 2 * c, td)
        self.u1 = _ResBlock(3 * c, c, td)
        self.out_norm = nn.GroupNorm(min(8, c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``x``: ``n x C x 8 x 8``, ``t``: ``n`` (or scalar) → same shape as ``x``."""
        te = self.time(batch_t(t, x))
        h1 = self.d1(self.inp(x), te)  # 8x8, c
        h2 = self.d2(self.down1(h1), te)  # 4x4, 2c
        h = self.mid(self.down2(h2), te)  # 2x2, 2c
        h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        h = self.u2(torch.cat([h, h2], dim=1), te)
        h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        h = self.u1(torch.cat([h, h1], dim=1), te)
        return self.out(self.act(self.out_norm(h)))


def condot_path(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """The CondOT path: ``x_t = (1 − t) x0 + t x1`` and its velocity ``x1 − x0``.

    Args:
        x0: ``n x ...`` noise; ``x1``: ``n x ...`` data; ``t``: ``n`` times.
    """
    tt = t.reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - tt) * x0 + tt * x1, x1 - x0


def flow_matching_loss(
    model: Velocity, x1: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Conditional flow-matching loss ``E‖v(x_t, t) − (x1 − x0)‖²`` on a data batch ``x1``.

    The squared error is summed over data dimensions and averaged over the batch.
    """
    n = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator, device="cpu").to(x1)
    t = torch.rand(n, generator=generator).to(x1)
    xt, target = condot_path(x0, x1, t)
    err = (model(xt, t) - target) ** 2
    return err.reshape(n, -1).sum(1).mean()


def ode_sample(
    velocity: Velocity,
    x0: Tensor,
    *,
    steps: int = 50,
    method: str = "midpoint",
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    return_path: bool = False,
) -> Tensor:
    """Integrate ``dx/dt = v(x, t)`` from ``t0`` to ``t1`` (``t1 < t0`` integrates backwards).

    Fixed-step ``"euler"`` and ``"midpoint"`` are plain differentiable torch code (D-Flow
    backpropagates through them); any other ``method`` (``"dopri5"``, ``"rk4"``, ...) is handed
    to ``torchdiffeq.odeint`` with ``rtol``/``atol`` (``steps`` then only sets the step size of
    fixed-grid torchdiffeq solvers).

    Args:
        velocity: ``v(x, t)``.
        x0: ``n x ...`` initial state at ``t0``.
        steps: Number of steps for fixed-step methods.
        method: Solver name.
        t0, t1: Integration interval.
        rtol, atol: Tolerances of adaptive solvers.
        return_path: Also return the states at every step (``steps + 1`` of them), stacked.

    Returns:
        The state at ``t1`` (``n x ...``), or ``(steps + 1) x n x ...`` with ``return_path``.
    """
    if method in ("euler", "midpoint"):
        h = (t1 - t0) / steps
        x = x0
        path = [x0] if return_path else None
        for k in range(steps):
            t = t0 + k * h
            tk = batch_t(t, x)
            if method == "euler":
                x = x + h * velocity(x, tk)
            else:
                xm = x + 0.5 * h * velocity(x, tk)
                x = x + h * velocity(xm, batch_t(t + 0.5 * h, x))
            if path is not None:
                path.append(x)
        return torch.stack(path) if path is not None else x
    from torchdiffeq import odeint

    def f(t: Tensor, x: Tensor) -> Tensor:
        return velocity(x, batch_t(t, x))

    ts = (
        torch.linspace(t0, t1, steps + 1, device=x0.device, dtype=x0.dtype)
        if return_path
        else torch.tensor([t0, t1], device=x0.device, dtype=x0.dtype)
    )
    fixed_grid = method in ("rk4", "explicit_adams", "implicit_adams")
    options = {"step_size": abs(t1 - t0) / steps} if fixed_grid else None
    out = odeint(f, x0, ts, method=method, rtol=rtol, atol=atol, options=options)
    return out if return_path else out[-1]


def sde_sample(
    drift: Callable[[Tensor, Tensor], Tensor],
    sigma: Callable[[float], float],
    x0: Tensor,
    grid: Tensor,
    *,
    generator: torch.Generator | None = None,
    return_path: bool = False,
) -> Tensor:
    """Euler–Maruyama for ``dX = b(X, t) dt + σ(t) dB`` on the time ``grid`` (increasing or not).

    ``X_{k+1} = X_k + b(X_k, t_k) Δ_k + σ(t_k) sqrt(|Δ_k|) ε_k``.

    Args:
        drift: ``b(x, t)`` with ``t`` of shape ``n``.
        sigma: ``σ(t)`` for a float ``t``.
        x0: ``n x ...`` initial state.
        grid: ``K + 1`` times.
        generator: Optional CPU generator for the noise.
        return_path: Return all ``K + 1`` states stacked.
    """
    x = x0
    path = [x0] if return_path else None
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        dt = s - t
        noise = torch.randn(x.shape, generator=generator).to(x)
        x = x + drift(x, batch_t(t, x)) * dt + sigma(t) * math.sqrt(abs(dt)) * noise
        if path is not None:
            path.append(x)
    return torch.stack(path) if path is not None else x


def train_flow_matching(
    model: nn.Module,
    sample_data: Callable[[int], Tensor],
    *,
    iterations: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    grad_clip: float = 1.0,
    on_step: Callable[[int, float], None] | None = None,
    max_seconds: float = 0.0,
) -> list[float]:
    """Train ``model`` in place with the flow-matching loss; returns the loss curve.

    Adam with a cosine learning-rate decay to 10% and gradient-norm clipping.

    Args:
        model: The velocity network.
        sample_data: ``n → n x ...`` data batch (any device; moved to ``device``).
        iterations, batch_size, lr: Optimisation settings.
        device: Where to train.
        generator: CPU generator for the path noise/time draws.
        report_every: Call ``assay.report`` every this many steps (0: never).
        grad_clip: Max gradient norm (0: off).
        on_step: Optional callback ``(step, loss)``.
        max_seconds: Stop early after this much wall time (0: no limit).
    """
    import time

    t_end = time.perf_counter() + max_seconds if max_seconds > 0 else None
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=0.1 * lr)
    losses: list[float] = []
    for it in range(iterations):
        x1 = sample_data(batch_size).to(device)
        loss = flow_matching_loss(model, x1, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(it, losses[-1])
        if report_every and (it + 1) % report_every == 0:
            window = losses[-report_every:]
            assay.report(step=it + 1, fm_loss=sum(window) / len(window))
        if t_end is not None and time.perf_counter() > t_end:
            break
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------
# Old home of the job workload, now assay.generative.workloads.flow_matching
# --------------------------------------------------------------------------------------------

#: The old job entry point ``assay.generative.flow_matching:run``, an alias of the workload's.
run = entry_point(__name__, "flow_matching")
__getattr__ = forward(
    __name__,
    flow_matching=("FlowMatchingConfig", "SEARCH_SPACE"),
    pretrained=("toy_base_model", "digits_base_model"),
)
