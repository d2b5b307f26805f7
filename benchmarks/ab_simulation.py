"""The paper's online-experiment setting: batch A/B tests with a control, simulated.

Letham et al. (2019) tune a system with rounds of online experiments: each round deploys a
batch of arms next to the control, each arm's metrics come back as a mean with a standard
error, outcome constraints are noisy guardrail metrics, and levels drift from round to round.
This script simulates that and compares how well each generation strategy finds a good arm.

Simulator (6 parameters on ``[0, 1]``; the control is the centre of the cube):

Every true effect is ``e_m(x) = f_m(x) - f_m(x_c)`` in % of the control's true level, and a
level is ``base_m (1 + e_m(x) / 100)``: the control is exactly 0 % on every metric, so an arm's
true effect is what relativizing against its batch's control estimates, and the truth the
scores use (``truly_feasible``) is in the same units as the constraints the model enforces.

* objective ``conversion`` (maximise, base ``0.05``): ``f = 12 g(x)``, ``g = -hartmann6 /
  3.32237`` (smooth, one sharp optimum of about +10.2 % at the Hartmann-6 minimiser; effects
  of a few % against the control);
* guardrails ``latency_ms <= +2%`` (base ``200``, ``f = 14 x6 + 2 x3``) and ``revenue >= -1%``
  (base ``1``, ``f = 2.5 x2 - 4 (x1 - 0.5)^2``). Both bind near the objective's optimum: the
  unconstrained optimum is at +2.16 % latency and -1.23 % revenue (infeasible), and the
  constrained optimum (about +9.96 %, near ``x = (0.24, 0.21, 0.47, 0.28, 0.31, 0.65)``) sits
  on both bounds; a second, feasible mode near Hartmann's fourth basin gives about +9.7 %.
  About half of the cube is feasible;
* per-arm SEMs ``0.7%`` (conversion), ``0.5%`` (latency), ``0.6%`` (revenue) of the level, so a
  relative effect has an SEM of about 1% and the best effects are a few SEMs;
* a random batch effect per round and metric: every level in the round times
  ``exp(N(0, 0.05^2))`` (a ~5% day-of-week swing, larger than most effects);
* 8 arms per batch (control + 7), a quasi-random first round, then 5 rounds by the method.

Methods (all on the same simulator draws per seed; all recommend with Assay's model-based
``best`` on relativized data, so they differ only in how arms are generated):

* ``nei``: Assay's batch noisy-constrained EI on relativized data (``client.ask_batch``);
* ``ei_plugin``: batch constrained EI (``qLogExpectedImprovement``, greedy with fantasies)
  on the same model, with the best *observed* feasible noisy value as the incumbent;
* ``quasi_random``: scrambled Sobol arms every round.

Ax is not included: driving Ax's batch trials with a status quo and relativized modelling to
exactly this loop is a project of its own; the NEI-vs-plug-in-EI comparison is the paper's.

Reported per round (after the round's data is in): the mean over seeds of the *true* %
effect of the recommended arm against the control, its standard error, how many
recommendations truly violate a constraint, and the value if a violating recommendation is
rolled back to the control (0 %). Runs are cached per (method, seed) in
``.bench-cache/ab_simulation/`` (keyed by ``WORLD``, the simulator's version).

    python benchmarks/ab_simulation.py --seeds 20 --workers 2     # the full run
    python benchmarks/ab_simulation.py --quick                    # 2 seeds, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parents[1] / ".bench-cache" / "ab_simulation"
#: Bumped whenever the simulated world changes, so cached runs of an older one are not reused.
WORLD = "w2"
D = 6
CONTROL = {f"x{i}": 0.5 for i in range(1, D + 1)}
BASE = {"conversion": 0.05, "latency_ms": 200.0, "revenue": 1.0}
SEM_FRACTION = {"conversion": 0.007, "latency_ms": 0.005, "revenue": 0.006}
BATCH_SD = 0.05
N_ARMS = 8
CONSTRAINTS = ["latency_ms <= +2%", "revenue >= -1%"]
EFFORT = {"num_restarts": 4, "raw_samples": 256, "mc_samples": 128}
METHODS = ["nei", "ei_plugin", "quasi_random"]

_H_ALPHA = [1.0, 1.2, 3.0, 3.2]
_H_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
_H_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def _import_assay() -> None:
    try:
        import assay  # noqa: F401
    except ImportError:  # a plain checkout: the repo root is the package
        import tempfile

        root = Path(__file__).resolve().parents[1]
        link = Path(tempfile.mkdtemp(prefix="assay-path-"))
        (link / "assay").symlink_to(root, target_is_directory=True)
        sys.path.insert(0, str(link))


def hartmann6(x: list[float]) -> float:
    return -sum(
        a * math.exp(-sum(A[j] * (x[j] - P[j]) ** 2 for j in range(6)))
        for a, A, P in zip(_H_ALPHA, _H_A, _H_P, strict=True)
    )


def _levels(x: list[float]) -> dict[str, float]:
    """The un-centred response surfaces ``f_m`` (see the module docstring)."""
    return {
        "conversion": 12.0 * (-hartmann6(x) / 3.32237),
        "latency_ms": 14.0 * x[5] + 2.0 * x[2],
        "revenue": 2.5 * x[1] - 4.0 * (x[0] - 0.5) ** 2,
    }


_CONTROL_LEVELS = _levels([CONTROL[f"x{i}"] for i in range(1, D + 1)])


def true_effects(p: dict) -> dict[str, float]:
    """True % effects against the control's true level per metric (0 for the control)."""
    f = _levels([p[f"x{i}"] for i in range(1, D + 1)])
    return {m: f[m] - _CONTROL_LEVELS[m] for m in BASE}


