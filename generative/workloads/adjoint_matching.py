"""Workload: Adjoint Matching reward fine-tuning, then scoring.

Canonical entry point ``assay.generative.workloads.adjoint_matching:run`` (the old
``assay.generative.adjoint_matching:run`` is an alias). The algorithm is
:mod:`assay.generative.adjoint_matching` (Domingo-Enrich et al., ICLR 2025); this module owns
the job's documented parameters (:class:`AdjointMatchingConfig`), the search space worth tuning
(:data:`SEARCH_SPACE`) and :func:`run`: fine-tune a toy 2-D base flow (region/linear reward,
scored against the exact reweighted target) or the digits U-Net (classifier log-probability
reward, scored by reward, Fréchet distance in the classifier's feature space and diversity).

May import :mod:`assay.generative` (the algorithm, data, metrics, rewards, the workload
plumbing and pretrained models) and ``assay.report``; nothing of ``assay.service`` or
``assay.storage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from assay.generative.adjoint_matching import (
    adjoint_matching,
    digits_metrics,
    make_schedule,
    real_digit_features,
    sample,
    tilted_weights,
)
from assay.generative.workloads.common import Timer, WorkloadRun
from assay.generative.workloads.pretrained import BaseFlowConfig, digits_classifier


@dataclass
class AdjointMatchingConfig(BaseFlowConfig):
    """Parameters of :func:`run`, besides the shared ones (``seed``, ``device``, ``cache_dir``
    for the base models and the classifier, ``report_every`` in iterations; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`) and the base flow's
    (``base_iterations``, default 4000, and ``base_channels``; see
    :class:`~assay.generative.workloads.pretrained.BaseFlowConfig`).

    Attributes:
        task: ``"digits"`` (U-Net base, classifier reward) or a 2-D toy (``"8gaussians"``,
            ``"moons"``, ``"checkerboard"``).
        reward: Toys: ``"linear"`` (``r = x_1``) or ``"region"`` (disc at ``region_center``).
            Digits: ``"classifier"`` (``log p(target_class | x)``).
        lam: Reward multiplier ``λ``.
        lr: Adam learning rate.
        num_steps: ``K``, SDE steps per trajectory.
        loss_steps: Time steps per trajectory in the loss (0: all ``K − 1``).
        loss_clip: Per-sample loss cap (0: off).
        iterations: Fine-tuning iterations.
        batch_size: Trajectories per iteration.
        schedule: ``"memoryless"`` (the method) or ``"constant"`` (ablation).
        sigma_const: ``c`` of the constant schedule.
        target_class: Digit whose log-probability is the reward.
        region_center_x, region_center_y, region_scale: The region reward's disc.
        eval_samples: Samples used for the metrics.
        eval_steps: SDE steps for evaluation sampling.
    """

    workload = "adjoint_matching"

    task: str = "digits"
    reward: str = "classifier"
    lam: float = 1.0
    lr: float = 3e-4
    num_steps: int = 20
    loss_steps: int = 0
    loss_clip: float = 0.0
    iterations: int = 200
    batch_size: int = 64
    schedule: str = "memoryless"
    sigma_const: float = 1.0
    target_class: int = 3
    region_center_x: float = 2.0
    region_center_y: float = 0.0
    region_scale: float = 1.0
    eval_samples: int = 1000
    eval_steps: int = 40
    base_iterations: int = 4000
    report_every: int = 25

    def validate(self) -> None:
        super().validate()
        self.require(self.task in ("digits", "8gaussians", "moons", "checkerboard"), "task",
                     "must be digits, 8gaussians, moons or checkerboard")  # fmt: skip
        ok = ("classifier",) if self.task == "digits" else ("linear", "region")
        self.require(self.reward in ok, "reward", f"must be one of {ok} for task {self.task!r}")
        self.at_least(lam=0)
        self.positive("lr")
        self.at_least(num_steps=2, loss_steps=0, loss_clip=0, iterations=0, batch_size=2)
        self.require(self.schedule in ("memoryless", "constant"), "schedule",
                     "must be memoryless or constant")  # fmt: skip
        self.require(0 <= self.target_class <= 9, "target_class", "must be a digit 0-9")
        self.at_least(eval_samples=10)


#: The search space worth tuning (JSON form accepted by ``Client.create_experiment``).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [3e-5, 3e-3], "log": True},
    {"name": "lam", "type": "float", "bounds": [0.25, 4.0], "log": True},
    {"name": "num_steps", "type": "int", "bounds": [10, 40]},
    {"name": "loss_steps", "type": "int", "bounds": [4, 20]},
    {"name": "loss_clip", "type": "float", "bounds": [1.0, 1000.0], "log": True},
    {"name": "batch_size", "type": "int", "bounds": [16, 256], "log": True},
    {"name": "iterations", "type": "int", "bounds": [50, 1000], "log": True},
]


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """Adjoint Matching as a job: fine-tune, then score.

    Metrics (all floats):

    * digits (see :func:`~assay.generative.adjoint_matching.digits_metrics`): ``reward``
      (maximise), ``target_accuracy``, ``fd`` (to real target-class digits), ``fd_all``,
      ``diversity`` (constrain: reward hacking collapses it), ``label_entropy``, and the same
      for the base model as ``base_reward``, ``base_fd``, ``base_diversity``;
    * toys: ``reward``, ``sw_to_target`` (sliced W2 to the exact tilted target, minimise),
      ``sw_base_to_target``, ``mean_log_density``;
    * always: ``final_loss``, ``wall_time_s``, ``iterations_per_s``, ``samples_per_s``.
    """
    job = WorkloadRun.start(AdjointMatchingConfig, params)
    cfg, g, device = job.config, job.generator, job.device
    metrics: dict[str, float] = {}
    base = cfg.base_flow(cfg.task, device)
    if cfg.task == "digits":
        from assay.generative.rewards import ClassifierLogProb

        clf = digits_classifier(cache_dir=job.cache_dir, device=device).to(device)
        reward: nn.Module = ClassifierLogProb(clf, cfg.target_class)
        shape: tuple[int, ...] = (1, 8, 8)
        real_feats = real_digit_features(clf, cfg.target_class)
    else:
        from assay.generative.data import get_toy
        from assay.generative.rewards import LinearReward, RegionReward

        reward = (
            LinearReward([1.0, 0.0])
            if cfg.reward == "linear"
            else RegionReward([cfg.region_center_x, cfg.region_center_y], cfg.region_scale)
        ).to(device)
        shape = (2,)
    t_train = Timer()
    ft, hist = adjoint_matching(
        base, reward, lam=cfg.lam, schedule=cfg.schedule, sigma_const=cfg.sigma_const,
        num_steps=cfg.num_steps, iterations=cfg.iterations, batch_size=cfg.batch_size,
        lr=cfg.lr, loss_steps=cfg.loss_steps, loss_clip=cfg.loss_clip, sample_shape=shape,
        device=device, generator=g, report_every=cfg.report_every,
    )  # fmt: skip
    train_s = t_train.elapsed
    t_s = Timer()
    gen = sample(ft, cfg.eval_samples, shape, schedule=cfg.schedule if cfg.schedule ==
                 "memoryless" else make_schedule(cfg.schedule, cfg.sigma_const),
                 num_steps=cfg.eval_steps, device=device, generator=g)  # fmt: skip
    sps = cfg.eval_samples / max(t_s.elapsed, 1e-9)
    base_gen = sample(base, cfg.eval_samples if cfg.task == "digits" else 20 * cfg.eval_samples,
                      shape, num_steps=cfg.eval_steps, device=device, generator=g)  # fmt: skip
    if cfg.task == "digits":
        metrics.update(digits_metrics(gen.to(device), clf, cfg.target_class, *real_feats))
        for k, v in digits_metrics(base_gen.to(device), clf, cfg.target_class, *real_feats).items():
            metrics[f"base_{k}"] = v
    else:
        from assay.generative.metrics import sliced_wasserstein

        toy = get_toy(cfg.task)
        with torch.no_grad():
            r_gen = reward(gen.to(device)).cpu()
            r_base = reward(base_gen.to(device)).cpu()
        wts = tilted_weights(r_base, cfg.lam)
        metrics["reward"] = float(r_gen.mean())
        metrics["base_reward"] = float(r_base.mean())
        metrics["sw_to_target"] = float(sliced_wasserstein(gen, base_gen, y_weights=wts))
        metrics["sw_base_to_target"] = float(
            sliced_wasserstein(base_gen[: cfg.eval_samples], base_gen, y_weights=wts)
        )
        metrics["mean_log_density"] = float(toy.log_prob(gen).clamp_min(-50).mean())
    n_last = max(1, min(20, len(hist["loss"])))
    metrics["final_loss"] = sum(hist["loss"][-n_last:]) / n_last if hist["loss"] else 0.0
    metrics["iterations_per_s"] = cfg.iterations / max(train_s, 1e-9)
    metrics["samples_per_s"] = sps
    return job.finish(metrics, step=cfg.iterations)
