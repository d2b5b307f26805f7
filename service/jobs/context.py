"""How ``assay.report`` / ``assay.heartbeat`` reach Assay from inside a job.

Executors give every job ``ASSAY_TRIAL_ID`` plus either ``ASSAY_SERVICE_URL`` with a scoped
``ASSAY_JOB_TOKEN`` (the token may only report for, and heartbeat, its own trial) or
``ASSAY_DATABASE_URL`` (workers next to the database). The first report builds the matching
reporter; a failed report is logged and dropped rather than crashing the training run.

Owns the :class:`Reporter` interface and its transports. May import only the standard library
at module level (``import assay`` loads it inside every job); the transports load httpx or the
engine when a job first reports.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger("assay.job")
LEASE_SECONDS_DEFAULT = 120.0


@dataclass
class Report:
    """One ``assay.report`` call."""

    step: int | None
    metrics: dict[str, float]


class Reporter:
    """Receives reports and heartbeats. Subclass for a transport (HTTP, SQL, ...)."""

    def report(self, report: Report) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def heartbeat(self) -> None:
        pass


class HttpReporter(Reporter):
    """Reports over the REST API with the job's scoped token."""

    def __init__(self, url: str, trial_id: int, token: str | None, lease_s: float) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=30)
        self.trial_id, self.lease_s = trial_id, lease_s

    def _post(self, path: str, body: dict) -> None:
        for attempt in range(3):
            try:
                r = self._http.post(path, json=body)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.warning("assay: %s rejected: %s", path, r.text[:300])
                    return
            except Exception as e:  # network blip: retry, then give up quietly
                if attempt == 2:
                    log.warning("assay: could not reach the service: %s", e)
            time.sleep(0.2 * (attempt + 1))

    def report(self, report: Report) -> None:
        self._post(
            f"/trials/{self.trial_id}/reports", {"step": report.step, "metrics": report.metrics}
        )

    def heartbeat(self) -> None:
        self._post(f"/trials/{self.trial_id}:heartbeat", {"lease_seconds": self.lease_s})


class StoreReporter(Reporter):
    """Reports straight into the database."""

    def __init__(self, database_url: str, trial_id: int, lease_s: float) -> None:
        from assay.service.engine import Engine
        from assay.storage.factory import open_store

        self.engine = Engine(open_store(database_url, migrate=False), actor=f"job:{trial_id}")
        self.trial_id, self.lease_s = trial_id, lease_s

    def report(self, report: Report) -> None:
        try:
            self.engine.store.add_report(self.trial_id, report.step, report.metrics)
        except Exception as e:
            log.warning("assay: report not stored: %s", e)

    def heartbeat(self) -> None:
        try:
            self.engine.heartbeat(self.trial_id, self.lease_s)
        except Exception as e:
            log.warning("assay: heartbeat not stored: %s", e)


def reporter_from_environment() -> Reporter | None:
    """The reporter the job's environment describes, or ``None`` outside a job."""
    trial = os.environ.get("ASSAY_TRIAL_ID")
    if not trial:
        return None
    lease = float(os.environ.get("ASSAY_LEASE_SECONDS", LEASE_SECONDS_DEFAULT))
    if os.environ.get("ASSAY_SERVICE_URL"):
        return HttpReporter(
            os.environ["ASSAY_SERVICE_URL"], int(trial), os.environ.get("ASSAY_JOB_TOKEN"), lease
        )
    if os.environ.get("ASSAY_DATABASE_URL"):
        return StoreReporter(os.environ["ASSAY_DATABASE_URL"], int(trial), lease)
    return None