def truly_feasible(p: dict) -> bool:
    """Whether the arm's true effects meet ``CONSTRAINTS`` (relative to the control)."""
    e = true_effects(p)
    return e["latency_ms"] <= 2.0 and e["revenue"] >= -1.0


def measure(trial, rng: np.random.Generator) -> dict:
    """One round's data: every arm's (mean, sem, n) with a shared batch effect per metric."""
    shift = {m: math.exp(rng.normal(0.0, BATCH_SD)) for m in BASE}
    out = {}
    for arm in trial.arms:
        eff = true_effects(arm.parameters)
        out[arm.name] = {}
        for m, base in BASE.items():
            level = shift[m] * base * (1 + eff[m] / 100.0)
            sem = SEM_FRACTION[m] * base * shift[m]
            out[arm.name][m] = (level + float(rng.normal(0.0, sem)), sem, 50_000)
    return out


def plugin_ei_arms(client, exp_id: int, q: int, seed: int) -> list[dict]:
    """Batch constrained EI with a plug-in incumbent: the best observed (relativized) value
    among arms whose observed constraint values meet the bounds."""
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.sampling import SobolQMCNormalSampler

    from assay.platform.generators.base import existing_signatures
    from assay.platform.generators.noisy_ei import objective_and_constraints
    from assay.platform.models import fit_outcome_models
    from assay.platform.optimize import OptimizerOptions, optimize_acquisition
    from assay.platform.relative import modelled_outcomes
    from assay.platform.space import SearchSpace

    exp = client.get_experiment(exp_id)
    out = modelled_outcomes(exp)
    metrics = exp.config.modelled_metrics
    fitted = fit_outcome_models(out.data, metrics, seed=seed)
    objective, constraints, _ = objective_and_constraints(exp.config, fitted, out.constraints)
    y = out.data["conversion"].Y.squeeze(-1)
    ok = torch.ones_like(y, dtype=torch.bool)
    for oc in out.constraints:
        d = out.data[oc.metric]
        assert d.arm_names == out.data["conversion"].arm_names
        v = d.Y.squeeze(-1)
        ok &= v <= oc.bound if oc.op == "<=" else v >= oc.bound
    best_f = float(y[ok].max()) if bool(ok.any()) else float(y.max())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        acqf = qLogExpectedImprovement(
            fitted.model, best_f=best_f, objective=objective, constraints=constraints,
            sampler=SobolQMCNormalSampler(torch.Size([EFFORT["mc_samples"]]), seed=seed),
        )  # fmt: skip
        X, _ = optimize_acquisition(
            acqf, exp.search_space, q,
            OptimizerOptions(EFFORT["num_restarts"], EFFORT["raw_samples"]),
        )  # fmt: skip
    seen = existing_signatures(exp)
    arms = []
    for p in exp.search_space.decode(X):
        if SearchSpace.signature(p) not in seen:
            seen.add(SearchSpace.signature(p))
            arms.append(p)
    return arms


