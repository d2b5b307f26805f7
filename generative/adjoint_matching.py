"""Adjoint Matching: reward fine-tuning of flow models as memoryless stochastic optimal control.

Implements Domingo-Enrich, Drozdzal, Karrer, Chen, *Adjoint Matching: Fine-tuning Flow and
Diffusion Generative Models with Memoryless Stochastic Optimal Control* (ICLR 2025) for a
flow-matching base model ``v_base`` on the linear path ``x_t = (1 − t) x0 + t x1``.

**Target.** ``p*(x) ∝ p_base(x) · exp(λ r(x))``.

**Noise schedules.** For the linear path every ``σ(t)`` gives an SDE with the flow's marginals:
``dX = b(X, t) dt + σ(t) dB`` with ``b = v + κ(t)(v − x/t)``, ``κ = σ²/(2η)``,
``η(t) = (1 − t)/t``. The *memoryless* schedule ``σ(t) = sqrt(2η(t)) = sqrt(2(1 − t)/t)``
(``κ ≡ 1``, ``b = 2v − x/t``) makes ``X_0`` and ``X_1`` independent; the paper proves that only
then does the SOC problem ``min_u E[∫ ½‖u‖² dt − λ r(X_1)]`` with
``u = (b_ft − b_base)/σ = (1 + κ)(v_ft − v_base)/σ`` produce ``p*`` (otherwise the optimum is
biased by the value function at ``t = 0``). :class:`ConstantSchedule` is such a non-memoryless
schedule, kept for the paper's central ablation.

**Algorithm** (one iteration, :func:`adjoint_matching_step`):

1. simulate the fine-tuned SDE for ``K`` steps from ``X_0 ~ N(0, I)`` and detach;
2. *lean adjoint*: ``ã(1) = −λ ∇r(X_1)``, integrated backwards with
   ``dã/dt = −(∂b_base/∂x)ᵀ ã`` using vector–Jacobian products of the **base** drift only;
3. regress: ``L = Σ_{t∈𝒯} ‖(1 + κ)(v_ft − v_base)(X_t, t)/σ(t) + σ(t) ã(t)‖²`` (for the
   memoryless schedule ``‖(2/σ)(v_ft − v_base) + σ ã‖²``), gradient through ``v_ft`` only,
   over a subset ``𝒯`` of the time steps, with optional per-sample loss clipping.

**Discretisation (ours).** The linear part ``−κ x/t`` of the drift is integrated exactly over
each step (an exponential-integrator Euler–Maruyama step ``X_s = d·X_t + c·v(X_t, t) + s·ε``)
because ``x/t`` is singular at ``t = 0``; for the memoryless schedule the first step then draws
``X_h`` afresh from ``N(0, (1 − 2h/3) I)`` independent of ``X_0`` — the discrete counterpart of
memorylessness. The lean adjoint is the exact discrete adjoint of this base step map:
``ã_k = d_k ã_{k+1} + c_k J_{v_base}(X_k, t_k)ᵀ ã_{k+1}``.

The job that fine-tunes a toy 2-D model (region/linear reward, scored against the exact
reweighted target) or the digits U-Net (classifier log-probability reward, scored by
:func:`digits_metrics`) is the workload :mod:`assay.generative.workloads.adjoint_matching`
(``run`` here is its alias).

Example:
    >>> from assay.generative.flow_matching import MLPVelocity
    >>> from assay.generative.rewards import LinearReward
    >>> base = MLPVelocity(2)
    >>> ft, hist = adjoint_matching(base, LinearReward([1.0, 0.0]), lam=1.0, iterations=2,
    ...                             batch_size=8, num_steps=5, sample_shape=(2,))
    >>> len(hist["loss"])
    2
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import assay
from assay.generative.flow_matching import Velocity, batch_t, ode_sample
from assay.generative.legacy import entry_point, forward
from assay.platform.errors import ValidationError

Reward = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Noise schedules
# --------------------------------------------------------------------------------------------


class NoiseSchedule:
    """``σ(t)`` for the linear path, and the exponential-Euler step it induces.

    The drift is ``b(x, t) = (1 + κ(t)) v(x, t) + a(t) x`` with ``κ = σ² t / (2(1 − t))`` and
    ``a = −σ² / (2(1 − t))``.
    """

    name = "schedule"

    def sigma(self, t: float) -> float:
        raise NotImplementedError

    def kappa(self, t: float) -> float:
        s2 = self.sigma(t) ** 2
        return s2 * t / (2 * (1 - t)) if t < 1 else 0.0

    def step(self, t: float, s: float) -> tuple[float, float, float]:
        """Coefficients ``(d, c, std)`` of ``X_s = d X_t + c v(X_t, t) + std ε`` (frozen ``σ``)."""
        sig, kap = self.sigma(t), self.kappa(t)
        h = s - t
        a = -(sig**2) / (2 * (1 - t))
        if abs(a * h) < 1e-8:
            return 1.0, (1 + kap) * h, sig * math.sqrt(h)
        e = math.exp(a * h)
        var = sig**2 * (1 - e * e) / (-2 * a)
        return e, (1 + kap) * (1 - e) / (-a), math.sqrt(max(var, 0.0))

    def control_weight(self, t: float) -> float:
        """``(1 + κ(t)) / σ(t)``: maps ``v_ft − v_base`` to the control ``u``."""
        return (1 + self.kappa(t)) / self.sigma(t)


class MemorylessSchedule(NoiseSchedule):
    """``σ(t) = sqrt(2(1 − t)/t)`` (``κ ≡ 1``, drift ``2v − x/t``), with exact linear steps."""

    name = "memoryless"

    def sigma(self, t: float) -> float:
        return math.inf if t <= 0 else math.sqrt(2 * (1 - t) / t)

    def kappa(self, t: float) -> float:
        return 1.0

    def step(self, t: float, s: float) -> tuple[float, float, float]:
        # d(X u)/du = 2 u v + u σ(u) dB/du integrated exactly over [t, s] with v frozen.
        var = ((s * s - t * t) - 2 * (s**3 - t**3) / 3) / (s * s)
        return t / s, (s * s - t * t) / s, math.sqrt(max(var, 0.0))

    def control_weight(self, t: float) -> float:
        return 2.0 / self.sigma(t)


class ConstantSchedule(NoiseSchedule):
    """Non-memoryless ``σ(t) = min(c, sqrt(2(1 − t)/t))``.

    Constant ``c`` where that is below the memoryless level (all ``t ≤ 2/(2 + c²)``), so
    ``X_1`` keeps a dependence on ``X_0``; capped by the memoryless schedule near ``t = 1``,
    where a constant ``σ`` makes ``κ = σ² t/(2(1 − t))`` blow up and the step unstable.
    """

    name = "constant"

    def __init__(self, c: float = 1.0) -> None:
        if c <= 0:
            raise ValidationError("constant schedule needs sigma_const > 0", field="sigma_const")
        self.c = c

    def sigma(self, t: float) -> float:
        if t <= 0:
            return self.c
        return min(self.c, math.sqrt(max(2 * (1 - t) / t, 0.0)))


class ODESchedule(NoiseSchedule):
    """``σ ≡ 0``: the probability-flow ODE (Euler). For sampling only — no control is possible."""

    name = "ode"

    def sigma(self, t: float) -> float:
        return 0.0

    def kappa(self, t: float) -> float:
        return 0.0

    def step(self, t: float, s: float) -> tuple[float, float, float]:
        return 1.0, s - t, 0.0

    def control_weight(self, t: float) -> float:
        return math.inf


def make_schedule(name: str, sigma_const: float = 1.0) -> NoiseSchedule:
    """``"memoryless"``, ``"constant"`` (with ``sigma_const``) or ``"ode"``."""
    if name == "memoryless":
        return MemorylessSchedule()
    if name == "constant":
        return ConstantSchedule(sigma_const)
    if name == "ode":
        return ODESchedule()
    raise ValidationError(
        f"unknown schedule {name!r}; choose memoryless, constant or ode", field="schedule"
    )


def sde_trajectory(
    velocity: Velocity,
    schedule: NoiseSchedule,
    x0: Tensor,
    num_steps: int,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Simulate the schedule's SDE with velocity ``v`` on ``t_k = k/K``; returns ``X_0..X_K``."""
    xs = [x0]
    x = x0
    for k in range(num_steps):
        t, s = k / num_steps, (k + 1) / num_steps
        d, c, std = schedule.step(t, s)
        x = d * x + c * velocity(x, batch_t(t, x))
        if std > 0:
            x = x + std * torch.randn(x.shape, generator=generator).to(x)
        xs.append(x)
    return xs


