"""Reproduce the comparison of Jiang et al. (NeurIPS 2020), "Efficient Nonmyopic Bayesian
Optimization via One-Shot Multi-Step Trees", on low-dimensional synthetic functions.

Methods (all on the same Assay GP: ``SingleTaskGP`` + ``Standardize``, MAP hyperparameters,
warm-started between asks):

* ``random``     uniform random search;
* ``ei``         one-step EI: ``multi_step`` with ``horizon=1`` (analytic log-EI, same maximizer
  as EI, ``best_f`` = best posterior mean), optimized with at least the platform's usual effort;
* ``ms2``/``ms3`` ``multi_step`` with ``horizon`` 2 / 3 and the default fantasies;
* ``ei``, ``ms2`` and ``ms3`` model the noise-free functions with a small fixed noise
  (``noise="fixed"``), as the authors did; ``noisy_ei`` keeps its inferred noise;
* ``noisy_ei``   Assay's noisy-constrained EI (qLogNEI), default settings.

Protocol (the paper's): an initial design of ``2 d`` uniform random points shared by every
method of a seed, then ``budget_mult * d`` further sequential asks (``20 d`` in the paper:
``max_trials = 2 d + budget_mult * d``, so the lookahead horizon shrinks at the end),
noise-free evaluations. Functions: the paper's five (``PAPER_FUNCTIONS``) and five with
narrow or deceptive basins (``NARROW_FUNCTIONS``: ``TwoBasin``, a narrow global basin beside a
broad local one as in issue 20; log Goldstein-Price; Rastrigin, Michalewicz and Holder table
in 2-D). Metric: GAP = (f(best initial) - f(best)) / (f(best initial) - f*) for minimisation,
i.e. the fraction of the initial gap to the optimum that was closed (1 = optimum found, 0 =
"stuck": never better than the initial design). The table gives mean GAP +- standard error
over seeds, the stuck runs, the *paired* GAP differences of ``ms2``/``ms3`` against ``ei`` and
``noisy_ei`` (the same seed shares the initial design), the median seconds per ask and its
ratio to ``noisy_ei``'s.

Results are cached per (function, method, seed) as JSON under
``benchmarks/results/multistep/init2d+<mult>d/`` (committed, so the table grows across
sessions; ``.bench-cache/multistep-quick/...`` for ``--quick``), so an interrupted run resumes where it stopped and a run can be done in parts
(``--functions``, ``--methods``, ``--seeds``); ``--table`` only prints the table of what is
cached. The full protocol (10 functions x 4 methods x 10 seeds, 40 asks each in 2-D) takes
hours on one core: run it in parts with ``--workers``.

Two studies back the generator's defaults:

* ``--study fantasies``: for GP states along BO runs, the first-stage decision chosen with
  ``m`` fantasies per level is scored by a high-fidelity estimate of its lookahead value (the
  rest of a 32-fantasy / 8x8-fantasy tree re-optimized with that decision fixed), next to the
  optimization time. The default is the cheapest setting whose decisions lose little value.
* ``--study warmstart``: along BO runs, every ask is optimized cold (raw-sample
  initialization) and warm (``warmstart_multistep`` from the previous optimal tree) with the
  same restarts, and warm with half the restarts; time and acquisition value are compared.

Examples:
    nice -n 10 python benchmarks/multistep.py --quick
    nice -n 10 python benchmarks/multistep.py --seeds 10 --workers 8   # the full protocol
    nice -n 10 python benchmarks/multistep.py --seeds 4 --budget-mult 10 \\
        --functions branin twobasin2 goldsteinprice --methods ei noisy_ei ms2
    python benchmarks/multistep.py --table
    nice -n 10 python benchmarks/multistep.py --functions branin --methods ms2 --seeds 3 \\
        --cache .bench-cache/multistep-check      # rerun without touching the committed cache
    nice -n 10 python benchmarks/multistep.py --study fantasies
    nice -n 10 python benchmarks/multistep.py --study warmstart
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.optim import optimize_acqf
from botorch.test_functions import synthetic
from torch import Tensor

from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Objective,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.space import DTYPE, Float, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
#: Full-protocol runs are committed (benchmarks/results/), so the table is built over sessions.
CACHE = ROOT / "benchmarks" / "results" / "multistep"
CACHE_QUICK = ROOT / ".bench-cache" / "multistep-quick"


# -- problems ---------------------------------------------------------------------------------
class TwoBasin(synthetic.SyntheticTestFunction):
    """A narrow global basin beside a broad local one on ``[-2, 2]^2`` (minimisation), the
    kind of function of issue 20: ``f(x) = -exp(-|x - b|^2 / (2 * 0.8^2))
    - 1.5 exp(-|x - a|^2 / (2 * 0.25^2))`` with the broad basin at ``b = (-0.6, -0.5)`` and the
    narrow one at ``a = (1.2, 1.1)``; optimum ``~ -1.511`` near ``a`` (the broad basin's tail adds
    ~0.011)."""

    dim = 2
    continuous_inds = [0, 1]
    _bounds = [(-2.0, 2.0), (-2.0, 2.0)]
    _optimal_value = -1.5003
    BROAD = (-0.6, -0.5)
    NARROW = (1.2, 1.1)

    def __init__(self, noise_std: float | None = None, negate: bool = False) -> None:
        super().__init__(noise_std=noise_std, negate=negate)
        x = torch.tensor([self.NARROW], dtype=DTYPE)
        self._optimal_value = float(self.evaluate_true(x))

    def _evaluate_true(self, X: Tensor) -> Tensor:
        b = X.new_tensor(self.BROAD)
        a = X.new_tensor(self.NARROW)
        broad = torch.exp(-((X - b) ** 2).sum(-1) / (2 * 0.8**2))
        narrow = 1.5 * torch.exp(-((X - a) ** 2).sum(-1) / (2 * 0.25**2))
        return -broad - narrow


class GoldsteinPrice(synthetic.SyntheticTestFunction):
    """Goldstein-Price on ``[-2, 2]^2`` in the usual log form ``log(GP(x))`` (a narrow curved
    valley, several local minima, a huge dynamic range without the log); optimum
    ``log 3`` at ``(0, -1)``."""

    dim = 2
    continuous_inds = [0, 1]
    _bounds = [(-2.0, 2.0), (-2.0, 2.0)]
    _optimal_value = math.log(3.0)

    def _evaluate_true(self, X: Tensor) -> Tensor:
        x1, x2 = X[..., 0], X[..., 1]
        a = 1 + (x1 + x2 + 1) ** 2 * (19 - 14 * x1 + 3 * x1**2 - 14 * x2 + 6 * x1 * x2 + 3 * x2**2)
        b = 30 + (2 * x1 - 3 * x2) ** 2 * (
            18 - 32 * x1 + 12 * x1**2 + 48 * x2 - 36 * x1 * x2 + 27 * x2**2
        )
        return torch.log(a * b)


def _problem(cls: Callable[..., synthetic.SyntheticTestFunction], **kw: Any) -> Callable:
    return lambda: cls(**kw)


#: Test functions (minimisation, BoTorch definitions and optimal values).
PROBLEMS: dict[str, Callable[[], synthetic.SyntheticTestFunction]] = {
    "branin": _problem(synthetic.Branin),
    "sixhumpcamel": _problem(synthetic.SixHumpCamel),
    "eggholder": _problem(synthetic.EggHolder),
    "dropwave": _problem(synthetic.DropWave),
    "hartmann3": _problem(synthetic.Hartmann, dim=3),
    "ackley2": _problem(synthetic.Ackley, dim=2),
    "levy2": _problem(synthetic.Levy, dim=2),
    "rosenbrock2": _problem(synthetic.Rosenbrock, dim=2),
    "threehumpcamel": _problem(synthetic.ThreeHumpCamel),
    "holdertable": _problem(synthetic.HolderTable),
    "twobasin2": _problem(TwoBasin),
    "goldsteinprice": _problem(GoldsteinPrice),
    "rastrigin2": _problem(synthetic.Rastrigin, dim=2),
    "michalewicz2": _problem(synthetic.Michalewicz, dim=2),
}
PAPER_FUNCTIONS = ["branin", "sixhumpcamel", "eggholder", "dropwave", "hartmann3"]
#: Functions with narrow or deceptive basins (issue 20), beside the paper's.
NARROW_FUNCTIONS = ["twobasin2", "goldsteinprice", "rastrigin2", "michalewicz2", "holdertable"]

#: ``method -> (generator, settings)``; ``None`` generator = uniform random search.
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "random": (None, {}),
    # noise-free functions: the GP gets a small fixed noise, as the authors did (issue 19/20)
    "ei": ("multi_step", {"horizon": 1, "noise": "fixed"}),
    "ms2": ("multi_step", {"horizon": 2, "noise": "fixed"}),
    "ms3": ("multi_step", {"horizon": 3, "noise": "fixed"}),
    "noisy_ei": ("noisy_ei", {}),
    # BoTorch's evaluation of the same trees (before the dense tree of issue 20), for checks
    "ms2_botorch": ("multi_step", {"horizon": 2, "noise": "fixed", "dense_tree": False}),
    "ms3_botorch": ("multi_step", {"horizon": 3, "noise": "fixed", "dense_tree": False}),
    # deliberate exploration (opt-in): Boltzmann choice among the restarts' optimized trees
    "ms2_div": (
        "multi_step",
        {"horizon": 2, "noise": "fixed", "root_choice": "boltzmann", "root_temperature": 1.0},
    ),
    # the same at a colder (0.3) and a hotter (3) temperature, for the study
    "ms2_div03": (
        "multi_step",
        {"horizon": 2, "noise": "fixed", "root_choice": "boltzmann", "root_temperature": 0.3},
    ),
    "ms2_div3": (
        "multi_step",
        {"horizon": 2, "noise": "fixed", "root_choice": "boltzmann", "root_temperature": 3.0},
    ),
}


def space_for(fn: synthetic.SyntheticTestFunction) -> SearchSpace:
    lo, hi = fn.bounds[0].tolist(), fn.bounds[1].tolist()
    return SearchSpace([Float(f"x{i}", lo[i], hi[i]) for i in range(len(lo))])


def evaluate(fn: synthetic.SyntheticTestFunction, params: dict[str, float]) -> float:
    x = torch.tensor([[params[f"x{i}"] for i in range(fn.dim)]], dtype=DTYPE)
    return float(fn.evaluate_true(x).item())


def _trial(i: int, params: dict[str, Any], y: float, generator: str) -> Trial:
    arm = Arm(f"{i}_0", params)
    return Trial(
        id=i + 1,
        experiment_id=1,
        index=i,
        arms=[arm],
        state=TrialState.COMPLETED,
        generator=generator,
        observations={arm.name: {"f": Observation("f", y)}},
    )


# -- one run ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    problem: str
    method: str
    seed: int
    budget: int
    ys: list[float]
    ask_seconds: list[float]
    infos: list[dict[str, Any]] = field(default_factory=list)
    #: the evaluated points, in order
    xs: list[dict[str, float]] = field(default_factory=list)
    #: 1-minute load averages of the machine at the start and end of the run
    loadavg: list[float] = field(default_factory=list)

    def gap(self, n_initial: int, optimum: float) -> float:
        f0 = min(self.ys[:n_initial])
        fb = min(self.ys)
        return (f0 - fb) / (f0 - optimum) if f0 > optimum else 1.0


def random_design(fn: synthetic.SyntheticTestFunction, seed: int, n: int) -> torch.Tensor:
    """``n`` uniform random points in ``fn``'s box, the same for every method of a seed (its
    first ``2 d`` rows are the protocol's shared initial design)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    U = torch.rand(n, fn.dim, generator=g, dtype=DTYPE)
    lo, hi = fn.bounds
    return lo + (hi - lo) * U


