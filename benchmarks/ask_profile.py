"""Profile one ``noisy_ei`` ask at a benchmark state (issue 19, targets 1 and 2).

States: a ``bo_quality`` problem driven by Assay for ``--evals`` evaluations (same seeds and
noise as ``bo_quality.py``), or ``scale.py``'s ``hartmann6_2c`` with ``--scale N`` random
completed trials. The ask is then timed (CPU seconds, median of ``--repeat``) and, with
``--profile``, one more ask is profiled with pyinstrument.

    python benchmarks/ask_profile.py mixed4 --evals 20 --profile
    python benchmarks/ask_profile.py hartmann6_2c --scale 1000 --profile
"""

from __future__ import annotations

import argparse
import logging
import pickle
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bo_quality import PROBLEMS, observe


def state(problem_name: str, evals: int, seed: int):  # type: ignore[no-untyped-def]
    import assay

    problem = PROBLEMS[problem_name]
    rng = random.Random(10_000 + seed)
    client = assay.Client()
    exp = client.create_experiment(
        name=problem.name,
        parameters=problem.assay_parameters(),
        objective={"name": "f", "minimize": True},
        outcome_constraints=[f"{m} <= 0" for m, _ in problem.constraints],
        generator="noisy_ei",
        seed=seed,
    )
    for _ in range(evals):
        [trial] = client.ask(exp.id)
        x = [trial.parameters[n] for n in problem.names]
        client.tell(trial.id, observe(problem, x, rng))
    return client.get_experiment(exp.id)


def optuna_ask_cpu(problem_name: str, exp, seed: int, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    """CPU seconds of Optuna ``GPSampler`` asks (plus suggests) on the experiment's observed
    means (objective and constraints), each ask on a fresh study with the same trials."""
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = PROBLEMS[problem_name]
    cons = [m for m, _ in problem.constraints]
    dists = {}
    for j, (n, (lo, hi)) in enumerate(zip(problem.names, problem.bounds, strict=True)):
        kind = problem.kinds.get(j, "float")
        dists[n] = (
            CategoricalDistribution(kind) if isinstance(kind, list)
            else IntDistribution(int(lo), int(hi)) if kind == "int" else FloatDistribution(lo, hi)
        )  # fmt: skip
    trials = []
    for _, arm, obs in exp.observed():
        vals = {m: obs[m].mean for m in ["f", *cons]}
        trials.append(
            optuna.trial.create_trial(
                params={n: arm.parameters[n] for n in problem.names}, distributions=dists,
                value=vals["f"], user_attrs={m: vals[m] for m in cons},
                system_attrs={"constraints": [vals[m] for m in cons]},
            )
        )  # fmt: skip

    def constraints_func(trial):  # type: ignore[no-untyped-def]
        return [trial.user_attrs[m] for m in cons]

    out = []
    for r in range(repeat):
        sampler = optuna.samplers.GPSampler(
            seed=seed + r, constraints_func=constraints_func if cons else None
        )
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.add_trials(trials)
        c0 = time.process_time()
        trial = study.ask()
        for n, d in dists.items():
            trial._suggest(n, d)
        out.append(time.process_time() - c0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("problem", choices=list(PROBLEMS))
    p.add_argument("--evals", type=int, default=20)
    p.add_argument("--scale", type=int, default=0, help="random completed trials (scale.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--optuna", action="store_true", help="also time Optuna asks at the state")
    p.add_argument("--state", type=Path, help="pickle of the state: loaded if present, else saved")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from assay.platform.generators import get_generator

    if args.state and args.state.exists():
        exp = pickle.loads(args.state.read_bytes())
    elif args.scale:
        import scale

        exp, _ = scale.experiment(args.scale, args.seed)
    else:
        exp = state(args.problem, args.evals, args.seed)
    if args.state and not args.state.exists():
        args.state.write_bytes(pickle.dumps(exp))
    gen = get_generator("noisy_ei")
    cpu = []
    for r in range(args.repeat):
        c0 = time.process_time()
        res = gen.generate(exp, 1, seed=1234 + r)
        cpu.append(time.process_time() - c0)
        print(f"ask {r}: {cpu[-1]:.3f} s CPU; info {res.info}", flush=True)
    if cpu:
        print(f"median ask CPU s: {statistics.median(cpu):.3f}")
    if args.optuna and cpu:
        ocpu = optuna_ask_cpu(args.problem, exp, args.seed, args.repeat)
        print(
            f"optuna GPSampler median ask CPU s: {statistics.median(ocpu):.3f}; "
            f"assay/optuna = {statistics.median(cpu) / statistics.median(ocpu):.2f}x"
        )
    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.002)
        c0 = time.process_time()
        prof.start()
        gen.generate(exp, 1, seed=999)
        prof.stop()
        print(f"profiled ask: {time.process_time() - c0:.3f} s CPU")
        print(prof.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
