"""Optimization quality and ask latency: Assay vs Ax vs Optuna vs random, in one run.

Problems (all minimised; observations carry Gaussian noise and report its SEM):

* ``hartmann6_l1``: Hartmann-6 with the constraint ``sum(x) <= 3`` (the L1 norm on the unit
  cube); noise SD 0.25 on objective and constraint.
* ``gramacy``: ConstrainedGramacy (Gramacy et al. 2016): ``min x1 + x2`` s.t.
  ``1.5 - x1 - 2 x2 - 0.5 sin(2 pi (x1^2 - 2 x2)) <= 0`` and ``x1^2 + x2^2 - 1.5 <= 0``;
  noise SD 0.1 on all three outcomes. Optimum about 0.5998.
* ``branin``: Branin on ``[-5, 10] x [0, 15]``, noise SD 1.0; optimum 0.397887.

Budget 30 evaluations, q = 1. Methods use their default settings: Assay ``noisy_ei``
(``assay.Client``; method ``assay``), Assay ``knowledge_gradient`` (one-shot KG valuing the
model's recommendation; method ``knowledge_gradient``; its wall-clock optimizer cap raised to
600 s so results do not depend on machine load), Ax 1.x ``Client`` (default generation
strategy, told ``(mean, sem)``), Optuna ``GPSampler`` (``constraints_func``; it takes no SEMs),
and uniform random search.

Two quality numbers per run, both noise-free:

* ``in-sample``: the best *true* objective among all arms the method evaluated that truly
  satisfy the constraints;
* ``recommended``: the true objective of the arm the method itself recommends at the end
  (Assay ``client.best`` — the model's best arm, :func:`assay.platform.analysis.best_arm` —,
  Ax ``get_best_parameterization(use_model_predictions=True)``, Optuna ``study.best_trial``,
  random: best noisy feasible observation); an infeasible recommendation scores the problem's
  penalty value and is counted. This is what ships after a noisy experiment, and what
  ``knowledge_gradient`` optimizes for; ``--kg-summary`` prints its comparison with
  ``noisy_ei`` and Ax on this number.

Latency is the wall time of each ask (Ax ``get_next_trials``; Optuna ``ask`` plus suggests).
Runs are cached per (problem, method, seed) in ``.bench-cache/bo_quality/`` so an interrupted
run resumes; ``--fresh`` ignores the cache.

    python benchmarks/bo_quality.py --seeds 5            # full run, markdown table on stdout
    python benchmarks/bo_quality.py --quick              # 2 seeds, 15 evaluations, smoke check
    python benchmarks/bo_quality.py --seeds 3 --methods assay knowledge_gradient ax --kg-summary
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".bench-cache" / "bo_quality"


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------
@dataclass
class Problem:
    name: str
    bounds: list[tuple[float, float]]
    objective: Callable[[list[float]], float]
    constraints: list[tuple[str, Callable[[list[float]], float]]]  # (metric, g(x)) with g <= 0
    noise_sd: float
    optimum: float
    penalty: float  # value charged to an infeasible recommendation
    #: parameter index -> "int" (integer within its bounds) or a list of categories (the
    #: bounds entry is then ignored); other parameters are floats.
    kinds: dict[int, str | list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f"x{i}" for i in range(len(self.bounds))]

    def assay_parameters(self) -> list[dict]:
        out = []
        for i, (n, b) in enumerate(zip(self.names, self.bounds, strict=True)):
            kind = self.kinds.get(i, "float")
            if isinstance(kind, list):
                out.append({"name": n, "type": "choice", "values": kind})
            else:
                out.append(
                    {
                        "name": n,
                        "type": kind,
                        "bounds": [int(v) for v in b] if kind == "int" else list(b),
                    }
                )
        return out

    def sample(self, rng: random.Random) -> list:
        out: list = []
        for i, (lo, hi) in enumerate(self.bounds):
            kind = self.kinds.get(i, "float")
            if isinstance(kind, list):
                out.append(rng.choice(kind))
            elif kind == "int":
                out.append(rng.randint(int(lo), int(hi)))
            else:
                out.append(rng.uniform(lo, hi))
        return out

    def feasible(self, x: list[float]) -> bool:
        return all(g(x) <= 0 for _, g in self.constraints)


_H6_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
_H6_P = [
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
]
_H6_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x: list[float]) -> float:
    total = 0.0
    for i in range(4):
        inner = sum(_H6_A[i][j] * (x[j] - 1e-4 * _H6_P[i][j]) ** 2 for j in range(6))
        total -= _H6_ALPHA[i] * math.exp(-inner)
    return total


def branin(x: list[float]) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10


_MIXED4_CAT = {"a": 0.25, "b": 0.0, "c": 0.4}


def mixed4(x: list) -> float:
    """Smooth in the floats, quadratic in the integer, an offset per category; the
    unconstrained optimum (0.25, 0.8, 3, "b") violates the constraint."""
    return (
        (x[0] - 0.25) ** 2 + (x[1] - 0.8) ** 2 + 0.05 * (x[2] - 3) ** 2
        + _MIXED4_CAT[x[3]] + 0.1 * math.sin(7 * x[0] * x[1])
    )  # fmt: skip


PROBLEMS = {
    "hartmann6_l1": Problem(
        "hartmann6_l1", [(0.0, 1.0)] * 6, hartmann6, [("l1", lambda x: sum(x) - 3.0)],
        0.25, -3.32237, 0.0,
    ),
    "gramacy": Problem(
        "gramacy", [(0.0, 1.0)] * 2, lambda x: x[0] + x[1],
        [
            ("c1", lambda x: 1.5 - x[0] - 2 * x[1] - 0.5 * math.sin(2 * math.pi * (x[0] ** 2 - 2 * x[1]))),
            ("c2", lambda x: x[0] ** 2 + x[1] ** 2 - 1.5),
        ],
        0.1, 0.5998, 2.0,
    ),
    "branin": Problem("branin", [(-5.0, 10.0), (0.0, 15.0)], branin, [], 1.0, 0.397887, 308.0),
    # Hartmann-6 with two constraints, the second active at the unconstrained optimum.
    "hartmann6_2c": Problem(
        "hartmann6_2c", [(0.0, 1.0)] * 6, hartmann6,
        [("l1", lambda x: sum(x) - 3.0), ("ball", lambda x: sum((v - 0.5) ** 2 for v in x) - 0.25)],
        0.1, math.nan, 0.0,
    ),
    # Mixed 4-D: two floats, an integer and a categorical; one constraint.
    "mixed4": Problem(
        "mixed4", [(0.0, 1.0), (0.0, 1.0), (0, 4), (0, 0)], mixed4,
        [("budget", lambda x: x[0] + x[1] + 0.15 * x[2] - 1.3)],
        0.05, math.nan, 2.0, kinds={2: "int", 3: ["a", "b", "c"]},
    ),
}  # fmt: skip


def observe(problem: Problem, x: list[float], rng: random.Random) -> dict[str, tuple[float, float]]:
    sd = problem.noise_sd
    out = {"f": (problem.objective(x) + rng.gauss(0, sd), sd)}
    for metric, g in problem.constraints:
        out[metric] = (g(x) + rng.gauss(0, sd), sd)
    return out


# ---------------------------------------------------------------------------------------------
# Methods: each returns (evaluated xs, ask seconds, recommended x or None)
# ---------------------------------------------------------------------------------------------
def run_assay(
    problem: Problem,
    budget: int,
    seed: int,
    generator: str = "noisy_ei",
    settings: dict | None = None,
) -> tuple[list, list, list | None]:
    import assay

    rng = random.Random(10_000 + seed)
    client = assay.Client()
    exp = client.create_experiment(
        name=problem.name,
        parameters=problem.assay_parameters(),
        objective={"name": "f", "minimize": True},
        outcome_constraints=[f"{m} <= 0" for m, _ in problem.constraints],
        generator=generator,
        generator_settings=settings or {},
        seed=seed,
    )
    xs, lat, model, cpu = [], [], [], []
    for _ in range(budget):
        t0, c0 = time.perf_counter(), time.process_time()
        [trial] = client.ask(exp.id)
        lat.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        model.append(trial.generator != "sobol")
        x = [trial.parameters[n] for n in problem.names]
        xs.append(x)
        client.tell(trial.id, observe(problem, x, rng))
    best = client.best(exp.id)
    return xs, (lat, model, cpu), [best.parameters[n] for n in problem.names]


def run_ax(problem: Problem, budget: int, seed: int) -> tuple[list, list, list | None]:
    from ax.api.client import Client
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

    rng = random.Random(10_000 + seed)
    client = Client(random_seed=seed)
    params: list = []
    for i, (n, b) in enumerate(zip(problem.names, problem.bounds, strict=True)):
        kind = problem.kinds.get(i, "float")
        if isinstance(kind, list):
            params.append(ChoiceParameterConfig(name=n, values=kind, parameter_type="str"))
        elif kind == "int":
            params.append(
                RangeParameterConfig(name=n, bounds=(int(b[0]), int(b[1])), parameter_type="int")
            )
        else:
            params.append(RangeParameterConfig(name=n, bounds=b, parameter_type="float"))
    client.configure_experiment(parameters=params)
    client.configure_optimization(
        objective="-f", outcome_constraints=[f"{m} <= 0" for m, _ in problem.constraints]
    )
    xs, lat, model = [], [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        trials = client.get_next_trials(max_trials=1)
        lat.append(time.perf_counter() - t0)
        [(index, params)] = trials.items()
        key = client._experiment.trials[index].generator_runs[0]._generator_key
        model.append(key not in AX_QUASI_RANDOM)
        x = [params[n] for n in problem.names]
        xs.append(x)
        client.complete_trial(index, raw_data=observe(problem, x, rng))
    try:
        params, *_ = client.get_best_parameterization(use_model_predictions=True)
        rec = [params[n] for n in problem.names]
    except Exception:  # no feasible arm found
        rec = None
    return xs, (lat, model), rec


def run_optuna(problem: Problem, budget: int, seed: int) -> tuple[list, list, list | None]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(10_000 + seed)

    def constraints_func(trial):  # type: ignore[no-untyped-def]
        return [trial.user_attrs[m] for m, _ in problem.constraints]

    sampler = optuna.samplers.GPSampler(
        seed=seed, constraints_func=constraints_func if problem.constraints else None
    )
    study = optuna.create_study(direction="minimize", sampler=sampler)
    xs, lat, model = [], [], []
    for i in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        x = []
        for j, (n, (lo, hi)) in enumerate(zip(problem.names, problem.bounds, strict=True)):
            kind = problem.kinds.get(j, "float")
            if isinstance(kind, list):
                x.append(trial.suggest_categorical(n, kind))
            elif kind == "int":
                x.append(trial.suggest_int(n, int(lo), int(hi)))
            else:
                x.append(trial.suggest_float(n, lo, hi))
        lat.append(time.perf_counter() - t0)
        model.append(i >= sampler._n_startup_trials)  # GPSampler's random start-up trials
        xs.append(x)
        obs = observe(problem, x, rng)
        for m, _ in problem.constraints:
            trial.set_user_attr(m, obs[m][0])
        study.tell(trial, obs["f"][0])
    try:
        best = study.best_trial
        rec = [best.params[n] for n in problem.names]
        if problem.constraints and any(best.user_attrs[m] > 0 for m, _ in problem.constraints):
            rec = None
    except ValueError:
        rec = None
    return xs, (lat, model), rec


def run_random(problem: Problem, budget: int, seed: int) -> tuple[list, list, list | None]:
    rng, noise = random.Random(seed), random.Random(10_000 + seed)
    xs, lat, best, rec = [], [], math.inf, None
    for _ in range(budget):
        t0 = time.perf_counter()
        x = problem.sample(rng)
        lat.append(time.perf_counter() - t0)
        xs.append(x)
        obs = observe(problem, x, noise)
        if all(obs[m][0] <= 0 for m, _ in problem.constraints) and obs["f"][0] < best:
            best, rec = obs["f"][0], x
    return xs, (lat, [False] * len(lat)), rec


def run_assay_kg(problem: Problem, budget: int, seed: int) -> tuple[list, list, list | None]:
    # Default settings, except the optimizer's wall-clock cap (60 s), raised to its maximum so
    # that the result does not depend on how busy the machine is (no other method has one).
    return run_assay(problem, budget, seed, "knowledge_gradient", {"max_seconds": 600.0})


def run_assay_qlognei(problem: Problem, budget: int, seed: int) -> tuple[list, list, list | None]:
    # noisy_ei with BoTorch's qLogNoisyExpectedImprovement (the default before the
    # analytic-candidate form, ``analytic: true``); same seeds and noise streams as ``assay``.
    return run_assay(problem, budget, seed, "noisy_ei", {"analytic": False})


#: Ax generator keys of its quasi-random initial design (every other ask is model-based).
AX_QUASI_RANDOM = {"Sobol", "Uniform", "CenterOfSearchSpace", "Center", None}

METHODS = {
    "assay": run_assay,
    "knowledge_gradient": run_assay_kg,
    "assay_qlognei": run_assay_qlognei,
    "ax": run_ax,
    "optuna": run_optuna,
    "random": run_random,
}


# ---------------------------------------------------------------------------------------------
def score(problem: Problem, xs: list, rec: list | None) -> dict:
    feasible_vals = [problem.objective(x) for x in xs if problem.feasible(x)]
    in_sample = min(feasible_vals) if feasible_vals else problem.penalty
    rec_ok = rec is not None and problem.feasible(rec)
    recommended = problem.objective(rec) if rec_ok else problem.penalty
    return {"in_sample": in_sample, "recommended": recommended, "rec_infeasible": not rec_ok}


def run_one(problem: Problem, method: str, seed: int, budget: int, fresh: bool) -> dict:
    path = CACHE / f"{problem.name}-{method}-b{budget}-s{seed}.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs, (lat, model, *cpu), rec = METHODS[method](problem, budget, seed)
    result = {**score(problem, xs, rec), "latency": lat, "model_based": model, "xs": xs, "rec": rec}
    if cpu:  # ask CPU seconds (Assay methods)
        result["cpu"] = cpu[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def model_latency(rs: list[dict]) -> float:
    """Median ask seconds over the model-based asks of the runs (all asks when none is)."""
    lat = [
        v
        for r in rs
        for v, m in zip(
            r["latency"], r.get("model_based") or [True] * len(r["latency"]), strict=True
        )
        if m
    ]
    return statistics.median(lat) if lat else math.nan


def mean_se(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return m, se


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="2 seeds, 15 evaluations")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs")
    parser.add_argument(
        "--pair",
        nargs=2,
        metavar=("A", "B"),
        help="paired per-problem differences A - B (same seeds and noise) and ask seconds",
    )
    parser.add_argument(
        "--kg-summary",
        action="store_true",
        help="compare the recommended arm of knowledge_gradient with noisy_ei (assay) and Ax",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget = 2, 15
    logging.disable(logging.WARNING)
    results: dict[tuple[str, str], list[dict]] = {}
    # Methods interleaved seed by seed so that machine load affects all of them alike.
    for pname in args.problems:
        problem = PROBLEMS[pname]
        for seed in range(args.seeds):
            for method in args.methods:
                t0 = time.perf_counter()
                r = run_one(problem, method, seed, args.budget, args.fresh)
                results.setdefault((pname, method), []).append(r)
                print(
                    f"{pname:>13} {method:>7} seed {seed}: in-sample {r['in_sample']:.4f} "
                    f"recommended {r['recommended']:.4f} ({time.perf_counter() - t0:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\nBudget {args.budget} evaluations, q=1, {args.seeds} seeds; lower is better.\n")
    print(
        "| problem | method | best feasible in-sample (mean ± SE) | recommended arm (mean ± SE) | infeasible recs | median ask s | median model-based ask s |"
    )
    print("|---|---|---|---|---|---|---|")
    for pname in args.problems:
        for method in args.methods:
            rs = results[(pname, method)]
            ins, rec = (
                mean_se([r["in_sample"] for r in rs]),
                mean_se([r["recommended"] for r in rs]),
            )
            lat = statistics.median(x for r in rs for x in r["latency"])
            bad = sum(r["rec_infeasible"] for r in rs)
            print(
                f"| {pname} | {method} | {ins[0]:.4f} ± {ins[1]:.4f} | {rec[0]:.4f} ± {rec[1]:.4f} "
                f"| {bad}/{len(rs)} | {lat:.3f} | {model_latency(rs):.3f} |"
            )
    if "assay" in args.methods and "ax" in args.methods:
        print("\nTargets: Assay quality >= Ax within one SE; Assay median ask <= 0.5x Ax's.\n")
        for pname in args.problems:
            a, x = results[(pname, "assay")], results[(pname, "ax")]
            (am, ase), (xm, xse) = (
                mean_se([r["in_sample"] for r in a]),
                mean_se([r["in_sample"] for r in x]),
            )
            la = statistics.median(v for r in a for v in r["latency"])
            lx = statistics.median(v for r in x for v in r["latency"])
            print(
                f"- {pname}: quality {'OK' if am <= xm + max(ase, xse) else 'MISS'} "
                f"(assay {am:.4f} vs ax {xm:.4f}); latency ratio assay/ax = {la / lx:.2f} "
                f"({'OK' if la <= 0.5 * lx else 'MISS'})"
            )
    peers = [m for m in ("ax", "optuna") if m in args.methods]
    if "assay" in args.methods and peers:
        print(
            "\nTargets (issue 19): Assay in-sample quality >= the best of "
            f"{'/'.join(peers)} within one SE; median model-based ask <= Optuna GPSampler's.\n"
        )
        for pname in args.problems:
            am, ase = mean_se([r["in_sample"] for r in results[(pname, "assay")]])
            best = min((mean_se([r["in_sample"] for r in results[(pname, p)]]), p) for p in peers)
            (bm, bse), bname = best
            line = (
                f"- {pname}: quality {'OK' if am <= bm + max(ase, bse) else 'MISS'} "
                f"(assay {am:.4f} vs best peer {bname} {bm:.4f})"
            )
            if "optuna" in args.methods:
                la = model_latency(results[(pname, "assay")])
                lo = model_latency(results[(pname, "optuna")])
                line += (
                    f"; model-based ask assay/optuna = {la:.3f}/{lo:.3f} s = {la / lo:.2f}x "
                    f"({'OK' if la <= lo else 'MISS'})"
                )
            print(line)
    if args.kg_summary and "knowledge_gradient" in args.methods:
        kg_summary(results, args.problems, [m for m in ("assay", "ax") if m in args.methods])
    if args.pair:
        pair_summary(results, args.problems, *args.pair)
    return 0


def _median_asks(rs: list[dict], key: str) -> float:
    """Median of per-ask ``key`` (``latency`` or ``cpu``) over the model-based asks."""
    vals = [
        v
        for r in rs
        if key in r
        for v, m in zip(r[key], r.get("model_based") or [True] * len(r[key]), strict=True)
        if m
    ]
    return statistics.median(vals) if vals else math.nan


def pair_summary(results: dict, problems: list[str], a: str, b: str) -> None:
    """Method ``a`` against ``b`` per problem: paired differences (same seeds, same noise
    streams) of both quality numbers as mean ± SE, seeds where ``a`` is better, and the median
    model-based ask wall and CPU seconds of each."""
    print(f"\nPaired differences {a} - {b} (true objective, lower is better).\n")
    print(
        f"| problem | {a} in-sample | {b} in-sample | diff in-sample | {a} better | "
        f"{a} rec | {b} rec | diff rec | {a} ask wall/CPU s | {b} ask wall/CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for pname in problems:
        ra, rb = results[(pname, a)], results[(pname, b)]
        cells = []
        for key in ("in_sample", "recommended"):
            xa, xb = [r[key] for r in ra], [r[key] for r in rb]
            d = mean_se([u - v for u, v in zip(xa, xb, strict=True)])
            cells.append(
                f"{statistics.fmean(xa):.4f} | {statistics.fmean(xb):.4f} | "
                f"{d[0]:+.4f} ± {d[1]:.4f}"
            )
            if key == "in_sample":
                wins = sum(u < v for u, v in zip(xa, xb, strict=True))
                cells[-1] += f" | {wins}/{len(xa)}"
        ask = [
            f"{_median_asks(rs, 'latency'):.3f}/{_median_asks(rs, 'cpu'):.3f}" for rs in (ra, rb)
        ]
        print(f"| {pname} | {cells[0]} | {cells[1]} | {ask[0]} | {ask[1]} |")


def kg_summary(results: dict, problems: list[str], peers: list[str]) -> None:
    """Recommended-arm true value of knowledge_gradient against each peer, per problem:
    the mean paired difference (same seeds, same noise streams) and its SE."""
    print("\nRecommended arm (true objective, lower is better): knowledge_gradient vs peers.\n")
    print("| problem | peer | KG mean | peer mean | KG - peer (paired mean ± SE) | KG better in |")
    print("|---|---|---|---|---|---|")
    for pname in problems:
        kg = [r["recommended"] for r in results[(pname, "knowledge_gradient")]]
        for peer in peers:
            other = [r["recommended"] for r in results[(pname, peer)]]
            diff = mean_se([a - b for a, b in zip(kg, other, strict=True)])
            wins = sum(a < b for a, b in zip(kg, other, strict=True))
            label = "noisy_ei" if peer == "assay" else peer
            print(
                f"| {pname} | {label} | {statistics.fmean(kg):.4f} | {statistics.fmean(other):.4f} "
                f"| {diff[0]:+.4f} ± {diff[1]:.4f} | {wins}/{len(kg)} seeds |"
            )


if __name__ == "__main__":
    sys.exit(main())
