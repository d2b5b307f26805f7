"""``benchmarks/service_load.py``'s load-independent cost: CPU seconds of a process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import service_load


def test_tree_cpu_counts_the_children() -> None:
    """A child burning CPU shows in its parent's tree total; ``None`` is no process."""
    assert service_load.tree_cpu_s(None) == 0.0
    before = service_load.tree_cpu_s(os.getpid())  # the child does not exist yet
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.process_time()\n"
         "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while service_load.tree_cpu_s(os.getpid()) - before < 0.2:
            assert time.monotonic() < deadline, "the child's CPU never showed"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()


def test_pct_is_the_nearest_rank() -> None:
    assert service_load.pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert service_load.pct([], 0.5) != service_load.pct([], 0.5)  # NaN
