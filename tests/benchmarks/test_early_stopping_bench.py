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
    # Optuna comes with the `bench` extra; without it the Assay rules still run and are checked,
    # only the equal-epochs comparison (budgets set by MedianPruner's epochs) needs it.
    try:
        import optuna  # noqa: F401

        peers = ["optuna_median"]
    except ImportError:
        peers = []
    out = tmp_path / "es.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ASSAY_ES_CACHE": str(tmp_path / "c.json")}
    r = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "early_stopping.py"), "--cache", "--seeds", "1",
         "--trials", "6", "--stream", "1.5", "--orders", "2", "--methods", "none", "threshold",
         "model", "rate", *peers, "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    none = res["none"]["0"]  # the trials of seed 0 in order, 9 = 1.5 * 6 (the stream)
    assert len(none) == 9 and all(t["completed"] and t["epochs"] == 20 for t in none)
    first6 = sum(t["epochs"] for t in res["threshold"]["0"][:6])
    assert first6 < 6 * 20
    assert all(0.0 < t["test"] <= 1.0 for t in none)
    assert "| threshold |" in r.stdout and "| rate |" in r.stdout
    if peers:
        assert "At equal epochs" in r.stdout
        assert "| model | 2 |" in r.stdout  # two orderings of the configurations


@pytest.mark.slow
def test_early_stopping_benchmark_warmup_workload_resumes(repo_root: Path, tmp_path: Path) -> None:
    # The second workload (warm-up + cosine on noisy labels) trains and reports; a resumed run
    # keeps what the first measured and adds the method it lacked.
    out = tmp_path / "es.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ASSAY_ES_CACHE": str(tmp_path / "c.json")}
    base = [sys.executable, str(repo_root / "benchmarks" / "early_stopping.py"), "--workload",
            "warmup", "--cache", "--seeds", "1", "--trials", "3", "--stream", "1", "--json", str(out)]  # fmt: skip
    r = subprocess.run([*base, "--methods", "none"], capture_output=True, text=True,
                       timeout=600, env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(out.read_text())["none"]["0"]
    assert (tmp_path / "c_warmup.json").exists()  # the workload's own curve cache
    r = subprocess.run([*base, "--resume", "--methods", "none", "rate"], capture_output=True,
                       text=True, timeout=600, env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["none"]["0"] == first and len(res["rate"]["0"]) == 3
    assert "workload warmup" in r.stdout and "| rate |" in r.stdout
