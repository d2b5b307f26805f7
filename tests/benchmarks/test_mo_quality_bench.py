"""``benchmarks/mo_quality.py`` is resumable: every finished (problem, method, seed) run is
cached, a second invocation skips it, and ``--table-only`` prints the table from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _bench(repo_root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "mo_quality.py"), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip


@pytest.mark.slow
def test_mo_benchmark_caches_runs_and_prints_the_table_from_the_cache(
    repo_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    cache = tmp_path / "mo.json"
    common = ["--seeds", "2", "--budget", "6", "--problems", "branin_currin",
              "--methods", "optuna_nsga2", "--cache", str(cache)]  # fmt: skip
    r = _bench(repo_root, tmp_path, *common)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = json.loads(cache.read_text())
    keys = {f"branin_currin/optuna_nsga2/seed{s}/budget6" for s in (0, 1)}
    assert set(runs) == keys
    assert all(len(runs[k]["xs"]) == 6 and len(runs[k]["ask_cpu_s"]) == 6 for k in keys)
    # nothing is re-run; the table comes from the cache
    r2 = _bench(repo_root, tmp_path, *common)
    assert r2.returncode == 0 and "seed0/budget6:" not in r2.stdout, r2.stdout + r2.stderr
    assert json.loads(cache.read_text()) == runs
    r3 = _bench(repo_root, tmp_path, *common, "--table-only")
    assert "| branin_currin | optuna_nsga2 | 2 |" in r3.stdout, r3.stdout + r3.stderr
