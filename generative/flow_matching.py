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

Job entry point :func:`run` trains a base flow on a toy density or the digits and reports its
sample quality, e.g. ``run({"data": "moons", "iterations": 2000})``.

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
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import assay
from assay.generative.jobs import (
    Timer,
    finite_metrics,
    pick_device,
    require,
    resolve_config,
    seed_everything,
)

#: ``v(x, t)`` with ``x`` of shape ``n x ...`` and ``t`` of shape ``n``.
Velocity = Callable[[Tensor, Tensor], Tensor]


def _batch_t(t: Tensor | float, x: Tensor) -> Tensor:
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
        te = self.time(_batch_t(t, x))
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
        te = self.time(_batch_t(t, x))
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
            tk = _batch_t(t, x)
            if method == "euler":
                x = x + h * velocity(x, tk)
            else:
                xm = x + 0.5 * h * velocity(x, tk)
                x = x + h * velocity(xm, _batch_t(t + 0.5 * h, x))
            if path is not None:
                path.append(x)
        return torch.stack(path) if path is not None else x
    from torchdiffeq import odeint

    def f(t: Tensor, x: Tensor) -> Tensor:
        return velocity(x, _batch_t(t, x))

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
        x = x + drift(x, _batch_t(t, x)) * dt + sigma(t) * math.sqrt(abs(dt)) * noise
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
# Base models shared by the fine-tuning / control jobs (trained once per process, see jobs.cached)
# --------------------------------------------------------------------------------------------


def toy_base_model(
    data: str,
    *,
    iterations: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    hidden: int = 128,
    layers: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> MLPVelocity:
    """A flow-matching MLP on the 2-D toy ``data``, trained once per process (memoised)."""
    from assay.generative.data import get_toy
    from assay.generative.jobs import cached, config_key

    key = config_key("toy_base", data, iterations, batch_size, lr, hidden, layers, seed)

    def build() -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        toy = get_toy(data)
        model = MLPVelocity(2, hidden=hidden, layers=layers)
        train_flow_matching(
            model,
            lambda n: toy.sample(n, generator=g),
            iterations=iterations,
            batch_size=batch_size,
            lr=lr,
            device=device,
            generator=g,
        )
        return model

    return cached(  # type: ignore[return-value]
        key,
        build,
        cache_dir=cache_dir,
        factory=lambda: MLPVelocity(2, hidden=hidden, layers=layers),
    )


def digits_base_model(
    *,
    iterations: int = 4000,
    batch_size: int = 128,
    lr: float = 2e-3,
    channels: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> UNetVelocity:
    """A flow-matching U-Net on the digits training split, trained once per process."""
    from assay.generative.data import load_digits_tensor
    from assay.generative.jobs import cached, config_key

    key = config_key("digits_base", iterations, batch_size, lr, channels, seed)

    def build() -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x, _ = load_digits_tensor("train")
        x = x.to(device)

        def sample(n: int) -> Tensor:
            idx = torch.randint(0, len(x), (n,), generator=g).to(x.device)
            return x[idx]

        model = UNetVelocity(channels)
        train_flow_matching(
            model,
            sample,
            iterations=iterations,
            batch_size=batch_size,
            lr=lr,
            device=device,
            generator=g,
        )
        return model

    return cached(  # type: ignore[return-value]
        key, build, cache_dir=cache_dir, factory=lambda: UNetVelocity(channels)
    )


# --------------------------------------------------------------------------------------------
# Job entry point
# --------------------------------------------------------------------------------------------


@dataclass
class FlowMatchingConfig:
    """Parameters of :func:`run` (base flow-matching training).

    Attributes:
        data: ``"8gaussians"``, ``"checkerboard"``, ``"moons"`` or ``"digits"``.
        iterations: Optimiser steps.
        batch_size: Data batch size.
        lr: Adam learning rate (cosine-decayed to 10%).
        hidden: MLP width (toys); ``channels``: U-Net base width (digits).
        layers: MLP hidden layers.
        sample_steps: Midpoint steps for the evaluation samples.
        eval_samples: Number of generated samples to score.
        seed: Random seed.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
        report_every: Progress report period in steps.
    """

    data: str = "moons"
    iterations: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 128
    layers: int = 3
    channels: int = 32
    sample_steps: int = 50
    eval_samples: int = 2000
    seed: int = 0
    device: str = "auto"
    report_every: int = 100

    def validate(self) -> None:
        w = "flow_matching"
        require(self.data in ("8gaussians", "checkerboard", "moons", "digits"), w, "data",
                "must be one of 8gaussians, checkerboard, moons, digits")  # fmt: skip
        require(self.iterations >= 1, w, "iterations", "must be >= 1")
        require(self.batch_size >= 2, w, "batch_size", "must be >= 2")
        require(self.lr > 0, w, "lr", "must be > 0")
        require(self.sample_steps >= 1, w, "sample_steps", "must be >= 1")


#: Search space worth tuning for base training (the JSON form ``create_experiment`` accepts).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-4, 1e-2], "log": True},
    {"name": "batch_size", "type": "int", "bounds": [64, 1024], "log": True},
    {"name": "hidden", "type": "int", "bounds": [32, 256], "log": True},
    {"name": "layers", "type": "int", "bounds": [2, 5]},
]


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """Train a base flow-matching model and score its samples.

    Metrics: ``sliced_w2`` (generated vs. held-out data; minimise), ``mean_log_density`` (toys:
    the true log-density of generated samples; maximise), ``final_loss``, ``wall_time_s``,
    ``samples_per_s``.
    """
    cfg = resolve_config(FlowMatchingConfig, params, "flow_matching")
    from assay.generative.data import get_toy, load_digits_tensor
    from assay.generative.metrics import sliced_wasserstein

    timer = Timer()
    g = seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if cfg.data == "digits":
        x, _ = load_digits_tensor("train")
        x_test, _ = load_digits_tensor("test")
        x = x.to(device)
        model: nn.Module = UNetVelocity(cfg.channels)

        def sample(n: int) -> Tensor:
            return x[torch.randint(0, len(x), (n,), generator=g).to(device)]

        shape: tuple[int, ...] = (1, 8, 8)
        toy = None
    else:
        toy = get_toy(cfg.data)
        x_test = toy.sample(cfg.eval_samples, generator=g)
        model = MLPVelocity(2, hidden=cfg.hidden, layers=cfg.layers)

        def sample(n: int) -> Tensor:
            return toy.sample(n, generator=g)

        shape = (2,)
    losses = train_flow_matching(
        model,
        sample,
        iterations=cfg.iterations,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        device=device,
        generator=g,
        report_every=cfg.report_every,
    )
    t_s = Timer()
    with torch.no_grad():
        z = torch.randn(cfg.eval_samples, *shape, generator=g).to(device)
        gen = ode_sample(model, z, steps=cfg.sample_steps).cpu()
    sps = cfg.eval_samples / max(t_s.elapsed, 1e-9)
    metrics = {
        "sliced_w2": float(sliced_wasserstein(gen, x_test)),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "samples_per_s": sps,
    }
    if toy is not None:
        lp = toy.log_prob(gen)
        metrics["mean_log_density"] = float(lp.clamp_min(-50).mean())
    metrics["wall_time_s"] = timer.elapsed
    assay.report(step=cfg.iterations, **metrics)
    return finite_metrics(metrics)
