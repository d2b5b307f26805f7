"""``assay demo``: a noisy, constrained optimization shown live in the terminal.

The "system" being tuned is synthetic but shaped like a real one: a model's accuracy as a
function of learning rate (log scale), depth and optimizer, measured with noise (each
evaluation reports a mean and its standard error), subject to a latency constraint that is
itself measured with noise. Assay's ``noisy_ei`` generator proposes each trial.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from assay.platform.synthetic import DEMO_PARAMETERS, demo_truth


def evaluate(p: dict[str, Any], rng: random.Random) -> dict[str, tuple[float, float]]:
    """One noisy measurement: each metric as (mean, SEM)."""
    acc, lat = demo_truth(p)
    acc_sem, lat_sem = 0.01, 0.8
    return {
        "accuracy": (acc + rng.gauss(0, acc_sem), acc_sem),
        "latency_ms": (lat + rng.gauss(0, lat_sem), lat_sem),
    }


def _fmt(p: dict[str, Any]) -> str:
    return f"lr={p['lr']:.2e} layers={p['layers']} dropout={p['dropout']:.2f} opt={p['optimizer']}"


def run_demo(trials: int = 25, batch: int = 1, seed: int = 0, delay: float = 0.0) -> dict:
    """Run the demo; returns the recommendation as a dict."""
    from assay.service.client import Client

    console = Console()
    rng = random.Random(seed)
    client = Client()
    exp = client.create_experiment(
        name="demo",
        parameters=DEMO_PARAMETERS,
        objective="accuracy",
        outcome_constraints=["latency_ms <= 20"],
        seed=seed,
    )
    console.print(
        f"[bold]Assay demo[/]: maximize [cyan]accuracy[/] subject to [cyan]latency_ms <= 20[/], "
        f"noisy observations (mean ± SEM), generator [magenta]noisy_ei[/], {trials} trials."
    )
    table = Table(expand=True, title="trials")
    for col in ("#", "generator", "parameters", "accuracy", "latency_ms", "best feasible", "s"):
        table.add_column(col, overflow="fold")
    best_val = -math.inf
    done = 0
    with Live(table, console=console, refresh_per_second=8, transient=False):
        while done < trials:
            t0 = time.perf_counter()
            asked = client.ask(exp.id, n=min(batch, trials - done))
            ask_s = time.perf_counter() - t0
            for t in asked:
                obs = evaluate(t.parameters, rng)
                client.tell(t.id, obs)
                acc, lat = obs["accuracy"][0], obs["latency_ms"][0]
                if lat <= 20 and acc > best_val:
                    best_val = acc
                table.add_row(
                    str(t.index),
                    t.generator,
                    _fmt(t.parameters),
                    f"{acc:.4f} ± {obs['accuracy'][1]:.3f}",
                    f"{lat:.1f} ± {obs['latency_ms'][1]:.1f}",
                    f"{best_val:.4f}" if best_val > -math.inf else "—",
                    f"{ask_s:.2f}",
                )
                done += 1
            if delay:
                time.sleep(delay)
    best = client.best(exp.id)
    true_acc, true_lat = demo_truth(best.parameters)
    est = best.estimates["accuracy"]
    console.print(
        f"[bold green]Recommended[/] arm {best.arm_name}: {_fmt(best.parameters)}\n"
        f"  model estimate accuracy {est.mean:.4f} (95% CI {est.lower:.4f}–{est.upper:.4f}), "
        f"P(feasible) {best.probability_feasible:.2f}\n"
        f"  true accuracy {true_acc:.4f}, true latency {true_lat:.1f} ms"
    )
    return best.to_dict()
