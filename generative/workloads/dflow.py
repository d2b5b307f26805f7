"""Workload: D-Flow controlled generation on a 2-D constraint or digits inpainting.

Canonical entry point ``assay.generative.workloads.dflow:run`` (the old
``assay.generative.dflow:run`` is an alias). The algorithm and its two tasks are
:mod:`assay.generative.dflow` (Ben-Hamu et al., ICML 2024); this module owns the job's
documented parameters (:class:`DFlowConfig`), the search space worth tuning
(:data:`SEARCH_SPACE`) and :func:`run`.

May import :mod:`assay.generative` (the algorithm, data, the workload plumbing and pretrained
models); nothing of ``assay.service`` or ``assay.storage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from assay.generative.dflow import constraint2d, inpainting
from assay.generative.workloads.common import WorkloadRun
from assay.generative.workloads.pretrained import BaseFlowConfig


@dataclass
class DFlowConfig(BaseFlowConfig):
    """Parameters of :func:`run`, besides the shared ones (``seed``, ``device``, ``cache_dir``
    for the base models, ``report_every`` in L-BFGS function evaluations; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`) and the base flow's
    (``base_iterations``, ``base_channels``; see
    :class:`~assay.generative.workloads.pretrained.BaseFlowConfig`).

    Attributes:
        task: ``"constraint2d"`` (toy density, hit ``x_1 = target`` on the first coordinate)
            or ``"inpainting"`` (digits, bottom half masked).
        data: Toy density for ``constraint2d``.
        target: Constraint value ``c`` in ``x[0] = c``.
        reg_weight: Weight of the χ regulariser.
        alpha: Blend of the inverted guess in the initialisation (``0``: pure noise).
        max_iter: L-BFGS iterations.
        lr: L-BFGS step length.
        steps: Midpoint steps of the differentiated ODE solve.
        n: Number of samples (2-D) or test digits (inpainting) to solve.
    """

    workload = "dflow"

    task: str = "inpainting"
    data: str = "8gaussians"
    target: float = 0.0
    reg_weight: float = 1e-3
    alpha: float = 0.1
    max_iter: int = 30
    lr: float = 1.0
    steps: int = 8
    n: int = 64
    report_every: int = 5

    def validate(self) -> None:
        super().validate()
        self.require(self.task in ("constraint2d", "inpainting"), "task",
                     "must be constraint2d or inpainting")  # fmt: skip
        self.at_least(reg_weight=0)
        self.require(0 <= self.alpha <= 1, "alpha", "must be in [0, 1]")
        self.at_least(max_iter=1)
        self.positive("lr")
        self.at_least(steps=1, n=1)


#: The search space worth tuning (JSON form accepted by ``Client.create_experiment``).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "reg_weight", "type": "float", "bounds": [1e-5, 1.0], "log": True},
    {"name": "alpha", "type": "float", "bounds": [0.0, 0.9]},
    {"name": "max_iter", "type": "int", "bounds": [5, 100], "log": True},
    {"name": "steps", "type": "int", "bounds": [2, 20]},
    {"name": "lr", "type": "float", "bounds": [0.1, 1.0]},
]


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """D-Flow as a job. See :func:`~assay.generative.dflow.constraint2d` and
    :func:`~assay.generative.dflow.inpainting` for the metrics; also ``wall_time_s`` and
    ``samples_per_s``. Maximise ``psnr`` / ``mean_log_density``; constrain ``observed_mse`` /
    ``constraint_error`` and ``wall_time_s``."""
    job = WorkloadRun.start(DFlowConfig, params)
    cfg, g, device = job.config, job.generator, job.device
    if cfg.task == "constraint2d":
        from assay.generative.data import get_toy

        base = cfg.base_flow(cfg.data, device)
        metrics = constraint2d(
            base, get_toy(cfg.data), target=cfg.target, n=cfg.n, reg_weight=cfg.reg_weight,
            alpha=cfg.alpha, max_iter=cfg.max_iter, lr=cfg.lr, steps=cfg.steps, device=device,
            generator=g, report_every=cfg.report_every,
        )  # fmt: skip
    else:
        from assay.generative.data import load_digits_tensor

        base = cfg.base_flow("digits", device)
        x_train, _ = load_digits_tensor("train")
        x_test, _ = load_digits_tensor("test")
        pick = torch.randperm(len(x_test), generator=g)[: cfg.n]
        _, metrics = inpainting(
            base, x_test[pick], reg_weight=cfg.reg_weight, alpha=cfg.alpha,
            max_iter=cfg.max_iter, lr=cfg.lr, steps=cfg.steps,
            fill=x_train.mean(0, keepdim=True), device=device, generator=g,
            report_every=cfg.report_every,
        )  # fmt: skip
    metrics["wall_time_s"] = job.timer.elapsed
    metrics["samples_per_s"] = cfg.n / max(metrics["wall_time_s"], 1e-9)
    # The final report's step continues the evaluation count of the progress reports.
    return job.finish(metrics, step=int(metrics["function_evals"]))
