"""The example where Assay tunes Adjoint Matching on digits runs end to end with a tiny budget:
an experiment with a job spec (``assay.generative.workloads.adjoint_matching:run``), the
orchestrator launching each trial as a local subprocess that streams ``assay.report`` progress,
the diversity outcome constraint declared, reward/diversity stored, and a recommendation."""

from __future__ import annotations

import pytest


def test_config_dispatches_the_job_with_a_diversity_constraint(example) -> None:
    cfg = example.experiment_config(3, 4.25, tiny=True, cache_dir="/tmp/c")
    assert cfg["job"]["entrypoint"] == "assay.generative.workloads.adjoint_matching:run"
    assert cfg["job"]["max_trials"] == 3
    assert cfg["job"]["env"]["ASSAY_GENERATIVE_CACHE"] == "/tmp/c"
    assert cfg["objective"] == "reward"
    assert cfg["outcome_constraints"] == ["diversity >= 4.25"]
    fixed = {p["name"]: p["value"] for p in cfg["parameters"] if p["type"] == "fixed"}
    assert fixed["iterations"] == 4 and fixed["task"] == "digits" and fixed["report_every"] > 0


def test_two_objective_config_is_a_valid_multi_objective_experiment(example) -> None:
    from assay.platform.experiment import ExperimentConfig

    cfg = example.experiment_config(3, 4.25, tiny=True, objectives=["reward", "diversity"])
    assert "objective" not in cfg and cfg["outcome_constraints"] == []
    config = ExperimentConfig.from_dict(cfg)
    assert config.generator == "noisy_ehvi"
    assert [(o.name, o.threshold) for o in config.objectives] == [
        ("reward", None),
        ("diversity", 4.25),
    ]
    assert "diversity" not in config.tracking_metrics and "fd" in config.tracking_metrics
    fd = example.experiment_config(3, 4.25, tiny=True, objectives=["reward", "fd"])
    assert fd["objectives"][1] == {"name": "fd", "minimize": True}
    assert fd["outcome_constraints"] == ["diversity >= 4.25"]


@pytest.mark.slow
def test_example_runs_jobs_with_tiny_budget(example, tiny_run, stored_run, capsys) -> None:
    summary = tiny_run(example)
    assert summary["bound"] == pytest.approx(0.7 * summary["baseline"]["diversity"])
    for t in summary["trials"]:
        assert set(t["parameters"]) == {"lr", "lam", "num_steps", "loss_steps"}
        assert {"reward", "diversity", "fd"} <= set(t["metrics"])
    # Each job streamed its learning curve (report_every=2 over 4 iterations, then the final).
    assert all(n >= 2 for n in summary["reports"].values()), summary["reports"]
    assert set(summary["best"]["parameters"]) == {"lr", "lam", "num_steps", "loss_steps"}
    # What the orchestrator stored: the constraint declared, reward/diversity observed.
    stored_run(example, summary, "diversity", {"reward", "diversity"})
    out = capsys.readouterr().out
    assert "constraint diversity >=" in out and "completed: reward=" in out
    assert "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
