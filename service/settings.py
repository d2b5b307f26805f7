"""Service configuration from the environment (``ASSAY_*``), with laptop-friendly defaults."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of ``assay serve`` and workers.

    Environment variables: ``ASSAY_DATABASE_URL`` (default ``sqlite:///./assay.db``),
    ``ASSAY_HOST`` (``127.0.0.1``), ``ASSAY_PORT`` (``8000``), ``ASSAY_AUTH`` (``auto``: API
    keys are required unless the server binds to a loopback address; ``keys``; ``none``),
    ``ASSAY_REAPER_INTERVAL_S`` (``10``), ``ASSAY_ORCHESTRATOR`` (run trial jobs inside the
    server, ``true``), ``ASSAY_LOG_DIR`` (job logs, ``.assay/logs``), ``ASSAY_LOCAL_CPUS``
    (CPU slots of the local executor; default all cores), ``ASSAY_RELEASE_DIR`` (DP synthetic
    releases, ``.assay/releases``), ``ASSAY_DATA_DIR`` (server-side tables a release may name,
    one folder per project, ``.assay/data``), ``ASSAY_METRICS`` (serve ``GET /metrics``
    publicly, ``false``), ``ASSAY_METRICS_TOKEN`` (serve it behind this bearer token instead),
    ``ASSAY_LOG_FORMAT`` (``text`` or ``json``: one JSON object per line).
    """

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    database_url: str = "sqlite:///./assay.db"
    host: str = "127.0.0.1"
    port: int = 8000
    auth: Literal["auto", "keys", "none"] = "auto"
    reaper_interval_s: float = 10.0
    key_cache_s: float = 30.0
    #: Run trial jobs inside ``assay serve`` with the local executor.
    orchestrator: bool = True
    log_dir: str = ".assay/logs"
    local_cpus: float | None = None
    #: DP synthetic releases: where releases are written / tables are read from.
    release_dir: str = ".assay/releases"
    data_dir: str = ".assay/data"
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
        return self.auth == "keys" or (self.auth == "auto" and not self.loopback)
