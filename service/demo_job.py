"""The demo workload of ``make serve``: a small MLP trained on scikit-learn's bundled 8x8
digits (no download), a few seconds on a CPU. ``assay serve --demo`` tunes it with
``noisy_ei`` under a model-size constraint, two jobs at a time.

Returns held-out accuracy with its binomial standard error, so the optimizer sees honest
noise, plus the model size (the constraint) and the training time.
"""

from __future__ import annotations

import math
import time
from typing import Any

import assay

DEMO_EXPERIMENT = {
    "name": "digits-mlp-demo",
    "description": "Tiny MLP on the bundled digits; each trial trains for a few seconds.",
    "parameters": [
        {"name": "lr", "type": "float", "bounds": [1e-4, 3e-1], "log": True},
        {"name": "hidden", "type": "int", "bounds": [8, 256], "log": True},
        {"name": "layers", "type": "int", "bounds": [1, 3]},
        {"name": "weight_decay", "type": "float", "bounds": [1e-6, 1e-2], "log": True},
        {"name": "optimizer", "type": "choice", "values": ["adam", "sgd"]},
    ],
    "objective": "accuracy",
    "outcome_constraints": ["params_k <= 20"],
    "tracking_metrics": ["train_seconds"],
    "generator": "noisy_ei",
    "seed": 0,
    "job": {
        "entrypoint": "assay.service.demo_job:train_digits",
        "parallelism": 2,
        "max_trials": 24,
        "timeout_s": 300,
        "max_retries": 1,
        "resources": {"cpus": 1},
        "env": {"OMP_NUM_THREADS": "1"},
    },
}


def train_digits(params: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one configuration; reports the test accuracy every epoch."""
    import torch
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(1))
    train, test = perm[:1300], perm[1300:]
    hidden, layers = int(params["hidden"]), int(params["layers"])
    mods: list[torch.nn.Module] = []
    width = 64
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    model = torch.nn.Sequential(*mods, torch.nn.Linear(width, 10))
    n_params = sum(p.numel() for p in model.parameters())
    opt_cls = torch.optim.Adam if params["optimizer"] == "adam" else torch.optim.SGD
    kwargs = {"momentum": 0.9} if params["optimizer"] == "sgd" else {}
    opt = opt_cls(
        model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"], **kwargs
    )
    t0 = time.perf_counter()
    acc = 0.0
    for epoch in range(12):
        model.train()
        for idx in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(X[test]).argmax(1) == y[test]).float().mean().item()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training diverged at epoch {epoch} (lr={params['lr']:.3g})")
        assay.report(step=epoch, accuracy=acc, loss=loss.item())
        assay.heartbeat()
    sem = math.sqrt(max(acc * (1 - acc), 1e-4) / len(test))
    return {
        "accuracy": (acc, sem),
        "params_k": n_params / 1000.0,
        "train_seconds": time.perf_counter() - t0,
    }
