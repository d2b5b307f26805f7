"""``benchmarks/early_stopping.py`` on a tiny budget: Assay's stopping saves epochs on real
digits-MLP curves and the table is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_early_stopping_benchmark_tiny(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "es.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "early_stopping.py"), "--seeds", "1",
         "--trials", "6", "--methods", "none", "threshold", "optuna_median", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["none"][0]["epochs"] == 6 * 20 and res["none"][0]["stopped"] == 0
    assert res["threshold"][0]["epochs"] < res["none"][0]["epochs"]
    assert 0.5 < res["none"][0]["best_test"] <= 1.0
    assert "| threshold |" in r.stdout
