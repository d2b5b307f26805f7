"""The local executor: one subprocess per job on this machine.

GPUs are detected (``torch.cuda.device_count()``, or ``CUDA_VISIBLE_DEVICES``); a job asking
for ``g`` GPUs gets ``g`` whole devices through ``CUDA_VISIBLE_DEVICES`` and waits until they
are free. Jobs without GPUs share CPU slots (``cpus`` per job against the machine's cores).
Each job runs in its own process group (so a cancel kills its children too) with its
stdout/stderr in ``<workdir>/job.log``. On Linux the job is also sent SIGKILL when the process
that launched it dies, so a crashed server never leaves orphans running: on restart those
jobs are marked lost and retried.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assay.platform.jobspec import Resources
from assay.service.jobs.base import JobLaunch, JobStatus
from assay.service.jobs.process import outcome

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def finished_status(code: int, handle: Mapping[str, Any], host: str | None) -> JobStatus:
    """Status of a job that exited with ``code``: its result file, or an error with the log's
    tail (a non-zero exit always fails the trial, even if a result was written)."""
    out = outcome(code, handle["log_path"], handle["result_path"], list(handle.get("gpus", [])))
    return JobStatus.finished({**out, "host": host})


def detect_gpus() -> list[int]:
    """Visible GPU indices (empty on a CPU-only machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # pragma: no cover - torch always present in Assay
        return []


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live job from a recycled pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class LocalExecutor:
    """Subprocess jobs with GPU/CPU slot accounting (see the module docstring).

    Args:
        cpus: CPU cores to share between CPU jobs (default: all).
        gpus: GPU indices to hand out (default: detected).
        python: Interpreter for entry-point jobs (default: this one).
    """

    name = "local"

    def __init__(
        self, cpus: float | None = None, gpus: list[int] | None = None, python: str | None = None
    ) -> None:
        self.total_cpus = float(cpus if cpus is not None else (os.cpu_count() or 1))
        self.gpus = detect_gpus() if gpus is None else list(gpus)
        self.python = python or sys.executable
        self.host = socket.gethostname()
        self._procs: dict[int, subprocess.Popen] = {}
        self._alloc: dict[int, tuple[float, list[int]]] = {}
        self._lock = threading.Lock()

    # -- slots -------------------------------------------------------------------------------
    def _free(self) -> tuple[float, list[int]]:
        used_cpu = sum(c for c, _ in self._alloc.values())
        used_gpu = {g for _, gs in self._alloc.values() for g in gs}
        return self.total_cpus - used_cpu, [g for g in self.gpus if g not in used_gpu]

    def capacity(self, resources: Resources) -> int:
        with self._lock:
            self._reap()
            cpu, gpus = self._free()
            if resources.gpus:
                by_gpu = len(gpus) // resources.gpus
                return max(
                    0, min(by_gpu, int(cpu // resources.cpus) if cpu >= resources.cpus else 0)
                )
            # CPU jobs: at least one slot even if a job asks for more cores than exist.
            need = min(resources.cpus, self.total_cpus)
            return max(0, int(cpu // need)) if need > 0 else 0

    def _reap(self) -> None:
        for pid, proc in list(self._procs.items()):
            if proc.poll() is not None and pid in self._alloc:
                del self._alloc[pid]

    # -- life cycle --------------------------------------------------------------------------
    def submit(self, launch: JobLaunch) -> dict[str, Any]:
        res = launch.spec.resources
        with self._lock:
            self._reap()
            _, free_gpus = self._free()
            if res.gpus > len(free_gpus):
                raise RuntimeError(f"needs {res.gpus} GPU(s), {len(free_gpus)} free")
            gpus = free_gpus[: res.gpus]
            launch.workdir.mkdir(parents=True, exist_ok=True)
            launch.result_path.unlink(missing_ok=True)
            env = {**launch.job_env(), "PYTHONUNBUFFERED": "1"}  # never the whole server env
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus)) if gpus else ""
            log = launch.log_path.open("ab")
            try:
                proc = subprocess.Popen(
                    launch.argv(self.python), cwd=launch.workdir, env=env, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )  # fmt: skip
            finally:
                log.close()
            self._procs[proc.pid] = proc
            self._alloc[proc.pid] = (min(res.cpus, self.total_cpus) if not gpus else res.cpus, gpus)
        return {
            "pid": proc.pid,
            "start_time": _proc_start_time(proc.pid),
            "host": self.host,
            "gpus": gpus,
            "log_path": str(launch.log_path),
            "result_path": str(launch.result_path),
        }

    def _alive(self, handle: Mapping[str, Any]) -> bool:
        pid = int(handle["pid"])
        start = _proc_start_time(pid)
        return start is not None and start == handle.get("start_time")

    def poll(self, handle: Mapping[str, Any]) -> JobStatus:
        pid = int(handle["pid"])
        proc = self._procs.get(pid)
        if proc is None:  # not ours (another process started it): alive or lost
            if handle.get("host") == self.host and self._alive(handle):
                return JobStatus("running", host=self.host, gpus=list(handle.get("gpus", [])))
            return JobStatus("lost", error="the job's process is gone (its worker restarted)")
        code = proc.poll()
        if code is None:
            return JobStatus("running", host=self.host, gpus=list(handle.get("gpus", [])))
        with self._lock:
            self._procs.pop(pid, None)
            self._alloc.pop(pid, None)
        return finished_status(code, handle, self.host)

    def cancel(self, handle: Mapping[str, Any], grace_s: float = 3.0) -> None:
        pid = int(handle["pid"])
        if not (pid in self._procs or self._alive(handle)):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        proc = self._procs.get(pid)
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc is not None else not self._alive(handle):
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            with self._lock:
                self._procs.pop(pid, None)
                self._alloc.pop(pid, None)

    def reattach(self, handle: Mapping[str, Any]) -> bool:
        # A local job outlives its launcher only if it was not started by us with PDEATHSIG;
        # we can follow it (without an exit code) while it runs on this host.
        return handle.get("host") == self.host and self._alive(handle)

    def close(self) -> None:
        for pid in list(self._procs):
            self.cancel({"pid": pid, "host": self.host}, grace_s=1.0)
