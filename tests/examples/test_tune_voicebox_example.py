"""The example where Assay tunes Voicebox-style infilling runs end to end with a tiny budget: an
experiment with a job spec (``assay.generative.workloads.voicebox:run``), the orchestrator
launching each trial as a local subprocess that streams ``assay.report`` progress, the
speaker-similarity outcome constraint declared, infill error stored, and a recommendation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from assay.storage.factory import open_store


@pytest.fixture(scope="module")
def example(repo_root: Path):
    path = repo_root / "examples" / "tune_voicebox.py"
    spec = importlib.util.spec_from_file_location("tune_voicebox_example", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_config_dispatches_the_job_with_a_similarity_constraint(example) -> None:
    cfg = example.experiment_config(3, 0.45, tiny=True, cache_dir="/tmp/c")
    assert cfg["job"]["entrypoint"] == "assay.generative.workloads.voicebox:run"
    assert cfg["job"]["max_trials"] == 3
    assert cfg["job"]["env"]["ASSAY_GENERATIVE_CACHE"] == "/tmp/c"
    assert cfg["objective"] == {"name": "infill_mse", "minimize": True}
    assert cfg["outcome_constraints"] == ["speaker_similarity >= 0.45"]
    fixed = {p["name"]: p["value"] for p in cfg["parameters"] if p["type"] == "fixed"}
    assert fixed["iterations"] == 6 and fixed["speakers"] == 2 and fixed["report_every"] > 0
    # Every tuned parameter is one the job knows, within the workload's search space.
    from assay.generative.workloads.voicebox import SEARCH_SPACE

    space = {p["name"]: p for p in SEARCH_SPACE}
    for p in example.PARAMETERS:
        assert p["name"] in space and p["bounds"] == space[p["name"]]["bounds"], p


def test_example_runs_jobs_with_tiny_budget(example, tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = example.main(["--budget", "2", "--tiny", "--device", "cpu",
                                "--database-url", url, "--log-dir", str(tmp_path / "logs"),
                                "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert summary["run_state"] == "done"
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["completed", "completed"], trials
    assert summary["bound"] == pytest.approx(0.8 * summary["baseline"]["speaker_similarity"])
    tuned = {"lr", "mask_min", "guidance_weight", "ode_steps"}
    for t in trials:
        assert set(t["parameters"]) == tuned
        assert {"infill_mse", "speaker_similarity", "sample_ms_per_utterance"} <= set(t["metrics"])
    # Each job streamed its loss (report_every=3 over 6 iterations, then the final metrics).
    assert all(n >= 2 for n in summary["reports"].values()), summary["reports"]
    assert set(summary["best"]["parameters"]) == tuned
    # The jobs read the corpus the baseline run synthesised into the shared cache.
    assert len(list((tmp_path / "cache").glob("speech-*.pt"))) == 1

    store = open_store(url, migrate=False)
    try:
        exp = store.get_experiment(summary["experiment_id"])
        assert exp.config.objective.name == "infill_mse" and exp.config.objective.minimize
        [constraint] = exp.config.outcome_constraints
        assert constraint.metric == "speaker_similarity" and constraint.bound == pytest.approx(
            summary["bound"], rel=1e-5
        )
        assert exp.config.job is not None and exp.config.job.entrypoint == example.ENTRYPOINT
        for t in exp.trials:
            assert {"infill_mse", "speaker_similarity"} <= set(t.values), t.values
    finally:
        store.close()
    out = capsys.readouterr().out
    assert "constraint speaker_similarity >=" in out and "completed: infill_mse=" in out
    assert "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
