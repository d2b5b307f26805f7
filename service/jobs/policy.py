"""Job specs are code execution: which ones this server runs, and with what environment.

An experiment's job spec names code (an entry point or a command line) that the server's
workers run. So a spec is a privilege, checked where it is accepted (experiment creation),
where it is set going (``run:start`` / ``run:resume``) and where it is launched (the
orchestrator; settings may have changed since):

* its ``entrypoint`` / ``command`` must match the server's allowlist (``fnmatch`` patterns;
  a command is matched as its ``shlex.join``-ed template), else :class:`ForbiddenError`
  (HTTP 403, ``field`` ``job.entrypoint`` / ``job.command``), unless the caller is an admin
  *and* the server was started with ``--allow-arbitrary-jobs``;
* its ``env`` keys must match the allowlist and never name a loader or interpreter hook
  (``LD_*``, ``PYTHON*``, ...): :class:`ValidationError` (422, ``field`` ``job.env.<KEY>``);
* its ``executor_options`` must be in that executor's allowlist (422,
  ``job.executor_options.<name>``).

Nothing here imports user code: patterns are matched against the spec's text.
Jobs start from :meth:`JobPolicy.base_env` (a few variables of the server's environment,
never its database URL or secrets), then the spec's ``env``, then their own ``ASSAY_*``.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from assay.platform.errors import ForbiddenError, ValidationError
from assay.platform.jobspec import JobSpec

#: ``job.env`` keys never accepted, whatever the allowlist says: they change how the job's
#: interpreter, loader or shell start (code injection into an otherwise allowed job).
DENIED_ENV_KEYS = (
    "LD_*", "DYLD_*", "PYTHON*", "PATH", "HOME", "SHELL", "BASH_ENV", "ENV", "IFS", "PS4",
    "PERL5*", "PERLLIB", "RUBY*", "NODE_OPTIONS", "NODE_PATH", "GCONV_PATH", "MALLOC_*",
    "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS", "TMPDIR",
    "ASSAY_DATABASE_URL", "ASSAY_JOB_TOKEN", "ASSAY_SERVICE_URL", "CUDA_VISIBLE_DEVICES",
)  # fmt: skip


def split_patterns(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"a,b , c"`` (or a list) -> ``("a", "b", "c")``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(p.strip() for p in items if p and p.strip())


def _matches(text: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


@dataclass(frozen=True)
class JobPolicy:
    """The server's rules for job specs (see the module docstring).

    Args:
        entrypoints: Patterns of allowed ``package.module:function`` entry points.
        commands: Patterns of allowed command templates (``shlex.join`` of the argv).
        allow_arbitrary: Admins may run specs outside the allowlist.
        env_keys: Patterns of the ``job.env`` keys a spec may set.
        passthrough: The server's environment variables a job inherits.
        executor_options: ``{executor: option names}`` a spec may set.
    """

    entrypoints: tuple[str, ...] = ("assay.generative.workloads.*:*", "assay.service.demo_job:*")
    commands: tuple[str, ...] = ()
    allow_arbitrary: bool = False
    env_keys: tuple[str, ...] = ("OMP_NUM_THREADS",)
    passthrough: tuple[str, ...] = ("PATH", "HOME", "LANG")
    executor_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> JobPolicy:
        return cls(
            entrypoints=split_patterns(settings.job_entrypoints),
            commands=split_patterns(settings.job_commands),
            allow_arbitrary=bool(settings.allow_arbitrary_jobs),
            env_keys=split_patterns(settings.job_env_keys),
            passthrough=split_patterns(settings.job_env_passthrough),
            executor_options={
                k: tuple(v) for k, v in (settings.job_executor_options or {}).items()
            },
        )

    # -- the code a spec runs ----------------------------------------------------------------
    def outside_allowlist(self, spec: JobSpec) -> str | None:
        """The field (``job.entrypoint`` / ``job.command``) whose code is not allowlisted."""
        if spec.entrypoint is not None and not _matches(spec.entrypoint, self.entrypoints):
            return "job.entrypoint"
        if spec.command is not None and not _matches(shlex.join(spec.command), self.commands):
            return "job.command"
        return None

    def check_options(self, spec: JobSpec) -> None:
        """``job.env`` keys and ``job.executor_options`` (422 naming the offending key)."""
        for key in spec.env:
            if _matches(key, DENIED_ENV_KEYS) or not _matches(key, self.env_keys):
                raise ValidationError(
                    f"job.env: {key!r} may not be set by a job spec (allowed: "
                    f"{', '.join(self.env_keys) or 'none'}; never loader/interpreter "
                    "variables such as LD_* or PYTHON*)",
                    field=f"job.env.{key}",
                )
        allowed = self.executor_options.get(spec.executor or "local", ())
        for name in spec.executor_options:
            if name not in allowed:
                raise ValidationError(
                    f"job.executor_options: {name!r} is not allowed for the "
                    f"{spec.executor or 'local'} executor (allowed: "
                    f"{', '.join(allowed) or 'none'})",
                    field=f"job.executor_options.{name}",
                )

    def check(self, spec: JobSpec, *, admin: bool) -> None:
        """Raise unless a caller (``admin`` or not) may run ``spec`` on this server."""
        self.check_options(spec)
        where = self.outside_allowlist(spec)
        if where is None or (admin and self.allow_arbitrary):
            return
        what = spec.entrypoint if where == "job.entrypoint" else shlex.join(spec.command or ())
        raise ForbiddenError(
            f"{where} {what!r} is not in this server's job allowlist "
            f"({'ASSAY_JOB_ENTRYPOINTS' if where == 'job.entrypoint' else 'ASSAY_JOB_COMMANDS'}"
            "); an admin key may run it only on a server started with --allow-arbitrary-jobs",
            field=where,
        )

    def permits_launch(self, spec: JobSpec) -> str | None:
        """Why the orchestrator must not launch ``spec`` now (``None``: it may). Specs outside
        the allowlist were accepted from an admin, so they run only while the server still
        allows arbitrary jobs."""
        try:
            self.check_options(spec)
        except ValidationError as e:
            return str(e)
        where = self.outside_allowlist(spec)
        if where is not None and not self.allow_arbitrary:
            return f"{where} is outside this server's job allowlist"
        return None

    # -- the environment a job starts with --------------------------------------------------
    def base_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The server variables a job inherits (``passthrough``, if set), nothing else."""
        environ = os.environ if environ is None else environ
        return {k: environ[k] for k in self.passthrough if k in environ}


#: What a job inherits when no policy is configured (library use, ``run_locally``).
DEFAULT_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER",
                       "PYTHONPATH", "VIRTUAL_ENV")  # fmt: skip


def minimal_env(passthrough: Iterable[str] = DEFAULT_PASSTHROUGH) -> dict[str, str]:
    """The few variables of this process's environment a job starts with."""
    return {k: os.environ[k] for k in passthrough if k in os.environ}
