"""Workload: train a base flow-matching model and score its samples.

Canonical entry point ``assay.generative.workloads.flow_matching:run`` (the old
``assay.generative.flow_matching:run`` is an alias). The algorithm is
:mod:`assay.generative.flow_matching`; this module owns the job's documented parameters
(:class:`FlowMatchingConfig`), the search space worth tuning (:data:`SEARCH_SPACE`) and
:func:`run`, e.g. ``run({"data": "moons", "iterations": 2000})``.

May import :mod:`assay.generative` (the algorithm, data, metrics, the workload plumbing) and
``assay.report``; nothing of ``assay.service`` or ``assay.storage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from assay.generative.flow_matching import (
    MLPVelocity,
    UNetVelocity,
    ode_sample,
    train_flow_matching,
)
from assay.generative.workloads.common import Timer, WorkloadConfig, WorkloadRun


@dataclass
class FlowMatchingConfig(WorkloadConfig):
    """Parameters of :func:`run` (base flow-matching training), besides the shared ones
    (``seed``, ``device``, ``report_every`` in optimiser steps; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`).

    Attributes:
        data: ``"8gaussians"``, ``"checkerboard"``, ``"moons"`` or ``"digits"``.
        iterations: Optimiser steps.
        batch_size: Data batch size.
        lr: Adam learning rate (cosine-decayed to 10%).
        hidden: MLP width (toys); ``channels``: U-Net base width (digits).
        layers: MLP hidden layers.
        sample_steps: Midpoint steps for the evaluation samples.
        eval_samples: Number of generated samples to score.
    """

    workload = "flow_matching"

    data: str = "moons"
    iterations: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 128
    layers: int = 3
    channels: int = 32
    sample_steps: int = 50
    eval_samples: int = 2000
    report_every: int = 100

    def validate(self) -> None:
        super().validate()
        self.require(self.data in ("8gaussians", "checkerboard", "moons", "digits"), "data",
                     "must be one of 8gaussians, checkerboard, moons, digits")  # fmt: skip
        self.at_least(iterations=1, batch_size=2)
        self.positive("lr")
        self.at_least(sample_steps=1)


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
    job = WorkloadRun.start(FlowMatchingConfig, params)
    from assay.generative.data import get_toy, load_digits_tensor
    from assay.generative.metrics import sliced_wasserstein

    cfg, g, device = job.config, job.generator, job.device
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
    return job.finish(metrics, step=cfg.iterations)
