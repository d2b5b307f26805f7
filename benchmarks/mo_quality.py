"""Multi-objective quality and ask latency: Assay (noisy_ehvi, parego) vs Ax's default
multi-objective strategy and Optuna (GPSampler, NSGA-II), in one script.

Problems (BoTorch test functions, negated so every objective is maximized): BraninCurrin
(d = 2), DTLZ2 (d = 6, 2 objectives) and the constrained BraninCurrin (one constraint
``slack >= 0``). Observations get Gaussian noise of 2% of each objective's range and the
methods that accept SEMs are told them. Score: ``log10(HV* - HV)`` where ``HV`` is the
hypervolume of the *noise-free* values of the feasible arms evaluated, against the problem's
reference point, and ``HV*`` the problem's maximal hypervolume; lower is better. Latency:
median wall-clock seconds of one ask.

Full run (the issue's targets: HV at least Ax's within one SE, ask latency <= 0.5x Ax's),
resumable: every finished (problem, method, seed) run is appended to the ``--cache`` file and
skipped when found there, so the run can be split (e.g. one process per method) and the table
printed from the cache with ``--table-only``::

    python benchmarks/mo_quality.py --seeds 5 --budget 30 --cache mo.json --methods ax
    python benchmarks/mo_quality.py --seeds 5 --budget 30 --cache mo.json --methods assay
    python benchmarks/mo_quality.py --seeds 5 --budget 30 --cache mo.json --table-only

Latency is reported as wall-clock and as process CPU seconds per ask: on shared cores the
wall-clock of two methods run at different times is not comparable, their CPU time is.

Reduced run (shared CPUs)::

    nice python benchmarks/mo_quality.py --seeds 2 --budget 20
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import math
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from botorch.test_functions.multi_objective import DTLZ2, BraninCurrin, ConstrainedBraninCurrin

from assay.platform.pareto import hypervolume, is_non_dominated

NOISE = 0.02  # of each objective's range


@dataclass
class Problem:
    name: str
    fn: object
    dim: int
    constrained: bool
    scale: list[float]  # rough range per objective, for the noise level

    def evaluate(self, x: list[float]) -> tuple[list[float], float]:
        """Noise-free objectives (maximized) and the constraint slack (>= 0 feasible)."""
        X = torch.tensor([x], dtype=torch.float64)
        lo, hi = self.fn.bounds
        Xs = lo + (hi - lo) * X
        Y = self.fn(Xs)[0].tolist()
        slack = float(self.fn.evaluate_slack(Xs)[0].min()) if self.constrained else 1.0
        return Y, slack

    def observe(self, x: list[float], rng: random.Random) -> dict[str, tuple[float, float]]:
        Y, slack = self.evaluate(x)
        out = {}
        for k, (y, s) in enumerate(zip(Y, self.scale, strict=True)):
            sd = NOISE * s
            out[f"f{k}"] = (y + rng.gauss(0, sd), sd)
        if self.constrained:
            out["slack"] = (slack + rng.gauss(0, 0.01), 0.01)
        return out

    def log_hv_gap(self, xs: list[list[float]]) -> float:
        pts = []
        for x in xs:
            Y, slack = self.evaluate(x)
            if slack >= 0:
                pts.append(Y)
        ref = self.fn.ref_point.to(torch.float64)
        Y = torch.tensor(pts, dtype=torch.float64) if pts else torch.zeros(0, 2)
        hv = hypervolume(Y[is_non_dominated(Y)], ref) if pts else 0.0
        return math.log10(max(self.fn.max_hv - hv, 1e-12))


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "branin_currin": lambda: Problem("branin_currin", BraninCurrin(negate=True), 2, False,
                                     [300.0, 12.0]),
    "dtlz2": lambda: Problem("dtlz2", DTLZ2(dim=6, num_objectives=2, negate=True), 6, False,
                             [2.0, 2.0]),
    "c_branin_currin": lambda: Problem("c_branin_currin", ConstrainedBraninCurrin(negate=True),
                                       2, True, [300.0, 12.0]),
}  # fmt: skip


def run_assay(
    problem: Problem, budget: int, seed: int, generator: str, settings: dict | None = None
) -> tuple[list, list]:
    import assay

    rng = random.Random(10_000 + seed)
    client = assay.Client()
    ref = problem.fn.ref_point.tolist()
    exp = client.create_experiment(
        problem.name,
        [{"name": f"x{i}", "type": "float", "bounds": [0.0, 1.0]} for i in range(problem.dim)],
        objectives=[{"name": f"f{k}", "threshold": ref[k]} for k in range(len(ref))],
        outcome_constraints=["slack >= 0"] if problem.constrained else [],
        generator=generator,
        generator_settings=settings,
        seed=seed,
    )
    xs, lat = [], []
    for _ in range(budget):
        t0, c0 = time.perf_counter(), time.process_time()
        [trial] = client.ask(exp.id)
        lat.append((time.perf_counter() - t0, time.process_time() - c0))
        x = [trial.parameters[f"x{i}"] for i in range(problem.dim)]
        xs.append(x)
        client.tell(trial.id, problem.observe(x, rng))
    return xs, lat


def run_ax(problem: Problem, budget: int, seed: int) -> tuple[list, list]:
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig

    rng = random.Random(10_000 + seed)
    client = Client(random_seed=seed)
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name=f"x{i}", bounds=(0.0, 1.0), parameter_type="float")
            for i in range(problem.dim)
        ]
    )
    ref = problem.fn.ref_point.tolist()
    client.configure_optimization(
        objective="f0, f1",
        outcome_constraints=(["slack >= 0"] if problem.constrained else [])
        + [f"f{k} >= {ref[k]}" for k in range(len(ref))],
    )
    xs, lat = [], []
    for _ in range(budget):
        t0, c0 = time.perf_counter(), time.process_time()
        [(index, params)] = client.get_next_trials(max_trials=1).items()
        lat.append((time.perf_counter() - t0, time.process_time() - c0))
        x = [float(params[f"x{i}"]) for i in range(problem.dim)]
        xs.append(x)
        client.complete_trial(index, raw_data=problem.observe(x, rng))
    return xs, lat


def run_optuna(problem: Problem, budget: int, seed: int, kind: str) -> tuple[list, list]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(10_000 + seed)

    def constraints_func(trial):  # type: ignore[no-untyped-def]
        return [-trial.user_attrs["slack"]]

    cf = constraints_func if problem.constrained else None
    sampler = (
        optuna.samplers.GPSampler(seed=seed, constraints_func=cf)
        if kind == "gp"
        else optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
    )
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    xs, lat = [], []
    for _ in range(budget):
        t0, c0 = time.perf_counter(), time.process_time()
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(problem.dim)]
        lat.append((time.perf_counter() - t0, time.process_time() - c0))
        xs.append(x)
        obs = problem.observe(x, rng)
        if problem.constrained:
            trial.set_user_attr("slack", obs["slack"][0])
        study.tell(trial, [obs["f0"][0], obs["f1"][0]])
    return xs, lat


METHODS = {
    "assay": lambda p, b, s: run_assay(p, b, s, "noisy_ehvi"),
    "assay_parego": lambda p, b, s: run_assay(p, b, s, "parego"),
    # the initial design without the centre as its first arm (the default before issue 15's
    # centre-point change): the A/B of that change
    "assay_nocentre": lambda p, b, s: run_assay(p, b, s, "noisy_ehvi", {"centre_first": False}),
    # half the QMC samples of the default (128): the cost/quality A/B of issue 15's latency
    "assay_mc64": lambda p, b, s: run_assay(p, b, s, "noisy_ehvi", {"mc_samples": 64}),
    "ax": run_ax,
    "optuna_gp": lambda p, b, s: run_optuna(p, b, s, "gp"),
    "optuna_nsga2": lambda p, b, s: run_optuna(p, b, s, "nsga2"),
}


def mean_se(v: list[float]) -> tuple[float, float]:
    m = statistics.fmean(v)
    return m, (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)


def cache_key(problem: str, method: str, seed: int, budget: int) -> str:
    return f"{problem}/{method}/seed{seed}/budget{budget}"


@contextlib.contextmanager
def locked_cache(path: str):  # type: ignore[no-untyped-def]
    """The cache as a dict, re-read and written back under an exclusive lock, so several
    processes (one per method, say) can fill the same file."""
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = {}
        if os.path.exists(path):
            with open(path) as f:
                cache = json.load(f)
        yield cache
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f, indent=0)
        os.replace(tmp, path)


def read_cache(path: str | None) -> dict:
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def run_one(problem: Problem, method: str, seed: int, budget: int) -> dict:
    """One (problem, method, seed) run: its score and per-ask latencies."""
    xs, lat = METHODS[method](problem, budget, seed)
    return {
        "log_hv_gap": problem.log_hv_gap(xs),
        "ask_wall_s": [round(w, 4) for w, _ in lat],
        "ask_cpu_s": [round(c, 4) for _, c in lat],
        "xs": [[round(v, 6) for v in x] for x in xs],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def table(cache: dict, problems: list[str], methods: list[str], seeds: list[int],
          budget: int) -> list[str]:  # fmt: skip
    """Markdown table (mean ± SE of the log10 HV gap over the seeds present, median over the
    seeds of each run's median ask wall and CPU seconds) and the target verdicts."""
    lines = [
        "| problem | method | seeds | log10 HV gap (mean ± SE) | median ask wall s "
        "| median ask CPU s |",
        "|---|---|---|---|---|---|",
    ]
    stats: dict[tuple[str, str], tuple[float, float, float, float, int]] = {}
    for pname in problems:
        for method in methods:
            runs = [cache[k] for s in seeds if (k := cache_key(pname, method, s, budget)) in cache]
            if not runs:
                continue
            m, se = mean_se([r["log_hv_gap"] for r in runs])
            wall = statistics.median(statistics.median(r["ask_wall_s"]) for r in runs)
            cpu = statistics.median(statistics.median(r["ask_cpu_s"]) for r in runs)
            stats[(pname, method)] = (m, se, wall, cpu, len(runs))
            lines.append(f"| {pname} | {method} | {len(runs)} | {m:.3f} ± {se:.3f} "
                         f"| {wall:.3f} | {cpu:.3f} |")  # fmt: skip
    for pname in problems:  # verdicts on the seeds both methods have
        pair = {
            m: {s: cache[k] for s in seeds if (k := cache_key(pname, m, s, budget)) in cache}
            for m in ("assay", "ax")
        }
        common = sorted(set(pair["assay"]) & set(pair["ax"]))
        if not common or "assay" not in methods or "ax" not in methods:
            continue
        (am, ase), (xm, xse) = (
            mean_se([pair[m][s]["log_hv_gap"] for s in common]) for m in ("assay", "ax")
        )
        aw, xw, ac, xc = (
            statistics.median(statistics.median(pair[m][s][f]) for s in common)
            for f in ("ask_wall_s", "ask_cpu_s")
            for m in ("assay", "ax")
        )
        ok = am <= xm + max(ase, xse)
        lines.append(
            f"- {pname} ({len(common)} common seeds): quality {'MET' if ok else 'MISSED'} "
            f"(assay {am:.3f} ± {ase:.3f} vs ax {xm:.3f} ± {xse:.3f}); latency assay/ax "
            f"wall {aw / xw:.2f}, CPU {ac / xc:.2f} (target <= 0.5)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-start", type=int, default=0,
                    help="first seed (explore on 100+, report on 0..)")  # fmt: skip
    ap.add_argument("--budget", type=int, default=35)
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--cache", help="JSON file of finished runs: read, skipped, appended to "
                    "after every run (a long benchmark can be done in parts)")  # fmt: skip
    ap.add_argument("--table-only", action="store_true",
                    help="print the table from --cache, run nothing")  # fmt: skip
    ap.add_argument("--json", help="write the runs of this invocation here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.INFO)  # Ax logs every trial at INFO
    warnings.filterwarnings("ignore", category=FutureWarning)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    results = read_cache(args.cache)
    if not args.table_only:
        # seeds outermost: a run stopped early still compares every method on every problem
        for seed in seeds:
            for pname in args.problems:
                for method in args.methods:
                    key = cache_key(pname, method, seed, args.budget)
                    if key in read_cache(args.cache):
                        continue
                    run = run_one(PROBLEMS[pname](), method, seed, args.budget)
                    results[key] = run
                    print(f"{key}: log10 HV gap {run['log_hv_gap']:.3f}, median ask "
                          f"{statistics.median(run['ask_wall_s']):.3f} s", flush=True)  # fmt: skip
                    if args.cache:
                        with locked_cache(args.cache) as cache:
                            cache[key] = run
    if args.cache:
        results = read_cache(args.cache)
    print("\n".join(table(results, args.problems, args.methods, seeds, args.budget)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
