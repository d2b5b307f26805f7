"""Assay tunes DP-SGD for synthetic tables: the best utility at a fixed privacy guarantee.

The job is :func:`assay.generative.workloads.dp_tabular.run`: it trains the small tabular
language model of Sablayrolles, Wang & Karrer (2023) with DP-SGD at a **fixed** (ε, δ) — every
trial has the same guarantee, so comparing them is fair — and returns the utility metrics.
Assay searches :data:`~assay.generative.workloads.dp_tabular.SEARCH_SPACE` (learning rate,
clipping norm, batch size, epochs, model width) to minimise
:data:`~assay.generative.workloads.dp_tabular.OBJECTIVE`, the held-out negative
log-likelihood, and tracks 1-/2-way marginal TV distance, train-on-synthetic accuracy and the ε
the accountant certifies.

Unlike a hand-written ask/tell loop, this runs the way a team would run it on a server: the
experiment carries a job spec
(``{"entrypoint": "assay.generative.workloads.dp_tabular:run", ...}``) and the orchestrator
launches each trial as a subprocess with the local executor, collects its ``assay.report(...)``
learning curve and result, and stops after ``--budget`` trials. The same experiment created
through the REST API runs inside ``assay serve``.

Privacy caveat: every trial is a separate DP-SGD run, and picking the best of many runs on the
private table leaks more than one run's ε (Papernot & Steinke 2022). Tune on public or proxy
data — here the generated A/B logs (``dataset="ab_logs"``) — and then release the private table
once with the winning hyperparameters (``assay synth release`` or
``POST /api/v1/datasets/{name}/synthetic-releases``).

Run (CPU; a trial of the full settings takes minutes)::

    python examples/tune_dp_tabular.py --budget 12 --parallelism 2
    python examples/tune_dp_tabular.py --budget 2 --tiny        # seconds, smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from typing import Any

from assay.generative.workloads.dp_tabular import OBJECTIVE, SEARCH_SPACE

ENTRYPOINT = "assay.generative.workloads.dp_tabular:run"
TRACKED = ["tv_1way", "tv_2way", "tstr_accuracy", "epsilon_prv", "train_seconds"]
#: Tiny settings for the smoke test: fewer rows and a narrower, cheaper search space.
TINY_FIXED = {"n_rows": 400, "n_synthetic": 200, "n_layers": 1, "n_heads": 2}
TINY_BOUNDS = {"batch_size": [32, 128], "epochs": [1, 2]}
TINY_WIDTHS = [8, 16]


def experiment_config(
    budget: int,
    *,
    tiny: bool = False,
    epsilon: float | None = None,
    parallelism: int = 1,
    timeout_s: float = 3600.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The experiment (JSON form) that tunes the DP-SGD job at a fixed ε.

    Args:
        budget: Number of trials (jobs) to run.
        tiny: Tiny data/model and a narrower space (tests, smoke runs).
        epsilon: Override the fixed ε of :data:`SEARCH_SPACE`.
        parallelism: Jobs at once.
        timeout_s: Per-job wall-clock limit.
        seed: Seed of the generator.

    Example:
        >>> cfg = experiment_config(4)
        >>> cfg["job"]["entrypoint"], cfg["objective"]
        ('assay.generative.workloads.dp_tabular:run', {'name': 'heldout_nll', 'minimize': True})
    """
    parameters = copy.deepcopy(SEARCH_SPACE["parameters"])
    for p in parameters:
        if p["name"] == "epsilon" and epsilon is not None:
            p["value"] = float(epsilon)
        if tiny and p["name"] in TINY_BOUNDS:
            p["bounds"] = TINY_BOUNDS[p["name"]]
        if tiny and p["name"] == "d_model":
            p["values"] = TINY_WIDTHS
    if tiny:
        parameters += [{"name": k, "type": "fixed", "value": v} for k, v in TINY_FIXED.items()]
    eps = next(p["value"] for p in parameters if p["name"] == "epsilon")
    return {
        "name": f"tune-dp-tabular-eps{eps:g}{'-tiny' if tiny else ''}-{int(time.time())}",
        "description": f"DP-SGD tabular LM hyperparameters at a fixed epsilon={eps:g}",
        "parameters": parameters,
        "parameter_constraints": list(SEARCH_SPACE.get("parameter_constraints", [])),
        "objective": {"name": OBJECTIVE["metric"], "minimize": OBJECTIVE["minimize"]},
        "tracking_metrics": TRACKED,
        "seed": seed,
        "job": {
            "entrypoint": ENTRYPOINT,
            "parallelism": parallelism,
            "max_trials": budget,
            "timeout_s": timeout_s,
            "resources": {"cpus": 1},
            "env": {"OMP_NUM_THREADS": "1"},
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Create the experiment, run its jobs with the orchestrator, return a summary."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--budget", type=int, default=12, help="number of trials (jobs)")
    ap.add_argument("--parallelism", type=int, default=1, help="jobs at once")
    ap.add_argument("--epsilon", type=float, help="the fixed epsilon (default 3)")
    ap.add_argument("--tiny", action="store_true", help="tiny data and models (smoke test)")
    ap.add_argument(
        "--database-url", help="keep the experiment here (default: a temporary SQLite file)"
    )
    ap.add_argument("--log-dir", help="job logs (default: next to the temporary database)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per-job limit, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    if args.budget < 1:
        ap.error("--budget must be >= 1")
    if args.parallelism < 1:
        ap.error("--parallelism must be >= 1")

    from assay.service.jobs.local_run import run_locally

    run = run_locally(
        experiment_config(
            args.budget, tiny=args.tiny, epsilon=args.epsilon,
            parallelism=args.parallelism, timeout_s=args.timeout, seed=args.seed,
        ),
        database_url=args.database_url, log_dir=args.log_dir, actor="tune-dp-tabular",
    )  # fmt: skip
    summary: dict[str, Any] = {
        "experiment_id": run.experiment_id, "run_state": run.run_state, "trials": run.trials,
    }  # fmt: skip
    if run.best is not None:
        best = run.best
        summary["best"] = {"arm": best.arm_name, "parameters": best.parameters,
                           "model_based": best.model_based}  # fmt: skip
        print(f"recommended at epsilon={best.parameters['epsilon']:g}: "
              f"{json.dumps(best.parameters, default=float)}")  # fmt: skip
    if args.json:
        print(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
