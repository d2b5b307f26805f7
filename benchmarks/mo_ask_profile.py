"""CPU time of one multi-objective ask at a mid-run state, for several generator settings.

The state: the first ``--n-obs`` arms that Assay evaluated in a cached ``mo_quality`` run
(``--cache``, ``--problem``, ``--seed``), attached as manual trials and told their noisy
observations, so the ask is the one the benchmark made at that point. Each variant of the
generator settings (``--variant name:key=value,key=value``) is asked ``--repeats`` times on
a fresh copy of that state (the first ask fits the model cold, the later ones are
warm-started, as mid-run); the CPU seconds per ask are printed, and with ``--profile`` a
pyinstrument tree of one ask per variant. Ratios between variants of one run are the figure
to read on shared cores.

    python benchmarks/mo_ask_profile.py --problem dtlz2 --n-obs 20 --profile \\
        --variant base: --variant lean:raw_samples=128,num_restarts=5
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mo_quality import PROBLEMS


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    settings: dict = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        settings[k] = json.loads(v)
    return name, settings


def build_state(client, problem, xs, generator: str, settings: dict, seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(10_000 + seed)
    ref = problem.fn.ref_point.tolist()
    exp = client.create_experiment(
        f"{problem.name}-{time.monotonic_ns()}",
        [{"name": f"x{i}", "type": "float", "bounds": [0.0, 1.0]} for i in range(problem.dim)],
        objectives=[{"name": f"f{k}", "threshold": ref[k]} for k in range(len(ref))],
        outcome_constraints=["slack >= 0"] if problem.constrained else [],
        generator=generator,
        generator_settings=settings,
        seed=seed,
    )
    for x in xs:
        trial = client.attach_trial(exp.id, {f"x{i}": v for i, v in enumerate(x)})
        client.tell(trial.id, problem.observe(x, rng))
    return exp


def main(argv: list[str] | None = None) -> int:
    import assay

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="benchmarks/results/mo_quality_b30.json")
    ap.add_argument("--problem", default="dtlz2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--n-obs", type=int, default=20)
    ap.add_argument("--generator", default="noisy_ehvi")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    with open(args.cache) as f:
        run = json.load(f)[f"{args.problem}/assay/seed{args.seed}/budget{args.budget}"]
    xs = run["xs"][: args.n_obs]
    problem = PROBLEMS[args.problem]()
    client = assay.Client()
    variants = [parse_variant(v) for v in args.variant] or [("base", {})]
    for name, settings in variants:
        exp = build_state(client, problem, xs, args.generator, settings, args.seed)
        cpu = []
        for r in range(args.repeats):
            profiler = None
            if args.profile and r == args.repeats - 1:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.002)
                profiler.start()
            c0 = time.process_time()
            [trial] = client.ask(exp.id)
            cpu.append(time.process_time() - c0)
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))
            client.abandon(trial.id, "profiling: the same state is asked again")
            x = [trial.parameters[f"x{i}"] for i in range(problem.dim)]
            print(f"  {name} ask {r}: cpu {cpu[-1]:.3f} s, x={[round(v, 3) for v in x]}",
                  flush=True)  # fmt: skip
        print(f"{name} {settings}: median CPU per ask {statistics.median(cpu):.3f} s "
              f"(warm asks {[round(c, 3) for c in cpu[1:]]})", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
