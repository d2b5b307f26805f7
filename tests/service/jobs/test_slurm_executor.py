"""The Slurm executor through submitit's local executor (no Slurm cluster here; the same
code path submits to a real one with cluster="slurm")."""

from __future__ import annotations

import pytest

from assay.platform.experiment import TrialState
from assay.service.engine import Engine
from assay.service.jobs.orchestrator import Orchestrator
from assay.storage.factory import open_store

pytest.importorskip("submitit")


@pytest.mark.slow
def test_submitit_jobs_complete_and_fail(tmp_path, jobs_module, drive) -> None:
    from assay.service.jobs.slurm_executor import SlurmExecutor

    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    engine = Engine(store)
    ids = {}
    for fn in ("ok", "boom"):
        exp = engine.create_experiment(
            {"name": fn, "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
             "objective": "y", "generator": "sobol", "seed": 2,
             "job": {"entrypoint": f"{jobs_module}:{fn}", "executor": "slurm",
                     "max_trials": 1, "timeout_s": 120}}
        )  # fmt: skip
        engine.set_run(exp.id, "start")
        ids[fn] = exp.id
    orch = Orchestrator(
        engine, {"slurm": SlurmExecutor(tmp_path / "submitit", cluster="local")},
        default_executor="slurm", log_dir=tmp_path / "logs", database_url=url,
    )  # fmt: skip
    drive(
        orch,
        lambda: all(
            store.list_trials(e) and store.list_trials(e)[0].state.is_terminal for e in ids.values()
        ),
        timeout=120,
    )
    [ok] = store.list_trials(ids["ok"])
    assert ok.state is TrialState.COMPLETED and ok.values["y"].mean == pytest.approx(
        ok.parameters["x"] ** 2
    )
    assert [r.step for r in store.list_reports(ok.id)] == [0, 1, 2]
    bad = store.list_trials(ids["boom"])[0]  # (failed trials do not use up the budget)
    assert bad.state is TrialState.FAILED and "boom at x=" in bad.reason