def run_one(method: str, seed: int, rounds: int) -> dict:
    _import_assay()
    import torch

    import assay

    torch.set_num_threads(1)
    rng = np.random.default_rng(10_000 + seed)  # the same world for every method
    client = assay.Client()
    exp = client.create_experiment(
        name=f"{method}-{seed}",
        parameters=[{"name": n, "type": "float", "bounds": [0.0, 1.0]} for n in CONTROL],
        objective="conversion",
        outcome_constraints=CONSTRAINTS,
        status_quo=CONTROL,
        generator="sobol" if method == "quasi_random" else "noisy_ei",
        generator_settings={} if method == "quasi_random" else EFFORT,
        seed=seed,
    )
    history, ask_seconds = [], []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        if method == "ei_plugin" and r > 0:
            # n_arms = 8 with 7 included arms: ask_batch adds the control and generates
            # nothing more (a duplicate proposal would be topped up by NEI, never seen here).
            trial = client.ask_batch(
                exp.id, N_ARMS, include=plugin_ei_arms(client, exp.id, N_ARMS - 1, seed + r)
            )
        else:
            trial = client.ask_batch(exp.id, N_ARMS)
        if r > 0:
            ask_seconds.append(time.perf_counter() - t0)
        client.tell_batch(trial.id, measure(trial, rng))
        best = client.best(exp.id)
        eff = true_effects(best.parameters)
        history.append(
            {"round": r, "arm": best.arm_name, "effect": eff["conversion"],
             "feasible": truly_feasible(best.parameters),
             "best_in_batch": max(
                 (true_effects(a.parameters)["conversion"] for a in trial.arms
                  if truly_feasible(a.parameters)), default=0.0)}
        )  # fmt: skip
    client.close()
    return {"method": method, "seed": seed, "history": history, "ask_seconds": ask_seconds}


def batch_value(client, exp_id: int, trial_id: int, seed: int) -> float:
    """How good a batch is, the same yardstick for every effort setting: the joint
    (q = 7) log-NEI of its new arms with 1,024 QMC samples, under a model fitted to the data
    before the batch (Letham et al. 2019's batch noisy EI, every constraint included)."""
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.sampling import SobolQMCNormalSampler

    from assay.platform.generators.noisy_ei import objective_and_constraints
    from assay.platform.models import fit_outcome_models
    from assay.platform.relative import modelled_outcomes

    exp = client.get_experiment(exp_id)
    batch = next(t for t in exp.trials if t.id == trial_id)
    exp.trials = [t for t in exp.trials if t.id != trial_id]
    out = modelled_outcomes(exp)
    fitted = fit_outcome_models(out.data, exp.config.modelled_metrics, seed=seed)
    objective, constraints, _ = objective_and_constraints(exp.config, fitted, out.constraints)
    X_base = torch.unique(torch.cat([d.X for d in out.data.values()]), dim=0)
    new = [a.parameters for a in batch.arms if a.name != "status_quo"]
    with torch.no_grad():
        acqf = qLogNoisyExpectedImprovement(
            fitted.joint, X_baseline=X_base, objective=objective,
            constraints=constraints or None,
            sampler=SobolQMCNormalSampler(torch.Size([1024]), seed=12345),
        )  # fmt: skip
        return float(acqf(exp.search_space.encode_many(new).unsqueeze(0)))


def batch_ask_latency(seed: int, batches: int = 10, settings: dict | None = None) -> dict:
    """Issue 19, target 4: wall and CPU seconds of one 8-arm ``noisy_ei`` batch ask at
    *default* settings (or ``settings``) after ``batches`` completed batches (control + 7
    arms each), and the batch's joint log-NEI (:func:`batch_value`).

    The earlier batches are quasi-random arms carried in with ``include=`` (no generation),
    so only the timed ask runs the model; the data are the simulator's (relativized, SEMs,
    batch effects); the same seed gives the same data whatever ``settings``."""
    _import_assay()
    import assay

    rng = np.random.default_rng(20_000 + seed)
    client = assay.Client()
    exp = client.create_experiment(
        name=f"latency-{seed}",
        parameters=[{"name": n, "type": "float", "bounds": [0.0, 1.0]} for n in CONTROL],
        objective="conversion", outcome_constraints=CONSTRAINTS, status_quo=CONTROL,
        generator="noisy_ei", seed=seed, generator_settings=settings or {},
    )  # fmt: skip
    for _ in range(batches):
        arms = [{n: float(v) for n, v in zip(CONTROL, rng.random(D), strict=True)}
                for _ in range(N_ARMS - 1)]  # fmt: skip
        trial = client.ask_batch(exp.id, N_ARMS, include=arms)
        client.tell_batch(trial.id, measure(trial, rng))
    t0, c0 = time.perf_counter(), time.process_time()
    trial = client.ask_batch(exp.id, N_ARMS)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    value = batch_value(client, exp.id, trial.id, seed)
    client.close()
    return {"seed": seed, "wall": wall, "cpu": cpu, "arms": len(trial.arms), "value": value}


