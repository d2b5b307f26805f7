"""``assay.report`` / ``assay.heartbeat``: how a running job talks back to Assay.

Inside a job, ``assay.report(step=10, loss=0.3)`` records intermediate values (learning
curves) and ``assay.heartbeat()`` extends the trial's lease. The calls go to the active
*reporter*:

* one installed with :func:`use_reporter` (in-process runs, tests, the local executor's
  in-process mode), or
* the transport configured by the job's environment (``ASSAY_TRIAL_ID`` plus a service URL or
  database URL; installed by the executors), or
* none: outside a job both calls are cheap no-ops, so a workload's ``run(params)`` can be
  called directly from a notebook.

The reporter interface and its transports live in :mod:`assay.service.jobs.context`; this
module imports nothing heavy, so ``import assay; assay.report(...)`` stays fast in jobs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from assay.platform.errors import ValidationError
from assay.platform.jobspec import clean_metrics
from assay.service.jobs.context import Report, Reporter, reporter_from_environment


@dataclass
class CollectingReporter(Reporter):
    """Keeps every report in memory (``reports``) and counts heartbeats."""

    reports: list[Report] = field(default_factory=list)
    heartbeats: int = 0
    on_report: Callable[[Report], None] | None = None

    def report(self, report: Report) -> None:
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)

    def heartbeat(self) -> None:
        self.heartbeats += 1


_active: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "assay_reporter", default=None
)


#: The environment-configured reporter, built on first use inside a job.
_env_reporter: Reporter | None = None


def current_reporter() -> Reporter | None:
    global _env_reporter
    r = _active.get()
    if r is not None:
        return r
    if _env_reporter is None:
        _env_reporter = reporter_from_environment()
    return _env_reporter


@contextmanager
def use_reporter(reporter: Reporter) -> Iterator[Reporter]:
    """Route ``assay.report``/``assay.heartbeat`` in this context to ``reporter``."""
    token = _active.set(reporter)
    try:
        yield reporter
    finally:
        _active.reset(token)


def report(step: int | None = None, **metrics: Any) -> None:
    """Record intermediate metrics of the running trial (e.g. ``report(step=3, loss=0.2)``)."""
    r = current_reporter()
    if r is None:
        return
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValidationError(
            f"report: step must be a non-negative integer, got {step!r}", field="step"
        )
    r.report(Report(step, clean_metrics(metrics)))


def heartbeat() -> None:
    """Tell Assay the running trial is alive (extends its lease)."""
    r = current_reporter()
    if r is not None:
        r.heartbeat()
