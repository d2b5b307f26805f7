"""The example where Assay tunes the toy CM3Leon runs end to end with a tiny budget: an
experiment with a job spec (``assay.generative.workloads.cm3leon:run``), the orchestrator
launching each trial as a local subprocess that streams ``assay.report`` progress, the
Fréchet-distance outcome constraint declared, accuracy/FD stored, and a recommendation."""

from __future__ import annotations

import pytest


def test_config_dispatches_the_job_with_a_realism_constraint(example) -> None:
    cfg = example.experiment_config(3, 80.0, tiny=True, cache_dir="/tmp/c")
    assert cfg["job"]["entrypoint"] == "assay.generative.workloads.cm3leon:run"
    assert cfg["job"]["max_trials"] == 3
    assert cfg["job"]["env"]["ASSAY_GENERATIVE_CACHE"] == "/tmp/c"
    assert cfg["objective"] == "classifier_accuracy"
    assert cfg["outcome_constraints"] == ["frechet_distance <= 80"]
    fixed = {p["name"]: p["value"] for p in cfg["parameters"] if p["type"] == "fixed"}
    assert fixed["pretrain_steps"] == 6 and fixed["report_every"] > 0


@pytest.mark.slow
def test_example_runs_jobs_with_tiny_budget(example, tiny_run, stored_run, capsys) -> None:
    summary = tiny_run(example)
    assert summary["bound"] == pytest.approx(1.5 * summary["baseline"]["frechet_plain"])
    tuned = {"decoding", "cfg_weight", "contrastive_alpha", "lr"}
    for t in summary["trials"]:
        assert set(t["parameters"]) == tuned
        assert {"classifier_accuracy", "frechet_distance", "caption_accuracy"} <= set(t["metrics"])
    # Each job streamed its losses (report_every=2 over 6 + 4 steps, then the final metrics).
    assert all(n >= 5 for n in summary["reports"].values()), summary["reports"]
    assert set(summary["best"]["parameters"]) == tuned
    stored_run(example, summary, "frechet_distance", {"classifier_accuracy", "frechet_distance"})
    out = capsys.readouterr().out
    assert "constraint frechet_distance <=" in out and "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
