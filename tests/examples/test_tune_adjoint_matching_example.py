"""The example where Assay tunes Adjoint Matching on digits runs end to end with a tiny budget
(ask → run the job → tell, an FD outcome constraint, a recommendation)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def example(repo_root: Path):
    path = repo_root / "examples" / "tune_adjoint_matching.py"
    spec = importlib.util.spec_from_file_location("tune_adjoint_matching_example", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_example_runs_with_tiny_budget(example, capsys) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = example.main(["--budget", "2", "--tiny", "--device", "cpu"])
    finally:
        torch.set_num_threads(before)
    assert len(summary["trials"]) == 2
    assert summary["bound"] == pytest.approx(0.7 * summary["baseline"]["diversity"])
    assert set(summary["best"]["parameters"]) == {"lr", "lam", "num_steps", "loss_steps"}
    out = capsys.readouterr().out
    assert "constraint diversity >=" in out and "recommended:" in out


def test_example_rejects_a_zero_budget(example) -> None:
    with pytest.raises(SystemExit):
        example.main(["--budget", "0"])
