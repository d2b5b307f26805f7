"""``benchmarks/generative_gpu.py --tiny`` runs on CPU and reports every section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_benchmark_tiny_on_cpu(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "generative_gpu.py"), "--device", "cpu",
         "--tiny", "--budget-seconds", "120", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    for section in ("fm_toy", "fm_digits", "am_toy", "am_digits", "dflow_2d", "dflow_inpaint",
                    "gsbm_stunnel", "bm_stunnel", "gsbm_vneck", "bm_vneck", "voicebox",
                    "cm3leon"):  # fmt: skip
        assert section in res and "skipped" not in res[section], section
    assert res["fm_toy"]["train_iters_per_s"] > 0
    assert res["voicebox"]["latency_ratio_ar_over_flow"] > 0
    assert res["cm3leon"]["pretrain_k1_steps"] == res["cm3leon"]["pretrain_k0_steps"] > 0
    assert 0 <= res["cm3leon"]["accuracy_contrastive"] <= 1
    assert "total" in r.stdout
