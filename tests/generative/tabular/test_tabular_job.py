"""The job entry point Assay uses to tune DP-SGD hyperparameters at a fixed ε."""

from __future__ import annotations

import math

import pytest

from assay.generative.workloads.dp_tabular import DEFAULTS, OBJECTIVE, SEARCH_SPACE, run
from assay.platform.errors import ValidationError
from assay.platform.space import SearchSpace
from assay.service.reporting import CollectingReporter, use_reporter


def test_search_space_is_valid_assay_json_and_covers_the_tuned_knobs():
    space = SearchSpace.from_dict(SEARCH_SPACE)
    tuned = {"lr", "max_grad_norm", "batch_size", "epochs", "d_model"}
    assert tuned <= set(space.names) <= set(DEFAULTS)
    params = space.validate({"lr": 1e-3, "max_grad_norm": 1.0, "batch_size": 128, "epochs": 3,
                             "d_model": 64})  # fmt: skip
    assert params["epsilon"] == 3.0  # fixed: every trial has the same guarantee
    assert OBJECTIVE == {"metric": "heldout_nll", "minimize": True}


def test_run_reports_progress_and_returns_utility_at_the_fixed_epsilon():
    params = {"epochs": 2, "n_rows": 600, "batch_size": 120, "d_model": 16, "n_layers": 1,
              "n_heads": 2, "n_synthetic": 300, "epsilon": 2.0, "delta": 1e-5}  # fmt: skip
    with use_reporter(CollectingReporter()) as rep:
        metrics = run(params)
    assert [r.step for r in rep.reports] == [1, 2, 2]
    assert "train_nll" in rep.reports[0].metrics
    assert rep.reports[-1].metrics["heldout_nll"] == metrics["heldout_nll"]
    assert rep.heartbeats == 2
    for key in ("heldout_nll", "tv_1way", "tv_2way", "tstr_accuracy", "epsilon_prv"):
        assert math.isfinite(metrics[key])
    assert metrics["epsilon_prv"] <= 2.0 + 1e-6 < metrics["epsilon_rdp"]
    assert 0 <= metrics["tv_2way"] <= 1 and metrics["recon_rmse_over_diameter"] > 0


def test_run_rejects_unknown_parameters():
    with pytest.raises(ValidationError, match="learning_rate") as e:
        run({"learning_rate": 0.1})
    assert e.value.field == "params.learning_rate"
