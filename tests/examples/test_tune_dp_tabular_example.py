"""The example where Assay tunes the DP-SGD tabular job runs end to end with a tiny budget:
an experiment with a job spec, the orchestrator launching each trial as a local subprocess,
every trial at the same fixed epsilon, and a recommendation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from assay.generative.workloads.dp_tabular import SEARCH_SPACE


@pytest.fixture(scope="module")
def example(repo_root: Path):
    path = repo_root / "examples" / "tune_dp_tabular.py"
    spec = importlib.util.spec_from_file_location("tune_dp_tabular_example", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_config_uses_the_job_search_space_and_objective(example) -> None:
    cfg = example.experiment_config(5, epsilon=1.5)
    assert cfg["job"]["entrypoint"] == "assay.generative.workloads.dp_tabular:run"
    assert cfg["job"]["max_trials"] == 5
    names = [p["name"] for p in cfg["parameters"]]
    assert names == [p["name"] for p in SEARCH_SPACE["parameters"]]
    assert next(p for p in cfg["parameters"] if p["name"] == "epsilon")["value"] == 1.5
    assert cfg["objective"] == {"name": "heldout_nll", "minimize": True}


def test_example_runs_jobs_with_tiny_budget(example, tmp_path, capsys) -> None:
    summary = example.main(["--budget", "2", "--parallelism", "2", "--tiny",
                            "--database-url", f"sqlite:///{tmp_path / 't.db'}",
                            "--log-dir", str(tmp_path / "logs")])  # fmt: skip
    assert summary["run_state"] == "done"
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["completed", "completed"], trials
    for t in trials:
        assert t["parameters"]["epsilon"] == 3.0 and t["parameters"]["n_rows"] == 400
        assert t["metrics"]["epsilon_prv"] <= 3.0 + 1e-6  # every trial at the same guarantee
        assert t["metrics"]["heldout_nll"] > 0
    assert set(summary["best"]["parameters"]) >= {"lr", "max_grad_norm", "batch_size", "d_model"}
    out = capsys.readouterr().out
    assert "completed: heldout_nll=" in out and "recommended at epsilon=3" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
