"""The Ray executor: each job is a detached Ray actor on an existing cluster.

``ray.init(address=...)`` connects to the cluster (``None`` starts a local instance). A job is
a *named, detached* actor ``assay-trial-<trial>-<job>`` reserving the job's ``num_cpus`` /
``num_gpus`` (Ray sets ``CUDA_VISIBLE_DEVICES`` for it); the actor runs the job's process and
answers status queries. Because the actor is detached and named, a restarted Assay worker
finds it again (``ray.get_actor``) and re-attaches instead of losing the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from assay.platform.jobspec import Resources
from assay.service.jobs.base import JobLaunch, JobStatus
from assay.service.jobs.process import kill_group, outcome, start_job_process

NAMESPACE = "assay"


class _TrialJobActor:
    """Runs one job process inside a Ray actor (methods are Ray remote calls)."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: str, log_path: str,
                 result_path: str) -> None:  # fmt: skip
        from pathlib import Path

        import ray

        Path(result_path).unlink(missing_ok=True)
        self.gpus = [int(g) for g in ray.get_gpu_ids()]
        self.paths = (log_path, result_path)
        self.proc = start_job_process(argv, env, workdir, log_path, self.gpus if self.gpus else [])
        self.outcome: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        import socket

        with self._lock:
            if self.outcome is None:
                code = self.proc.poll()
                if code is None:
                    return {"state": "running", "host": socket.gethostname(), "gpus": self.gpus}
                self.outcome = outcome(code, *self.paths, self.gpus)
            return {"state": "finished", **self.outcome}

    def cancel(self) -> None:
        kill_group(self.proc)


class RayExecutor:
    """Jobs as detached Ray actors (see the module docstring).

    Args:
        address: Cluster address (``"auto"``, ``"ray://host:10001"``; ``None`` = local).
        init_kwargs: Extra ``ray.init`` arguments (e.g. ``num_cpus`` for a local instance).
    """

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=address, namespace=NAMESPACE, include_dashboard=False,
                log_to_driver=False, ignore_reinit_error=True, **init_kwargs,
            )  # fmt: skip
        self._ray = ray
        self._actor_cls = ray.remote(max_restarts=0)(_TrialJobActor)
        self._pending: dict[str, Resources] = {}
        #: One in-flight ``status()`` call per actor, checked without blocking by ``poll``.
        self._status_refs: dict[str, Any] = {}

    def capacity(self, resources: Resources) -> int:
        avail = self._ray.available_resources()
        cpus = avail.get("CPU", 0.0) - sum(r.cpus for r in self._pending.values())
        n = int(cpus // resources.cpus) if resources.cpus > 0 else 0
        if resources.gpus:
            gpus = avail.get("GPU", 0.0) - sum(r.gpus for r in self._pending.values())
            n = min(n, int(gpus // resources.gpus))
        return max(0, n)

    def submit(self, launch: JobLaunch) -> dict[str, Any]:
        res = launch.spec.resources
        name = f"assay-trial-{launch.trial_id}-{launch.job_id}"
        options: dict[str, Any] = {
            "name": name, "namespace": NAMESPACE, "lifetime": "detached",
            "num_cpus": res.cpus, "num_gpus": res.gpus,
        }  # fmt: skip
        if res.memory_gb:
            options["memory"] = int(res.memory_gb * 2**30)
        import sys

        self._actor_cls.options(**options).remote(
            launch.argv(sys.executable), launch.job_env(), str(launch.workdir),
            str(launch.log_path), str(launch.result_path),
        )  # fmt: skip
        self._pending[name] = res
        return {
            "actor": name,
            "log_path": str(launch.log_path),
            "result_path": str(launch.result_path),
        }

    def _actor(self, handle: Mapping[str, Any]) -> Any:
        try:
            return self._ray.get_actor(handle["actor"], namespace=NAMESPACE)
        except ValueError:
            return None

    def poll(self, handle: Mapping[str, Any]) -> JobStatus:
        actor = self._actor(handle)
        if actor is None:
            return JobStatus("lost", error="the job's Ray actor is gone")
        # Never block the orchestrator's loop: an actor still being scheduled (no free
        # resources yet) would otherwise stall every pass. One status call stays in flight
        # per actor; each poll only checks (``ray.wait(timeout=0)``) whether it answered.
        name = handle["actor"]
        ref = self._status_refs.get(name)
        if ref is None:
            ref = self._status_refs[name] = actor.status.remote()
        ready, _ = self._ray.wait([ref], timeout=0)
        if not ready:
            return JobStatus("running")  # scheduling, or the answer is on its way
        del self._status_refs[name]
        try:
            st = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as e:
            self._pending.pop(name, None)
            return JobStatus("lost", error=f"the job's Ray actor died: {e}")
        self._pending.pop(name, None)
        if st["state"] == "running":
            return JobStatus("running", host=st.get("host"), gpus=st.get("gpus", []))
        self._ray.kill(actor)  # detached actors live until killed: free the resources
        return JobStatus.finished(st)

    def cancel(self, handle: Mapping[str, Any]) -> None:
        actor = self._actor(handle)
        self._pending.pop(handle.get("actor", ""), None)
        self._status_refs.pop(handle.get("actor", ""), None)
        if actor is None:
            return
        with contextlib.suppress(Exception):  # unresponsive: killing the actor still frees it
            self._ray.get(actor.cancel.remote(), timeout=15)
        self._ray.kill(actor)

    def reattach(self, handle: Mapping[str, Any]) -> bool:
        return self._actor(handle) is not None

    def close(self) -> None:
        pass