def _cached(args: tuple[str, int, int, bool]) -> dict:
    method, seed, rounds, fresh = args
    path = CACHE / f"{WORLD}-{method}-{seed}-r{rounds}.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    res = run_one(method, seed, rounds)
    res["wall_seconds"] = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    print(f"  {method} seed {seed}: {res['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    return res


def mean_se(v: list[float]) -> tuple[float, float]:
    m = statistics.fmean(v)
    return m, (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="rounds after the quasi-random one")
    ap.add_argument("--methods", nargs="*", default=METHODS)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 rounds")
    ap.add_argument("--fresh", action="store_true", help="ignore cached runs")
    ap.add_argument("--json", default="", help="also write the per-seed results here")
    ap.add_argument(
        "--batch-latency", type=int, default=0, metavar="BATCHES",
        help="only time one default-settings 8-arm batch ask after BATCHES batches per seed",
    )  # fmt: skip
    ap.add_argument(
        "--settings", nargs="*", default=["{}"], metavar="JSON",
        help="with --batch-latency: noisy_ei generator_settings to compare (one row each)",
    )  # fmt: skip
    a = ap.parse_args(argv)
    if a.batch_latency:
        table = []
        for js in a.settings:
            rows = [batch_ask_latency(s, a.batch_latency, json.loads(js)) for s in range(a.seeds)]
            for r in rows:
                print(f"{js} seed {r['seed']}: {r['arms']}-arm batch ask after "
                      f"{a.batch_latency} batches: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, "
                      f"joint log-NEI {r['value']:.3f}", flush=True)  # fmt: skip
            table.append((js, rows))
        print(f"\n{N_ARMS}-arm batch ask after {a.batch_latency} batches, {a.seeds} seeds "
              f"(medians; joint log-NEI: mean, higher is better)\n")  # fmt: skip
        print("| settings | wall s | CPU s | batch joint log-NEI |")
        print("|---|---|---|---|")
        for js, rows in table:
            print(f"| `{js}` | {statistics.median(r['wall'] for r in rows):.2f} "
                  f"| {statistics.median(r['cpu'] for r in rows):.2f} "
                  f"| {statistics.fmean(r['value'] for r in rows):.3f} |")  # fmt: skip
        import os

        print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        return 0
    seeds, rounds = (2, 2) if a.quick else (a.seeds, a.rounds)
    jobs = [(m, s, rounds, a.fresh) for s in range(seeds) for m in a.methods]
    if a.workers > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            results = pool.map(_cached, jobs, chunksize=1)
    else:
        results = [_cached(j) for j in jobs]
    by = {m: [r for r in results if r["method"] == m] for m in a.methods}
    print(f"\n## A/B simulation: {seeds} seeds, {N_ARMS} arms per batch, 1 + {rounds} rounds\n")
    print("True % effect of the recommended arm vs control (mean +- SE over seeds); "
          "infeasible = recommendations that truly violate a guardrail; "
          "rolled back = value when an infeasible recommendation ships the control (0 %).\n")  # fmt: skip
    print("| round | " + " | ".join(f"{m} effect | {m} infeasible | {m} rolled back"
                                     for m in a.methods) + " |")  # fmt: skip
    print("|---" * (1 + 3 * len(a.methods)) + "|")
    for r in range(rounds + 1):
        cells = []
        for m in a.methods:
            h = [res["history"][r] for res in by[m]]
            mu, se = mean_se([x["effect"] for x in h])
            rb, rse = mean_se([x["effect"] if x["feasible"] else 0.0 for x in h])
            bad = sum(not x["feasible"] for x in h)
            cells += [f"{mu:+.2f} ± {se:.2f}", f"{bad}/{len(h)}", f"{rb:+.2f} ± {rse:.2f}"]
        print(f"| {r} | " + " | ".join(cells) + " |")
    print()
    for m in a.methods:
        asks = [s for res in by[m] for s in res["ask_seconds"]]
        if asks:
            print(f"{m}: median ask {statistics.median(asks):.1f} s per batch of {N_ARMS - 1}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
