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

This module imports nothing heavy, so ``import assay; assay.report(...)`` stays fast in jobs.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from assay.platform.errors import ValidationError


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


def _default_environment_reporter() -> Reporter | None:
    """Inside a job (``ASSAY_TRIAL_ID`` set) build the reporter its environment describes."""
    if not os.environ.get("ASSAY_TRIAL_ID"):
        return None
    from assay.service.jobs.context import reporter_from_environment

    return reporter_from_environment()


#: Factory for the environment-configured reporter.
_env_reporter_factory: Callable[[], Reporter | None] | None = _default_environment_reporter
_env_reporter: Reporter | None = None


def set_environment_reporter_factory(factory: Callable[[], Reporter | None] | None) -> None:
    """Register how to build a reporter from the job's environment variables."""
    global _env_reporter_factory, _env_reporter
    _env_reporter_factory, _env_reporter = factory, None


def current_reporter() -> Reporter | None:
    global _env_reporter
    r = _active.get()
    if r is not None:
        return r
    if _env_reporter is None and _env_reporter_factory is not None:
        _env_reporter = _env_reporter_factory()
    return _env_reporter


@contextmanager
def use_reporter(reporter: Reporter) -> Iterator[Reporter]:
    """Route ``assay.report``/``assay.heartbeat`` in this context to ``reporter``."""
    token = _active.set(reporter)
    try:
        yield reporter
    finally:
        _active.reset(token)


def _clean(metrics: dict[str, Any]) -> dict[str, float]:
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


def report(step: int | None = None, **metrics: Any) -> None:
    """Record intermediate metrics of the running trial (e.g. ``report(step=3, loss=0.2)``)."""
    r = current_reporter()
    if r is None:
        return
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValidationError(
            f"report: step must be a non-negative integer, got {step!r}", field="step"
        )
    r.report(Report(step, _clean(metrics)))


def heartbeat() -> None:
    """Tell Assay the running trial is alive (extends its lease)."""
    r = current_reporter()
    if r is not None:
        r.heartbeat()