def run_one(
    problem: str,
    method: str,
    seed: int,
    budget_mult: int,
    *,
    spec: tuple[str | None, dict[str, Any]] | None = None,
    n_init: int | None = None,
    budget: int | None = None,
) -> RunResult:
    """One BO run: shared random initial design, then sequential asks up to the budget.

    The authors' protocol: ``2 d`` initial points, then ``budget_mult * d`` further
    evaluations. ``spec`` (generator, settings) replaces ``METHODS[method]``; ``n_init`` and
    ``budget`` (total evaluations) replace the protocol's.
    """
    fn = PROBLEMS[problem]()
    space = space_for(fn)
    d = fn.dim
    n_init = n_init or 2 * d
    budget = budget or n_init + budget_mult * d
    gen_name, settings = spec or METHODS[method]
    settings = {**settings, "n_initial": n_init} if gen_name else {}  # the shared 2·d design
    raw = random_design(fn, seed, budget)  # rows >= n_init: random search
    config = ExperimentConfig(
        name=f"{problem}-{method}-{seed}",
        search_space=space,
        objectives=[Objective("f", minimize=True)],
        generator=gen_name or "sobol",
        generator_settings=dict(settings),
        seed=seed,
        max_trials=budget,
    )
    exp = Experiment(id=1, config=config)
    ys: list[float] = []
    secs: list[float] = []
    infos: list[dict[str, Any]] = []
    xs: list[dict[str, float]] = []
    generator = get_generator(gen_name, settings) if gen_name else None
    for i in range(budget):
        if i < n_init or generator is None:
            params = {f"x{j}": float(raw[i, j]) for j in range(d)}
            # the shared random design: every observed arm counts toward a generator's initial
            # design whatever its label, so this only says where the point came from
            label = "random"
        else:
            t0 = time.perf_counter()
            res = generator.generate(exp, 1, seed=seed * 100_003 + i)
            secs.append(time.perf_counter() - t0)
            exp.generator_state = res.generator_state
            if res.model_state:
                exp.model_state = res.model_state
            cand = res.candidates[0]
            params, label = cand.parameters, cand.generator
            keep = ("horizon_effective", "fit_seconds", "optimize_seconds", "warm_started",
                    "acquisition_calls", "root_choice")  # fmt: skip
            infos.append({k: res.info[k] for k in keep if k in res.info})
        y = evaluate(fn, params)
        ys.append(y)
        xs.append({k: float(v) for k, v in params.items()})
        exp.trials.append(_trial(i, params, y, label))
    return RunResult(problem, method, seed, budget, ys, secs, infos, xs)


