"""Analytic-candidate NEI against qLogNEI at the states of one ``bo_quality`` run.

Replays Assay ``noisy_ei`` (``analytic: true``, or ``false`` with ``--drive qlognei``) on a
``bo_quality`` problem and seed; at each checkpoint (evaluations so far) it asks both
settings for a proposal on the same experiment state and ask seed, values both proposals under
both acquisitions (log NEI; the same GP fit), prints their true objective and feasibility,
and the Spearman rank correlation of the two acquisitions over 2048 Sobol points.

    python benchmarks/nei_compare_state.py hartmann6_2c 1 16,22,28
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bo_quality import PROBLEMS, Problem, observe

import assay
from assay.platform.experiment import Experiment
from assay.platform.generators.noisy_ei import NoisyEIGenerator
from assay.platform.models import fit_outcome_models
from assay.platform.relative import modelled_outcomes
from assay.service.generation import derive_seed

SETTINGS = (("analytic", True), ("qlognei", False))


def compare(problem: Problem, exp: Experiment, xs: list, it: int) -> None:
    """Print both settings' proposals at the experiment's current state."""
    s = derive_seed(exp.config.seed or 0, len(exp.trials))
    props = {}
    for name, an in SETTINGS:
        res = NoisyEIGenerator({"analytic": an}).generate(exp, 1, seed=s)
        props[name] = (res.candidates[0].parameters, res.info.get("acquisition"))
    outcomes = modelled_outcomes(exp, relativize=True)
    metrics = [m for m in exp.config.modelled_metrics if m in outcomes.data]
    fitted = fit_outcome_models(outcomes.data, metrics, warm_start=exp.model_state, seed=s)
    Xb = torch.unique(torch.cat([d.X for d in outcomes.data.values()]), dim=0)
    acqs = {
        name: NoisyEIGenerator({"analytic": an}).build_acquisition(
            exp, fitted, Xb, None, s, {}, outcomes.constraints
        )
        for name, an in SETTINGS
    }
    feas = [problem.objective(x) for x in xs if problem.feasible(x)]
    print(f"--- {problem.name} after {it} evaluations (ask seed {s})")
    print(f"best true feasible so far {min(feas) if feas else float('nan'):.4f}")
    space = exp.search_space
    for name, (p, acq_name) in props.items():
        x = [p[n] for n in problem.names]
        X = space.encode(p).reshape(1, 1, -1)
        with torch.no_grad():
            vals = {a: float(f(X)) for a, f in acqs.items()}
        print(
            f"{name:>9} proposal ({acq_name}): true f {problem.objective(x):+.4f} "
            f"feasible {problem.feasible(x)} | log NEI analytic {vals['analytic']:+.3f} "
            f"qlognei {vals['qlognei']:+.3f} | x={[round(v, 3) if isinstance(v, float) else v for v in x]}"
        )
    if space.is_continuous:
        U = torch.quasirandom.SobolEngine(space.dim, scramble=True, seed=0).draw(2048)
        Xs = U.to(torch.float64).unsqueeze(1)  # model space is the unit cube
        with torch.no_grad():
            a, b = acqs["analytic"](Xs), acqs["qlognei"](Xs)
        ranks = torch.stack([a.argsort().argsort(), b.argsort().argsort()]).double()
        rho = float(torch.corrcoef(ranks)[0, 1])
        top = set(a.topk(50).indices.tolist()) & set(b.topk(50).indices.tolist())
        print(f"Sobol 2048: Spearman {rho:.3f}; top-50 overlap {len(top)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem", choices=list(PROBLEMS))
    parser.add_argument("seed", type=int)
    parser.add_argument("checkpoints", help="evaluations before each comparison, e.g. 16,22")
    parser.add_argument("--drive", choices=["analytic", "qlognei"], default="analytic")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    problem, ks = PROBLEMS[args.problem], {int(k) for k in args.checkpoints.split(",")}
    rng = random.Random(10_000 + args.seed)
    client = assay.Client()
    exp = client.create_experiment(
        name=problem.name,
        parameters=problem.assay_parameters(),
        objective={"name": "f", "minimize": True},
        outcome_constraints=[f"{m} <= 0" for m, _ in problem.constraints],
        generator="noisy_ei",
        generator_settings={"analytic": args.drive == "analytic"},
        seed=args.seed,
    )
    xs: list = []
    for it in range(max(ks) + 1):
        if it in ks:
            compare(problem, client.get_experiment(exp.id), xs, it)
        [trial] = client.ask(exp.id)
        x = [trial.parameters[n] for n in problem.names]
        xs.append(x)
        client.tell(trial.id, observe(problem, x, rng))
    return 0


if __name__ == "__main__":
    sys.exit(main())
