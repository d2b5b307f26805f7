"""Job specifications: how a trial becomes a job (pure data and shape validation).

An experiment may carry a job spec; the orchestrator then runs each trial as a job on an
executor. Either

* ``entrypoint``: ``"package.module:function"``, called as ``function(params: dict) ->
  dict[str, float | (mean, sem)]``; or
* ``command``: an argv template such as ``["python", "train.py", "--lr", "{lr}"]``; the
  placeholders are parameter names (plus ``{trial_id}``, ``{trial_index}``,
  ``{result_path}``, ``{experiment_id}``; write a literal brace as ``{{`` or ``}}``, as in
  Python's ``str.format``); the command writes its final metrics as a JSON object to the file named
  by ``$ASSAY_RESULT_PATH`` (``{"accuracy": 0.93, "loss": [0.21, 0.01]}``).

Example:
    >>> JobSpec.from_dict({"entrypoint": "mypkg.train:run", "parallelism": 2,
    ...                    "resources": {"gpus": 1}}).resources.gpus
    1
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from assay.platform.errors import ValidationError

_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
#: Placeholders a command template may use besides parameter names.
SPECIAL_PLACEHOLDERS = frozenset({"trial_id", "trial_index", "result_path", "experiment_id"})
EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class Resources:
    """What one job needs: CPU cores, GPUs and memory (GiB, optional)."""

    cpus: float = 1.0
    gpus: int = 0
    memory_gb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "gpus": self.gpus, "memory_gb": self.memory_gb}


@dataclass(frozen=True)
class JobSpec:
    """How trials of an experiment run as jobs.

    Args:
        entrypoint: ``"package.module:function"`` (exclusive with ``command``).
        command: argv template with ``{parameter}`` placeholders.
        resources: Per-job resources.
        timeout_s: Wall-clock limit per job; the job is killed and the trial failed after it.
        max_retries: Failed jobs are retried as new trials of the same arm this many times.
        parallelism: Jobs of this experiment running at once.
        max_trials: Trial budget for the run (``None``: the experiment's ``max_trials``).
        env: Extra environment variables for the job.
        executor: ``local``, ``ray`` or ``slurm`` (``None``: the worker's default).
        executor_options: Executor-specific settings (e.g. Slurm ``partition``).
    """

    entrypoint: str | None = None
    command: tuple[str, ...] | None = None
    resources: Resources = field(default_factory=Resources)
    timeout_s: float = 3600.0
    max_retries: int = 0
    parallelism: int = 1
    max_trials: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    executor: str | None = None
    executor_options: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str | None:
        return self.entrypoint.split(":")[0] if self.entrypoint else None

    @property
    def function(self) -> str | None:
        return self.entrypoint.split(":")[1] if self.entrypoint else None

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for arg in self.command or ():
            for _, name, _, _ in string.Formatter().parse(arg):
                if name is not None:
                    names.add(name)
        return names

    def render_command(self, params: Mapping[str, Any], **special: Any) -> list[str]:
        """The argv for one trial (placeholders filled with the trial's values)."""
        values = {**{k: v for k, v in params.items()}, **special}
        return [arg.format(**values) for arg in self.command or ()]

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], parameter_names: Iterable[str] | None = None
    ) -> JobSpec:
        """Validate the JSON form; ``parameter_names`` checks command placeholders."""
        if isinstance(d, JobSpec):
            return d
        if not isinstance(d, Mapping):
            raise ValidationError("job must be an object", field="job")
        known = {
            "entrypoint", "command", "resources", "timeout_s", "max_retries", "parallelism",
            "max_trials", "env", "executor", "executor_options",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            raise ValidationError(
                f"job: unknown field(s) {sorted(unknown)}", field=f"job.{sorted(unknown)[0]}"
            )
        entrypoint, command = d.get("entrypoint"), d.get("command")
        if (entrypoint is None) == (command is None):
            raise ValidationError(
                "job needs exactly one of 'entrypoint' (\"package.module:function\") or "
                "'command' (an argv list)",
                field="job.entrypoint",
            )
        if entrypoint is not None and (
            not isinstance(entrypoint, str) or not _ENTRYPOINT_RE.match(entrypoint)
        ):
            raise ValidationError(
                f"job.entrypoint must look like 'package.module:function', got {entrypoint!r}",
                field="job.entrypoint",
            )
        if command is not None:
            if (
                not isinstance(command, list | tuple)
                or not command
                or not all(isinstance(a, str) for a in command)
            ):
                raise ValidationError(
                    "job.command must be a non-empty list of strings", field="job.command"
                )
            command = tuple(command)
        res = d.get("resources") or {}
        if not isinstance(res, Mapping) or set(res) - {"cpus", "gpus", "memory_gb"}:
            raise ValidationError(
                "job.resources takes cpus, gpus and memory_gb", field="job.resources"
            )
        cpus, gpus, mem = res.get("cpus", 1.0), res.get("gpus", 0), res.get("memory_gb")
        if not _is_number(cpus) or cpus <= 0:
            raise ValidationError(
                f"job.resources.cpus must be > 0, got {cpus!r}", field="job.resources.cpus"
            )
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            raise ValidationError(
                f"job.resources.gpus must be an integer >= 0, got {gpus!r}",
                field="job.resources.gpus",
            )
        if mem is not None and (not _is_number(mem) or mem <= 0):
            raise ValidationError(
                f"job.resources.memory_gb must be > 0, got {mem!r}",
                field="job.resources.memory_gb",
            )
        timeout = d.get("timeout_s", 3600.0)
        if not _is_number(timeout) or not 0 < timeout <= 30 * 86400:
            raise ValidationError("job.timeout_s must be in (0, 2592000]", field="job.timeout_s")
        retries = d.get("max_retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
            raise ValidationError("job.max_retries must be in [0, 100]", field="job.max_retries")
        par = d.get("parallelism", 1)
        if not isinstance(par, int) or isinstance(par, bool) or not 1 <= par <= 10_000:
            raise ValidationError("job.parallelism must be in [1, 10000]", field="job.parallelism")
        budget = d.get("max_trials")
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ValidationError(
                "job.max_trials must be a positive integer", field="job.max_trials"
            )
        env = d.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValidationError("job.env must map strings to strings", field="job.env")
        executor = d.get("executor")
        if executor is not None and executor not in EXECUTORS:
            raise ValidationError(
                f"job.executor must be one of {list(EXECUTORS)}, got {executor!r}",
                field="job.executor",
            )
        options = d.get("executor_options") or {}
        if not isinstance(options, Mapping):
            raise ValidationError(
                "job.executor_options must be an object", field="job.executor_options"
            )
        spec = cls(
            entrypoint=entrypoint,
            command=command,
            resources=Resources(float(cpus), gpus, float(mem) if mem is not None else None),
            timeout_s=float(timeout),
            max_retries=retries,
            parallelism=par,
            max_trials=budget,
            env=dict(env),
            executor=executor,
            executor_options=dict(options),
        )
        if parameter_names is not None and command is not None:
            allowed = set(parameter_names) | SPECIAL_PLACEHOLDERS
            try:
                missing = sorted(spec.placeholders() - allowed)
            except ValueError as e:
                raise ValidationError(
                    f"job.command: bad template: {e}", field="job.command"
                ) from None
            if missing:
                raise ValidationError(
                    f"job.command uses placeholder(s) {missing} that are not parameters of "
                    f"the experiment (parameters: {sorted(parameter_names)}; also allowed: "
                    f"{sorted(SPECIAL_PLACEHOLDERS)})",
                    field="job.command",
                )
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "entrypoint": self.entrypoint,
            "command": list(self.command) if self.command else None,
            "resources": self.resources.to_dict(),
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "parallelism": self.parallelism,
            "max_trials": self.max_trials,
            "env": dict(self.env),
            "executor": self.executor,
            "executor_options": dict(self.executor_options),
        }


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class JobState(StrEnum):
    """A job's life cycle: ``queued -> running -> succeeded | failed | timeout | cancelled |
    lost`` (``lost``: its worker died and the job cannot be re-attached)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_active(self) -> bool:
        return self in (JobState.QUEUED, JobState.RUNNING)


@dataclass
class Job:
    """One attempt at running one trial on an executor."""

    id: int
    trial_id: int
    experiment_id: int
    executor: str
    worker: str
    state: JobState
    attempt: int = 1
    handle: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    gpus: list[int] = field(default_factory=list)
    log_path: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    cancel_requested: bool = False
    result: dict[str, Any] = field(default_factory=dict)


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of one report as finite floats (numpy and torch scalars converted).

    The one rule for what a job may report, applied where the job reports
    (``assay.report``) and again where the service stores it.

    Raises:
        ValidationError: a metric that is not a number or not finite (``field`` names it).
    """
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            try:
                v = float(v)  # numpy / torch scalars
            except (TypeError, ValueError):
                raise ValidationError(
                    f"report: metric {k!r} must be a number, got {v!r}", field=k
                ) from None
        if not math.isfinite(v):
            raise ValidationError(f"report: metric {k!r} must be finite, got {v!r}", field=k)
        out[k] = float(v)
    return out


@dataclass
class TrialReport:
    """One ``assay.report(step=..., **metrics)`` call from inside a job."""

    id: int
    trial_id: int
    step: int | None
    metrics: dict[str, float]
    at: datetime