def cache_path(cache: Path, problem: str, method: str, seed: int) -> Path:
    return cache / problem / method / f"seed{seed}.json"


def run_cached(job: tuple[str, str, int, int, str]) -> tuple[str, str, int, float]:
    problem, method, seed, budget_mult, cache = job
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    path = cache_path(Path(cache), problem, method, seed)
    if path.exists():
        return problem, method, seed, 0.0
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    res = run_one(problem, method, seed, budget_mult)
    res.loadavg = [load0, os.getloadavg()[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res.__dict__))
    tmp.replace(path)
    return problem, method, seed, time.perf_counter() - t0


# -- table ------------------------------------------------------------------------------------
def load(cache: Path, problem: str, method: str) -> list[RunResult]:
    out = []
    for p in sorted((cache / problem / method).glob("seed*.json")):
        out.append(RunResult(**json.loads(p.read_text())))
    return out


def _gaps(cache: Path, prob: str, method: str) -> dict[int, float]:
    fn = PROBLEMS[prob]()
    n_init = 2 * fn.dim
    return {r.seed: r.gap(n_init, fn.optimal_value) for r in load(cache, prob, method)}


def _mean_se(xs: list[float]) -> str:
    if not xs:
        return "–"
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return f"{statistics.fmean(xs):+.3f} ± {se:.3f}"


