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

With ``--objectives reward,diversity`` the trade-off itself is the result: a two-objective
experiment (``noisy_ehvi``: expected hypervolume improvement), diversity's threshold (the
reference point) at the same bound instead of a constraint; the run prints the Pareto front it
found. Objectives named ``fd``/``fd_all``/``wall_time_s`` are minimized.

Run (CPU, a few minutes; CUDA is used when available)::

    python examples/tune_adjoint_matching.py --budget 12 --parallelism 2
    python examples/tune_adjoint_matching.py --budget 3 --tiny   # seconds, smoke test
    python examples/tune_adjoint_matching.py --budget 12 --objectives reward,diversity
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

from assay.generative.workloads.adjoint_matching import run
from assay.service.jobs.local_run import job_experiment

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
#: Reported metrics that are better when smaller (minimized as objectives).
SMALLER_IS_BETTER = {"fd", "fd_all", "wall_time_s"}


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
    objectives: list[str] | None = None,
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
        objectives: Several objectives (e.g. ``["reward", "diversity"]``): a multi-objective
            experiment; ``diversity``, when one of them, gets ``diversity_bound`` as its
            threshold instead of the constraint.

    Example:
        >>> cfg = experiment_config(4, 3.5)
        >>> cfg["job"]["entrypoint"], cfg["objective"], cfg["outcome_constraints"]
        ('assay.generative.workloads.adjoint_matching:run', 'reward', ['diversity >= 3.5'])
        >>> experiment_config(4, 3.5, objectives=["reward", "diversity"])["objectives"]
        [{'name': 'reward', 'minimize': False}, {'name': 'diversity', 'minimize': False, 'threshold': 3.5}]
    """
    goal: dict[str, Any] = {
        "objective": "reward",
        "outcome_constraints": [f"diversity >= {diversity_bound:.6g}"],
        "tracking_metrics": TRACKED,
    }
    if objectives and len(objectives) > 1:
        objs: list[dict[str, Any]] = []
        for m in objectives:
            o: dict[str, Any] = {"name": m, "minimize": m in SMALLER_IS_BETTER}
            if m == "diversity":
                o["threshold"] = float(f"{diversity_bound:.6g}")
            objs.append(o)
        goal = {
            "objectives": objs,
            "outcome_constraints": [] if "diversity" in objectives else goal["outcome_constraints"],
            "tracking_metrics": [m for m in [*TRACKED, "diversity"] if m not in objectives],
        }
    return job_experiment(
        name=f"tune-adjoint-matching-digits{'-tiny' if tiny else ''}-{int(time.time())}",
        description="Adjoint Matching on digits: maximise log p(3|x), keep diversity.",
        entrypoint=ENTRYPOINT,
        tuned=TINY_PARAMETERS if tiny else PARAMETERS,
        fixed=fixed_settings(tiny=tiny, seed=seed, device=device),
        goal=goal,
        budget=budget,
        seed=seed,
        device=device,
        parallelism=parallelism,
        timeout_s=timeout_s,
        cache_dir=cache_dir,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the base model, run the tuning jobs with the orchestrator, return a summary."""
    from assay.service.jobs.local_run import parse_tuning_arguments, run_tuning, tuning_arguments

    ap = tuning_arguments(__doc__, budget=12)
    ap.add_argument(
        "--diversity-fraction",
        type=float,
        default=0.7,
        help="constraint: diversity >= fraction × the base model's diversity",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--objectives",
        default="",
        help="several objectives, comma-separated (e.g. reward,diversity): print the front",
    )
    ap.add_argument(
        "--cache-dir", default="", help="disk cache for the base model/classifier (default: temp)"
    )
    args = parse_tuning_arguments(ap, argv)

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
    config = experiment_config(
        args.budget, bound, tiny=args.tiny, seed=args.seed, device=args.device,
        parallelism=args.parallelism, timeout_s=args.timeout, cache_dir=cache_dir,
        objectives=[m.strip() for m in args.objectives.split(",") if m.strip()] or None,
    )  # fmt: skip

    def line(m: dict[str, Any]) -> str:
        ok = "ok " if m["diversity"] >= bound else "div"
        return (f"{ok} reward {m['reward']:7.3f}  diversity {m['diversity']:.3f}  "
                f"fd(3s) {m['fd']:7.1f}  acc {m['target_accuracy']:.2f}")  # fmt: skip

    def front(result: Any, tuned: set[str]) -> dict[str, Any]:
        if "objectives" not in config:
            return {}
        return {"front": print_front(result.database_url, result.experiment_id, tuned)}

    return run_tuning(config, args, actor="tune-adjoint-matching", line=line, baseline=base,
                      bound=bound, extend=front)  # fmt: skip


def print_front(database_url: str, experiment_id: int, tuned: set[str]) -> list[dict[str, Any]]:
    """Print the Pareto front the run found (:meth:`assay.Client.pareto`) and return it."""
    import assay

    with assay.Client(database_url) as client:
        report = client.pareto(experiment_id)
    names = [o["name"] for o in report.objectives]
    print(f"Pareto front ({len(report.front)} arm(s)), hypervolume "
          f"{report.hypervolume if report.hypervolume is not None else report.observed_hypervolume:.4g}"
          f" against {json.dumps(report.reference_point)}")  # fmt: skip
    front = []
    for a in report.arms:
        if not a.on_front:
            continue
        est = {m: round(a.estimates[m].mean, 4) for m in names if m in a.estimates}
        params = {k: v for k, v in a.parameters.items() if k in tuned}
        print(f"  {a.arm_name}: {est}  P(front) {a.probability_front}  {json.dumps(params)}")
        front.append({"arm": a.arm_name, "estimates": est, "parameters": params})
    return front


if __name__ == "__main__":
    main(sys.argv[1:])
