"""The privacy ledger interface, and the skeleton of ledgers that hold their whole state in
one plain dict.

Semantics every backend implements (in memory, a JSON file, SQL), checked by one shared test
suite:

* ``set_budget(dataset, epsilon, delta)`` creates a dataset's budget or changes it; a budget
  can never be set below what has already been spent (``ConflictError``).
* ``charge(dataset, epsilon, delta, release_id=...)`` is **one atomic charge-or-refuse**: under
  the backend's lock / transaction it reads the spent totals, and either records the charge or
  raises :class:`~assay.platform.errors.PrivacyBudgetExceededError` having stored nothing.
  Concurrent charges can therefore never overshoot the budget.
* ``release_id`` is unique per dataset: charging again with the same id and the same amounts
  returns the existing charge (a retried request is not charged twice); with different
  amounts it is a ``ConflictError``.
* Composition is basic (ε's and δ's add up); the rules themselves live in
  :mod:`assay.storage.ledger.state`.

Callers must charge *before* publishing: charge, then write the release. If writing fails
afterwards the budget stays spent, which errs on the side of privacy.

May import: the standard library, :mod:`assay.platform.errors` and
:mod:`assay.storage.ledger.state`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from assay.storage.ledger.state import (
    BudgetStatus,
    Charge,
    LedgerState,
    budget_status,
    charges_of,
    record_charge,
    set_budget,
)


class PrivacyLedger(ABC):
    """The interface of every ledger backend (see the module docstring for the semantics)."""

    @abstractmethod
    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        """Create or change ``dataset``'s budget. ``ConflictError`` below what is spent."""

    @abstractmethod
    def status(self, dataset: str) -> BudgetStatus:
        """The budget and spend. ``NotFoundError`` if the dataset has no budget."""

    @abstractmethod
    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        """Atomically record a release or refuse it (``PrivacyBudgetExceededError``)."""

    @abstractmethod
    def charges(self, dataset: str) -> list[Charge]:
        """The dataset's charges, oldest first. ``NotFoundError`` if it has no budget."""


class StateLedger(PrivacyLedger):
    """A ledger whose whole state is one :data:`~assay.storage.ledger.state.LedgerState` dict
    guarded by one lock.

    Subclasses say how to hold the state: :meth:`_locked` yields it under an exclusive lock,
    :meth:`_save` persists it after a change (while still locked).
    """

    @abstractmethod
    def _locked(self) -> AbstractContextManager[LedgerState]:
        """The current state, under the ledger's exclusive lock."""

    def _save(self, state: LedgerState) -> None:
        """Persist ``state`` after a change (called inside :meth:`_locked`)."""

    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        with self._locked() as state:
            status = set_budget(state, dataset, epsilon, delta)
            self._save(state)
            return status

    def status(self, dataset: str) -> BudgetStatus:
        with self._locked() as state:
            return budget_status(state, dataset)

    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        with self._locked() as state:
            charge, stored = record_charge(
                state, dataset, epsilon, delta, release_id, description, metadata
            )
            if stored:
                self._save(state)
            return charge

    def charges(self, dataset: str) -> list[Charge]:
        with self._locked() as state:
            return charges_of(state, dataset)


__all__ = ["PrivacyLedger", "StateLedger"]