def table(cache: Path, problems: list[str], methods: list[str]) -> str:
    """GAP per function and method, stuck runs, the paired differences of the lookahead
    methods against ``ei`` and ``noisy_ei`` (same seeds = same initial design), and the
    median ask seconds with the ratio to ``noisy_ei``."""
    head = "| function | " + " | ".join(methods) + " |"
    rows = [head, "|" + "---|" * (len(methods) + 1)]
    time_rows = ["| median s/ask | " + " | ".join(methods) + " |", rows[1]]
    wins = {m: 0 for m in methods}
    look = [m for m in methods if m.startswith("ms")]
    refs = [m for m in ("ei", "noisy_ei") if m in methods]
    pairs = [(m, r) for m in look for r in refs]
    # an opt-in variant ``X_div...`` of a lookahead method ``X`` is also paired with ``X`` and
    # ``X_botorch`` (the root-choice study of issue 20)
    pairs += [
        (m, b)
        for m in look
        if "_div" in m
        for b in (m.split("_div")[0], m.split("_div")[0] + "_botorch")
        if b in methods
    ]
    paired_rows = [
        "| function | " + " | ".join(f"{m} − {r}" for m, r in pairs) + " |",
        "|" + "---|" * (len(pairs) + 1),
    ]
    all_diffs: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    fn_means: dict[str, list[float]] = {m: [] for m in methods}
    secs_all: dict[str, list[float]] = {m: [] for m in methods}
    for prob in problems:
        cells, tcells, means = [], [], {}
        gaps = {m: _gaps(cache, prob, m) for m in methods}
        for m in methods:
            g = list(gaps[m].values())
            if not g:
                cells.append("–")
                tcells.append("–")
                continue
            mu = statistics.fmean(g)
            se = statistics.stdev(g) / math.sqrt(len(g)) if len(g) > 1 else float("nan")
            stuck = sum(x <= 1e-9 for x in g)
            means[m] = mu
            fn_means[m].append(mu)
            cells.append(f"{mu:.3f} ± {se:.3f} (n={len(g)}, stuck {stuck})")
            s = [x for r in load(cache, prob, m) for x in r.ask_seconds]
            secs_all[m] += s
            tcells.append(f"{statistics.median(s):.2f}" if s else "0")
        if means:
            best = max(means.values())
            for m, v in means.items():
                if v >= best - 1e-12:
                    wins[m] += 1
        rows.append(f"| {prob} | " + " | ".join(cells) + " |")
        time_rows.append(f"| {prob} | " + " | ".join(tcells) + " |")
        pcells = []
        for m, r in pairs:
            common = sorted(set(gaps[m]) & set(gaps[r]))
            diffs = [gaps[m][s] - gaps[r][s] for s in common]
            all_diffs[(m, r)] += diffs
            pcells.append(_mean_se(diffs) + f" (n={len(diffs)})" if diffs else "–")
        paired_rows.append(f"| {prob} | " + " | ".join(pcells) + " |")
    rows.append(
        "| mean over functions | "
        + " | ".join(
            f"{statistics.fmean(fn_means[m]):.3f}" if fn_means[m] else "–" for m in methods
        )
        + " |"
    )
    rows.append("| best mean GAP (count) | " + " | ".join(str(wins[m]) for m in methods) + " |")
    paired_rows.append("| all runs | " + " | ".join(_mean_se(all_diffs[p]) for p in pairs) + " |")
    ratio = ""
    if "noisy_ei" in methods and secs_all["noisy_ei"]:
        base = statistics.median(secs_all["noisy_ei"])
        ratio = "\n\nmedian ask / median noisy_ei ask (all functions): " + ", ".join(
            f"{m} {statistics.median(secs_all[m]) / base:.2f}×" for m in methods if secs_all[m]
        )
    return (
        "\n".join(rows)
        + "\n\nPaired GAP differences (mean ± s.e. over seeds; > 0: the lookahead is better)\n\n"
        + "\n".join(paired_rows)
        + "\n\n"
        + "\n".join(time_rows)
        + ratio
    )


