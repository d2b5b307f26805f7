"""Dispatch overhead: how fast Assay turns trials into jobs, against Ray Tune, in one run.

Each system runs ``N`` no-op trials (the job returns its parameter at once) with
parallelism 2 on this machine:

* Assay + local executor: ``sobol`` generator (model step excluded), SQLite store, the
  orchestrator stepping as fast as its poll interval allows; every trial is a subprocess.
* Assay + Ray executor: same, each trial a detached Ray actor on a local Ray instance.
* Ray Tune: ``Tuner`` with a function trainable, ``num_samples=N``, ``max_concurrent_trials=2``,
  random search, on the same Ray instance.

Reported: wall time, sustained trials/minute, and dispatch overhead per trial =
``wall * parallelism / N`` (seconds of a parallel slot spent per trial when the job itself
takes no time). Target: local executor overhead per trial <= Ray Tune's.

    python benchmarks/dispatch.py            # N = 40
    python benchmarks/dispatch.py --quick    # N = 12
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_assay(executor_name: str, n: int, executor) -> float:  # type: ignore[no-untyped-def]
    from assay.service.engine import Engine
    from assay.service.jobs.orchestrator import Orchestrator
    from assay.storage.factory import open_store

    tmp = Path(tempfile.mkdtemp())
    store = open_store(f"sqlite:///{tmp / 'd.db'}")
    engine = Engine(store)
    exp = engine.create_experiment(
        {"name": "dispatch", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
         "objective": "y", "generator": "sobol", "seed": 0,
         "job": {"entrypoint": "noop_job:run", "parallelism": 2, "max_trials": n,
                 "executor": executor_name}}
    )  # fmt: skip
    orch = Orchestrator(
        engine, {executor_name: executor}, default_executor=executor_name, log_dir=tmp / "logs",
        database_url=store.url, poll_interval=0.02,
    )  # fmt: skip
    engine.set_run(exp.id, "start")
    t0 = time.perf_counter()
    while store.get_experiment(exp.id).run_state != "done":
        orch.step()
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    assert sum(t.state.value == "completed" for t in store.list_trials(exp.id)) == n
    return wall


def run_tune(n: int) -> float:
    from ray import tune

    def trainable(config: dict) -> dict:
        return {"y": config["x"]}

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    assert len(results) == n and not results.errors
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 12 if args.quick else args.n
    import ray

    from assay.service.jobs.local import LocalExecutor
    from assay.service.jobs.ray_executor import RayExecutor

    rows = []
    rows.append(("Assay local executor", run_assay("local", n, LocalExecutor(cpus=2))))
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="assay"
    )
    rows.append(("Assay Ray executor", run_assay("ray", n, RayExecutor())))
    rows.append(("Ray Tune (function trainable)", run_tune(n)))
    ray.shutdown()
    print(f"\n{n} no-op trials, parallelism 2, {os.cpu_count()} cores\n")
    print("| system | wall s | trials/min | overhead per trial (s of a slot) |")
    print("|---|---|---|---|")
    for name, wall in rows:
        print(f"| {name} | {wall:.1f} | {60 * n / wall:.0f} | {wall * 2 / n:.2f} |")
    local, tune_ = rows[0][1], rows[2][1]
    print(f"\nTarget: local overhead <= Ray Tune's: {'OK' if local <= tune_ else 'MISS'} "
          f"({local * 2 / n:.2f} s vs {tune_ * 2 / n:.2f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
