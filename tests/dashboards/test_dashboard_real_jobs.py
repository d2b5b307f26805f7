"""The dashboard's jobs panels fed by real jobs: the orchestrator runs trials as subprocesses,
and the jobs page, the trial page (curves, log tail) and the trials table show them."""

from __future__ import annotations

import textwrap

from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.engine import Engine
from assay.service.jobs.local import LocalExecutor
from assay.service.jobs.orchestrator import Orchestrator
from assay.service.settings import Settings
from assay.storage.factory import open_store

HTML = {"accept": "text/html"}
JOB = """
import assay

def train(params):
    for step in range(3):
        assay.report(step=step, loss=1.0 / (step + 1))
    print("epoch log line", flush=True)
    if params["x"] > 0.999:
        raise RuntimeError("never")
    return {"y": params["x"]}

def broken(params):
    raise MemoryError("CUDA out of memory (pretend)")
"""


def test_real_jobs_show_up(tmp_path, monkeypatch) -> None:
    (tmp_path / "dashjobs.py").write_text(textwrap.dedent(JOB))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = open_store(url)
    engine = Engine(store)
    exps = {}
    for fn in ("train", "broken"):
        exp = engine.create_experiment(
            {"name": fn, "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
             "objective": "y", "generator": "sobol",
             "job": {"entrypoint": f"dashjobs:{fn}", "max_trials": 1}}
        )  # fmt: skip
        engine.set_run(exp.id, "start")
        exps[fn] = exp.id
    orch = Orchestrator(
        engine, {"local": LocalExecutor(cpus=2)}, log_dir=tmp_path / "logs", database_url=url
    )
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        orch.step()
        trials = [store.list_trials(e) for e in exps.values()]
        if all(ts and ts[0].state.is_terminal for ts in trials):
            break
        time.sleep(0.1)
    [done] = store.list_trials(exps["train"])[:1]
    failed = store.list_trials(exps["broken"])[0]
    app = create_app(Settings(reaper_interval_s=0, log_dir=str(tmp_path / "logs")), store)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as client:
        jobs = client.get("/jobs", headers=HTML).text
        assert "CUDA out of memory (pretend)" in jobs
        trial = client.get(f"/trials/{done.id}", headers=HTML).text
        assert "epoch log line" in trial and 'id="chart-curves"' in trial
        assert '"steps":[0.0,1.0,2.0]' in trial.replace(" ", "") and '"loss"' in trial
        table = client.get(f"/experiments/{exps['train']}?partial=1").text
        assert "local" in table or "@" in table
        assert client.get(f"/trials/{failed.id}", headers=HTML).status_code == 200