# -- studies ----------------------------------------------------------------------------------
def _bo_states(problem: str, seed: int, n_obs: list[int]) -> list[Experiment]:
    """Experiments with ``n`` random observations of ``problem`` (GP states to study)."""
    fn = PROBLEMS[problem]()
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in n_obs:
        U = torch.rand(n, fn.dim, generator=g, dtype=DTYPE)
        raw = fn.bounds[0] + (fn.bounds[1] - fn.bounds[0]) * U
        config = ExperimentConfig(
            name="study",
            search_space=space_for(fn),
            objectives=[Objective("f", minimize=True)],
            generator="multi_step",
            seed=seed,
        )
        exp = Experiment(id=1, config=config)
        for i in range(n):
            p = {f"x{j}": float(raw[i, j]) for j in range(fn.dim)}
            exp.trials.append(_trial(i, p, evaluate(fn, p), "random"))
        out.append(exp)
    return out


class _FirstStageFixed(AcquisitionFunction):
    """``X_rest -> acqf(cat(x0, X_rest))``: the tree value with its root held at ``x0``."""

    def __init__(self, acqf: AcquisitionFunction, x0: Tensor) -> None:
        super().__init__(model=acqf.model)
        self.acqf, self.x0 = acqf, x0.reshape(1, 1, -1)

    def forward(self, X: Tensor) -> Tensor:
        return self.acqf(torch.cat([self.x0.expand(X.shape[0], 1, -1), X], dim=-2))


