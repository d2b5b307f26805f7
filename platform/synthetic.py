"""Synthetic systems: the noise-free truth behind ``assay demo`` and the dashboard's sample data.

The "system" is shaped like a real one: a model's accuracy as a function of learning rate (log
scale), depth, dropout and optimizer, and a latency that grows with depth — the two metrics of
a noisy, constrained optimization (maximize accuracy subject to a latency bound). The demo and
the sample data add the measurement noise themselves.

Owns: :data:`DEMO_PARAMETERS` (the search space, in the JSON form experiments take) and
:func:`demo_truth`. May import: the standard library only (pure functions).
"""

from __future__ import annotations

import math
from typing import Any

DEMO_PARAMETERS = [
    {"name": "lr", "type": "float", "bounds": [1e-5, 1e-1], "log": True},
    {"name": "layers", "type": "int", "bounds": [1, 8]},
    {"name": "dropout", "type": "float", "bounds": [0.0, 0.6]},
    {"name": "optimizer", "type": "choice", "values": ["adam", "sgd", "lamb"]},
]


def demo_truth(p: dict[str, Any]) -> tuple[float, float]:
    """Noise-free (accuracy, latency_ms) of the synthetic system."""
    opt_bonus = {"adam": 0.02, "sgd": -0.01, "lamb": 0.03}[p["optimizer"]]
    lr_term = -0.06 * (math.log10(p["lr"]) + 2.7 - 0.15 * p["layers"] / 8) ** 2
    depth = 0.05 * math.log(p["layers"]) - 0.2 * (p["dropout"] - 0.2) ** 2
    accuracy = 0.80 + lr_term + depth + opt_bonus
    latency = 6.0 + 2.4 * p["layers"] + (3.0 if p["optimizer"] == "lamb" else 0.0)
    return accuracy, latency
