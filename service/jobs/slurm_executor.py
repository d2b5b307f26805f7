"""The Slurm executor, through submitit.

Each job is a submitit job (one task) that runs the job's process and returns its outcome.
Resources map to ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``, the timeout to
``timeout_min``; ``executor_options`` of the job spec pass further Slurm settings (e.g.
``{"slurm_partition": "gpu", "slurm_account": "ml"}``). Handles store the submitit folder and
job id, so a restarted worker re-attaches with ``submitit.SlurmJob(folder, job_id)``.

``cluster="local"`` uses submitit's local executor (same code path, processes on this
machine): that is how the tests run here, where no Slurm cluster exists.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assay.platform.jobspec import Resources
from assay.service.jobs.base import JobLaunch, JobStatus
from assay.service.jobs.process import pid_alive, run_job_process


class SlurmExecutor:
    """Jobs as Slurm jobs via submitit (see the module docstring).

    Args:
        folder: Shared directory for submitit's job files.
        cluster: ``"slurm"`` (a real cluster) or ``"local"`` (submitit's local executor).
        max_jobs: Jobs this worker keeps submitted at once (Slurm queues the rest).
        options: Default submitit parameters (``slurm_partition``, ...).
    """

    name = "slurm"

    def __init__(
        self, folder: str | Path, cluster: str = "slurm", max_jobs: int = 64, **options: Any
    ) -> None:
        import submitit

        self._submitit = submitit
        self.folder = Path(folder).resolve()
        self.cluster = cluster
        self.max_jobs = max_jobs
        self.options = options
        self._jobs: dict[str, Any] = {}

    def capacity(self, resources: Resources) -> int:
        running = sum(1 for j in self._jobs.values() if not j.done())
        return max(0, self.max_jobs - running)

    def submit(self, launch: JobLaunch) -> dict[str, Any]:
        submitit = self._submitit
        res = launch.spec.resources
        folder = self.folder / f"trial-{launch.trial_id}"
        if self.cluster == "local":
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=max(1, math.ceil(launch.spec.timeout_s / 60)))
        else:
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            params: dict[str, Any] = {
                "timeout_min": max(1, math.ceil(launch.spec.timeout_s / 60)),
                "cpus_per_task": max(1, math.ceil(res.cpus)),
                "gpus_per_node": res.gpus,
                "name": f"assay-trial-{launch.trial_id}",
                **self.options,
                **launch.spec.executor_options,
            }
            if res.memory_gb:
                params["mem_gb"] = res.memory_gb
            executor.update_parameters(**params)
        job = executor.submit(
            run_job_process, launch.argv(sys.executable), launch.job_env(), str(launch.workdir),
            str(launch.log_path), str(launch.result_path),
        )  # fmt: skip
        self._jobs[str(job.job_id)] = job
        return {
            "job_id": str(job.job_id), "folder": str(folder), "cluster": self.cluster,
            "log_path": str(launch.log_path), "result_path": str(launch.result_path),
        }  # fmt: skip

    def _job(self, handle: Mapping[str, Any]) -> Any:
        job = self._jobs.get(handle["job_id"])
        if job is None and handle.get("cluster") != "local":
            job = self._submitit.SlurmJob(folder=handle["folder"], job_id=handle["job_id"])
            self._jobs[handle["job_id"]] = job
        return job

    def poll(self, handle: Mapping[str, Any]) -> JobStatus:
        job = self._job(handle)
        if job is None:  # a local submitit job from before a restart: follow its pid
            if pid_alive(int(handle["job_id"])):
                return JobStatus("running")
            return JobStatus("lost", error="the job's process is gone (its worker restarted)")
        if not job.done():
            return JobStatus("running")
        self._jobs.pop(handle["job_id"], None)
        try:
            st = job.result()
        except Exception as e:  # the submitit task itself failed (killed, node failure, ...)
            return JobStatus("finished", 1, None, f"submitit job failed: {e}"[-4000:])
        return JobStatus.finished(st)

    def cancel(self, handle: Mapping[str, Any]) -> None:
        job = self._job(handle)
        if job is not None:
            job.cancel(check=False)
        elif pid_alive(int(handle["job_id"])):
            os.kill(int(handle["job_id"]), 2)

    def reattach(self, handle: Mapping[str, Any]) -> bool:
        if handle.get("cluster") == "local":
            return pid_alive(int(handle["job_id"]))
        return self._job(handle).state not in ("UNKNOWN",)

    def close(self) -> None:
        pass