def lookahead_value(
    model: Any,
    x0: Tensor,
    horizon: int,
    fantasies: list[int],
    seed: int,
    maximize: bool = False,
) -> float:
    """``horizon``-step value of decision ``x0`` (the rest of the tree optimized with ``x0``
    fixed), for a *minimised* objective unless ``maximize``."""
    from assay.platform.generators.multi_step import build_multi_step_acquisition

    acqf = build_multi_step_acquisition(model, horizon, fantasies, maximize=maximize, seed=seed)
    fixed = _FirstStageFixed(acqf, x0)
    q = acqf.get_augmented_q_batch_size(1) - 1
    d = x0.numel()
    bounds = torch.stack([torch.zeros(d, dtype=DTYPE), torch.ones(d, dtype=DTYPE)])
    _, val = optimize_acqf(
        fixed, bounds=bounds, q=q, num_restarts=4, raw_samples=128, options={"maxiter": 200}
    )
    return float(val)


def fantasy_study(args: argparse.Namespace) -> None:
    from assay.platform.models import fit_outcome_models, training_data

    settings = {
        2: ([[2], [4], [8], [16]], [32]),
        3: ([[2, 2], [4, 2], [4, 4], [8, 4]], [8, 8]),
    }
    problems = args.functions or ["branin", "hartmann3"]
    rows = []
    for problem in problems:
        d = PROBLEMS[problem]().dim
        for exp in _bo_states(problem, 0, [3 * d, 6 * d]):
            data = training_data(exp)
            gp = fit_outcome_models(data, ["f"]).model.models[0]
            for horizon, (grid, hf) in settings.items():
                if args.horizon and horizon != args.horizon:
                    continue
                scored = []
                for fant in grid:
                    for rep in range(args.reps):
                        gen = get_generator("multi_step", {"horizon": horizon,
                                                           "num_fantasies": fant})  # fmt: skip
                        t0 = time.perf_counter()
                        res = gen.generate(exp, 1, seed=1000 * rep + 7)
                        secs = time.perf_counter() - t0
                        x0 = exp.search_space.encode(res.candidates[0].parameters)
                        v = lookahead_value(gp, x0, horizon, hf, seed=12345)
                        scored.append((fant, rep, secs, res.info["acquisition_calls"], v))
                best = max(v for *_, v in scored)
                for fant, rep, secs, calls, v in scored:
                    rows.append(
                        {"problem": problem, "n": len(exp.trials), "horizon": horizon,
                         "fantasies": fant, "rep": rep, "seconds": secs, "calls": calls,
                         "value": v, "rel_value": v / best if best > 0 else 1.0}
                    )  # fmt: skip
                    print(rows[-1], flush=True)
    out = (args.cache or CACHE) / "fantasy_study.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("\n| horizon | fantasies | mean relative value | min | median seconds | median calls |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(r["horizon"], tuple(r["fantasies"])) for r in rows})
    for h, f in keys:
        rs = [r for r in rows if r["horizon"] == h and tuple(r["fantasies"]) == f]
        rv = [r["rel_value"] for r in rs]
        print(f"| {h} | {list(f)} | {statistics.fmean(rv):.3f} | {min(rv):.3f} | "
              f"{statistics.median(r['seconds'] for r in rs):.2f} | "
              f"{statistics.median(r['calls'] for r in rs):.0f} |")  # fmt: skip


EFFORT_GRID = [
    {"num_restarts": 8, "raw_samples": 256, "maxiter": 50},
    {"num_restarts": 8, "raw_samples": 256, "maxiter": 100},
    {"num_restarts": 8, "raw_samples": 256, "maxiter": 200},
    {"num_restarts": 16, "raw_samples": 512, "maxiter": 50},
    {"num_restarts": 16, "raw_samples": 512, "maxiter": 100},
    {"num_restarts": 16, "raw_samples": 512, "maxiter": 200},
    {"num_restarts": 32, "raw_samples": 1024, "maxiter": 300},
]