@torch.no_grad()
def sample(
    velocity: Velocity,
    n: int,
    shape: tuple[int, ...],
    *,
    schedule: NoiseSchedule | str = "memoryless",
    num_steps: int = 40,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    batch: int = 4096,
) -> Tensor:
    """``n`` samples of shape ``shape`` from the SDE of ``schedule`` (or the midpoint ODE for
    ``"ode_midpoint"``), in batches; returned on CPU."""
    out = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        x0 = torch.randn(m, *shape, generator=generator).to(device)
        if schedule == "ode_midpoint":
            out.append(ode_sample(velocity, x0, steps=num_steps).cpu())
            continue
        sch = make_schedule(schedule) if isinstance(schedule, str) else schedule
        out.append(sde_trajectory(velocity, sch, x0, num_steps, generator)[-1].cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# The algorithm
# --------------------------------------------------------------------------------------------


def lean_adjoint(
    base: Velocity,
    schedule: NoiseSchedule,
    traj: list[Tensor],
    terminal: Tensor,
    first: int = 1,
) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """Integrate the lean adjoint backwards along a (detached) trajectory.

    ``ã_K = terminal`` (``= −λ∇r(X_1)``) and ``ã_k = d_k ã_{k+1} + c_k J_{v_base}(X_k, t_k)ᵀ
    ã_{k+1}`` for ``k = K−1, …, first`` — the discrete form of ``dã/dt = −(∂b_base/∂x)ᵀ ã``.

    Args:
        base: Frozen base velocity.
        schedule: Noise schedule (gives the step coefficients).
        traj: ``X_0..X_K`` (each ``n x ...``), detached.
        terminal: ``ã_K`` (``n x ...``).
        first: Smallest step index needed.

    Returns:
        ``(adjoints, base_velocities)`` indexed by step (``None`` below ``first``);
        ``base_velocities[k] = v_base(X_k, t_k)`` (detached), reused by the loss.
    """
    K = len(traj) - 1
    adj: list[Tensor | None] = [None] * (K + 1)
    vb: list[Tensor | None] = [None] * (K + 1)
    adj[K] = terminal.detach()
    for k in range(K - 1, first - 1, -1):
        t, s = k / K, (k + 1) / K
        d, c, _ = schedule.step(t, s)
        with torch.enable_grad():
            x = traj[k].detach().requires_grad_(True)
            v = base(x, batch_t(t, x))
            (vjp,) = torch.autograd.grad(v, x, grad_outputs=adj[k + 1])
        adj[k] = (d * adj[k + 1] + c * vjp).detach()
        vb[k] = v.detach()
    return adj, vb


def adjoint_matching_step(
    finetuned: nn.Module,
    base: Velocity,
    reward: Reward,
    *,
    lam: float,
    schedule: NoiseSchedule,
    num_steps: int,
    batch_size: int,
    sample_shape: tuple[int, ...],
    loss_steps: int = 0,
    loss_clip: float = 0.0,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """One Adjoint Matching loss evaluation (call ``.backward()`` on the returned loss).

    Args:
        finetuned: Trainable velocity ``v_ft``.
        base: Frozen ``v_base``.
        reward: Differentiable ``r(x) → n``.
        lam: Reward multiplier ``λ``.
        schedule: Fine-tuning noise schedule (memoryless for the paper's method).
        num_steps: ``K`` Euler–Maruyama steps.
        batch_size: Trajectories per iteration.
        sample_shape: Shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        loss_steps: Size of the random subset ``𝒯`` of time steps in the loss (0: all).
        loss_clip: Per-sample loss cap (0: none); a sample above it is scaled down to it.
        device: Device of the networks.
        generator: CPU generator for noise and the time-step subset.

    Returns:
        The loss and diagnostics (mean reward of the batch's ``X_1``, raw loss, clip fraction).
    """
    x0 = torch.randn(batch_size, *sample_shape, generator=generator).to(device)
    with torch.no_grad():
        traj = sde_trajectory(finetuned, schedule, x0, num_steps, generator)
    first = 0 if math.isfinite(schedule.sigma(0.0)) else 1
    x1 = traj[-1].detach().requires_grad_(True)
    with torch.enable_grad():
        r = reward(x1)
        (grad_r,) = torch.autograd.grad(r.sum(), x1)
    adj, vb = lean_adjoint(base, schedule, traj, -lam * grad_r, first=first)
    candidates = [
        k for k in range(first, num_steps) if 0 < schedule.sigma(k / num_steps) < math.inf
    ]
    if loss_steps and loss_steps < len(candidates):
        pick = torch.randperm(len(candidates), generator=generator)[:loss_steps]
        steps = sorted(candidates[int(i)] for i in pick)
    else:
        steps = candidates
    xs = torch.cat([traj[k] for k in steps])
    ts = torch.cat([torch.full((batch_size,), k / num_steps) for k in steps]).to(xs)
    vbase = torch.cat([vb[k] for k in steps])  # type: ignore[misc]
    a = torch.cat([adj[k] for k in steps])  # type: ignore[misc]
    shape = (-1,) + (1,) * (xs.dim() - 1)
    w = torch.tensor([schedule.control_weight(k / num_steps) for k in steps])
    sig = torch.tensor([schedule.sigma(k / num_steps) for k in steps])
    w = w.repeat_interleave(batch_size).to(xs).reshape(shape)
    sig = sig.repeat_interleave(batch_size).to(xs).reshape(shape)
    resid = w * (finetuned(xs, ts) - vbase) + sig * a
    per = (resid**2).reshape(len(steps), batch_size, -1).sum(-1).mean(0)  # per sample
    clipped = 0.0
    if loss_clip > 0:
        scale = (loss_clip / per.detach().clamp_min(1e-12)).clamp(max=1.0)
        clipped = float((scale < 1).float().mean())
        per_c = per * scale
    else:
        per_c = per
    loss = per_c.mean()
    return loss, {
        "reward": float(r.detach().mean()),
        "loss": float(per.detach().mean()),
        "clipped_fraction": clipped,
    }


def adjoint_matching(
    base: nn.Module,
    reward: Reward,
    *,
    lam: float = 1.0,
    schedule: NoiseSchedule | str = "memoryless",
    sigma_const: float = 1.0,
    num_steps: int = 40,
    iterations: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    loss_steps: int = 0,
    loss_clip: float = 0.0,
    grad_clip: float = 1.0,
    sample_shape: tuple[int, ...] = (2,),
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    callback: Callable[[int, nn.Module], dict[str, float] | None] | None = None,
    max_seconds: float = 0.0,
) -> tuple[nn.Module, dict[str, list[float]]]:
    """Fine-tune a copy of ``base`` towards ``p_base · exp(λ r)`` with Adjoint Matching.

    Args:
        base: Pretrained velocity (left untouched; a frozen copy is used as ``v_base``).
        reward: Differentiable reward.
        lam: ``λ``.
        schedule: ``"memoryless"`` (the method) or a :class:`NoiseSchedule` / name for ablations.
        sigma_const: ``c`` of the ``"constant"`` schedule.
        num_steps, iterations, batch_size, lr, loss_steps, loss_clip: See
            :func:`adjoint_matching_step`; Adam optimiser.
        grad_clip: Max parameter-gradient norm (0: off).
        sample_shape: Shape of one sample.
        device: Training device.
        generator: CPU generator.
        report_every: ``assay.report`` period in iterations (0: never).
        callback: Called as ``callback(iteration, finetuned)`` at each report; extra metrics it
            returns are reported too.
        max_seconds: Stop early after this much wall time (0: no limit).

    Returns:
        The fine-tuned model (eval mode) and the history (``loss``, ``reward`` per iteration).
    """
    sch = make_schedule(schedule, sigma_const) if isinstance(schedule, str) else schedule
    if isinstance(sch, ODESchedule):
        raise ValidationError("Adjoint Matching needs σ > 0; the ode schedule has no control",
                              field="schedule")  # fmt: skip
    base_frozen = copy.deepcopy(base).to(device).eval()
    for p in base_frozen.parameters():
        p.requires_grad_(False)
    ft = copy.deepcopy(base).to(device).train()
    for p in ft.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(ft.parameters(), lr=lr)
    hist: dict[str, list[float]] = {"loss": [], "reward": []}
    t_start = time.perf_counter()
    for it in range(iterations):
        loss, info = adjoint_matching_step(
            ft, base_frozen, reward, lam=lam, schedule=sch, num_steps=num_steps,
            batch_size=batch_size, sample_shape=sample_shape, loss_steps=loss_steps,
            loss_clip=loss_clip, device=device, generator=generator,
        )  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(ft.parameters(), grad_clip)
        opt.step()
        hist["loss"].append(info["loss"])
        hist["reward"].append(info["reward"])
        if report_every and (it + 1) % report_every == 0:
            window = slice(-report_every, None)
            metrics = {
                "am_loss": sum(hist["loss"][window]) / report_every,
                "train_reward": sum(hist["reward"][window]) / report_every,
            }
            if callback is not None:
                ft.eval()
                metrics.update(callback(it + 1, ft) or {})
                ft.train()
            assay.report(step=it + 1, **metrics)
        if max_seconds > 0 and time.perf_counter() - t_start > max_seconds:
            break
    ft.eval()
    for p in ft.parameters():
        p.requires_grad_(False)
    return ft, hist


def tilted_weights(reward_values: Tensor, lam: float) -> Tensor:
    """Self-normalised weights ``exp(λ r_i) / Σ_j exp(λ r_j)`` of base samples."""
    return torch.softmax(lam * reward_values.double(), dim=0)


# --------------------------------------------------------------------------------------------
# Scoring generated digits
# --------------------------------------------------------------------------------------------


def real_digit_features(classifier: nn.Module, target: int) -> tuple[Tensor, Tensor]:
    """Classifier features of the real digits of class ``target`` (all splits, ~180 images) and
    of all real test digits: the references of ``fd`` and ``fd_all``."""
    from assay.generative.data import load_digits_tensor

    x, y = load_digits_tensor("all")
    x_test, _ = load_digits_tensor("test")
    dev = next(classifier.parameters()).device
    with torch.no_grad():
        return classifier.features(x[y == target].to(dev)), classifier.features(x_test.to(dev))


def digits_metrics(
    samples: Tensor,
    classifier: nn.Module,
    target: int,
    real_target_features: Tensor,
    real_all_features: Tensor,
) -> dict[str, float]:
    """Scores of generated digits (clamped to ``[-1, 1]``).

    ``reward``: mean ``log p(target | x)``; ``target_accuracy``: fraction classified as
    ``target``; ``fd``: Fréchet distance to real ``target`` digits in the classifier's
    64-d feature space (realism of the fine-tuned class); ``fd_all``: to all real digits
    (realism of the base model; it grows as samples concentrate on one class — real 3s vs.
    all real digits score ~2300); ``diversity``: mean pairwise L2 distance (real digits ≈ 6.1,
    real 3s ≈ 4.5); ``label_entropy``: entropy of the predicted labels (nats).
    """
    from assay.generative.metrics import entropy, frechet_distance, mean_pairwise_distance

    samples = samples.clamp(-1, 1)  # images live in [-1, 1]; score them as images
    with torch.no_grad():
        logits = classifier(samples)
        logp = torch.log_softmax(logits, 1)
        feats = classifier.features(samples)
    pred = logits.argmax(1)
    return {
        "reward": float(logp[:, target].mean()),
        "target_accuracy": float((pred == target).float().mean()),
        "fd": frechet_distance(feats, real_target_features),
        "fd_all": frechet_distance(feats, real_all_features),
        "diversity": mean_pairwise_distance(samples),
        "label_entropy": entropy(torch.bincount(pred, minlength=10).float()),
    }


# --------------------------------------------------------------------------------------------
# Old home of the job workload, now assay.generative.workloads.adjoint_matching
# --------------------------------------------------------------------------------------------

#: The old job entry point ``assay.generative.adjoint_matching:run``, an alias of the workload's.
run = entry_point(__name__, "adjoint_matching")
__getattr__ = forward(__name__, adjoint_matching=("AdjointMatchingConfig", "SEARCH_SPACE"))
