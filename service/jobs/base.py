"""The executor protocol and what a launch carries.

An executor runs one trial's job somewhere and can be asked about it later, possibly by a
different process (handles are JSON and stored in the database):

``submit(launch) -> handle``, ``poll(handle) -> JobStatus``, ``cancel(handle)``,
``capacity(resources) -> free slots``, ``reattach(handle) -> bool`` (after a restart: can
this executor still follow the job?).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from assay.platform.jobspec import JobSpec, Resources

#: Last bytes of a job's log kept as its error tail.
ERROR_TAIL_BYTES = 4000


@dataclass
class JobLaunch:
    """Everything needed to start one job.

    Args:
        trial_id, experiment_id, job_id, attempt: Identity.
        params: The trial's parameters.
        spec: The experiment's job spec.
        workdir: A per-trial directory (log and result file live there).
        env: Variables added to the job's environment (``ASSAY_TRIAL_ID``, ...).
        base_env: What the job inherits of the launching process's environment: on a
            server, :meth:`JobPolicy.base_env <assay.service.jobs.policy.JobPolicy.base_env>`
            (a few variables, never its database URL or secrets); ``None`` (library use, your
            own code on your own machine): all of it.
    """

    trial_id: int
    experiment_id: int
    job_id: int
    attempt: int
    params: dict[str, Any]
    spec: JobSpec
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "job.log"

    @property
    def result_path(self) -> Path:
        return self.workdir / "result.json"

    def argv(self, python: str) -> list[str]:
        """The command line: the user's rendered command, or our runner for entrypoints."""
        if self.spec.command:
            return self.spec.render_command(
                self.params, trial_id=self.trial_id, trial_index=self.env.get("ASSAY_TRIAL_INDEX", ""),
                result_path=str(self.result_path), experiment_id=self.experiment_id,
            )  # fmt: skip
        return [python, "-m", "assay.service.jobs.runner"]

    def job_env(self) -> dict[str, str]:
        """The job's whole environment: a minimal base, the spec's ``env``, its identity."""
        return {
            **(dict(os.environ) if self.base_env is None else self.base_env),
            **self.spec.env,
            **self.env,
            "ASSAY_TRIAL_ID": str(self.trial_id),
            "ASSAY_EXPERIMENT_ID": str(self.experiment_id),
            "ASSAY_JOB_ID": str(self.job_id),
            "ASSAY_ATTEMPT": str(self.attempt),
            "ASSAY_PARAMS": json.dumps(self.params),
            "ASSAY_RESULT_PATH": str(self.result_path),
            **({"ASSAY_ENTRYPOINT": self.spec.entrypoint} if self.spec.entrypoint else {}),
        }


@dataclass
class JobStatus:
    """What an executor knows about a job now."""

    state: str  # "running" | "finished" | "lost"
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    host: str | None = None
    gpus: list[int] = field(default_factory=list)

    @classmethod
    def finished(cls, outcome: Mapping[str, Any]) -> JobStatus:
        """From :func:`assay.service.jobs.process.outcome`'s dict."""
        return cls(
            "finished", outcome["exit_code"], outcome["result"], outcome["error"],
            outcome.get("host"), list(outcome.get("gpus", [])),
        )  # fmt: skip


class Executor(Protocol):
    name: str

    def capacity(self, resources: Resources) -> int: ...

    def submit(self, launch: JobLaunch) -> dict[str, Any]: ...

    def poll(self, handle: Mapping[str, Any]) -> JobStatus: ...

    def cancel(self, handle: Mapping[str, Any]) -> None: ...

    def reattach(self, handle: Mapping[str, Any]) -> bool: ...

    def close(self) -> None: ...


def read_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a result file: ``({metric: value}, None)`` or ``(None, error)``.

    Entry-point jobs (our runner) write ``{"status": "ok"|"error", "metrics"|"error": ...}``;
    command jobs write their metrics object directly.
    """
    if not path.exists():
        return None, f"the job wrote no result to {path.name} (ASSAY_RESULT_PATH)"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable result file {path.name}: {e}"
    if isinstance(data, dict) and data.get("status") == "error":
        return None, str(data.get("error", "job failed"))
    if isinstance(data, dict) and data.get("status") == "ok":
        data = data.get("metrics")
    if not isinstance(data, dict) or not data:
        return None, "the job's result must be a non-empty JSON object {metric: value}"
    return data, None


def tail(path: Path | str | None, nbytes: int = ERROR_TAIL_BYTES) -> str:
    """The last ``nbytes`` of a text file ('' if missing)."""
    if not path:
        return ""
    p = Path(path)
    try:
        with p.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