def effort_study(args: argparse.Namespace) -> None:
    """Optimizer effort vs. acquisition value reached (same tree, same fantasies, cold)."""
    problems = args.functions or ["branin", "hartmann3"]
    horizon = args.horizon or 2
    rows = []
    for problem in problems:
        d = PROBLEMS[problem]().dim
        for exp in _bo_states(problem, 1, [3 * d, 6 * d, 10 * d]):
            for rep in range(args.reps):
                # same seed = same fantasy samples (same acquisition function) for every
                # effort, so values compare within a (state, rep) group
                res_by = []
                for i, effort in enumerate(EFFORT_GRID):
                    gen = get_generator(
                        "multi_step", {"horizon": horizon, "warm_start": False, **effort}
                    )
                    res = gen.generate(exp, 1, seed=4242 + rep)
                    info = res.info
                    res_by.append((i, info["optimize_seconds"], info["acquisition_calls"],
                                   info["acquisition_value"]))  # fmt: skip
                best = max(v for *_, v in res_by)
                for i, secs, calls, v in res_by:
                    rows.append({"problem": problem, "n": len(exp.trials), "effort": i,
                                 "rep": rep, "seconds": secs, "calls": calls,
                                 "rel_value": v / best})  # fmt: skip
                    print(rows[-1], flush=True)
    print(f"\n| horizon {horizon}: restarts / raw / maxiter | mean relative value | min | "
          "median optimize s | median calls |")  # fmt: skip
    print("|---|---|---|---|---|")
    for i, e in enumerate(EFFORT_GRID):
        rs = [r for r in rows if r["effort"] == i]
        print(f"| {e['num_restarts']} / {e['raw_samples']} / {e['maxiter']} | "
              f"{statistics.fmean(r['rel_value'] for r in rs):.4f} | "
              f"{min(r['rel_value'] for r in rs):.4f} | "
              f"{statistics.median(r['seconds'] for r in rs):.2f} | "
              f"{statistics.median(r['calls'] for r in rs):.0f} |")  # fmt: skip


def warmstart_study(args: argparse.Namespace) -> None:
    """Cold vs warm tree optimization at every ask of BO runs (the run follows ``warm``).

    Variants, all with the same fitted GP, fantasy samples, seed and restarts at each ask:
    ``cold`` (raw-sample initialization), ``botorch`` (``warmstart_multistep`` alone),
    ``shifted`` (plus the previous tree moved one level up) and ``warm`` (the default
    ``"pool"``: those plus fresh raw-sample starts), each chosen by the generator setting
    ``warm_start_mode``.
    """
    problems = args.functions or ["branin", "hartmann3"]
    horizon = args.horizon or 2
    rows = []
    for problem in problems:
        fn = PROBLEMS[problem]()
        d = fn.dim
        for seed in range(args.seeds):
            base = {"horizon": horizon, "n_initial": 2 * d}
            variants = {
                "cold": get_generator("multi_step", {**base, "warm_start": False}),
                "botorch": get_generator("multi_step", {**base, "warm_start_mode": "botorch"}),
                "shifted": get_generator("multi_step", {**base, "warm_start_mode": "shifted"}),
                "warm": get_generator("multi_step", {**base, "warm_start_mode": "pool"}),
            }
            exp = _bo_states(problem, 10_000 + seed, [2 * d])[0]
            states = {k: dict(exp.generator_state) for k in variants}
            for i in range(2 * d, args.budget_mult * d):
                seed_i = seed * 100_003 + i
                out = {}
                for name, gen in variants.items():
                    exp.generator_state = states[name]
                    res = gen.generate(exp, 1, seed=seed_i)
                    out[name] = res
                    states[name] = res.generator_state
                row: dict[str, Any] = {"problem": problem, "seed": seed, "i": i}
                for name, res in out.items():
                    row[f"{name}_seconds"] = res.info.get("optimize_seconds")
                    row[f"{name}_calls"] = res.info.get("acquisition_calls")
                    row[f"{name}_value"] = res.info.get("acquisition_value")
                    row[f"{name}_warm"] = res.info.get("warm_started")
                rows.append(row)
                print(row, flush=True)
                params = out["warm"].candidates[0].parameters
                exp.trials.append(_trial(i, params, evaluate(fn, params), "multi_step"))
    out_path = (args.cache or CACHE) / f"warmstart_study_h{horizon}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(rows, indent=1))
    summarize_warmstart(rows)


