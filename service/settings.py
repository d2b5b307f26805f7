"""Service configuration from the environment (``ASSAY_*``), with laptop-friendly defaults."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of ``assay serve`` and workers.

    Environment variables: ``ASSAY_DATABASE_URL`` (default ``sqlite:///./assay.db``),
    ``ASSAY_HOST`` (``127.0.0.1``), ``ASSAY_PORT`` (``8000``), ``ASSAY_AUTH`` (``auto``: API
    keys are required unless the server binds to loopback *and* the request is local in every
    respect, see :func:`assay.service.auth.is_local_request`; ``keys``; ``none``: no keys at
    all, for embedding and tests only), ``ASSAY_ALLOWED_HOSTS`` (comma-separated ``Host``
    names the server answers, ``*.example.com`` wildcards; empty: any, which with keys is
    safe), ``ASSAY_SECURE_COOKIES`` (``auto``: ``Secure`` when the request is https or a
    proxy says so; ``always``; ``never``), ``ASSAY_SESSION_TTL_S`` (dashboard sign-in,
    ``43200``), ``ASSAY_LOGIN_ATTEMPTS_PER_MIN`` (per client address, ``10``),
    ``ASSAY_REAPER_INTERVAL_S`` (``10``), ``ASSAY_ORCHESTRATOR`` (run trial jobs inside the
    server, ``true``), ``ASSAY_LOG_DIR`` (job logs, ``.assay/logs``), ``ASSAY_LOCAL_CPUS``
    (CPU slots of the local executor; default all cores), ``ASSAY_RELEASE_DIR`` (DP synthetic
    releases, ``.assay/releases``), ``ASSAY_DATA_DIR`` (server-side tables a release may name,
    one folder per project, ``.assay/data``), ``ASSAY_METRICS`` (serve ``GET /metrics``
    publicly, ``false``), ``ASSAY_METRICS_TOKEN`` (serve it behind this bearer token instead),
    ``ASSAY_LOG_FORMAT`` (``text`` or ``json``: one JSON object per line).

    Job specs run code, so they are a privilege (see :mod:`assay.service.jobs.policy`):
    ``ASSAY_JOB_ENTRYPOINTS`` / ``ASSAY_JOB_COMMANDS`` (comma-separated ``fnmatch`` patterns
    of the entry points / command lines any member may run; default: Assay's own workloads
    and the demo job, no commands), ``ASSAY_ALLOW_ARBITRARY_JOBS`` (``false``; when ``true``
    every admin key can run code on this server and its workers), ``ASSAY_JOB_ENV_KEYS``
    (patterns of the ``job.env`` keys a spec may set), ``ASSAY_JOB_ENV_PASSTHROUGH`` (the
    server's variables a job inherits, besides its own ``ASSAY_*``), and
    ``ASSAY_JOB_EXECUTOR_OPTIONS`` (JSON ``{executor: [option, ...]}``).

    What a request may cost (see :mod:`assay.service.limits`): ``ASSAY_MAX_BODY_BYTES``
    (1 MiB; 413 over it), ``ASSAY_GENERATOR_CAPS`` (JSON ``{setting: ceiling}`` merged over
    the defaults), ``ASSAY_ASK_LOCK_TIMEOUT_S`` (10; 503 + ``Retry-After`` after it),
    ``ASSAY_MODEL_SLOTS`` (4 model fits at once per server) and ``ASSAY_MODEL_WAIT_S`` (30),
    ``ASSAY_MAX_UPLOAD_BYTES`` (64 MiB: a release's CSV), ``ASSAY_MAX_RELEASE_QUEUE`` (8 DP
    releases queued or training per process; 503 beyond). Every list endpoint pages (at
    most 1000 rows a page).
    """

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    database_url: str = "sqlite:///./assay.db"
    host: str = "127.0.0.1"
    port: int = 8000
    auth: Literal["auto", "keys", "none"] = "auto"
    reaper_interval_s: float = 10.0
    #: How long an *unknown* key digest is remembered (valid keys are never cached).
    key_cache_s: float = 30.0
    allowed_hosts: str = ""
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    session_ttl_s: float = 12 * 3600.0
    login_attempts_per_min: int = 10
    #: Run trial jobs inside ``assay serve`` with the local executor.
    orchestrator: bool = True
    log_dir: str = ".assay/logs"
    local_cpus: float | None = None
    #: DP synthetic releases: where releases are written / tables are read from.
    release_dir: str = ".assay/releases"
    data_dir: str = ".assay/data"
    #: Job specs as a privilege (comma-separated fnmatch patterns; see the docstring).
    job_entrypoints: str = "assay.generative.workloads.*:*,assay.service.demo_job:*"
    job_commands: str = ""
    allow_arbitrary_jobs: bool = False
    job_env_keys: str = (
        "OMP_NUM_THREADS,MKL_NUM_THREADS,OPENBLAS_NUM_THREADS,TOKENIZERS_PARALLELISM,"
        "CUBLAS_WORKSPACE_CONFIG,ASSAY_GENERATIVE_CACHE,WANDB_*,HF_*"
    )
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 64 << 20
    generator_caps: dict[str, float] = {}
    ask_lock_timeout_s: float = 10.0
    model_slots: int = 4
    model_wait_s: float = 30.0
    max_release_queue: int = 8
    job_env_passthrough: str = "PATH,HOME,LANG,LC_ALL,LC_CTYPE,TZ,TMPDIR,USER,PYTHONPATH"
    job_executor_options: dict[str, list[str]] = {
        "slurm": [
            "slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint",
            "slurm_comment", "slurm_exclude", "slurm_mem_per_cpu", "slurm_gpus_per_task",
        ],
    }  # fmt: skip
    #: ``GET /metrics`` (Prometheus): off unless enabled, or behind its own token.
    metrics: bool = False
    metrics_token: str | None = None
    log_format: Literal["text", "json"] = "text"
    #: Webhook deliveries: how often the outbox is polled (0: no deliverer in this process)
    #: and the first retry delay (doubling per attempt).
    webhook_interval_s: float = 1.0
    webhook_backoff_s: float = 2.0

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def auth_required(self) -> bool:
        """Keys are needed for (at least) every non-local request. In ``auto`` mode on a
        loopback socket a purely local request may still go without one, decided per request
        by :func:`assay.service.auth.needs_key`."""
        return self.auth == "keys" or (self.auth == "auto" and not self.loopback)

    @property
    def host_patterns(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]
