"""Run one experiment's trial jobs to completion on this machine, outside ``assay serve``.

Scripts and examples that tune a job (``examples/tune_dp_tabular.py``,
``examples/tune_adjoint_matching.py``) need the same loop the server runs: create the
experiment (with its ``job`` spec), start its run, let the :class:`Orchestrator` launch each
trial as a subprocess with the :class:`LocalExecutor` (each job reports its progress with
``assay.report(...)`` straight into the database), and stop when the run is ``done`` (budget
spent) or ``stopped`` (failing). :func:`run_locally` is that loop, so no script re-implements
the orchestration; :func:`tuning_arguments` and :meth:`LocalRun.summary` are the command line
and the printed/returned summary those scripts share.

Example:
    >>> from assay.service.jobs.local_run import run_locally
    >>> run = run_locally(config, database_url="sqlite:///tune.db")  # doctest: +SKIP
    >>> run.run_state, [t["state"] for t in run.trials]  # doctest: +SKIP
    ('done', ['completed', 'completed'])
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.platform.analysis import BestArm


def console_event(message: str) -> None:
    """Print an orchestrator event with a timestamp (the live terminal log)."""
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


@dataclass
class LocalRun:
    """What :func:`run_locally` leaves behind.

    Attributes:
        experiment_id: The experiment's id in ``database_url``.
        run_state: ``done`` (budget spent), ``stopped`` (failing) or, after ``max_wall_s``,
            whatever it was then.
        trials: One dict per trial: ``trial`` (index), ``state``, ``parameters``, and either
            ``metrics`` (everything the job returned, means only) or ``error`` (first line).
        reports: ``{trial index: number of assay.report(...) rows}`` (the jobs' progress).
        best: The model's recommended arm, when any trial completed.
        database_url: Where the experiment lives (a temporary SQLite file by default).
        log_dir: The per-trial job directories (``job.log``, result file).
    """

    experiment_id: int
    run_state: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[int, int] = field(default_factory=dict)
    best: BestArm | None = None
    database_url: str = ""
    log_dir: str = ""

    def summary(
        self,
        tuned: set[str] | None = None,
        *,
        line: Callable[[dict[str, Any]], str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The run as a JSON-able dict, printing one line per trial and the recommendation.

        Args:
            tuned: Keep only these parameters in the trials and the recommendation (the
                fixed ones are noise in a summary); ``None`` keeps all.
            line: ``line(metrics) -> str`` describes a completed trial (after its index and
                before its parameters); ``None`` prints nothing (no trial lines, no
                recommendation).
            extra: More keys for the summary (the baseline, a constraint's bound, ...).
        """

        def keep(params: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in params.items() if tuned is None or k in tuned}

        trials = []
        for t in self.trials:
            row = {**t, "parameters": keep(t["parameters"])}
            trials.append(row)
            if line is None:
                continue
            m = t.get("metrics")
            if m is None:
                print(f"trial {t['trial']:2d} {t['state']}: {t.get('error', '')}")
            else:
                print(f"trial {t['trial']:2d} {line(m)}  reports {self.reports.get(t['trial'], 0)}"
                      f"  {json.dumps(row['parameters'], default=float)}")  # fmt: skip
        out: dict[str, Any] = {
            **extra, "experiment_id": self.experiment_id, "run_state": self.run_state,
            "database_url": self.database_url, "trials": trials, "reports": self.reports,
        }  # fmt: skip
        if self.best is not None:
            best = self.best
            out["best"] = {"arm": best.arm_name, "parameters": keep(best.parameters),
                           "probability_feasible": best.probability_feasible,
                           "model_based": best.model_based}  # fmt: skip
            if line is not None:
                print(f"recommended: {out['best']['parameters']} "
                      f"(P(feasible) {best.probability_feasible:.2f})")  # fmt: skip
        return out


def job_experiment(
    *,
    name: str,
    description: str,
    entrypoint: str,
    tuned: list[dict[str, Any]],
    fixed: Mapping[str, Any],
    goal: Mapping[str, Any],
    budget: int,
    seed: int = 0,
    device: str = "auto",
    parallelism: int = 1,
    timeout_s: float = 3600.0,
    cache_dir: str = "",
) -> dict[str, Any]:
    """The JSON form of an experiment whose trials are jobs of one workload entry point.

    Every tuning example builds the same shape: the tuned parameters, the job's shared
    settings as ``fixed`` parameters (so the job receives exactly ``run(params)``'s dict), the
    goal (objective(s), constraints, tracked metrics), and a ``job`` spec with one torch
    thread, the disk cache the jobs share (``$ASSAY_GENERATIVE_CACHE``) and one GPU when the
    device may use CUDA and this machine has one.

    Args:
        name: Experiment name.
        description: One line for the dashboard.
        entrypoint: ``module:function`` the jobs run (it must be on the server's allowlist).
        tuned: The tuned parameters' definitions.
        fixed: Settings every trial shares (become ``fixed`` parameters).
        goal: ``objective``/``objectives``, ``outcome_constraints``, ``tracking_metrics``.
        budget: Number of trials (jobs).
        seed: Seed of the generator.
        device: The jobs' device (``cpu`` never asks for a GPU).
        parallelism: Jobs at once.
        timeout_s: Per-job wall-clock limit.
        cache_dir: Disk cache shared by the jobs (empty: none).

    Example:
        >>> cfg = job_experiment(name="t", description="", entrypoint="m:run",
        ...     tuned=[{"name": "lr", "type": "float", "bounds": [0.1, 1.0]}],
        ...     fixed={"steps": 3}, goal={"objective": "loss"}, budget=2, device="cpu")
        >>> [p["name"] for p in cfg["parameters"]], cfg["job"]["resources"]
        (['lr', 'steps'], {'cpus': 1, 'gpus': 0})
    """
    env = {"OMP_NUM_THREADS": "1"}
    if cache_dir:
        env["ASSAY_GENERATIVE_CACHE"] = cache_dir
    gpus = 0
    if device != "cpu":
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
    return {
        "name": name,
        "description": description,
        "parameters": [dict(p) for p in tuned]
        + [{"name": k, "type": "fixed", "value": v} for k, v in fixed.items()],
        **goal,
        "seed": seed,
        "job": {
            "entrypoint": entrypoint,
            "parallelism": parallelism,
            "max_trials": budget,
            "timeout_s": timeout_s,
            "resources": {"cpus": 1, "gpus": gpus},
            "env": env,
        },
    }


def run_tuning(
    config: Mapping[str, Any],
    args: Any,
    *,
    actor: str,
    line: Callable[[dict[str, Any]], str],
    baseline: Mapping[str, Any],
    bound: float,
    extend: Callable[[LocalRun, set[str]], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run a tuning example's experiment with :func:`run_locally` and return its summary.

    Args:
        config: The experiment (:func:`job_experiment`).
        args: The parsed :func:`tuning_arguments` (``database_url``, ``log_dir``, ``json``).
        actor: Audit-trail actor and worker id.
        line: Describes one completed trial (see :meth:`LocalRun.summary`).
        baseline: The untuned run's metrics (kept in the summary).
        bound: The outcome constraint's bound derived from the baseline.
        extend: ``extend(run, tuned) -> dict`` adds keys to the summary (e.g. the front).
    """
    result = run_locally(config, database_url=args.database_url, log_dir=args.log_dir, actor=actor)
    tuned = {p["name"] for p in config["parameters"] if p["type"] != "fixed"}
    summary = result.summary(tuned, line=line, baseline=dict(baseline), bound=bound)
    if extend is not None:
        summary.update(extend(result, tuned))
    if args.json:
        print(json.dumps(summary, default=float))
    return summary


def tuning_arguments(
    description: str | None, *, budget: int, parallelism: int = 1
) -> argparse.ArgumentParser:
    """The command line every tuning example shares: ``--budget``, ``--parallelism``,
    ``--tiny``, ``--seed``, ``--database-url``, ``--log-dir``, ``--timeout``, ``--json``
    (an example adds its own). Parse with :func:`parse_tuning_arguments`."""
    ap = argparse.ArgumentParser(description=(description or "").splitlines()[0])
    ap.add_argument("--budget", type=int, default=budget, help="number of trials (jobs)")
    ap.add_argument("--parallelism", type=int, default=parallelism, help="jobs at once")
    ap.add_argument("--tiny", action="store_true", help="tiny data and models (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--database-url", help="keep the experiment here (default: a temporary SQLite file)"
    )
    ap.add_argument("--log-dir", help="job logs (default: a temporary directory)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per-job limit, seconds")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    return ap


def parse_tuning_arguments(ap: argparse.ArgumentParser, argv: list[str] | None) -> Any:
    """Parse, refusing a budget or parallelism below 1 (exit status 2, like argparse)."""
    args = ap.parse_args(argv)
    if args.budget < 1:
        ap.error("--budget must be >= 1")
    if args.parallelism < 1:
        ap.error("--parallelism must be >= 1")
    return args


def run_locally(
    config: Mapping[str, Any],
    *,
    database_url: str | None = None,
    log_dir: str | Path | None = None,
    cpus: float | None = None,
    actor: str = "local-run",
    on_event: Callable[[str], None] | None = console_event,
    poll_interval: float = 0.2,
    max_wall_s: float | None = None,
) -> LocalRun:
    """Create the experiment described by ``config`` and run its jobs until the run ends.

    Args:
        config: The experiment's JSON form; it must carry a ``job`` spec (entrypoint or
            command) and a trial budget (``job.max_trials`` or ``max_trials``).
        database_url: Keep the experiment here (default: a SQLite file in a new temporary
            directory).
        log_dir: Job work directories (default: ``logs`` in a new temporary directory).
        cpus: CPU cores the local executor shares between jobs (default:
            ``job.parallelism``).
        actor: Audit-trail actor and worker id.
        on_event: Called with each orchestrator event (default: print it).
        poll_interval: Seconds between orchestrator passes while jobs run.
        max_wall_s: Give up waiting after this long (the run's state is returned as is).

    Returns:
        A :class:`LocalRun` summary.

    Raises:
        ValueError: ``config`` has no job spec or no budget (the loop would never end).
    """
    from assay.service.engine import Engine
    from assay.service.jobs.local import LocalExecutor
    from assay.service.jobs.orchestrator import Orchestrator
    from assay.storage.factory import open_store

    job = config.get("job")
    if not isinstance(job, Mapping):
        raise ValueError("run_locally needs an experiment with a 'job' spec")
    if job.get("max_trials") is None and config.get("max_trials") is None:
        raise ValueError("run_locally needs a trial budget (job.max_trials or max_trials)")
    if database_url is None or log_dir is None:
        work = Path(tempfile.mkdtemp(prefix="assay-run-"))
        database_url = database_url or f"sqlite:///{work / 'run.db'}"
        log_dir = log_dir or work / "logs"
    log_dir = Path(log_dir)
    store = open_store(database_url)
    parallelism = int(job.get("parallelism", 1))
    executor = LocalExecutor(cpus=cpus or parallelism)
    try:
        engine = Engine(store, actor=actor)
        exp = engine.create_experiment(dict(config))
        orch = Orchestrator(
            engine, {"local": executor}, worker_id=actor,
            log_dir=log_dir, database_url=store.url, poll_interval=poll_interval,
            on_event=on_event,
        )  # fmt: skip
        if on_event is not None:
            budget = exp.config.trial_budget
            on_event(f"experiment {exp.id} ({exp.config.name}): {budget} trials, "
                     f"{parallelism} at a time; database {store.url}")  # fmt: skip
        engine.set_run(exp.id, "start")
        t0 = time.monotonic()
        while store.get_experiment(exp.id).run_state not in ("done", "stopped"):
            if max_wall_s is not None and time.monotonic() - t0 > max_wall_s:
                break
            if not orch.step():
                time.sleep(poll_interval)
        final = store.get_experiment(exp.id)
        out = LocalRun(final.id, final.run_state, database_url=store.url, log_dir=str(log_dir))
        for t in final.trials:
            row: dict[str, Any] = {"trial": t.index, "state": t.state.value,
                                   "parameters": dict(t.parameters)}  # fmt: skip
            job_row = store.job_for_trial(t.id)
            if job_row is not None and job_row.result:
                row["metrics"] = {k: (v[0] if isinstance(v, list) else v)
                                  for k, v in job_row.result.items()}  # fmt: skip
            elif t.reason:
                row["error"] = t.reason.splitlines()[0]
            out.trials.append(row)
            out.reports[t.index] = len(engine.reports(t.id))
        if any("metrics" in r for r in out.trials):
            out.best = engine.best(exp.id)
        return out
    finally:
        executor.close()  # kills jobs still running after max_wall_s or an interrupt
        store.close()
