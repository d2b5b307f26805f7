"""Why did multi-step lookahead lose to EI on a narrow-basin function (issue 20)? Small
experiments, one per candidate cause, on ``TwoBasin`` (``benchmarks/multistep.py``: a narrow
global basin beside a broad local one on ``[-2, 2]^2``), the issue's protocol: ``n_initial`` 4,
budget 16, the same seeds for every variant.

Experiments (``--exp``):

* ``runs``: whole BO runs of ``noisy_ei`` and of ``multi_step`` (horizon 2) with one setting
  changed at a time: tree warm start off (``warm_start_mode="none"``), incumbent
  (``"observed"``, ``"root"``), fantasies (10 normal quantiles instead of 8 Sobol samples),
  fixed small noise instead of inferred noise, optimizer effort (4 restarts / 64 raw / 10
  iterations). Reports GAP, whether the narrow basin was ever sampled (a point within 0.25 of
  it), the ask at which it first was, how many asks fell within 0.1 of the broad basin's
  centre, and the median ask time.
* ``explore``: 1-D, a hidden narrow optimum beside an explored hill: the ask at which EI, the
  old and the new horizon-2 generator first sample the unexplored region.
* ``oneshot``: at fixed GP states (random designs of the function), the one-shot optimum of the
  tree against a nested optimization at fixed roots: the rest of the tree re-optimized with the
  root held (at the one-shot root, and on a 7 x 7 grid of roots). The one-shot value must be
  at least the nested value at any root; a larger nested value means the one-shot optimizer
  stopped short. Also checks that ``extract_candidates`` returns the root (not a leaf) and
  prints the fitted noise level (standardized units) of the inferred-noise GP.

Results are cached under ``.bench-cache/multistep-diagnosis/`` (one JSON per run), so an
interrupted run resumes.

Examples:
    nice -n 10 python benchmarks/multistep_diagnosis.py --exp runs --seeds 4
    nice -n 10 python benchmarks/multistep_diagnosis.py --exp oneshot
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
from pathlib import Path
from typing import Any

import torch
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multistep import (
    ROOT,
    TwoBasin,
    _bo_states,
    _FirstStageFixed,
    run_one,
)

from assay.platform.generators.multi_step import build_multi_step_acquisition
from assay.platform.generators.multi_step.initial_trees import seeded_trees
from assay.platform.models import fit_outcome_models, training_data
from assay.platform.space import DTYPE

CACHE = ROOT / ".bench-cache" / "multistep-diagnosis"
LOW_EFFORT = {"num_restarts": 4, "raw_samples": 64, "maxiter": 10}
#: the generator before issue 20: uniform random starting trees, 16 restarts / 512 raw / 50 its
RANDOM = {"tree_init": "random", "num_restarts": 16, "raw_samples": 512, "maxiter": 50}
#: ``name -> (generator, settings)``: one change at a time against ``ms2``.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "noisy_ei": ("noisy_ei", {}),
    "ei": ("multi_step", {"horizon": 1}),
    # the generator before issue 20: uniform random starting trees
    "ms2": ("multi_step", {"horizon": 2, **RANDOM}),
    "ms2_nowarm": ("multi_step", {"horizon": 2, **RANDOM, "warm_start_mode": "none"}),
    "ms2_fixednoise": ("multi_step", {"horizon": 2, **RANDOM, "noise": "fixed"}),
    # the low optimizer effort the speed target needs, then one change at a time on top of it
    "lo": ("multi_step", {"horizon": 2, **RANDOM, **LOW_EFFORT}),
    "lo_nowarm": ("multi_step", {"horizon": 2, **RANDOM, **LOW_EFFORT, "warm_start_mode": "none"}),
    "lo_fixednoise": ("multi_step", {"horizon": 2, **RANDOM, **LOW_EFFORT, "noise": "fixed"}),
    "lo_observed": ("multi_step", {"horizon": 2, **RANDOM, **LOW_EFFORT, "incumbent": "observed"}),
    "lo_root": ("multi_step", {"horizon": 2, **RANDOM, **LOW_EFFORT, "incumbent": "root"}),
    "lo_quantile10": (
        "multi_step",
        {
            "horizon": 2,
            **RANDOM,
            **LOW_EFFORT,
            "fantasy_sampler": "quantile",
            "num_fantasies": [10],
        },
    ),
    # seeded starting trees (later decisions at good next decisions), the fix
    "lo_seeded": ("multi_step", {"horizon": 2, **LOW_EFFORT}),
    "lo_seeded_nowarm": ("multi_step", {"horizon": 2, **LOW_EFFORT, "warm_start_mode": "none"}),
}


def _dist(params: dict[str, float], c: tuple[float, float]) -> float:
    return math.hypot(params["x0"] - c[0], params["x1"] - c[1])


def runs(args: argparse.Namespace) -> None:
    names = args.variants or list(VARIANTS)
    fn = TwoBasin()
    for seed in range(args.seeds):
        for name in names:
            path = CACHE / "runs" / name / f"seed{seed}.json"
            if path.exists():
                continue
            t0 = time.perf_counter()
            res = run_one(
                "twobasin2", name, seed, 0, spec=VARIANTS[name], n_init=4, budget=args.budget
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res.__dict__))
            gap = res.gap(4, fn.optimal_value)
            print(
                f"{name} seed {seed}: GAP {gap:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True
            )
    summarize_runs(names, args.seeds)


def summarize_runs(names: list[str], seeds: int) -> None:
    fn = TwoBasin()
    print("\n| variant | mean GAP ± s.e. | stuck (GAP 0) | narrow basin found | asks within 0.1 "
          "of the broad optimum | median ask s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in names:
        gaps, secs, found, near_broad = [], [], 0, 0
        for seed in range(seeds):
            path = CACHE / "runs" / name / f"seed{seed}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            f0, fb = min(r["ys"][:4]), min(r["ys"])
            gaps.append((f0 - fb) / (f0 - fn.optimal_value))
            secs += r["ask_seconds"]
            found += fb < -1.1  # only the narrow basin goes below -1
            near_broad += sum(_dist(x, TwoBasin.BROAD) < 0.1 for x in r["xs"][4:])
        if not gaps:
            continue
        se = statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else float("nan")
        stuck = sum(g <= 1e-9 for g in gaps)
        print(
            f"| {name} | {statistics.fmean(gaps):.3f} ± {se:.3f} (n={len(gaps)}) | {stuck} | "
            f"{found}/{len(gaps)} | {near_broad} | {statistics.median(secs) if secs else 0:.2f} |"
        )


def oneshot(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    grid = torch.linspace(0.05, 0.95, 7, dtype=DTYPE)
    roots = torch.cartesian_prod(grid, grid)
    efforts = {
        "random 4/64/10": LOW_EFFORT,
        "seeded 4/64/10": LOW_EFFORT,
        "random 16/512/50": {"num_restarts": 16, "raw_samples": 512, "maxiter": 50},
    }
    print("| state | noise (std. units) | effort | one-shot value | nested at its root | "
          "best nested on grid | root == X_full[0] | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for state_seed in range(args.states):
        exp = _bo_states("twobasin2", 100 + state_seed, [6])[0]
        data = training_data(exp)
        gp = fit_outcome_models(data, ["f"]).model.models[0]
        noise = float(gp.likelihood.noise.mean())
        acqf = build_multi_step_acquisition(gp, 2, [8], maximize=False, seed=11)
        q = acqf.get_augmented_q_batch_size(1)
        bounds = torch.stack([torch.zeros(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE)])

        def nested(x0: torch.Tensor, acqf: Any = acqf, bounds: Any = bounds, q: int = q) -> float:
            fixed = _FirstStageFixed(acqf, x0)
            _, v = optimize_acqf(fixed, bounds=bounds, q=q - 1, num_restarts=8,
                                 raw_samples=256, options={"maxiter": 200})  # fmt: skip
            return float(v)

        grid_best = max(nested(r) for r in roots) if args.grid else float("nan")
        for label, e in efforts.items():
            t0 = time.perf_counter()
            ics = None
            if label.startswith("seeded"):
                with torch.no_grad():
                    raw = seeded_trees(acqf, exp.search_space, e["raw_samples"], seed=3)
                    ics = initialize_q_batch(raw, acqf(raw), n=e["num_restarts"])[0]
            X_full, v = optimize_acqf(
                acqf, bounds=bounds, q=q, num_restarts=e["num_restarts"],
                raw_samples=e["raw_samples"], options={"maxiter": e["maxiter"]},
                return_full_tree=True, batch_initial_conditions=ics,
            )  # fmt: skip
            secs = time.perf_counter() - t0
            root = acqf.extract_candidates(X_full).reshape(-1)
            is_root = bool(torch.equal(root, X_full.reshape(q, -1)[0]))
            at_root = nested(root)
            print(f"| {state_seed} | {noise:.2e} | {label} | {float(v):.4f} | {at_root:.4f} | "
                  f"{grid_best:.4f} | {is_root} | {secs:.1f} |", flush=True)  # fmt: skip


def explore(args: argparse.Namespace) -> None:
    """1-D: a broad hill at 0.3 and a hidden narrow higher peak at 0.85 (the test's
    ``hidden_spike``), data at 0.1, 0.25, 0.35, 0.5: the ask at which each generator first
    samples x > 0.7."""
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
    from assay.platform.space import Float, SearchSpace

    def f(x: float) -> float:
        return math.exp(-((x - 0.3) ** 2) / (2 * 0.15**2)) + 1.6 * math.exp(
            -((x - 0.85) ** 2) / (2 * 0.04**2)
        )

    def add(exp: Experiment, x: float) -> None:
        i = len(exp.trials)
        arm = Arm(f"{i}_0", {"x": x})
        obs = {arm.name: {"y": Observation("y", f(x))}}
        exp.trials.append(Trial(i + 1, 1, i, [arm], TrialState.COMPLETED, "d", obs))

    settings = {
        "ei": {"horizon": 1},
        "h2 seeded 4/64/10 (default)": {"horizon": 2},
        "h2 random 16/512/50 (old)": {"horizon": 2, **RANDOM},
    }
    for name, st in settings.items():
        st = {**st, "n_initial": 4}
        config = ExperimentConfig(
            name="explore", search_space=SearchSpace([Float("x", 0.0, 1.0)]),
            objectives=[Objective("y", minimize=False)], generator="multi_step",
            generator_settings=st, seed=0,
        )  # fmt: skip
        exp = Experiment(id=1, config=config)
        for x in (0.1, 0.25, 0.35, 0.5):
            add(exp, x)
        gen = get_generator("multi_step", st)
        xs, first = [], None
        for i in range(6):
            res = gen.generate(exp, 1, seed=100 + i)
            exp.generator_state = res.generator_state
            exp.model_state = res.model_state or exp.model_state
            x = res.candidates[0].parameters["x"]
            xs.append(round(x, 3))
            if x > 0.7:
                first = i
                break
            add(exp, x)
        print(f"| {name} | {xs} | {first} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--exp", choices=["runs", "oneshot", "explore", "table"], default="runs")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--states", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="oneshot: nested values on a 7x7 grid")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if args.exp == "runs":
        runs(args)
    elif args.exp == "oneshot":
        oneshot(args)
    elif args.exp == "explore":
        explore(args)
    else:
        summarize_runs(args.variants or list(VARIANTS), args.seeds)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
