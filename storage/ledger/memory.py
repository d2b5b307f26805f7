"""The in-memory privacy ledger: tests, notebooks, and the in-memory Assay store.

May import: the standard library and :mod:`assay.storage.ledger`'s ``base`` / ``state``.

Example:
    >>> ledger = InMemoryPrivacyLedger()
    >>> _ = ledger.set_budget("hie", epsilon=4.0, delta=1e-5)
    >>> _ = ledger.charge("hie", 3.0, 1e-6, release_id="r1")
    >>> ledger.charge("hie", 3.0, 1e-6, release_id="r2")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    assay.platform.errors.PrivacyBudgetExceededError: dataset 'hie': release 'r2' needs ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from assay.storage.ledger.base import StateLedger
from assay.storage.ledger.state import LedgerState


class InMemoryPrivacyLedger(StateLedger):
    """A thread-safe ledger in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._state: LedgerState = {}
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[LedgerState]:
        with self._lock:
            yield self._state


__all__ = ["InMemoryPrivacyLedger"]