def summarize_warmstart(rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if r.get("warm_warm") and r.get("cold_value")]
    if not rows:
        print("no warm-started asks")
        return
    print("\n| variant | asks | median calls | median optimize s | median value vs cold | "
          "mean value vs cold | value >= cold |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in ("cold", "botorch", "shifted", "warm"):
        dv = [(r[f"{name}_value"] - r["cold_value"]) / abs(r["cold_value"]) for r in rows]
        ge = sum(r[f"{name}_value"] >= r["cold_value"] * (1 - 1e-6) for r in rows)
        print(
            f"| {name} | {len(rows)} | {statistics.median(r[f'{name}_calls'] for r in rows):.0f}"
            f" | {statistics.median(r[f'{name}_seconds'] for r in rows):.2f}"
            f" | {statistics.median(dv):+.2%} | {statistics.fmean(dv):+.2%} | {ge}/{len(rows)} |"
        )


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke check in a few minutes")
    ap.add_argument("--functions", nargs="*", choices=sorted(PROBLEMS))
    ap.add_argument("--methods", nargs="*", choices=list(METHODS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--budget-mult", type=int, default=20, help="evaluations after the 2 d initial: mult * d"
    )
    ap.add_argument("--workers", type=int, default=1, help="processes (1 torch thread each)")
    ap.add_argument("--table", action="store_true", help="only print the table of the cache")
    ap.add_argument("--study", choices=["fantasies", "warmstart", "effort"])
    ap.add_argument("--horizon", type=int, default=None, help="studies: only this horizon")
    ap.add_argument("--reps", type=int, default=2, help="fantasy study: seeds per setting")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="root of the run cache (default benchmarks/results/multistep, the committed one): "
        "a separate directory to rerun seeds after a change and compare with the committed "
        "runs without overwriting them",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if args.study == "fantasies":
        return fantasy_study(args)
    if args.study == "effort":
        return effort_study(args)
    if args.study == "warmstart":
        if args.budget_mult == 20:
            args.budget_mult = 10
        if args.seeds == 5:
            args.seeds = 1
        return warmstart_study(args)

    if args.quick:
        problems = args.functions or ["branin", "hartmann3"]
        seeds, budget_mult = min(args.seeds, 1), min(args.budget_mult, 5)
    else:
        problems = args.functions or PAPER_FUNCTIONS + NARROW_FUNCTIONS
        seeds, budget_mult = args.seeds, args.budget_mult
    root = args.cache or (CACHE_QUICK if args.quick else CACHE)
    cache = root / f"init2d+{budget_mult}d"
    methods = args.methods or ["ei", "noisy_ei", "ms2", "ms3"]
    if not args.table:
        cache.mkdir(parents=True, exist_ok=True)
        meta = cache / "meta.json"
        if meta.exists() and json.loads(meta.read_text())["budget_mult"] != budget_mult:
            sys.exit(f"{cache} holds results for another budget; delete it or pass that budget")
        meta.write_text(json.dumps({"budget_mult": budget_mult}))
        jobs = [
            (p, m, s, budget_mult, str(cache))
            for s in range(seeds)
            for p in problems
            for m in methods
            if not cache_path(cache, p, m, s).exists()
        ]
        print(f"{len(jobs)} runs to do (budget {budget_mult}·d, cache {cache})", flush=True)
        t0 = time.perf_counter()
        if args.workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
                for p, m, s, secs in pool.imap_unordered(run_cached, jobs):
                    print(f"done {p} {m} seed {s} in {secs:.0f}s "
                          f"({time.perf_counter() - t0:.0f}s total)", flush=True)  # fmt: skip
        else:
            for job in jobs:
                p, m, s, secs = run_cached(job)
                print(f"done {p} {m} seed {s} in {secs:.0f}s "
                      f"({time.perf_counter() - t0:.0f}s total)", flush=True)  # fmt: skip
    text = table(cache, problems, methods)
    print(f"\nGAP (mean ± s.e. over seeds), 2·d random initial + {budget_mult}·d asks\n")
    print(text)
    (cache / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
