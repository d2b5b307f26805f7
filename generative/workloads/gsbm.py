"""Workload: GSBM (or plain bridge matching) on the crowd-navigation tasks, then scoring.

Canonical entry point ``assay.generative.workloads.gsbm:run`` (the old
``assay.generative.gsbm:run`` is an alias). The algorithm, tasks and evaluation are
:mod:`assay.generative.gsbm` (Liu et al., ICLR 2024); this module owns the job's documented
parameters (:class:`GSBMConfig`), the search space worth tuning (:data:`SEARCH_SPACE`) and
:func:`run`.

May import :mod:`assay.generative` (the algorithm and the workload plumbing); nothing of
``assay.service`` or ``assay.storage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assay.generative.gsbm import TASKS, evaluate, gsbm
from assay.generative.workloads.common import WorkloadConfig, WorkloadRun


@dataclass
class GSBMConfig(WorkloadConfig):
    """Parameters of :func:`run`, besides the shared ones (``seed``, ``device``,
    ``report_every`` in epochs; ``cache_dir`` is unused: GSBM trains no helper model; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`).

    Attributes:
        task: ``"stunnel"`` or ``"vneck"``.
        state_cost: ``False`` runs plain bridge matching (the no-state-cost baseline).
        sigma: Diffusion ``σ`` (official: 1.0).
        obstacle_weight: Weight of the obstacle cost (0: the task's official weight).
        congestion_weight: Weight of the congestion interaction cost (official Stunnel: 50).
        epochs: Alternating stages (odd: the last trained drift is the forward one).
        pairs: Coupled endpoint pairs per stage.
        mean_knots, gamma_knots: Knots of the mean / std splines (official: 15 / 30).
        spline: ``"linear"`` (official) or ``"cubic"``.
        csoc_iterations, lr_mean, lr_gamma: Path-optimisation steps and Adam learning rates.
        matching_iterations, batch_size, lr, hidden: Bridge-matching training.
        sim_steps: Euler–Maruyama steps for couplings and evaluation.
        eval_samples: Trajectories for the metrics.
    """

    workload = "gsbm"

    task: str = "stunnel"
    state_cost: bool = True
    sigma: float = 1.0
    obstacle_weight: float = 0.0
    congestion_weight: float = 0.0
    epochs: int = 3
    pairs: int = 512
    mean_knots: int = 15
    gamma_knots: int = 30
    spline: str = "linear"
    csoc_iterations: int = 300
    lr_mean: float = 0.05
    lr_gamma: float = 0.02
    matching_iterations: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    hidden: int = 128
    sim_steps: int = 200
    eval_samples: int = 2000
    report_every: int = 1

    def validate(self) -> None:
        super().validate()
        self.require(self.task in TASKS, "task", f"must be one of {sorted(TASKS)}")
        self.positive("sigma")
        self.at_least(obstacle_weight=0, congestion_weight=0, epochs=1, pairs=2, mean_knots=3,
                      gamma_knots=3)  # fmt: skip
        self.require(self.spline in ("linear", "cubic"), "spline", "must be linear or cubic")
        self.at_least(csoc_iterations=0, matching_iterations=1, sim_steps=2)


#: The search space worth tuning (JSON form accepted by ``Client.create_experiment``).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "sigma", "type": "float", "bounds": [0.25, 2.0], "log": True},
    {"name": "obstacle_weight", "type": "float", "bounds": [100.0, 5000.0], "log": True},
    {"name": "lr_mean", "type": "float", "bounds": [0.005, 0.5], "log": True},
    {"name": "lr_gamma", "type": "float", "bounds": [0.002, 0.2], "log": True},
    {"name": "csoc_iterations", "type": "int", "bounds": [50, 1000], "log": True},
    {"name": "mean_knots", "type": "int", "bounds": [5, 30]},
    {"name": "epochs", "type": "choice", "values": [1, 3, 5], "ordered": True},
    {"name": "lr", "type": "float", "bounds": [1e-4, 1e-2], "log": True},
]


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """GSBM as a job. Metrics (see :func:`~assay.generative.gsbm.evaluate`): ``w_t1``,
    ``w_t0`` (constrain: boundary marginals), ``obstacle_cost``, ``collision_rate``,
    ``control_cost`` (minimise), ``w_floor``, ``wall_time_s``, ``iterations_per_s`` (matching
    steps per second)."""
    job = WorkloadRun.start(GSBMConfig, params)
    cfg, g, device = job.config, job.generator, job.device
    result = gsbm(
        TASKS[cfg.task], state_cost=cfg.state_cost, epochs=cfg.epochs, pairs=cfg.pairs,
        mean_knots=cfg.mean_knots, gamma_knots=cfg.gamma_knots, spline=cfg.spline,
        sigma=cfg.sigma, obstacle_weight=cfg.obstacle_weight or None,
        congestion_weight=cfg.congestion_weight, csoc_iterations=cfg.csoc_iterations,
        lr_mean=cfg.lr_mean, lr_gamma=cfg.lr_gamma, matching_iterations=cfg.matching_iterations,
        batch_size=cfg.batch_size, lr=cfg.lr, hidden=cfg.hidden, sim_steps=cfg.sim_steps,
        device=device, generator=g, report_every=cfg.report_every,
    )  # fmt: skip
    train_s = job.timer.elapsed
    metrics = evaluate(result, n=cfg.eval_samples, sim_steps=cfg.sim_steps, device=device,
                       generator=g)  # fmt: skip
    metrics["iterations_per_s"] = cfg.epochs * cfg.matching_iterations / max(train_s, 1e-9)
    return job.finish(metrics, step=cfg.epochs)
