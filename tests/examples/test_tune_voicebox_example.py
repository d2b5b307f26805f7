"""The example where Assay tunes Voicebox-style infilling runs end to end with a tiny budget: an
experiment with a job spec (``assay.generative.workloads.voicebox:run``), the orchestrator
launching each trial as a local subprocess that streams ``assay.report`` progress, the
speaker-similarity outcome constraint declared, infill error stored, and a recommendation."""

from __future__ import annotations

import pytest


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


@pytest.mark.slow
def test_example_runs_jobs_with_tiny_budget(
    example, tiny_run, stored_run, tmp_path, capsys
) -> None:
    summary = tiny_run(example)
    assert summary["bound"] == pytest.approx(0.8 * summary["baseline"]["speaker_similarity"])
    tuned = {"lr", "mask_min", "guidance_weight", "ode_steps"}
    for t in summary["trials"]:
        assert set(t["parameters"]) == tuned
        assert {"infill_mse", "speaker_similarity", "sample_ms_per_utterance"} <= set(t["metrics"])
    # Each job streamed its loss (report_every=3 over 6 iterations, then the final metrics).
    assert all(n >= 2 for n in summary["reports"].values()), summary["reports"]
    assert set(summary["best"]["parameters"]) == tuned
    # The jobs read the corpus the baseline run synthesised into the shared cache.
    assert len(list((tmp_path / "cache").glob("speech-*.pt"))) == 1
    exp = stored_run(example, summary, "speaker_similarity", {"infill_mse", "speaker_similarity"})
    assert exp.config.objective.name == "infill_mse" and exp.config.objective.minimize
    out = capsys.readouterr().out
    assert "constraint speaker_similarity >=" in out and "completed: infill_mse=" in out
    assert "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
