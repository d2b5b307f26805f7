"""``pid_alive``: the one liveness check by process id (job handles, release trainings)."""

from __future__ import annotations

import subprocess
import sys
import time

from assay.service.jobs.process import pid_alive


def test_pid_alive_sees_running_zombie_and_reaped_processes() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(proc.pid)
    finally:
        proc.kill()
    # Killed but not yet reaped: a zombie, which ``os.kill(pid, 0)`` alone calls alive.
    deadline = time.monotonic() + 10
    while pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(f"/proc/{proc.pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    assert not pid_alive(proc.pid)
    proc.wait()
    assert not pid_alive(proc.pid)
