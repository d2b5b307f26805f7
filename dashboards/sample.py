"""Sample experiments for the dashboard's tests, benchmark and screenshots.

The synthetic system is the one of ``assay demo`` (:func:`assay.platform.synthetic.demo_truth`):
accuracy as a function of learning rate, depth, dropout and optimizer, measured with noise,
under a latency constraint, plus an untracked memory metric. Trials are written through the
:class:`~assay.storage.base.Store` interface (quasi-random parameters, no model fits), so a
database with thousands of trials is seeded in seconds.

Example:
    >>> from assay.storage.factory import open_store
    >>> store = open_store("memory://")
    >>> exp = seed_experiment(store, "ranking-v2", n_trials=20)
    >>> len(store.get_experiment(exp.id).trials)
    20
"""

from __future__ import annotations

import random
from typing import Any

import torch

from assay.platform.experiment import Experiment, ExperimentConfig, Observation, TrialState
from assay.platform.synthetic import DEMO_PARAMETERS, demo_truth
from assay.storage.base import NewTrial, Store

SAMPLE_SPEC: dict[str, Any] = {
    "parameters": DEMO_PARAMETERS,
    "objective": "accuracy",
    "outcome_constraints": ["latency_ms <= 20"],
    "tracking_metrics": ["memory_gb"],
    "generator": "noisy_ei",
    "seed": 0,
}


def sample_observations(params: dict[str, Any], rng: random.Random) -> dict[str, Observation]:
    """Noisy accuracy and latency (with SEMs) and a noise-free memory figure."""
    acc, lat = demo_truth(params)
    return {
        "accuracy": Observation("accuracy", acc + rng.gauss(0, 0.01), 0.01, 200),
        "latency_ms": Observation("latency_ms", lat + rng.gauss(0, 0.8), 0.8, 50),
        "memory_gb": Observation("memory_gb", round(1.5 + 0.6 * params["layers"], 2)),
    }


def seed_experiment(
    store: Store,
    name: str,
    *,
    n_trials: int,
    n_running: int = 0,
    n_failed: int = 0,
    project: str = "default",
    seed: int = 0,
    batch: int = 250,
) -> Experiment:
    """Create an experiment with ``n_trials`` completed trials (then running / failed ones).

    Args:
        store: Where to write.
        name: Experiment name (unique in the project).
        n_trials: Completed trials, at Sobol' points of the demo search space.
        n_running, n_failed: Further trials left running / marked failed.
        project: The project.
        seed: Seeds the points and the measurement noise.
        batch: Trials created per transaction.
    """
    config = ExperimentConfig.from_dict({**SAMPLE_SPEC, "name": name, "seed": seed})
    exp = store.create_experiment(config, project=project)
    space = config.search_space
    total = n_trials + n_running + n_failed
    rng = random.Random(seed)
    sobol = torch.quasirandom.SobolEngine(space.compact_dim, scramble=True, seed=seed)
    # A search that looks like Bayesian optimization: 8 quasi-random points, then mostly
    # perturbations of the best feasible point so far (no model fits: seeding stays fast).
    units: list[list[float]] = []
    observations: list[dict[str, Observation]] = []
    best: tuple[float, list[float]] | None = None
    for k in range(total):
        u = sobol.draw(1).reshape(-1).tolist()
        if k >= 8 and best is not None and rng.random() < 0.75:
            u = [min(max(x + rng.gauss(0, 0.1), 0.0), 1.0) for x in best[1]]
        units.append(u)
        obs = sample_observations(space.from_unit_row(u), rng)
        observations.append(obs)
        feasible = k < n_trials and obs["latency_ms"].mean <= 20
        if feasible and (best is None or obs["accuracy"].mean > best[0]):
            best = (obs["accuracy"].mean, u)
    points = [space.from_unit_row(u) for u in units]
    created = []
    for start in range(0, total, batch):
        with store.lock_experiment(exp.id) as lock:
            base = len(lock.experiment.trials)
            chunk = points[start : start + batch]
            created += lock.add_trials(
                [
                    NewTrial(
                        arms=[(f"{base + k}_0", p)],
                        generator="sobol" if base + k < 8 else "noisy_ei",
                        state=TrialState.RUNNING,
                    )
                    for k, p in enumerate(chunk)
                ],
                actor="sample",
            )
    for k, t in enumerate(created):
        if k < n_trials:
            store.transition_trial(
                t.id,
                TrialState.COMPLETED,
                observations={t.arms[0].name: observations[k]},
                actor="sample",
            )
        elif k >= n_trials + n_running:
            store.transition_trial(
                t.id, TrialState.FAILED, reason="CUDA out of memory (exit code 137)", actor="sample"
            )
    return store.get_experiment(exp.id)


