"""Run a job's process to completion where it lands (inside a Ray actor or a Slurm task).

The same subprocess contract as the local executor: the job's argv, its environment, stdout
and stderr appended to the log file, metrics read from the result file. Returns a plain dict
so it crosses process and machine boundaries. :func:`pid_alive` is the one liveness check of
a process by id (jobs, release trainings).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from assay.service.jobs.base import read_result, tail
from assay.service.jobs.policy import minimal_env


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running: it exists (or belongs to another user) and is not a
    zombie (exited, not yet reaped by its parent; ``Z`` in ``/proc/<pid>/stat``, on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux), or the process just went away
        return True
    return state != "Z"


def start_job_process(
    argv: list[str], env: dict[str, str], workdir: str, log_path: str, gpus: list[int] | None
) -> subprocess.Popen:
    Path(workdir).mkdir(parents=True, exist_ok=True)
    full_env = {**minimal_env(), **env, "PYTHONUNBUFFERED": "1"}  # never the host's whole env
    if gpus is not None:
        full_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, cwd=workdir, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def outcome(code: int, log_path: str, result_path: str, gpus: list[int] | None) -> dict[str, Any]:
    result, error = read_result(Path(result_path))
    if code != 0:
        detail = f"{error}\n" if error and "wrote no result" not in error else ""
        error, result = f"{detail}exit code {code}\n{tail(log_path)}", None
    elif result is None:
        error = f"{error}\n{tail(log_path)}"
    return {
        "exit_code": code, "result": result, "error": error, "host": socket.gethostname(),
        "gpus": list(gpus or []),
    }  # fmt: skip


def kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def run_job_process(
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    log_path: str,
    result_path: str,
    gpus: list[int] | None = None,
) -> dict[str, Any]:
    """Run to completion (a cancel arrives as SIGTERM/SIGINT and is passed on to the job)."""
    Path(result_path).unlink(missing_ok=True)
    proc = start_job_process(argv, env, workdir, log_path, gpus)

    def forward(signum: int, _frame: Any) -> None:
        kill_group(proc)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        try:
            signal.signal(sig, forward)
        except ValueError:  # not the main thread (e.g. inside an actor thread)
            break
    code = proc.wait()
    return outcome(code, log_path, result_path, gpus)
