"""Assay tunes Adjoint Matching on digits: maximise reward without losing realism.

The job is :func:`assay.generative.workloads.adjoint_matching.run`: it fine-tunes a
flow-matching U-Net on scikit-learn's 8×8 digits towards ``p_base(x)·p(target | x)^λ`` (the
reward is a small classifier's log-probability of the target digit) and reports, among others:

* ``reward`` — mean ``log p(target | x)`` of the fine-tuned samples (the **objective**);
* ``diversity`` — mean pairwise distance of the samples (the **outcome constraint**: it must
  stay above ``--diversity-fraction`` × the base model's, 0.7 by default — about what going
  from all real digits (6.1) to real 3s alone (4.5) costs — so the optimizer cannot buy
  reward with a collapsed, reward-hacked generator);
* ``fd`` (Fréchet distance to real 3s in the classifier's feature space), ``fd_all``,
  ``target_accuracy``, ``wall_time_s`` (tracked).

Assay proposes learning rate, λ, number of SDE steps K and the loss's time-step subset with
its noisy-constrained EI generator. The experiment carries a job spec
(``{"entrypoint": "assay.generative.workloads.adjoint_matching:run", ...}``) and, as in
``examples/tune_dp_tabular.py``, the orchestrator launches every trial as a subprocess with the
local executor (:func:`assay.service.jobs.local_run.run_locally`); each job streams its
learning curve with ``assay.report(step=...)`` into the database and its metrics complete the
trial. The fixed settings (task, iterations, batch size, evaluation sizes, …) travel as fixed
parameters, so the job's parameters are exactly what ``run`` receives. The base flow and the
classifier are trained once (the baseline run below, in this process) and shared with the jobs
through a disk cache (``$ASSAY_GENERATIVE_CACHE``). The same experiment created through the REST
API runs inside ``assay serve``.

Run (CPU, a few minutes; CUDA is used when available)::

    python examples/tune_adjoint_matching.py --budget 12 --parallelism 2
    python examples/tune_adjoint_matching.py --budget 3 --tiny   # seconds, smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

from assay.generative.workloads.adjoint_matching import run

ENTRYPOINT = "assay.generative.workloads.adjoint_matching:run"

#: The tuned parameters (a subset of ``workloads.adjoint_matching.SEARCH_SPACE``).
PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-5, 3e-3], "log": True},
    {"name": "lam", "type": "float", "bounds": [0.5, 4.0], "log": True},
    {"name": "num_steps", "type": "int", "bounds": [8, 24]},
    {"name": "loss_steps", "type": "int", "bounds": [4, 16]},
]

#: Fixed job settings: the full example, and the tiny one used by the tests.
SETTINGS = {
    "full": {"task": "digits", "reward": "classifier", "target_class": 3, "iterations": 150,
             "batch_size": 32, "eval_samples": 500, "eval_steps": 20, "base_iterations": 3000,
             "base_channels": 32, "report_every": 25},
    "tiny": {"task": "digits", "reward": "classifier", "target_class": 3, "iterations": 4,
             "batch_size": 8, "eval_samples": 64, "eval_steps": 6, "base_iterations": 400,
             "base_channels": 16, "report_every": 2},
}  # fmt: skip
TINY_PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-5, 3e-3], "log": True},
    {"name": "lam", "type": "float", "bounds": [0.5, 4.0], "log": True},
    {"name": "num_steps", "type": "int", "bounds": [4, 6]},
    {"name": "loss_steps", "type": "int", "bounds": [2, 4]},
]
TRACKED = ["fd", "fd_all", "target_accuracy", "wall_time_s"]


def fixed_settings(*, tiny: bool = False, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """The job settings every trial shares (passed to the job as fixed parameters)."""
    return {**SETTINGS["tiny" if tiny else "full"], "seed": seed, "device": device}


def experiment_config(
    budget: int,
    diversity_bound: float,
    *,
    tiny: bool = False,
    seed: int = 0,
    device: str = "auto",
    parallelism: int = 1,
    timeout_s: float = 3600.0,
    cache_dir: str = "",
) -> dict[str, Any]:
    """The experiment (JSON form) that tunes Adjoint Matching on digits as jobs.

    Args:
        budget: Number of trials (jobs).
        diversity_bound: Outcome constraint ``diversity >= diversity_bound``.
        tiny: Tiny models and a narrower space (tests, smoke runs).
        seed: Seed of the generator and of every job.
        device: The jobs' device (``auto``: CUDA when the executor gives the job a GPU).
        parallelism: Jobs at once.
        timeout_s: Per-job wall-clock limit.
        cache_dir: Disk cache of the base flow and classifier shared by the jobs.

    Example:
        >>> cfg = experiment_config(4, 3.5)
        >>> cfg["job"]["entrypoint"], cfg["objective"], cfg["outcome_constraints"]
        ('assay.generative.workloads.adjoint_matching:run', 'reward', ['diversity >= 3.5'])
    """
    tuned = TINY_PARAMETERS if tiny else PARAMETERS
    fixed = [{"name": k, "type": "fixed", "value": v}
             for k, v in fixed_settings(tiny=tiny, seed=seed, device=device).items()]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1"}
    if cache_dir:
        env["ASSAY_GENERATIVE_CACHE"] = cache_dir
    gpus = 0
    if device != "cpu":
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
    return {
        "name": f"tune-adjoint-matching-digits{'-tiny' if tiny else ''}-{int(time.time())}",
        "description": "Adjoint Matching on digits: maximise log p(3|x), keep diversity.",
        "parameters": [dict(p) for p in tuned] + fixed,
        "objective": "reward",
        "outcome_constraints": [f"diversity >= {diversity_bound:.6g}"],
        "tracking_metrics": TRACKED,
        "seed": seed,
        "job": {
            "entrypoint": ENTRYPOINT,
            "parallelism": parallelism,
            "max_trials": budget,
            "timeout_s": timeout_s,
            "resources": {"cpus": 1, "gpus": gpus},
            "env": env,
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the base model, run the tuning jobs with the orchestrator, return a summary."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--budget", type=int, default=12, help="number of trials (jobs)")
    ap.add_argument("--parallelism", type=int, default=1, help="jobs at once")
    ap.add_argument("--tiny", action="store_true", help="tiny models and settings (smoke test)")
    ap.add_argument(
        "--diversity-fraction",
        type=float,
        default=0.7,
        help="constraint: diversity >= fraction × the base model's diversity",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--cache-dir", default="", help="disk cache for the base model/classifier (default: temp)"
    )
    ap.add_argument(
        "--database-url", help="keep the experiment here (default: a temporary SQLite file)"
    )
    ap.add_argument("--log-dir", help="job logs (default: a temporary directory)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per-job limit, seconds")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    if args.budget < 1:
        ap.error("--budget must be >= 1")
    if args.parallelism < 1:
        ap.error("--parallelism must be >= 1")

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="assay-am-cache-")
    fixed = fixed_settings(tiny=args.tiny, seed=args.seed, device=args.device)
    # The untuned base model (0 fine-tuning steps) sets the diversity bound; this run also
    # trains the base flow and the classifier into the cache the jobs load them from.
    base = run({**fixed, "iterations": 0, "report_every": 0, "cache_dir": cache_dir})
    bound = args.diversity_fraction * base["diversity"]
    print(
        f"base model: reward {base['reward']:.3f}  fd(3s) {base['fd']:.1f}  "
        f"diversity {base['diversity']:.3f}  -> constraint diversity >= {bound:.3f}",
        flush=True,
    )

    from assay.service.jobs.local_run import run_locally

    config = experiment_config(
        args.budget, bound, tiny=args.tiny, seed=args.seed, device=args.device,
        parallelism=args.parallelism, timeout_s=args.timeout, cache_dir=cache_dir,
    )  # fmt: skip
    result = run_locally(
        config, database_url=args.database_url, log_dir=args.log_dir,
        actor="tune-adjoint-matching",
    )  # fmt: skip
    tuned = {p["name"] for p in config["parameters"] if p["type"] != "fixed"}
    trials = []
    for t in result.trials:
        row = {**t, "parameters": {k: v for k, v in t["parameters"].items() if k in tuned}}
        trials.append(row)
        m = t.get("metrics")
        if m is None:
            print(f"trial {t['trial']:2d} {t['state']}: {t.get('error', '')}")
            continue
        ok = "ok " if m["diversity"] >= bound else "div"
        print(
            f"trial {t['trial']:2d} {ok} reward {m['reward']:7.3f}  "
            f"diversity {m['diversity']:.3f}  fd(3s) {m['fd']:7.1f}  "
            f"acc {m['target_accuracy']:.2f}  reports {result.reports.get(t['trial'], 0)}  "
            f"{json.dumps(row['parameters'], default=float)}"
        )
    summary: dict[str, Any] = {
        "baseline": base, "bound": bound, "experiment_id": result.experiment_id,
        "run_state": result.run_state, "database_url": result.database_url,
        "trials": trials, "reports": result.reports,
    }  # fmt: skip
    if result.best is not None:
        best = result.best
        params = {k: v for k, v in best.parameters.items() if k in tuned}
        summary["best"] = {"arm": best.arm_name, "parameters": params,
                           "probability_feasible": best.probability_feasible}  # fmt: skip
        print(f"recommended: {params} (P(feasible) {best.probability_feasible:.2f})")
    if args.json:
        print(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
