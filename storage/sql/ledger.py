"""The privacy ledger in SQL: per-dataset (ε, δ) budgets and the releases charged to them.

:class:`SqlPrivacyLedger` implements :class:`~assay.storage.ledger.PrivacyLedger` on the
``privacy_budgets`` / ``privacy_charges`` tables, scoped to one project (the same dataset name
in two projects is two budgets). Its semantics are *the* shared ones — it loads the dataset's
budget and charges into the plain-dict state that the in-memory and JSON-file ledgers use and
applies the same rules (:mod:`assay.storage.ledger.state`), so same-id retries, refusals,
validation and the floating-point tolerance cannot drift between backends.

Atomicity: :meth:`SqlPrivacyLedger.charge` is one transaction that first locks the dataset's
budget row — ``SELECT ... FOR UPDATE`` on PostgreSQL, the ``BEGIN IMMEDIATE`` write
transaction on SQLite (:meth:`~assay.storage.sql.session.SqlDatabase.run_transaction` opens
write transactions that way) — then reads the charges, decides, and inserts at most one charge
row. Concurrent charges on one dataset therefore serialise and can never overshoot the budget;
a refusal rolls back and stores nothing. Composition is basic (ε's and δ's add), as in every
backend.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.ledger`,
:mod:`assay.storage.orm`, :mod:`assay.storage.urls` and the sibling modules :mod:`.projects`,
:mod:`.session` (and :mod:`.store`, only to open a ledger from a URL).

Example:
    >>> from assay.storage.sql import SqlStore
    >>> ledger = SqlPrivacyLedger(SqlStore("sqlite://"), project="growth")
    >>> ledger.set_budget("signups", epsilon=4.0, delta=1e-5).epsilon_remaining
    4.0
    >>> ledger.charge("signups", 3.0, 1e-6, release_id="r1").epsilon
    3.0
    >>> ledger.status("signups").releases
    1
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.platform.errors import ConflictError
from assay.platform.experiment import utcnow
from assay.storage.ledger.base import PrivacyLedger
from assay.storage.ledger.state import (
    BudgetStatus,
    Charge,
    LedgerState,
    budget_status,
    charges_of,
    check_name,
    record_charge,
    set_budget,
)
from assay.storage.orm import PrivacyBudgetRow, PrivacyChargeRow, ProjectRow
from assay.storage.sql.projects import project_id
from assay.storage.sql.session import SqlDatabase


class SqlPrivacyLedger(PrivacyLedger):
    """A :class:`PrivacyLedger` in the Assay database (SQLite or PostgreSQL).

    Args:
        store: The SQL store (any :class:`~assay.storage.sql.session.SqlDatabase`) whose
            transactions are used.
        project: The project whose budgets this ledger sees (created on the first budget).
    """

    def __init__(self, store: SqlDatabase, project: str = "default") -> None:
        self.store = store
        self.project = check_name(project, "project")

    @classmethod
    def from_url(
        cls, url: str, project: str = "default", *, migrate: bool = False
    ) -> SqlPrivacyLedger:
        """A ledger with its own store on ``url`` (close it with :meth:`close`).

        ``migrate=False`` refuses an out-of-date schema, naming ``assay db upgrade``.
        """
        from assay.storage.sql.store import SqlStore
        from assay.storage.urls import normalize_database_url

        return cls(SqlStore(normalize_database_url(url), migrate=migrate), project)

    def close(self) -> None:
        """Close the store's connections (for a ledger made by :meth:`from_url`)."""
        self.store.close()

    # -- rows <-> the shared plain-dict state ------------------------------------------------
    def _budget_row(
        self, s: Session, dataset: str, *, for_update: bool = False
    ) -> PrivacyBudgetRow | None:
        stmt = (
            select(PrivacyBudgetRow)
            .join(ProjectRow, ProjectRow.id == PrivacyBudgetRow.project_id)
            .where(ProjectRow.name == self.project, PrivacyBudgetRow.dataset == dataset)
        )
        if for_update and self.store.dialect == "postgresql":
            stmt = stmt.with_for_update(of=PrivacyBudgetRow)
        return s.execute(stmt).scalar_one_or_none()

    @staticmethod
    def _state(s: Session, dataset: str, budget: PrivacyBudgetRow | None) -> LedgerState:
        if budget is None:
            return {}
        rows = s.execute(
            select(PrivacyChargeRow)
            .where(PrivacyChargeRow.budget_id == budget.id)
            .order_by(PrivacyChargeRow.id)
        ).scalars()
        charges = [
            {
                "dataset": dataset,
                "release_id": r.release_id,
                "epsilon": r.epsilon,
                "delta": r.delta,
                "created_at": r.created_at.isoformat(),
                "description": r.description,
                "metadata": dict(r.charge_metadata or {}),
            }
            for r in rows
        ]
        return {dataset: {"epsilon": budget.epsilon, "delta": budget.delta, "charges": charges}}

    # -- PrivacyLedger -------------------------------------------------------------------------
    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        def fn(s: Session) -> BudgetStatus:
            for _ in range(3):
                budget = self._budget_row(s, dataset, for_update=True)
                if budget is not None:
                    break
                check = set_budget({}, dataset, epsilon, delta)  # validates the new budget
                now = utcnow()
                try:
                    # A concurrent first budget of this dataset (or a new project) makes the
                    # insert hit a unique constraint; the savepoint keeps the transaction
                    # alive and the next round locks the winner's row instead.
                    with s.begin_nested():
                        s.add(
                            PrivacyBudgetRow(
                                project_id=project_id(s, self.project),
                                dataset=dataset, epsilon=float(epsilon), delta=float(delta),
                                created_at=now, updated_at=now,
                            )
                        )  # fmt: skip
                    return check
                except IntegrityError:
                    continue
            else:
                raise ConflictError(
                    f"dataset {dataset!r}: its budget is being created concurrently; retry",
                    field="dataset",
                )
            state = self._state(s, dataset, budget)
            status = set_budget(state, dataset, epsilon, delta)  # ConflictError below spend
            budget.epsilon, budget.delta = float(epsilon), float(delta)
            budget.updated_at = utcnow()
            return status

        return self.store.run_transaction(fn)

    def status(self, dataset: str) -> BudgetStatus:
        def fn(s: Session) -> BudgetStatus:
            return budget_status(self._state(s, dataset, self._budget_row(s, dataset)), dataset)

        return self.store.run_transaction(fn, write=False)

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
        def fn(s: Session) -> Charge:
            budget = self._budget_row(s, dataset, for_update=True)  # the lock
            state = self._state(s, dataset, budget)
            charge, stored = record_charge(
                state, dataset, epsilon, delta, release_id, description, metadata
            )
            if stored:
                assert budget is not None
                s.add(
                    PrivacyChargeRow(
                        budget_id=budget.id, release_id=charge.release_id, epsilon=charge.epsilon,
                        delta=charge.delta, description=charge.description,
                        charge_metadata=dict(charge.metadata),
                        created_at=datetime.fromisoformat(charge.created_at),
                    )
                )  # fmt: skip
                s.flush()
            return charge

        return self.store.run_transaction(fn)

    def charges(self, dataset: str) -> list[Charge]:
        def fn(s: Session) -> list[Charge]:
            return charges_of(self._state(s, dataset, self._budget_row(s, dataset)), dataset)

        return self.store.run_transaction(fn, write=False)


__all__ = ["SqlPrivacyLedger"]
