"""The example where Assay tunes the toy CM3Leon runs end to end with a tiny budget: an
experiment with a job spec (``assay.generative.workloads.cm3leon:run``), the orchestrator
launching each trial as a local subprocess that streams ``assay.report`` progress, the
Fréchet-distance outcome constraint declared, accuracy/FD stored, and a recommendation."""

from __future__ import annotations

import pytest

from assay.storage.factory import open_store


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
def test_example_runs_jobs_with_tiny_budget(example, tmp_path, capsys, one_torch_thread) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    summary = example.main(["--budget", "2", "--tiny", "--device", "cpu",
                            "--database-url", url, "--log-dir", str(tmp_path / "logs"),
                            "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert summary["run_state"] == "done"
    trials = summary["trials"]
    assert [t["state"] for t in trials] == ["completed", "completed"], trials
    assert summary["bound"] == pytest.approx(1.5 * summary["baseline"]["frechet_plain"])
    tuned = {"decoding", "cfg_weight", "contrastive_alpha", "lr"}
    for t in trials:
        assert set(t["parameters"]) == tuned
        assert {"classifier_accuracy", "frechet_distance", "caption_accuracy"} <= set(t["metrics"])
    # Each job streamed its losses (report_every=2 over 6 + 4 steps, then the final metrics).
    assert all(n >= 5 for n in summary["reports"].values()), summary["reports"]
    assert set(summary["best"]["parameters"]) == tuned

    store = open_store(url, migrate=False)
    try:
        exp = store.get_experiment(summary["experiment_id"])
        [constraint] = exp.config.outcome_constraints
        assert constraint.metric == "frechet_distance" and constraint.bound == pytest.approx(
            summary["bound"], rel=1e-5
        )
        assert exp.config.job is not None and exp.config.job.entrypoint == example.ENTRYPOINT
        for t in exp.trials:
            assert {"classifier_accuracy", "frechet_distance"} <= set(t.values), t.values
    finally:
        store.close()
    out = capsys.readouterr().out
    assert "constraint frechet_distance <=" in out and "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