def seed_samples(store: Store, project: str = "default") -> dict[str, int]:
    """Three experiments for screenshots and tests: ``big`` (24 completed, 2 running, 1
    failed: enough for a model), ``few`` (2 completed: too few) and ``empty`` (no trials)."""
    big = seed_experiment(
        store, "ranking-v2", n_trials=24, n_running=2, n_failed=1, project=project
    )
    few = seed_experiment(store, "checkout-flow", n_trials=2, n_running=1, seed=1, project=project)
    empty = store.create_experiment(
        ExperimentConfig.from_dict(
            {
                "name": "new-idea",
                "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
                "objective": "ctr",
                "generator": "sobol",
            }
        ),
        project=project,
    )
    return {"big": big.id, "few": few.id, "empty": empty.id}


AB_SPEC: dict[str, Any] = {
    "parameters": [
        {"name": "price", "type": "float", "bounds": [5.0, 15.0]},
        {"name": "discount", "type": "float", "bounds": [0.0, 0.3]},
        {"name": "layout", "type": "choice", "values": ["grid", "list"]},
    ],
    "objective": "revenue",
    "outcome_constraints": ["bounce_rate <= +2%", "orders >= -1%"],
    "status_quo": {"price": 10.0, "discount": 0.1, "layout": "grid"},
    "generator": "noisy_ei",
}


def ab_truth(p: dict[str, Any]) -> dict[str, float]:
    """True levels of a pricing page: revenue peaks at a moderate price and discount."""
    x, d = (p["price"] - 5.0) / 10.0, p["discount"] / 0.3
    lift = 0.015 if p["layout"] == "list" else 0.0
    return {
        "revenue": 100.0 * (1 + 0.05 * (1 - (x - 0.65) ** 2 * 4) - 0.03 * (d - 0.4) ** 2 + lift),
        "bounce_rate": 0.30 * (1 + 0.05 * (x - 0.5) - 0.02 * d),
        "orders": 50.0 * (1 - 0.04 * (x - 0.5) + 0.03 * d + lift),
    }


def seed_ab_experiment(
    store: Store,
    name: str,
    *,
    rounds: int = 3,
    arms_per_batch: int = 6,
    project: str = "default",
    seed: int = 0,
    spec: dict[str, Any] | None = None,
) -> Experiment:
    """An A/B experiment: ``rounds`` completed batch trials, each the control plus
    quasi-random arms, every batch's levels shifted by a random factor (a batch effect).
    ``spec`` overrides keys of :data:`AB_SPEC` (e.g. ``objectives`` for several)."""
    d = {**AB_SPEC, "name": name, "seed": seed, **(spec or {})}
    if "objectives" in d:
        d.pop("objective", None)
    config = ExperimentConfig.from_dict(d)
    exp = store.create_experiment(config, project=project)
    space = config.search_space
    rng = random.Random(seed)
    sobol = torch.quasirandom.SobolEngine(space.compact_dim, scramble=True, seed=seed)
    for r in range(rounds):
        params = [dict(config.status_quo or {})] + [
            space.from_unit_row(sobol.draw(1).reshape(-1).tolist())
            for _ in range(arms_per_batch - 1)
        ]
        with store.lock_experiment(exp.id) as lock:
            arms = [("status_quo", params[0])] + [
                (f"{r}_{k}", p) for k, p in enumerate(params) if k > 0
            ]
            [trial] = lock.add_trials(
                [NewTrial(arms=arms, generator="sobol", state=TrialState.RUNNING)], actor="sample"
            )
        shift = {m: 1 + rng.gauss(0, 0.04) for m in ("revenue", "bounce_rate", "orders")}
        observations = {}
        for arm in trial.arms:
            observations[arm.name] = {}
            for m, v in ab_truth(arm.parameters).items():
                sem = 0.006 * v * shift[m]
                level = v * shift[m] + rng.gauss(0, sem)
                observations[arm.name][m] = Observation(m, level, sem, 40_000)
        store.transition_trial(
            trial.id, TrialState.COMPLETED, observations=observations, actor="sample"
        )
    return store.get_experiment(exp.id)
