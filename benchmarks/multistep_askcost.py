"""Paired ask cost of ``multi_step`` against ``noisy_ei`` (issue 20: horizon 2 <= 2x noisy_ei).

Timing each method in its own BO run (``benchmarks/multistep.py``'s table) compares asks on
different experiment states, in different processes, under whatever load the machine had at
the time. Here one BO run per (function, seed) is driven by one method (``--driver``, default
``ms2``) and at *every* state along it each measured method (``noisy_ei``, ``ms2``, ``ms3`` by
default, ``benchmarks/multistep.py``'s ``METHODS``) asks for one point on the *same*
experiment, interleaved in the same process (the order rotates from state to state). Each
method keeps its own ``generator_state`` and ``model_state`` from its previous ask on the
same run, as in the product (GP hyperparameters and the previous tree warm-start the ask),
and every ask goes through ``get_generator(...).generate``, the public path (fit included).

The cost is the ask's *CPU time* (``time.process_time``, one torch thread), which a loaded
machine inflates far less than wall time; the ratios are per state (``method / noisy_ei``),
summarised by their median, beside the ratio of the median CPU times.

Protocol: the authors' ``2 d`` random initial points (the same design as
``benchmarks/multistep.py`` for the seed), then ``--budget-mult * d`` asks of the driver; no
trial budget is set, so the lookahead horizon is never shortened by it.

Results (one row per state and method) go to ``benchmarks/results/multistep/askcost/<tag>.json``.

Examples:
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/multistep_askcost.py --tag before
    python benchmarks/multistep_askcost.py --table before after
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from assay.benchmarks.multistep import (
    METHODS,
    PROBLEMS,
    _trial,
    evaluate,
    lookahead_value,
    random_design,
    space_for,
)
from assay.platform.experiment import Experiment, ExperimentConfig, Objective
from assay.platform.generators import get_generator
from assay.platform.models import exact_solves, fit_outcome_models

#: High-fidelity fantasies of the decision value (``--value``), as ``--study fantasies``.
HIGH_FIDELITY = {2: [32], 3: [8, 8]}

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "multistep" / "askcost"
REFERENCE = "noisy_ei"


def paired_run(
    problem: str,
    seed: int,
    budget_mult: int,
    methods: list[str],
    driver: str,
    every: int = 1,
    value: bool = False,
) -> list[dict[str, Any]]:
    """One BO run of ``driver`` on ``problem``; at every ``every``-th state each method asks
    once on the same experiment. Returns one row per (state, method).

    With ``value``, each lookahead method's decision (the proposal) is also scored by its
    high-fidelity lookahead value (:data:`HIGH_FIDELITY` fantasies, the rest of the tree
    re-optimized with the decision fixed: ``benchmarks/multistep.py``'s ``lookahead_value``)
    under one GP per state (the fixed-noise GP of ``ms2``'s data, fitted cold), so decisions
    of different methods or settings compare on the same scale."""
    fn = PROBLEMS[problem]()
    d = fn.dim
    n_init = 2 * d
    raw = random_design(fn, seed, n_init)  # benchmarks/multistep.py's shared design
    config = ExperimentConfig(
        name=f"askcost-{problem}-{seed}",
        search_space=space_for(fn),
        objectives=[Objective("f", minimize=True)],
        generator="sobol",
        seed=seed,
    )
    exp = Experiment(id=1, config=config)
    for i in range(n_init):
        params = {f"x{j}": float(raw[i, j]) for j in range(d)}
        exp.trials.append(_trial(i, params, evaluate(fn, params), "random"))
    names = list(dict.fromkeys([*methods, driver]))
    gens = {}
    for m in names:
        gen_name, settings = METHODS[m]
        gens[m] = get_generator(gen_name, {**settings, "n_initial": n_init})
    states: dict[str, tuple[dict, dict]] = {m: ({}, {}) for m in names}
    rows: list[dict[str, Any]] = []
    for step, i in enumerate(range(n_init, n_init + budget_mult * d)):
        ask_seed = seed * 100_003 + i
        measure = step % every == 0
        order = names[step % len(names) :] + names[: step % len(names)]
        results = {}
        for m in order:
            if not measure and m != driver:
                continue
            exp.generator_state, model_state = states[m]
            exp.model_state = model_state
            c0, w0 = time.process_time(), time.perf_counter()
            res = gens[m].generate(exp, 1, seed=ask_seed)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            states[m] = (res.generator_state, res.model_state or model_state)
            results[m] = res
            if measure and m in methods:
                info = res.info
                rows.append(
                    {"problem": problem, "seed": seed, "n": len(exp.trials), "method": m,
                     "cpu": cpu, "wall": wall, "fit": info.get("fit_seconds"),
                     "optimize": info.get("optimize_seconds"),
                     "horizon": info.get("horizon_effective"),
                     "warm": info.get("warm_started"), "calls": info.get("acquisition_calls"),
                     "value": info.get("acquisition_value")}
                )  # fmt: skip
        if measure and value:
            _score_decisions(exp, results, rows, methods)
        if measure:
            line = " ".join(
                f"{r['method']} {r['cpu']:.2f}s" for r in rows if r["n"] == len(exp.trials)
                and r["problem"] == problem and r["seed"] == seed
            )  # fmt: skip
            print(f"{problem} seed {seed} n={len(exp.trials)}: {line}", flush=True)
        params = results[driver].candidates[0].parameters
        exp.trials.append(_trial(i, params, evaluate(fn, params), driver))
    return rows


def _score_decisions(
    exp: Experiment, results: dict[str, Any], rows: list[dict[str, Any]], methods: list[str]
) -> None:
    """Add ``hf_value`` (high-fidelity lookahead value of the decision) to this state's rows."""
    gen = get_generator("multi_step", METHODS["ms2"][1])
    ctx = SimpleNamespace(experiment=exp, data=None)
    gen.load_data(ctx)  # the objective with the small fixed noise, as ms2 models it
    with exact_solves():
        gp = fit_outcome_models(ctx.data, ["f"]).model.models[0]
        for m in methods:
            info = results[m].info
            h = info.get("horizon_effective")
            if m == REFERENCE or not h or h not in HIGH_FIDELITY:
                continue
            x0 = exp.search_space.encode(results[m].candidates[0].parameters)
            v = lookahead_value(gp, x0, h, HIGH_FIDELITY[h], seed=12345)
            for r in rows:
                if r["method"] == m and r["n"] == len(exp.trials) and "hf_value" not in r:
                    r["hf_value"] = v


def value_summary(rows: list[dict[str, Any]]) -> str:
    """Decision values of methods of the same horizon, paired by state (``--value``)."""
    by_state: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r.get("hf_value") is not None:
            key = (r["problem"], r["seed"], r["n"], r["horizon"])
            by_state.setdefault(key, {})[r["method"]] = r["hf_value"]
    lines = ["| horizon | methods | states | mean relative value | min | value >= best - 1e-6 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for h in sorted({k[3] for k in by_state}):
        groups = [v for k, v in by_state.items() if k[3] == h and len(v) > 1]
        names = sorted({m for v in groups for m in v})
        for m in names:
            rel = [v[m] / max(v.values()) for v in groups if m in v and max(v.values()) > 0]
            ok = sum(v[m] >= max(v.values()) - 1e-6 for v in groups if m in v)
            if rel:
                lines.append(f"| {h} | {m} | {len(rel)} | {statistics.fmean(rel):.4f} | "
                             f"{min(rel):.4f} | {ok}/{len(rel)} |")  # fmt: skip
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]], methods: list[str]) -> str:
    """Median CPU seconds per function and method, and the paired ratios to noisy_ei."""
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    others = [m for m in methods if m != REFERENCE]
    head = (
        "| function | states | "
        + " | ".join(f"{m} median CPU s" for m in methods)
        + " | "
        + " | ".join(f"{m}/{REFERENCE}: paired ratio, median (IQR; states ≤ 2×)" for m in others)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 + len(methods) + len(others))]
    for prob in [*problems, None]:
        rs = [r for r in rows if prob is None or r["problem"] == prob]
        by_state: dict[tuple, dict[str, float]] = {}
        for r in rs:
            by_state.setdefault((r["problem"], r["seed"], r["n"]), {})[r["method"]] = r["cpu"]
        full = {k: v for k, v in by_state.items() if all(m in v for m in methods)}
        cells = [prob or "**all**", str(len(full))]
        for m in methods:
            cells.append(f"{statistics.median(v[m] for v in full.values()):.2f}" if full else "–")
        for m in others:
            ratios = sorted(v[m] / v[REFERENCE] for v in full.values())
            if not ratios:
                cells.append("–")
                continue
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            within = sum(x <= 2.0 for x in ratios) / len(ratios)
            cells.append(f"{q[1]:.2f}× ({q[0]:.2f}–{q[2]:.2f}; ≤ 2× in {within:.0%})")
        lines.append("| " + " | ".join(cells) + " |")
    comp = []
    for m in methods:
        rm = [r for r in rows if r["method"] == m]
        if rm and m != REFERENCE:
            fit = statistics.median(r["fit"] or 0 for r in rm)
            opt = statistics.median(r["optimize"] or 0 for r in rm)
            comp.append(f"{m}: median fit {fit:.2f} s, optimize {opt:.2f} s (wall)")
    return "\n".join(lines) + ("\n\n" + "; ".join(comp) if comp else "")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--functions", nargs="*", default=["branin", "twobasin2", "hartmann3"])
    ap.add_argument("--methods", nargs="*", default=["noisy_ei", "ms2", "ms3"])
    ap.add_argument("--driver", default="ms2", choices=list(METHODS))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget-mult", type=int, default=8, help="asks after the 2 d initial: mult*d")
    ap.add_argument("--every", type=int, default=1, help="measure every k-th state")
    ap.add_argument(
        "--variant",
        nargs="*",
        default=[],
        metavar="NAME=JSON",
        help="extra methods: multi_step settings over ms2's, e.g. ms2_r8='{\"num_restarts\": 8}'",
    )
    ap.add_argument("--value", action="store_true", help="score the decisions (see paired_run)")
    ap.add_argument("--tag", default="latest", help="results file name (no extension)")
    ap.add_argument("--table", nargs="*", help="only print the tables of these tags")
    args = ap.parse_args(argv)
    if args.table:
        for tag in args.table:
            rows = json.loads((OUT / f"{tag}.json").read_text())
            methods = list(dict.fromkeys(r["method"] for r in rows))
            print(f"\n### {tag}\n\n{summary(rows, methods)}")
            if any("hf_value" in r for r in rows):
                print(f"\n{value_summary(rows)}")
        return
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for spec in args.variant:
        name, _, settings = spec.partition("=")
        METHODS[name] = ("multi_step", {**METHODS["ms2"][1], **json.loads(settings)})
        args.methods.append(name)
    if REFERENCE not in args.methods:
        raise SystemExit(f"--methods must include {REFERENCE}")
    rows: list[dict[str, Any]] = []
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.tag}.json"
    for seed in range(args.seeds):
        for problem in args.functions:
            rows += paired_run(
                problem, seed, args.budget_mult, args.methods, args.driver, args.every,
                args.value,
            )  # fmt: skip
            path.write_text(json.dumps(rows, indent=0))
    print(f"\n{summary(rows, args.methods)}\n\n(rows in {path})")
    if args.value:
        print(f"\n{value_summary(rows)}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
