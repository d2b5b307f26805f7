"""Ask latency and model quality with thousands of completed trials (issue 19, target 2).

Problem: ``hartmann6_2c`` of :mod:`bo_quality` (6-D Hartmann, two outcome constraints, noise SD
0.1 with its SEM reported), ``n`` completed trials at uniformly random points. For each size:

* ``assay ask s``: one ``noisy_ei`` ask at default settings (hyperparameters fitted on a random
  subset of :data:`assay.platform.models.MAX_FIT_POINTS` points per metric, exact posterior on
  all ``n`` by one Cholesky, NEI baseline capped at the 200 likeliest incumbents);
* ``optuna ask s``: Optuna ``GPSampler`` (``constraints_func``) on the same data, ``ask`` plus
  the suggests, after the same trials were added to its study;
* quality of the subset fit against the exact fit (all ``n`` points, ``--exact-max`` and
  below): RMSE of the objective's posterior mean against the true function at 2,000 uniform
  test points, and the true objective (penalty 0 if infeasible) of each fit's ``noisy_ei``
  proposal; mean ± SE over seeds.

    python benchmarks/scale.py                                 # 1,000 and 5,000, 3 seeds
    python benchmarks/scale.py --sizes 1000 --seeds 2 --exact-max 1000
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bo_quality import PROBLEMS, observe

PROBLEM = PROBLEMS["hartmann6_2c"]
#: CPU seconds of the last timed asks (wall time is misleading on a shared machine).
CPU: list[float] = []


def experiment(n: int, seed: int):  # type: ignore[no-untyped-def]
    """An in-memory experiment snapshot with ``n`` completed random trials, and the data."""
    from assay.platform.experiment import (
        Arm,
        Experiment,
        ExperimentConfig,
        Observation,
        Trial,
        TrialState,
    )

    config = ExperimentConfig.from_dict({
        "name": "scale", "seed": seed,
        "parameters": [{"name": n_, "type": "float", "bounds": list(b)}
                       for n_, b in zip(PROBLEM.names, PROBLEM.bounds, strict=True)],
        "objective": {"name": "f", "minimize": True},
        "outcome_constraints": [f"{m} <= 0" for m, _ in PROBLEM.constraints],
    })  # fmt: skip
    exp = Experiment(id=1, config=config)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = [rng.uniform(lo, hi) for lo, hi in PROBLEM.bounds]
        obs = observe(PROBLEM, x, rng)
        rows.append((x, obs))
        arm = Arm(f"{i}_0", dict(zip(PROBLEM.names, x, strict=True)))
        parsed = {m: Observation.parse(m, v) for m, v in obs.items()}
        exp.trials.append(
            Trial(i + 1, 1, i, [arm], TrialState.COMPLETED, "manual", {arm.name: parsed})
        )
    return exp, rows


def true_value(x: list[float]) -> float:
    return PROBLEM.objective(x) if PROBLEM.feasible(x) else PROBLEM.penalty


def assay_ask(exp, seed: int, max_fit_points: int | None) -> tuple[float, list[float], object]:  # type: ignore[no-untyped-def]
    import assay.platform.generators.base as base
    from assay.platform import models
    from assay.platform.generators import get_generator

    fitted_box: list = []
    original = models.fit_outcome_models

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        k.update(max_fit_points=max_fit_points, subset_fit=max_fit_points is not None)
        fitted_box.append(original(*a, **k))
        return fitted_box[-1]

    base.fit_outcome_models = spy
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        res = get_generator("noisy_ei").generate(exp, 1, seed=seed)
        dt = time.perf_counter() - t0
        CPU.append(time.process_time() - c0)
    finally:
        base.fit_outcome_models = original
    [c] = res.candidates
    return dt, [c.parameters[n] for n in PROBLEM.names], fitted_box[-1]


def rmse(fitted, seed: int) -> float:  # type: ignore[no-untyped-def]
    import torch

    g = torch.Generator().manual_seed(10_000 + seed)
    X = torch.rand(2000, 6, generator=g, dtype=torch.double)
    mean, _ = fitted.predict(X)
    truth = torch.tensor([PROBLEM.objective(x) for x in X.tolist()], dtype=torch.double)
    return float(((mean[:, fitted.output_index("f")] - truth) ** 2).mean().sqrt())


def optuna_ask(rows: list, seed: int) -> float:
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def constraints_func(trial):  # type: ignore[no-untyped-def]
        return [trial.user_attrs[m] for m, _ in PROBLEM.constraints]

    sampler = optuna.samplers.GPSampler(seed=seed, constraints_func=constraints_func)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    dists = {
        n: FloatDistribution(lo, hi)
        for n, (lo, hi) in zip(PROBLEM.names, PROBLEM.bounds, strict=True)
    }
    cons = [m for m, _ in PROBLEM.constraints]
    study.add_trials([
        optuna.trial.create_trial(
            params=dict(zip(PROBLEM.names, x, strict=True)), distributions=dists, value=obs["f"][0],
            user_attrs={m: obs[m][0] for m in cons},
            system_attrs={"constraints": [obs[m][0] for m in cons]},
        )
        for x, obs in rows
    ])  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    trial = study.ask()
    for n, (lo, hi) in zip(PROBLEM.names, PROBLEM.bounds, strict=True):
        trial.suggest_float(n, lo, hi)
    CPU.append(time.process_time() - c0)
    return time.perf_counter() - t0


def mean_se(v: list[float]) -> str:
    m = statistics.fmean(v)
    se = statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{m:.4f} ± {se:.4f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="*", type=int, default=[1000, 5000])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--exact-max", type=int, default=1000, help="largest n also fitted exactly")
    p.add_argument("--no-optuna", action="store_true")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print("| n | assay ask s (median; CPU s) | optuna ask s (median; CPU s) | test RMSE subset fit | "
          "test RMSE exact fit | proposal true value subset | proposal true value exact |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        lat, olat, r_sub, r_ex, v_sub, v_ex = [], [], [], [], [], []
        cpu: list[float] = []
        ocpu: list[float] = []
        for seed in range(args.seeds):
            exp, rows = experiment(n, seed)
            dt, x, fitted = assay_ask(exp, seed, 400)
            lat.append(dt)
            cpu.append(CPU[-1])
            r_sub.append(rmse(fitted, seed))
            v_sub.append(true_value(x))
            if n <= args.exact_max:
                _, x, fitted = assay_ask(exp, seed, None)
                r_ex.append(rmse(fitted, seed))
                v_ex.append(true_value(x))
            if not args.no_optuna:
                olat.append(optuna_ask(rows, seed))
                ocpu.append(CPU[-1])
            print(f"n={n} seed={seed}: assay {dt:.2f}s optuna {olat[-1] if olat else math.nan:.2f}s",
                  file=sys.stderr, flush=True)  # fmt: skip
        na = "n/a"
        print(
            f"| {n} | {statistics.median(lat):.2f}; {statistics.median(cpu):.2f} | "
            f"{statistics.median(olat) if olat else math.nan:.2f}; "
            f"{statistics.median(ocpu) if ocpu else math.nan:.2f} | {mean_se(r_sub)} | "
            f"{mean_se(r_ex) if r_ex else na} | {mean_se(v_sub)} | {mean_se(v_ex) if v_ex else na} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
