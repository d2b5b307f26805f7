"""Run one experiment's trial jobs to completion on this machine, outside ``assay serve``.

Scripts and examples that tune a job (``examples/tune_dp_tabular.py``,
``examples/tune_adjoint_matching.py``) need the same loop the server runs: create the
experiment (with its ``job`` spec), start its run, let the :class:`Orchestrator` launch each
trial as a subprocess with the :class:`LocalExecutor` (each job reports its progress with
``assay.report(...)`` straight into the database), and stop when the run is ``done`` (budget
spent) or ``stopped`` (failing). :func:`run_locally` is that loop, so no script re-implements
the orchestration.

Example:
    >>> from assay.service.jobs.local_run import run_locally
    >>> run = run_locally(config, database_url="sqlite:///tune.db")  # doctest: +SKIP
    >>> run.run_state, [t["state"] for t in run.trials]  # doctest: +SKIP
    ('done', ['completed', 'completed'])
"""

from __future__ import annotations

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
